/*
 * dispatch.c — the glue between http/ and the route table: routing and
 * media-type checks when the headers arrive, running the handler inline or
 * on the worker pool, and metrics and the access log when a request ends.
 *
 * Invariant: every response, error or not, carries X-Request-Id (the HTTP
 * layer adds it) and every error is problem+json.
 */
#include <stdatomic.h>
#include <string.h>

#include "api/api.h"
#include "api/authcache.h"
#include "api/deadletters.h"
#include "api/ingest.h"
#include "api/keys.h"
#include "api/usage.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/workers.h"
#include "core/xmalloc.h"
#include "domain/apikeys.h"

struct api {
  struct session_keys session_keys;
  uint8_t key_mac_key[32];
  const struct config *cfg;
  struct store *store;
  struct workers *workers;
  struct metrics *metrics;
  const struct route *routes;
  size_t nroutes;
  atomic_bool ready;
  atomic_bool draining;
  struct keys *keys;           /* the API-keys area (api/keys.h) */
  struct authcache *authcache; /* session authentication (api/authcache.h); NULL without a store */
  struct ingest *ingest;       /* the ingestion pipeline (api/ingest.h) */
  struct deadletters
      *deadletters; /* dead-letter depth and expiry (api/deadletters.h); NULL without a store */
  struct usage_area *usage; /* quota counters and usage jobs (api/usage.h) */
};

struct api *api_new(const struct api_options *opt) {
  struct api *api = xcalloc(1, sizeof(*api));
  api->cfg = opt->cfg;
  api->store = opt->store;
  api->workers = opt->workers;
  api->routes = api_routes(&api->nroutes);
  KEEL_ASSERT(opt->secret != NULL && opt->secret_len >= 32);
  session_keys_derive(opt->secret, opt->secret_len, &api->session_keys);
  apikeys_mac_key_derive(opt->secret, opt->secret_len, api->key_mac_key);
  api->metrics = metrics_new(api->nroutes);
  atomic_init(&api->ready, false);
  atomic_init(&api->draining, false);
  api->keys = keys_start(api);
  if (api->store) api->authcache = authcache_new(NULL);
  api->ingest = ingest_start(api);
  if (api->store) api->deadletters = deadletters_start(api);
  api->usage = usage_start(api);
  return api;
}

struct ingest *api_ingest(const struct api *api) {
  return api->ingest;
}

struct usage_area *api_usage(const struct api *api) {
  return api->usage;
}

struct deadletters *api_deadletters(const struct api *api) {
  return api->deadletters;
}

struct authcache *api_authcache(const struct api *api) {
  return api->authcache;
}

struct keys *api_keys(const struct api *api) {
  return api->keys;
}

const struct session_keys *api_session_keys(const struct api *api) {
  return &api->session_keys;
}

const uint8_t *api_key_mac_key(const struct api *api) {
  return api->key_mac_key;
}

void api_free(struct api *api) {
  if (!api) return;
  keys_stop(api->keys); /* flushes last_used_at: the store must still be open */
  deadletters_stop(api->deadletters);
  usage_stop(api->usage); /* joins the usage jobs: the store must still be open */
  ingest_stop(api->ingest);
  authcache_free(api->authcache);
  crypto_wipe(&api->session_keys, sizeof(api->session_keys));
  crypto_wipe(api->key_mac_key, sizeof(api->key_mac_key));
  metrics_free(api->metrics);
  xfree(api);
}

void api_set_ready(struct api *api, bool ready) {
  atomic_store(&api->ready, ready);
}

void api_set_draining(struct api *api, bool draining) {
  atomic_store(&api->draining, draining);
}

bool api_is_ready(const struct api *api);
bool api_is_ready(const struct api *api) {
  return atomic_load(&((struct api *)api)->ready) && !atomic_load(&((struct api *)api)->draining);
}

const struct config *api_config(const struct api *api) {
  return api->cfg;
}

struct store *api_store(const struct api *api) {
  return api->store;
}

