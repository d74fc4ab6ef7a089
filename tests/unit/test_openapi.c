/*
 * test_openapi.c — docs/openapi.json (embedded in the binary) documents
 * every route of the route table, with the right method.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/api.h"
#include "core/embedded.h"

static void lower(const char *in, char *out, size_t n) {
  size_t i = 0;
  for (; in[i] && i + 1 < n; i++)
    out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
  out[i] = '\0';
}

static void test_every_route_documented(void **state) {
  (void)state;
  assert_int_equal(openapi_count, 1);
  json_error_t jerr;
  json_t *doc = json_loadb(openapi_files[0].data, openapi_files[0].len, 0, &jerr);
  if (!doc) fail_msg("openapi.json does not parse: %s (line %d)", jerr.text, jerr.line);
  const char *version = json_string_value(json_object_get(doc, "openapi"));
  assert_non_null(version);
  assert_true(strncmp(version, "3.", 2) == 0);
  json_t *paths = json_object_get(doc, "paths");
  assert_true(json_is_object(paths));
  size_t n;
  const struct route *rs = api_routes(&n);
  int missing = 0;
  for (size_t i = 0; i < n; i++) {
    char m[16];
    lower(http_method_name(rs[i].method), m, sizeof(m));
    json_t *item = json_object_get(paths, rs[i].pattern);
    json_t *op = item ? json_object_get(item, m) : NULL;
    if (!op) {
      print_error("not in docs/openapi.json: %s %s\n", http_method_name(rs[i].method),
                  rs[i].pattern);
      missing++;
      continue;
    }
    if (!json_is_object(json_object_get(op, "responses"))) {
      print_error("no responses for %s %s\n", m, rs[i].pattern);
      missing++;
    }
  }
  json_decref(doc);
  assert_int_equal(missing, 0);
}

/* The reverse: every documented operation exists in the table. */
static void test_no_phantom_routes(void **state) {
  (void)state;
  json_t *doc = json_loadb(openapi_files[0].data, openapi_files[0].len, 0, NULL);
  assert_non_null(doc);
  size_t n;
  const struct route *rs = api_routes(&n);
  const char *path;
  json_t *item;
  int phantom = 0;
  json_object_foreach(json_object_get(doc, "paths"), path, item) {
    const char *method;
    json_t *op;
    json_object_foreach(item, method, op) {
      if (strcmp(method, "parameters") == 0) continue;
      bool found = false;
      for (size_t i = 0; i < n && !found; i++) {
        char m[16];
        lower(http_method_name(rs[i].method), m, sizeof(m));
        found = strcmp(rs[i].pattern, path) == 0 && strcmp(m, method) == 0;
      }
      if (!found) {
        print_error("documented but not routed: %s %s\n", method, path);
        phantom++;
      }
    }
  }
  json_decref(doc);
  assert_int_equal(phantom, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_route_documented),
      cmocka_unit_test(test_no_phantom_routes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
