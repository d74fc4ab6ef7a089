/*
 * test_errors.c — status names, the problem catalogue, field error lists and
 * problem+json rendering (parsed back with jansson).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/xmalloc.h"

/* --- keel_strerror ---------------------------------------------------------- */

static void test_strerror(void **state) {
  static const struct {
    int status;
    const char *name;
  } cases[] = {
      {KEEL_OK, "ok"},
      {KEEL_EINVAL, "einval"},
      {KEEL_ENOMEM, "enomem"},
      {KEEL_ENOTFOUND, "enotfound"},
      {KEEL_ECONFLICT, "econflict"},
      {KEEL_ESTORE, "estore"},
      {KEEL_EBUSY, "ebusy"},
      {KEEL_EIO, "eio"},
      {KEEL_ETOOBIG, "etoobig"},
      {KEEL_EDENIED, "edenied"},
      {KEEL_EINTERNAL, "einternal"},
      {-11, "unknown"},
      {1, "unknown"},
      {-1000, "unknown"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_string_equal(keel_strerror(cases[i].status), cases[i].name);
  }
}

/* --- catalogue -------------------------------------------------------------- */

/* The rows the API contract names; more may exist. */
static const struct problem_def required_rows[] = {
    {"bad_request", 400, "Bad request"},
    {"invalid_json", 400, "Malformed JSON"},
    {"validation_failed", 400, "Validation failed"},
    {"invalid_parameter", 400, "Invalid parameter"},
    {"ambiguous_framing", 400, "Ambiguous message framing"},
    {"unauthorized", 401, "Authentication required"},
    {"invalid_credentials", 401, "Invalid credentials"},
    {"invalid_api_key", 401, "Invalid API key"},
    {"payment_required", 402, "Payment required"},
    {"quota_exceeded", 402, "Quota exceeded"},
    {"overage_cap_reached", 402, "Overage cap reached"},
    {"forbidden", 403, "Forbidden"},
    {"insufficient_scope", 403, "Insufficient scope"},
    {"csrf_failed", 403, "CSRF check failed"},
    {"plan_limit_reached", 403, "Plan limit reached"},
    {"not_found", 404, "Not found"},
    {"method_not_allowed", 405, "Method not allowed"},
    {"not_acceptable", 406, "Not acceptable"},
    {"conflict", 409, "Conflict"},
    {"gone", 410, "Gone"},
    {"payload_too_large", 413, "Payload too large"},
    {"uri_too_long", 414, "URI too long"},
    {"unsupported_media_type", 415, "Unsupported media type"},
    {"unprocessable", 422, "Unprocessable content"},
    {"locked", 423, "Account locked"},
    {"rate_limited", 429, "Too many requests"},
    {"internal_error", 500, "Internal error"},
    {"not_implemented", 501, "Not implemented"},
    {"service_unavailable", 503, "Service unavailable"},
    {"overloaded", 503, "Overloaded"},
    {"not_ready", 503, "Not ready"},
};

static int is_snake_case(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '_') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return 0;
    if (c == '_' && s[i + 1] == '_') return 0;
  }
  return 1;
}

static void test_snake_case_checker(void **state) {
  static const struct {
    const char *s;
    int ok;
  } cases[] = {
      {"not_found", 1}, {"a", 1},  {"e2e_fail", 1}, {"", 0},    {"Not_found", 0}, {"not-found", 0},
      {"_x", 0},        {"x_", 0}, {"a__b", 0},     {"2fa", 0}, {"not found", 0},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(is_snake_case(cases[i].s), cases[i].ok);
  }
}

static void test_catalogue_rows_well_formed(void **state) {
  size_t n = 0;
  const struct problem_def *t = problem_table(&n);
  (void)state;
  assert_non_null(t);
  assert_true(n >= sizeof(required_rows) / sizeof(required_rows[0]));
  for (size_t i = 0; i < n; i++) {
    assert_non_null(t[i].code);
    assert_true(is_snake_case(t[i].code));
    assert_true(t[i].http_status >= 400 && t[i].http_status <= 599);
    assert_non_null(t[i].title);
    assert_true(strlen(t[i].title) > 0);
    for (size_t j = i + 1; j < n; j++) assert_string_not_equal(t[i].code, t[j].code);
    /* lookup finds exactly this row */
    assert_ptr_equal(problem_lookup(t[i].code), &t[i]);
  }
}

static void test_catalogue_required_rows(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(required_rows) / sizeof(required_rows[0]); i++) {
    const struct problem_def *p = problem_lookup(required_rows[i].code);
    assert_non_null(p);
    assert_int_equal(p->http_status, required_rows[i].http_status);
    assert_string_equal(p->title, required_rows[i].title);
  }
}

static void test_lookup_unknown(void **state) {
  static const char *const unknown[] = {"", "NOT_FOUND", "not_found ", "nope", "not_foun"};
  (void)state;
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    assert_null(problem_lookup(unknown[i]));
  }
  assert_null(problem_lookup(NULL));
}

