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
#include "domain/rbac.h"
#include "domain/session.h"
#include "http/http.h"
#include "store/orgs.h"
#include "store/store.h"
#include "store/users.h"

struct api;
struct ctx;
struct workers;

/*
 * A handler returns 0 once the response is set, a KEEL_E* status (answered
 * by api_status), or API_DEFERRED: it handed the request to another thread
 * (the store writer, for ingestion), which sets the response and calls
 * ctx_resume exactly once. After returning API_DEFERRED — indeed as soon as
 * the hand-off is made — the handler must not touch ctx: it may already be
 * gone.
 */
typedef int (*api_handler_fn)(struct ctx *ctx);
#define API_DEFERRED 1

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
  ROUTE_DEV = 1u << 1,    /* registered only with --dev */
  /* AUTH_KEY/AUTH_ANY route whose handler never blocks: it runs on the I/O
   * thread when the key is in the cache (api/keys.h keys_preauthenticate),
   * on the worker pool otherwise. */
  ROUTE_INLINE_KEY = 1u << 2,
  /* AUTH_SESSION/AUTH_PLATFORM GET route whose handler never blocks: it runs
   * on the I/O thread when the cookie, the user and the membership are all
   * in the session-authentication cache and the route's permission is
   * granted (mw_session_preauthenticate, api/authcache.h), on the worker
   * pool otherwise. */
  ROUTE_INLINE_SESSION = 1u << 3
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
  unsigned scope;           /* SCOPE_* an API key needs (AUTH_KEY / AUTH_ANY) */
};

/* The route table (routes.c): the service rows plus every area's rows. */
const struct route *api_routes(size_t *count);

/* Each area's rows, in its own file. */
const struct route *routes_auth(size_t *count);        /* auth.c */
const struct route *routes_orgs(size_t *count);        /* orgs.c */
const struct route *routes_members(size_t *count);     /* members.c */
const struct route *routes_invitations(size_t *count); /* invitations.c */
const struct route *routes_audit(size_t *count);       /* audit.c */
const struct route *routes_admin(size_t *count);       /* admin.c */
const struct route *routes_plans(size_t *count);       /* plans.c */
const struct route *routes_keys(size_t *count);        /* keys.c */
const struct route *routes_ingest(size_t *count);      /* ingest.c */
const struct route *routes_telemetry(size_t *count);   /* telemetry.c */
const struct route *routes_deadletters(size_t *count); /* deadletters.c */
const struct route *routes_usage(size_t *count);       /* usage.c */
const struct route *routes_analytics(size_t *count);   /* analytics.c */

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
  const uint8_t *secret; /* the server secret (copied) */
  size_t secret_len;
};

struct api *api_new(const struct api_options *opt);
void api_free(struct api *api);
/* The handler the HTTP layer calls. */
struct http_handler api_http_handler(struct api *api);
/* Readiness flag set by the app once start-up is complete. */
void api_set_ready(struct api *api, bool ready);
void api_set_draining(struct api *api, bool draining);

/* --- per-request context ------------------------------------------------ */

enum actor_kind { ACTOR_NONE = 0, ACTOR_USER, ACTOR_KEY };

/* An authenticated API key (filled by the key middleware). */
struct key_auth {
  char id[ID_STR_SIZE];
  char prefix[16];               /* display prefix: the first 12 characters */
  unsigned scopes;               /* SCOPE_* bits */
  char env[16];                  /* production | staging | development | test */
  bool live;                     /* kl_live_ (true) or kl_test_ */
  int64_t rate_override_per_min; /* 0: the plan's */
};

struct ctx {
  struct api *api;
  struct http_req *req;
  struct arena *arena;
  const struct route *route;
  size_t route_index;
  struct route_params params;
  const char *request_id;
  bool dispatched; /* the handler phase began (in-flight gauge) */

