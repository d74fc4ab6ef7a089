/*
 * service.c — service routes: liveness, readiness, metrics, the OpenAPI
 * document, and the development-only helpers (test clock, slow request).
 */
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/deadletters.h"
#include "core/embedded.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"

bool api_is_ready(const struct api *api);
struct metrics *api_metrics(const struct api *api);

static const char healthz_body[] = "{\"status\":\"ok\"}";

int handle_healthz(struct ctx *ctx) {
  http_resp_static(ctx->req, 200, "application/json", healthz_body, sizeof(healthz_body) - 1);
  http_resp_header(ctx->req, "Cache-Control", "no-store");
  return 0;
}

int handle_readyz(struct ctx *ctx) {
  struct store *store = api_store(ctx->api);
  if (!api_is_ready(ctx->api)) {
    http_resp_header(ctx->req, "Retry-After", "1");
    return api_problem(ctx, "not_ready", "the server is starting or shutting down");
  }
  int current = 0, latest = 0;
  if (store_ready(store) != 0) {
    store_schema_version(store, &current, &latest);
    http_resp_header(ctx->req, "Retry-After", "5");
    return api_problemf(ctx, "not_ready",
                        "the store is unreachable or not migrated (schema %d of %d)", current,
                        latest);
  }
  store_schema_version(store, &current, &latest);
  json_t *checks = json_pack("{s:s, s:s, s:i}", "store", "ok", "backend", store_backend(store),
                             "schema_version", current);
  json_object_set_new(checks, "write_queue_depth",
                      json_integer((json_int_t)store_write_queue_depth(store)));
  /* Shown, never a reason to be unready: dead letters wait for an operator. */
  json_object_set_new(checks, "dead_letters",
                      json_integer((json_int_t)deadletters_depth(api_deadletters(ctx->api))));
  return api_json(ctx, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", checks));
}

int handle_metrics(struct ctx *ctx) {
  size_t nroutes;
  const struct route *routes = api_routes(&nroutes);
  struct buf *out = &ctx->req->resp_body;
  buf_reset(out);
  if (metrics_render(api_metrics(ctx->api), routes, nroutes, out) != 0 ||
      api_render_gauges(ctx->api, out) != 0) {
    return api_problem(ctx, "internal_error", "the metrics do not fit in a response");
  }
  ctx->req->status = 200;
  ctx->req->content_type = "text/plain; version=0.0.4; charset=utf-8";
  return 0;
}

int handle_openapi(struct ctx *ctx) {
  const struct embedded_file *doc = &openapi_files[0];
  http_resp_static(ctx->req, 200, "application/json", doc->data, doc->len);
  return 0;
}

/* POST /v1/dev/clock {advance_seconds}: moves the test clock forward. Only
 * routed with --dev. */
int handle_dev_clock(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  int64_t secs = 0;
  json_get_int(body, "advance_seconds", NULL, JSON_REQUIRED, 0, INT64_C(10) * 366 * 86400, &secs,
               &fe);
  if (fe.count) return api_validation(ctx, &fe);
  int64_t offset = time_offset_add_us(secs * US_PER_SEC);
  log_warn("dev.clock_moved", LI("advance_seconds", secs), LI("offset_us", offset));
  char now[RFC3339_MAX];
  time_format_rfc3339(time_now_us(), now);
  return api_json(
      ctx, 200,
      json_pack("{s:s, s:I}", "now", now, "offset_seconds", (json_int_t)(offset / US_PER_SEC)));
}

/* GET /v1/dev/slow?ms=N: answers after N ms (at most 60 s), for shutdown
 * tests. Only routed with --dev. */
int handle_dev_slow(struct ctx *ctx) {
  const char *ms_s = http_req_query(ctx->req, "ms");
  int64_t ms = 1000;
  if (ms_s && (slice_to_i64(slice_from_cstr(ms_s), &ms) != 0 || ms < 0 || ms > 60000)) {
    return api_problem(ctx, "invalid_parameter", "ms must be an integer from 0 to 60000");
  }
  usleep((useconds_t)(ms * 1000));
  return api_json(ctx, 200, json_pack("{s:I}", "slept_ms", (json_int_t)ms));
}