static void test_code_for_status(void **state) {
  static const struct {
    int status;
    const char *code;
  } cases[] = {
      {KEEL_EINVAL, "validation_failed"},  {KEEL_ENOTFOUND, "not_found"},
      {KEEL_ECONFLICT, "conflict"},        {KEEL_EBUSY, "overloaded"},
      {KEEL_ETOOBIG, "payload_too_large"}, {KEEL_EDENIED, "forbidden"},
      {KEEL_ENOMEM, "internal_error"},     {KEEL_ESTORE, "internal_error"},
      {KEEL_EIO, "internal_error"},        {KEEL_EINTERNAL, "internal_error"},
      {KEEL_OK, "internal_error"},         {-99, "internal_error"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *code = problem_code_for_status(cases[i].status);
    assert_string_equal(code, cases[i].code);
    /* every mapped code is a catalogue row */
    assert_non_null(problem_lookup(code));
  }
}

/* docs/errors.md lists every code (errors.h: the row and the doc go
 * together). */
static void test_docs_list_every_code(void **state) {
  const char *root = getenv("KEEL_SOURCE_ROOT");
  char path[4096];
  FILE *f;
  char *doc;
  size_t len, n = 0;
  const struct problem_def *t = problem_table(&n);
  (void)state;

#ifdef KEEL_SOURCE_ROOT
  if (root == NULL) root = KEEL_SOURCE_ROOT;
#endif
  assert_non_null(root);
  snprintf(path, sizeof(path), "%s/docs/errors.md", root);
  f = fopen(path, "rb");
  assert_non_null(f);
  doc = xmalloc(1024 * 1024);
  len = fread(doc, 1, 1024 * 1024 - 1, f);
  fclose(f);
  doc[len] = '\0';
  for (size_t i = 0; i < n; i++) {
    char needle[128];
    snprintf(needle, sizeof(needle), "| `%s` | %d | %s |", t[i].code, t[i].http_status, t[i].title);
    if (strstr(doc, needle) == NULL) fail_msg("docs/errors.md lacks the row: %s", needle);
  }
  static const char *const rules[] = {"required",       "wrong_type",   "too_short",
                                      "too_long",       "out_of_range", "not_allowed",
                                      "invalid_format", "too_deep",     "unknown_field"};
  for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
    char needle[64];
    snprintf(needle, sizeof(needle), "| `%s` |", rules[i]);
    if (strstr(doc, needle) == NULL) fail_msg("docs/errors.md lacks the rule %s", rules[i]);
  }
  xfree(doc);
}

/* --- field errors ----------------------------------------------------------- */

static void test_field_errors_bounded(void **state) {
  static const size_t counts[] = {
      0, 1, FIELD_ERRORS_MAX - 1, FIELD_ERRORS_MAX, FIELD_ERRORS_MAX + 1, FIELD_ERRORS_MAX + 70};
  (void)state;
  for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
    struct field_errors fe = {0};
    static const char *const fields[] = {"a", "b", "c"};
    for (size_t i = 0; i < counts[c]; i++) {
      field_errors_add(&fe, fields[i % 3], "required", "is required");
    }
    size_t kept = counts[c] < FIELD_ERRORS_MAX ? counts[c] : FIELD_ERRORS_MAX;
    assert_int_equal(fe.count, kept);
    assert_int_equal(fe.dropped, counts[c] - kept);
    for (size_t i = 0; i < fe.count; i++) {
      assert_string_equal(fe.items[i].field, fields[i % 3]);
      assert_string_equal(fe.items[i].code, "required");
    }
  }
  field_errors_add(NULL, "x", "y", "z"); /* tolerated */
}

/* --- problem_render --------------------------------------------------------- */

static json_t *parse_or_fail(const struct buf *b) {
  json_error_t err;
  json_t *v = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &err);
  if (v == NULL) fail_msg("rendered JSON does not parse: %s in %s", err.text, b->data);
  assert_true(json_is_object(v));
  return v;
}

static void expect_str_member(const json_t *o, const char *key, const char *want) {
  json_t *m = json_object_get(o, key);
  if (want == NULL) {
    assert_null(m);
    return;
  }
  assert_non_null(m);
  assert_true(json_is_string(m));
  assert_int_equal(json_string_length(m), strlen(want));
  assert_string_equal(json_string_value(m), want);
}

