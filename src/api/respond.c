/*
 * respond.c — response helpers: JSON bodies, problem+json errors, and the
 * request-body JSON parser with keel's limits.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"

int api_json(struct ctx *ctx, int status, json_t *body) {
  struct http_req *req = ctx->req;
  buf_reset(&req->resp_body);
  if (json_dump_buf(body, &req->resp_body) != 0) {
    json_decref(body);
    return api_problem(ctx, "internal_error", "the response is too large");
  }
  json_decref(body);
  req->status = status;
  req->content_type = "application/json";
  return 0;
}

static int problem_with(struct ctx *ctx, const char *code, const char *detail,
                        const struct field_errors *fe) {
  struct http_req *req = ctx->req;
  const struct problem_def *p = problem_lookup(code);
  if (!p) {
    log_error("api.unknown_problem_code", LS("code", code));
    p = problem_lookup("internal_error");
  }
  buf_reset(&req->resp_body);
  if (problem_render(&req->resp_body, p, detail, ctx->request_id, fe) != 0) {
    buf_reset(&req->resp_body);
    problem_render(&req->resp_body, p, NULL, ctx->request_id, NULL);
  }
  req->status = p->http_status;
  req->content_type = "application/problem+json";
  return 0;
}

int api_problem(struct ctx *ctx, const char *code, const char *detail) {
  return problem_with(ctx, code, detail, NULL);
}

int api_problemf(struct ctx *ctx, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *detail = arena_vprintf(ctx->arena, fmt, ap);
  va_end(ap);
  return problem_with(ctx, code, detail, NULL);
}

int api_problem_ext(struct ctx *ctx, const char *code, const char *detail, json_t *ext) {
  const struct problem_def *p = problem_lookup(code);
  if (!p) {
    json_decref(ext);
    return api_problem(ctx, "internal_error", NULL);
  }
  json_t *doc = json_pack("{s:s+, s:s, s:i, s:s}", "type", "urn:keel:problem:", p->code, "title",
                          p->title, "status", p->http_status, "code", p->code);
  if (detail) json_object_set_new(doc, "detail", json_string(detail));
  json_object_set_new(doc, "request_id", json_string(ctx->request_id));
  const char *k;
  json_t *v;
  json_object_foreach(ext, k, v) {
    if (!json_object_get(doc, k)) json_object_set(doc, k, v);
  }
  json_decref(ext);
  int rc = api_json(ctx, p->http_status, doc);
  ctx->req->content_type = "application/problem+json";
  return rc;
}

int api_plan_limit(struct ctx *ctx, const char *limit_name, int64_t limit, const char *plan) {
  const char *base = api_config(ctx->api)->public_url;
  char *url = arena_printf(ctx->arena, "%s/billing", base);
  char *detail =
      arena_printf(ctx->arena, "the %s plan allows %lld %s; upgrade the plan to raise the limit",
                   plan, (long long)limit, limit_name);
  return api_problem_ext(ctx, "plan_limit_reached", detail,
                         json_pack("{s:s, s:I, s:s, s:s}", "limit", limit_name, "limit_value",
                                   (json_int_t)limit, "plan", plan, "upgrade_url", url));
}

int api_validation(struct ctx *ctx, const struct field_errors *fe) {
  const char *detail = fe->count == 1 ? fe->items[0].message : "some fields are not valid";
  return problem_with(ctx, "validation_failed", detail, fe);
}

int api_status(struct ctx *ctx, int status) {
  const char *code = problem_code_for_status(status);
  if (strcmp(code, "internal_error") == 0) {
    log_error("api.internal_error", LS("status", keel_strerror(status)),
              LS("route", ctx->route ? ctx->route->pattern : ""));
  }
  return problem_with(ctx, code, NULL, NULL);
}

static void json_release(void *p) {
  json_decref((json_t *)p);
}

json_t *api_body_object(struct ctx *ctx) {
  char msg[160];
  struct http_req *req = ctx->req;
  if (req->body.len == 0) {
    api_problem(ctx, "invalid_json", "the request body is empty; a JSON object is expected");
    return NULL;
  }
  json_t *v = json_parse_bounded(buf_slice(&req->body), LIMIT_JSON_DEPTH, msg, sizeof(msg));
  if (!v) {
    api_problem(ctx, "invalid_json", msg);
    return NULL;
  }
  arena_on_cleanup(ctx->arena, json_release, v);
  if (!json_is_object(v)) {
    api_problem(ctx, "invalid_json", "the request body must be a JSON object");
    return NULL;
  }
  return v;
}

const char *ctx_param(struct ctx *ctx, const char *name) {
  size_t namelen = strlen(name);
  for (size_t i = 0; i < ctx->params.count; i++) {
    struct slice n = ctx->params.names[i];
    if (n.len == namelen && memcmp(n.p, name, namelen) == 0) {
      return arena_slice_dup(ctx->arena, ctx->params.values[i]);
    }
  }
  return NULL;
}
