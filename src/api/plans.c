/*
 * plans.c — GET /v1/plans: the plan registry (R-MTR-1), public, for pricing
 * pages and upgrade prompts. The registry is read-only after start-up, so
 * the route runs inline on the I/O thread.
 */
#include "domain/plans.h"
#include "api/api.h"

static int h_plans(struct ctx *ctx) {
  json_t *plans = plans_json();
  if (!plans) return api_problem(ctx, "internal_error", "the plan registry is not loaded");
  http_resp_header(ctx->req, "Cache-Control", "public, max-age=300");
  return api_json(ctx, 200, plans);
}

static const struct route rows[] = {
    {.method = HTTP_GET, .pattern = "/v1/plans", .handler = h_plans, .flags = ROUTE_INLINE},
};

const struct route *routes_plans(size_t *count) {
  *count = sizeof(rows) / sizeof(rows[0]);
  return rows;
}
