/*
 * routes.c — the route table: every route keel serves, one row each.
 *
 * The service rows are here; each area keeps its rows beside its handlers
 * (routes_<area>() in api/<area>.c) and this file joins them into the one
 * table the router scans, once, at first use.
 *
 * Rows use designated initializers (api.h, struct route): method, pattern,
 * handler, auth (default PUBLIC), permission (sessions), scope (API keys),
 * body (default none), content_type (NULL: application/json), rate_class,
 * flags. The OpenAPI document (docs/openapi/) documents every row (a unit
 * test checks).
 */
#include <pthread.h>
#include <string.h>

#include "api/api.h"
#include "core/log.h"

#define ROUTES_MAX 256

static const struct route service_routes[] = {
    {.method = HTTP_GET, .pattern = "/healthz", .handler = handle_healthz, .flags = ROUTE_INLINE},
    {.method = HTTP_GET, .pattern = "/readyz", .handler = handle_readyz},
    {.method = HTTP_GET, .pattern = "/metrics", .handler = handle_metrics, .flags = ROUTE_INLINE},
    {.method = HTTP_GET,
     .pattern = "/v1/openapi.json",
     .handler = handle_openapi,
     .flags = ROUTE_INLINE},
    /* Development only (--dev): test clock and a slow request. */
    {.method = HTTP_POST,
     .pattern = "/v1/dev/clock",
     .handler = handle_dev_clock,
     .body = ROUTE_BODY_DEFAULT,
     .flags = ROUTE_DEV},
    {.method = HTTP_GET, .pattern = "/v1/dev/slow", .handler = handle_dev_slow, .flags = ROUTE_DEV},
};

typedef const struct route *(*area_fn)(size_t *count);

/* The router scans rows in this order and stops at the first match: the
 * data plane (API keys: whoami, and later ingestion) comes first because it
 * carries most of the traffic. */
static const area_fn areas[] = {
    routes_ingest, routes_keys,  routes_telemetry, routes_deadletters, routes_analytics,
    routes_usage,  routes_auth,  routes_orgs,      routes_members,     routes_invitations,
    routes_audit,  routes_admin, routes_plans,
};

static struct route table[ROUTES_MAX];
static size_t table_len;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void append(const struct route *rows, size_t n) {
  KEEL_ASSERT(table_len + n <= ROUTES_MAX);
  memcpy(&table[table_len], rows, n * sizeof(*rows));
  table_len += n;
}

static void build_table(void) {
  append(service_routes, sizeof(service_routes) / sizeof(service_routes[0]));
  for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
    size_t n = 0;
    const struct route *rows = areas[i](&n);
    if (n) append(rows, n);
  }
}

const struct route *api_routes(size_t *count) {
  pthread_once(&table_once, build_table);
  *count = table_len;
  return table;
}