struct metrics *api_metrics(const struct api *api);
struct metrics *api_metrics(const struct api *api) {
  return api->metrics;
}

int api_render_gauges(struct api *api, struct buf *out) {
  int rc = 0;
  if (api->store) {
    rc |= buf_printf(out,
                     "# HELP keel_store_write_queue_depth Writes waiting for the store writer.\n"
                     "# TYPE keel_store_write_queue_depth gauge\n"
                     "keel_store_write_queue_depth %zu\n",
                     store_write_queue_depth(api->store));
  }
  if (api->workers) {
    rc |= buf_printf(out,
                     "# HELP keel_worker_queue_depth Requests waiting for a worker thread.\n"
                     "# TYPE keel_worker_queue_depth gauge\n"
                     "keel_worker_queue_depth %zu\n",
                     workers_queued(api->workers));
  }
  rc |= keys_render_metrics(api->keys, out);
  rc |= ingest_render_metrics(api->ingest, out);
  rc |= deadletters_render_metrics(api->deadletters, out);
  rc |= usage_render_metrics(api->usage, out);
  rc |= authcache_render_metrics(api->authcache, out);
  return rc ? -1 : 0;
}

/* --- headers phase ------------------------------------------------------ */

static size_t body_limit_for(const struct api *api, const struct route *r) {
  switch (r->body) {
    case ROUTE_BODY_DEFAULT:
      return (size_t)api->cfg->http_body_max;
    case ROUTE_BODY_INGEST:
      return (size_t)api->cfg->http_ingest_body_max;
    default:
      return LIMIT_BODY_NONE;
  }
}

/* Media type of a Content-Type value, without parameters. */
static struct slice media_type(struct slice ct) {
  struct slice type, params;
  slice_cut(ct, ';', &type, &params);
  return slice_trim(type);
}

static void early_problem(struct ctx *ctx, const char *code, const char *detail) {
  api_problem(ctx, code, detail);
}

static int on_headers(struct http_req *req, void *ud) {
  struct api *api = ud;
  /* A ctx is large (it embeds the user and the org); only its head is
   * zeroed, see CTX_ZEROED_SIZE. */
  struct ctx *ctx = arena_alloc(req->arena, sizeof(*ctx));
  memset(ctx, 0, CTX_ZEROED_SIZE);
  ctx->api = api;
  ctx->req = req;
  ctx->arena = req->arena;
  ctx->request_id = req->request_id;
  ctx->route_index = api->nroutes;
  req->user = ctx;

  if (req->method == HTTP_METHOD_OTHER) {
    /* RFC 9110 §15.6.2: a method the server does not recognise is 501. */
    api_problemf(ctx, "not_implemented", "the method %.32s is not supported", req->method_str);
    return 1;
  }
  unsigned allow = 0;
  const struct route *r = NULL;
  enum router_result m = router_match(api->routes, api->nroutes, req->method, req->path,
                                      api->cfg->dev, &r, &ctx->params, &allow);
  if (m == ROUTER_NOT_FOUND) {
    early_problem(ctx, "not_found", "no route matches this path");
    return 1;
  }
  if (m == ROUTER_METHOD_NOT_ALLOWED) {
    char allow_hdr[96];
    router_allow_header(allow, allow_hdr, sizeof(allow_hdr));
    http_resp_header(req, "Allow", allow_hdr);
    api_problemf(ctx, "method_not_allowed", "%s is not allowed here; allowed: %s",
                 http_method_name(req->method), allow_hdr);
    return 1;
  }
  ctx->route = r;
  ctx->route_index = (size_t)(r - api->routes);
  req->body_limit = body_limit_for(api, r);

  /* A body is judged by its declared media type before a byte is read. */
  struct slice cl = http_req_header(req, "Content-Length");
  struct slice te = http_req_header(req, "Transfer-Encoding");
  uint64_t declared = 0;
  bool has_body =
      te.p != NULL || (cl.p && slice_to_u64(slice_trim(cl), &declared) == 0 && declared > 0);
  if (has_body && req->body_limit > 0) {
    const char *want = r->content_type ? r->content_type : "application/json";
    struct slice ct = http_req_header(req, "Content-Type");
    if (!ct.p || !slice_eq_cstr_nocase(media_type(ct), want)) {
      api_problemf(ctx, "unsupported_media_type", "this route accepts %s bodies", want);
      return 1;
    }
  }
  return 0;
}

