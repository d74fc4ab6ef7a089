/*
 * routes.c — the route table: every route keel serves, one row each.
 *
 * Columns: method, path pattern, handler, auth kind, permission or scope,
 * body limit, required body media type (NULL: application/json), rate class,
 * flags. docs/openapi.json documents every row (a unit test checks).
 */
#include "api/api.h"

static const struct route routes[] = {
    /* Service */
    {HTTP_GET, "/healthz", handle_healthz, AUTH_PUBLIC, 0, ROUTE_BODY_NONE, NULL, 0, ROUTE_INLINE},
    {HTTP_GET, "/readyz", handle_readyz, AUTH_PUBLIC, 0, ROUTE_BODY_NONE, NULL, 0, 0},
    {HTTP_GET, "/metrics", handle_metrics, AUTH_PUBLIC, 0, ROUTE_BODY_NONE, NULL, 0, ROUTE_INLINE},
    {HTTP_GET, "/v1/openapi.json", handle_openapi, AUTH_PUBLIC, 0, ROUTE_BODY_NONE, NULL, 0,
     ROUTE_INLINE},
    /* Development only (--dev): test clock and a slow request. */
    {HTTP_POST, "/v1/dev/clock", handle_dev_clock, AUTH_PUBLIC, 0, ROUTE_BODY_DEFAULT, NULL, 0,
     ROUTE_DEV},
    {HTTP_GET, "/v1/dev/slow", handle_dev_slow, AUTH_PUBLIC, 0, ROUTE_BODY_NONE, NULL, 0,
     ROUTE_DEV},
};

const struct route *api_routes(size_t *count) {
  *count = sizeof(routes) / sizeof(routes[0]);
  return routes;
}