  /* Filled by the middleware (mw.c) before the handler runs. The flags come
   * first: only they are zeroed for every request (CTX_ZEROED_SIZE); the
   * large members after them are valid only when a flag says so. */
  enum actor_kind actor;
  struct session_claims *session; /* ACTOR_USER: the cookie's claims */
  bool has_org;                   /* an org scope is established */
  enum role role;                 /* ACTOR_USER's role in org */
  bool preauthenticated;          /* mw_session_preauthenticate filled it all */
  /* The session's org as the request named it (id or slug) and the stamp of
   * its membership in the session-authentication cache (0: not cached), for
   * handlers that cache a rendering of the org (authcache_member_json_*). */
  const char *org_ref;
  uint64_t org_stamp;
  /* Filled by the middleware; user.password_hash is always empty there. */
  struct user user;       /* valid when actor == ACTOR_USER */
  struct key_auth key;    /* valid when actor == ACTOR_KEY */
  struct org_scope scope; /* valid when has_org */
  struct org org;         /* valid when has_org */
};
#define CTX_ZEROED_SIZE offsetof(struct ctx, user)

/*
 * Middleware (mw.c). Runs before the handler: authentication by the route's
 * auth kind, CSRF for cookie-authenticated changes, the {org} path parameter
 * (resolved for the user, 404 when not a member), the route's permission
 * (403 + an audit entry when denied). Returns 0 to run the handler, or 1 when
 * it has set the response.
 */
int mw_run(struct ctx *ctx);
/*
 * The session middleware from the session-authentication cache alone, for
 * ROUTE_INLINE_SESSION rows on an I/O thread: true when the request is a GET
 * or HEAD whose cookie, user and {org} membership are all cache hits and
 * whose route permission is granted — ctx is then filled as mw_run would,
 * the sliding renewal included (mw_run only sets the log context), and the
 * handler may run at once. false otherwise, with nothing answered: the worker pool runs
 * mw_run (which fills the cache; refusals, their audit entries included,
 * are its job). Never blocks on the store.
 */
bool mw_session_preauthenticate(struct ctx *ctx);

/* The server's MAC keys, derived from the secret (app.c loads it). */
const struct session_keys *api_session_keys(const struct api *api);
const uint8_t *api_key_mac_key(const struct api *api); /* 32 bytes */

/* Issues (or re-issues) the session cookie for claims; clears it. */
void api_set_session_cookie(struct ctx *ctx, const struct session_claims *claims);
void api_clear_session_cookie(struct ctx *ctx);

/* The client's IP and User-Agent (for audit entries and limits). */
const char *ctx_ip(struct ctx *ctx);
const char *ctx_user_agent(struct ctx *ctx);

/*
 * Writes an audit entry for this request inside tx (a store_write job):
 * the actor (user id, key prefix or system), org (ctx->has_org, or the
 * platform chain), IP and user agent come from ctx. details is borrowed and
 * may be NULL. Returns a store status.
 */
struct store_tx;
int ctx_audit(struct ctx *ctx, struct store_tx *tx, const char *action, const char *resource_type,
              const char *resource_id, bool success, json_t *details);
/* The same, in its own write transaction (for denials and failures). */
int ctx_audit_now(struct ctx *ctx, const char *action, const char *resource_type,
                  const char *resource_id, bool success, json_t *details);

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
/* A problem with extension members (RFC 9457 §3.2), e.g. {"limit":
 * "members", "upgrade_url": "…"}; ext is consumed (decref'd). Returns 0. */
int api_problem_ext(struct ctx *ctx, const char *code, const char *detail, json_t *ext);
/* 403 plan_limit_reached naming the limit, its value and the upgrade URL
 * (public_url + "/billing"). Returns 0. */
int api_plan_limit(struct ctx *ctx, const char *limit_name, int64_t limit, const char *plan);
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

/* List helpers (audit.c), for routes with ?limit= and ?cursor=: an opaque
 * cursor of kind bound to binding (the org, the filters), the limit within
 * [1, max], and a 400 naming a query parameter. */
int api_cursor_encode(struct ctx *ctx, char kind, const char *binding, const void *payload,
                      size_t n, char *out, size_t outsize);
long api_cursor_decode(struct ctx *ctx, char kind, const char *binding, const char *cursor,
                       void *payload, size_t max);
int api_query_limit(struct ctx *ctx, int64_t max, int64_t *limit);
int api_param_problem(struct ctx *ctx, const char *param, const char *detail);

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

/* Completes a request whose handler returned API_DEFERRED: the response
 * must be set. Any thread; exactly once. */
void ctx_resume(struct ctx *ctx);

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