/* --- request phase ------------------------------------------------------ */

/* Runs the route's handler with the request's log context set. Returns
 * true when the handler deferred the request (API_DEFERRED): ctx may then
 * already be gone. */
static bool run_request(struct ctx *ctx) {
  log_set_request_id(ctx->request_id);
  bool deferred = false;
  if (mw_run(ctx) == 0) {
    int rc = ctx->route->handler(ctx);
    if (rc == API_DEFERRED) {
      deferred = true;
    } else if (rc != 0) {
      api_status(ctx, rc);
    }
  }
  log_clear_context();
  return deferred;
}

void ctx_resume(struct ctx *ctx) {
  http_req_resume(ctx->req);
}

static void worker_job(void *arg) {
  struct ctx *ctx = arg;
  struct http_req *req = ctx->req;
  if (!run_request(ctx)) http_req_resume(req);
}

static int on_request(struct http_req *req, void *ud) {
  struct api *api = ud;
  struct ctx *ctx = req->user;
  metrics_inflight_add(api->metrics, 1);
  ctx->dispatched = true;
  if (ctx->route->flags & ROUTE_INLINE || !api->workers) {
    return run_request(ctx) ? HTTP_DEFERRED : HTTP_DONE;
  }
  if (ctx->route->flags & ROUTE_INLINE_KEY) {
    /* A key found in the cache is authenticated (and the answer given)
     * here, without the hop to a worker; anything else goes there. */
    enum keys_preauth pre = keys_preauthenticate(ctx);
    if (pre == KEYS_PREAUTH_READY) return run_request(ctx) ? HTTP_DEFERRED : HTTP_DONE;
    if (pre != KEYS_PREAUTH_DEFER) return HTTP_DONE;
  }
  if (ctx->route->flags & ROUTE_INLINE_SESSION && mw_session_preauthenticate(ctx)) {
    /* Cookie, user and membership from the cache: no hop to a worker. */
    return run_request(ctx) ? HTTP_DEFERRED : HTTP_DONE;
  }
  int rc = workers_submit(api->workers, worker_job, ctx);
  if (rc != 0) {
    http_resp_header(req, "Retry-After", "1");
    api_problem(ctx, "overloaded", "the server is at capacity; retry shortly");
    return HTTP_DONE;
  }
  return HTTP_DEFERRED;
}

static void on_complete(struct http_req *req, bool sent, void *ud) {
  struct api *api = ud;
  struct ctx *ctx = req->user;
  size_t route_index = ctx ? ctx->route_index : api->nroutes;
  int64_t dur = time_mono_us() - req->start_mono_us;
  if (ctx && ctx->dispatched) metrics_inflight_add(api->metrics, -1);
  metrics_observe(api->metrics, route_index, req->status, dur);
  if (api->cfg->log_access) {
    const char *pattern = route_index < api->nroutes ? api->routes[route_index].pattern : "";
    struct log_field f[] = {
        LS("method", req->method_str),
        LS("path", arena_slice_dup(req->arena, req->path)),
        LS("route", pattern),
        LI("status", req->status),
        LI("duration_us", dur),
        LI("bytes_in", (int64_t)req->body.len),
        LS("remote_ip", req->remote_ip),
        LB("sent", sent),
    };
    log_set_request_id(req->request_id);
    log_emit(LOG_INFO, "http.request", f, sizeof(f) / sizeof(f[0]));
    log_clear_context();
  }
}

struct http_handler api_http_handler(struct api *api) {
  return (struct http_handler){
      .on_headers = on_headers, .on_request = on_request, .on_complete = on_complete, .ud = api};
}