static void test_render_cases(void **state) {
  static const struct {
    const char *code;
    const char *detail;
    const char *request_id;
    size_t nerrors;
  } cases[] = {
      {"not_found", NULL, NULL, 0},
      {"not_found", "no such org", "req-1", 0},
      {"validation_failed", "2 fields are invalid", "01HZX", 2},
      {"invalid_json", "quote \" backslash \\ newline \n tab \t ctl \x01\x1f end", NULL, 0},
      {"rate_limited", "", "", 0},
      {"internal_error", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "r\"id", 3},
  };
  static const struct field_error errs[] = {
      {"email", "required", "is required"},
      {"events[3].data.\"model\"", "too_long", "is too long\nreally"},
      {"a\\b", "wrong_type", "\x02 odd"},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const struct problem_def *p = problem_lookup(cases[i].code);
    struct field_errors fe = {0};
    struct buf b;
    char type[128];
    json_t *doc, *arr;

    assert_non_null(p);
    for (size_t e = 0; e < cases[i].nerrors; e++) {
      field_errors_add(&fe, errs[e].field, errs[e].code, errs[e].message);
    }
    buf_init(&b, 1 << 16);
    assert_int_equal(problem_render(&b, p, cases[i].detail, cases[i].request_id, &fe), 0);
    /* compact: no newline, no blank after separators of our own members */
    assert_null(strchr(b.data, '\n'));
    assert_true(strncmp(b.data, "{\"type\":", 8) == 0);

    doc = parse_or_fail(&b);
    snprintf(type, sizeof(type), "urn:keel:problem:%s", p->code);
    expect_str_member(doc, "type", type);
    expect_str_member(doc, "title", p->title);
    expect_str_member(doc, "code", p->code);
    assert_true(json_is_integer(json_object_get(doc, "status")));
    assert_int_equal(json_integer_value(json_object_get(doc, "status")), p->http_status);
    expect_str_member(doc, "detail", cases[i].detail);
    expect_str_member(doc, "request_id", cases[i].request_id);

    arr = json_object_get(doc, "errors");
    if (cases[i].nerrors == 0) {
      assert_null(arr);
    } else {
      assert_true(json_is_array(arr));
      assert_int_equal(json_array_size(arr), cases[i].nerrors);
      for (size_t e = 0; e < cases[i].nerrors; e++) {
        json_t *item = json_array_get(arr, e);
        assert_int_equal(json_object_size(item), 3);
        expect_str_member(item, "field", errs[e].field);
        expect_str_member(item, "code", errs[e].code);
        expect_str_member(item, "message", errs[e].message);
      }
    }
    json_decref(doc);
    buf_free(&b);
  }
}

static void test_render_member_order(void **state) {
  struct field_errors fe = {0};
  struct buf b;
  (void)state;
  field_errors_add(&fe, "f", "required", "m");
  buf_init(&b, 4096);
  assert_int_equal(problem_render(&b, problem_lookup("gone"), "d", "r", &fe), 0);
  assert_string_equal(b.data,
                      "{\"type\":\"urn:keel:problem:gone\",\"title\":\"Gone\",\"status\":410,"
                      "\"detail\":\"d\",\"code\":\"gone\",\"request_id\":\"r\","
                      "\"errors\":[{\"field\":\"f\",\"code\":\"required\",\"message\":\"m\"}]}");
  buf_free(&b);
}

/* Appends after existing content; when the buffer is too small, fails and
 * leaves the earlier content untouched — at every possible max. */
static void test_render_full_buffer(void **state) {
  struct field_errors fe = {0};
  const struct problem_def *p = problem_lookup("validation_failed");
  struct buf b;
  size_t full;
  (void)state;

  field_errors_add(&fe, "name", "too_long", "is too long");
  buf_init(&b, 1 << 16);
  assert_int_equal(buf_append_cstr(&b, "PREFIX"), 0);
  assert_int_equal(problem_render(&b, p, "detail", "rid", &fe), 0);
  full = b.len;
  buf_free(&b);

  for (size_t max = 6; max <= full; max++) {
    buf_init(&b, max);
    assert_int_equal(buf_append_cstr(&b, "PREFIX"), 0);
    int rc = problem_render(&b, p, "detail", "rid", &fe);
    if (max < full) {
      assert_int_equal(rc, -1);
      assert_int_equal(b.len, 6);
      assert_string_equal(b.data, "PREFIX");
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(b.len, full);
    }
    buf_free(&b);
  }
}

static void test_render_null_def(void **state) {
  struct buf b;
  json_t *doc;
  (void)state;
  buf_init(&b, 4096);
  assert_int_equal(problem_render(&b, NULL, NULL, NULL, NULL), 0);
  doc = parse_or_fail(&b);
  expect_str_member(doc, "code", "internal_error");
  json_decref(doc);
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_snake_case_checker),
      cmocka_unit_test(test_catalogue_rows_well_formed),
      cmocka_unit_test(test_catalogue_required_rows),
      cmocka_unit_test(test_lookup_unknown),
      cmocka_unit_test(test_code_for_status),
      cmocka_unit_test(test_docs_list_every_code),
      cmocka_unit_test(test_field_errors_bounded),
      cmocka_unit_test(test_render_cases),
      cmocka_unit_test(test_render_member_order),
      cmocka_unit_test(test_render_full_buffer),
      cmocka_unit_test(test_render_null_def),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
