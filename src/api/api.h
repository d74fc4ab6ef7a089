/*
 * api.h — the API layer: route table, request context, middleware, response
 * helpers. Nothing below api/ knows HTTP; nothing in api/ holds SQL.
 *
 * A request flows: http/ (framing) → dispatch.c on_headers (route match,
 * 404/405/415, body limit) → on_request (inline, or on the worker pool for
 * routes that may block) → middleware (auth, permission, rate limit — added
 * by later areas) → the route's handler → on_complete (metrics, access log).
 */
#ifndef KEEL_API_API_H
#define KEEL_API_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/errors.h"
#include "core/slice.h"
#include "http/http.h"
#include "store/store.h"

struct api;
struct ctx;
struct workers;

typedef int (*api_handler_fn)(struct ctx *ctx);

enum auth_kind {
  AUTH_PUBLIC = 0, /* no credentials */
  AUTH_SESSION,    /* session cookie */
  AUTH_KEY,        /* API key */
  AUTH_ANY,        /* API key or session */
  AUTH_PLATFORM    /* session of a platform administrator */
};

/* Body limits that follow configuration. */
enum {
  ROUTE_BODY_NONE = 0,
  ROUTE_BODY_DEFAULT = 1, /* http.body_max */
  ROUTE_BODY_INGEST = 2   /* http.ingest_body_max */
};

enum route_flags {
  ROUTE_INLINE = 1u << 0, /* never blocks: runs on the I/O thread */
  ROUTE_DEV = 1u << 1     /* registered only with --dev */
};

struct route {
  enum http_method method;
  const char *pattern; /* "/v1/orgs/{org}/members/{user}" */
  api_handler_fn handler;
  enum auth_kind auth;
  int permission;           /* a permission (session) or scope (key); 0: none */
  int body;                 /* ROUTE_BODY_* */
  const char *content_type; /* required media type of the body; NULL: JSON */
  int rate_class;           /* 0: none */
  unsigned flags;           /* ROUTE_* */
};

/* The route table (routes.c). */
const struct route *api_routes(size_t *count);

/* --- router (router.c): pure matching, unit-tested --------------------- */

#define ROUTE_PARAMS_MAX 4

struct route_params {
  size_t count;
  struct slice names[ROUTE_PARAMS_MAX];
  struct slice values[ROUTE_PARAMS_MAX];
};

enum router_result { ROUTER_FOUND = 0, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

/*
 * Matches method and path against routes[0..n). HEAD matches GET routes.
 * On ROUTER_FOUND, *found and params are set; on ROUTER_METHOD_NOT_ALLOWED,
 * *allow_mask has bit (1 << method) for every method the path accepts.
 * dev_routes: whether ROUTE_DEV rows take part.
 */
enum router_result router_match(const struct route *routes, size_t n, enum http_method method,
                                struct slice path, bool dev_routes, const struct route **found,
                                struct route_params *params, unsigned *allow_mask);
/* "GET, HEAD, POST" for an allow mask, into out. */
void router_allow_header(unsigned allow_mask, char *out, size_t outsize);

/* --- the application ---------------------------------------------------- */

struct api_options {
  const struct config *cfg;
  struct store *store;
  struct workers *workers;
};

struct api *api_new(const struct api_options *opt);
void api_free(struct api *api);
/* The handler the HTTP layer calls. */
struct http_handler api_http_handler(struct api *api);
/* Readiness flag set by the app once start-up is complete. */
void api_set_ready(struct api *api, bool ready);
void api_set_draining(struct api *api, bool draining);

/* --- per-request context ------------------------------------------------ */

struct ctx {
  struct api *api;
  struct http_req *req;
  struct arena *arena;
  const struct route *route;
  size_t route_index;
  struct route_params params;
  const char *request_id;
  bool dispatched; /* the handler phase began (in-flight gauge) */
};

const struct config *api_config(const struct api *api);
struct store *api_store(const struct api *api);

/* Path parameter by name as sent (NUL-terminated arena copy, not
 * percent-decoded: ids and slugs never need it), or NULL. */
const char *ctx_param(struct ctx *ctx, const char *name);

/* --- responses (respond.c) ---------------------------------------------- */

/* Serialises body (takes ownership: decref'd) as application/json. Returns 0. */
int api_json(struct ctx *ctx, int status, json_t *body);
/* A problem+json response for a catalogue code. Returns 0. detail may be
 * NULL; it is copied. */
int api_problem(struct ctx *ctx, const char *code, const char *detail);
int api_problemf(struct ctx *ctx, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 400 validation_failed with the field errors. Returns 0. */
int api_validation(struct ctx *ctx, const struct field_errors *fe);
/* Maps an internal status (KEEL_E*) to a problem response. Returns 0. */
int api_status(struct ctx *ctx, int status);
/*
 * Parses the request body as a JSON object (depth-limited). On failure the
 * response is set (400 invalid_json) and NULL returned. The result is owned
 * by the request (released with the arena).
 */
json_t *api_body_object(struct ctx *ctx);

/* --- metrics (metrics.c) ----------------------------------------------- */

struct metrics;
struct metrics *metrics_new(size_t nroutes);
void metrics_free(struct metrics *m);
/* route_index == nroutes for requests that matched no route. */
void metrics_observe(struct metrics *m, size_t route_index, int status, int64_t duration_us);
void metrics_inflight_add(struct metrics *m, int delta);
/* Appends the Prometheus text exposition of everything recorded, with the
 * route table for labels. */
int metrics_render(struct metrics *m, const struct route *routes, size_t nroutes, struct buf *out);

/* Service handlers (service.c). */
int handle_healthz(struct ctx *ctx);
int handle_readyz(struct ctx *ctx);
int handle_metrics(struct ctx *ctx);
int handle_openapi(struct ctx *ctx);
int handle_dev_clock(struct ctx *ctx);
int handle_dev_slow(struct ctx *ctx);

/* Gauges contributed to /metrics by the app (queue depths and the like). */
int api_render_gauges(struct api *api, struct buf *out);

#endif
