/*
 * test_router.c — route matching: table-driven cases over a small table,
 * plus invariants of the real route table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"

static int h_dummy(struct ctx *ctx) {
  (void)ctx;
  return 0;
}

static const struct route table[] = {
    {.method = HTTP_GET,
     .pattern = "/healthz",
     .handler = h_dummy,
     .auth = AUTH_PUBLIC,
     .body = 0,
     .flags = 0},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs",
     .handler = h_dummy,
     .auth = AUTH_SESSION,
     .body = 0,
     .flags = 0},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs",
     .handler = h_dummy,
     .auth = AUTH_SESSION,
     .body = 1,
     .flags = 0},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}",
     .handler = h_dummy,
     .auth = AUTH_SESSION,
     .body = 0,
     .flags = 0},
    {.method = HTTP_DELETE,
     .pattern = "/v1/orgs/{org}",
     .handler = h_dummy,
     .auth = AUTH_SESSION,
     .body = 0,
     .flags = 0},
    {.method = HTTP_PATCH,
     .pattern = "/v1/orgs/{org}/members/{user}",
     .handler = h_dummy,
     .auth = AUTH_SESSION,
     .body = 1,
     .flags = 0},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/usage/timeseries",
     .handler = h_dummy,
     .auth = AUTH_SESSION,
     .body = 0,
     .flags = 0},
    {.method = HTTP_POST,
     .pattern = "/v1/dev/clock",
     .handler = h_dummy,
     .auth = AUTH_PUBLIC,
     .body = 1,
     .flags = ROUTE_DEV},
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

struct match_case {
  enum http_method method;
  const char *path;
  bool dev;
  enum router_result want;
  int want_index;         /* for FOUND */
  const char *param_name; /* first param, for FOUND */
  const char *param_value;
  unsigned want_allow; /* for METHOD_NOT_ALLOWED */
};

#define M(x) (1u << (x))

static const struct match_case cases[] = {
    {HTTP_GET, "/healthz", false, ROUTER_FOUND, 0, NULL, NULL, 0},
    {HTTP_HEAD, "/healthz", false, ROUTER_FOUND, 0, NULL, NULL, 0},
    {HTTP_POST, "/healthz", false, ROUTER_METHOD_NOT_ALLOWED, -1, NULL, NULL,
     M(HTTP_GET) | M(HTTP_HEAD)},
    {HTTP_GET, "/healthz/", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_GET, "/", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_GET, "", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_GET, "healthz", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_GET, "/v1/orgs", false, ROUTER_FOUND, 1, NULL, NULL, 0},
    {HTTP_POST, "/v1/orgs", false, ROUTER_FOUND, 2, NULL, NULL, 0},
    {HTTP_PUT, "/v1/orgs", false, ROUTER_METHOD_NOT_ALLOWED, -1, NULL, NULL,
     M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_POST)},
    {HTTP_GET, "/v1/orgs/abc", false, ROUTER_FOUND, 3, "org", "abc", 0},
    {HTTP_DELETE, "/v1/orgs/abc", false, ROUTER_FOUND, 4, "org", "abc", 0},
    {HTTP_GET, "/v1/orgs//members", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_PATCH, "/v1/orgs/o1/members/u2", false, ROUTER_FOUND, 5, "org", "o1", 0},
    {HTTP_GET, "/v1/orgs/o1/members/u2", false, ROUTER_METHOD_NOT_ALLOWED, -1, NULL, NULL,
     M(HTTP_PATCH)},
    {HTTP_GET, "/v1/orgs/o1/usage/timeseries", false, ROUTER_FOUND, 6, "org", "o1", 0},
    {HTTP_GET, "/v1/orgs/o1/usage", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_POST, "/v1/dev/clock", false, ROUTER_NOT_FOUND, -1, NULL, NULL, 0},
    {HTTP_POST, "/v1/dev/clock", true, ROUTER_FOUND, 7, NULL, NULL, 0},
    {HTTP_GET, "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s", false, ROUTER_NOT_FOUND, -1, NULL, NULL,
     0},
};

static void test_match_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const struct match_case *c = &cases[i];
    const struct route *found = NULL;
    struct route_params params = {0};
    unsigned allow = 0;
    enum router_result r = router_match(table, NTABLE, c->method, slice_from_cstr(c->path), c->dev,
                                        &found, &params, &allow);
    if (r != c->want) fail_msg("case %zu (%s): result %d, want %d", i, c->path, r, c->want);
    if (r == ROUTER_FOUND) {
      assert_ptr_equal(found, &table[c->want_index]);
      if (c->param_name) {
        assert_true(params.count >= 1);
        assert_true(slice_eq_cstr(params.names[0], c->param_name));
        assert_true(slice_eq_cstr(params.values[0], c->param_value));
      }
    }
    if (r == ROUTER_METHOD_NOT_ALLOWED && allow != c->want_allow) {
      fail_msg("case %zu (%s): allow %#x, want %#x", i, c->path, allow, c->want_allow);
    }
  }
}

static void test_two_params(void **state) {
  (void)state;
  const struct route *found = NULL;
  struct route_params p = {0};
  unsigned allow = 0;
  assert_int_equal(
      router_match(table, NTABLE, HTTP_PATCH, slice_from_cstr("/v1/orgs/org-1/members/user-2"),
                   false, &found, &p, &allow),
      ROUTER_FOUND);
  assert_int_equal(p.count, 2);
  assert_true(slice_eq_cstr(p.names[1], "user"));
  assert_true(slice_eq_cstr(p.values[1], "user-2"));
}

static void test_allow_header(void **state) {
  (void)state;
  char out[96];
  router_allow_header(M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_POST), out, sizeof(out));
  assert_string_equal(out, "GET, HEAD, POST");
  router_allow_header(0, out, sizeof(out));
  assert_string_equal(out, "");
  router_allow_header(M(HTTP_DELETE), out, sizeof(out));
  assert_string_equal(out, "DELETE");
}

/* The real table: no two rows answer the same method and path shape, and
 * every pattern is well-formed. */
static void test_real_table_unique(void **state) {
  (void)state;
  size_t n;
  const struct route *rs = api_routes(&n);
  assert_true(n > 0);
  for (size_t i = 0; i < n; i++) {
    assert_non_null(rs[i].handler);
    assert_true(rs[i].pattern[0] == '/');
    for (size_t j = i + 1; j < n; j++) {
      if (rs[i].method == rs[j].method) {
        if (strcmp(rs[i].pattern, rs[j].pattern) == 0) {
          fail_msg("duplicate route %s %s", http_method_name(rs[i].method), rs[i].pattern);
        }
      }
    }
    /* Each row is reachable: its own pattern (with params filled) finds it. */
    const struct route *found = NULL;
    struct route_params p = {0};
    unsigned allow = 0;
    char path[512];
    size_t k = 0;
    for (const char *s = rs[i].pattern; *s && k < sizeof(path) - 8; s++) {
      if (*s == '{') {
        while (*s && *s != '}') s++;
        memcpy(path + k, "x1", 2);
        k += 2;
      } else {
        path[k++] = *s;
      }
    }
    path[k] = '\0';
    assert_int_equal(
        router_match(rs, n, rs[i].method, slice_from_cstr(path), true, &found, &p, &allow),
        ROUTER_FOUND);
    assert_ptr_equal(found, &rs[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match_table),
      cmocka_unit_test(test_two_params),
      cmocka_unit_test(test_allow_header),
      cmocka_unit_test(test_real_table_unique),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
