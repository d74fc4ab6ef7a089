/*
 * test_slice.c — slice comparisons, trimming, cutting and the strict integer
 * cursor parsers (cursor untouched on failure, INT64_MIN/MAX edges).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/slice.h"

static void test_make_and_cstr(void **state) {
  (void)state;
  struct slice s = slice_from_cstr("orgs");
  assert_int_equal(s.len, 4);
  assert_memory_equal(s.p, "orgs", 4);
  struct slice none = slice_from_cstr(NULL);
  assert_int_equal(none.len, 0);
  struct slice lit = SLICE_LIT("abc");
  assert_int_equal(lit.len, 3);
  assert_int_equal(SLICE_NULL.len, 0);
  assert_true(slice_eq(none, SLICE_NULL));
  assert_true(slice_eq(none, SLICE_LIT("")));
}

struct eq_case {
  const char *a;
  const char *b;
  bool eq;
  bool eq_nocase;
};

static void test_eq(void **state) {
  (void)state;
  static const struct eq_case cases[] = {
      {"", "", true, true},
      {"abc", "abc", true, true},
      {"abc", "ABC", false, true},
      {"Content-Type", "content-type", false, true},
      {"abc", "abd", false, false},
      {"abc", "ab", false, false},
      {"ab", "abc", false, false},
      {"", "a", false, false},
      /* Only ASCII letters fold: '@' and '`' sit next to 'A' and 'a'. */
      {"@", "`", false, false},
      {"[", "{", false, false},
      {"\xc3\xa9", "\xc3\x89", false, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice a = slice_from_cstr(cases[i].a);
    struct slice b = slice_from_cstr(cases[i].b);
    assert_int_equal(slice_eq(a, b), cases[i].eq);
    assert_int_equal(slice_eq_cstr(a, cases[i].b), cases[i].eq);
    assert_int_equal(slice_eq_nocase(a, b), cases[i].eq_nocase);
    assert_int_equal(slice_eq_cstr_nocase(a, cases[i].b), cases[i].eq_nocase);
  }
  /* Not NUL-terminated input compares by length only. */
  const char raw[] = {'k', 'e', 'e', 'l', 'x'};
  assert_true(slice_eq_cstr(slice_make(raw, 4), "keel"));
  assert_false(slice_eq_cstr(slice_make(raw, 5), "keel"));
  assert_true(slice_eq_cstr(SLICE_NULL, NULL));
  assert_true(slice_eq_cstr(SLICE_NULL, ""));
}

struct affix_case {
  const char *s;
  const char *affix;
  bool starts;
  bool ends;
};

static void test_starts_ends(void **state) {
  (void)state;
  static const struct affix_case cases[] = {
      {"/v1/orgs", "/v1/", true, false}, {"/v1/orgs", "orgs", false, true},
      {"/v1/orgs", "", true, true},      {"", "", true, true},
      {"", "a", false, false},           {"ab", "abc", false, false},
      {"abc", "abc", true, true},        {"aXa", "a", true, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice s = slice_from_cstr(cases[i].s);
    struct slice affix = slice_from_cstr(cases[i].affix);
    assert_int_equal(slice_starts_with(s, affix), cases[i].starts);
    assert_int_equal(slice_ends_with(s, affix), cases[i].ends);
  }
}

struct trim_case {
  const char *in;
  const char *out;
};

static void test_trim(void **state) {
  (void)state;
  static const struct trim_case cases[] = {
      {"", ""},
      {"   ", ""},
      {" \t a b \t ", "a b"},
      {"abc", "abc"},
      {"\tx", "x"},
      {"x\t", "x"},
      /* Only space and tab: other whitespace is content. */
      {"\nx\r", "\nx\r"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice t = slice_trim(slice_from_cstr(cases[i].in));
    assert_true(slice_eq_cstr(t, cases[i].out));
  }
}

static void test_index(void **state) {
  (void)state;
  assert_int_equal(slice_index(SLICE_LIT("a=b=c"), '='), 1);
  assert_int_equal(slice_index(SLICE_LIT("abc"), 'a'), 0);
  assert_int_equal(slice_index(SLICE_LIT("abc"), 'c'), 2);
  assert_int_equal(slice_index(SLICE_LIT("abc"), 'x'), -1);
  assert_int_equal(slice_index(SLICE_NULL, 'x'), -1);
  /* The search stays inside len. */
  assert_int_equal(slice_index(slice_make("ab=", 2), '='), -1);
}

struct cut_case {
  const char *in;
  char sep;
  bool found;
  const char *head;
  const char *rest;
};

static void test_cut(void **state) {
  (void)state;
  static const struct cut_case cases[] = {
      {"key=value", '=', true, "key", "value"}, {"key=", '=', true, "key", ""},
      {"=value", '=', true, "", "value"},       {"a=b=c", '=', true, "a", "b=c"},
      {"novalue", '=', false, "novalue", ""},   {"", '=', false, "", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice head = SLICE_LIT("junk");
    struct slice rest = SLICE_LIT("junk");
    bool found = slice_cut(slice_from_cstr(cases[i].in), cases[i].sep, &head, &rest);
    assert_int_equal(found, cases[i].found);
    assert_true(slice_eq_cstr(head, cases[i].head));
    assert_true(slice_eq_cstr(rest, cases[i].rest));
  }
  /* Either output may be omitted. */
  assert_true(slice_cut(SLICE_LIT("a:b"), ':', NULL, NULL));
}

struct i64_case {
  const char *in;
  int rc;
  int64_t value;
  size_t consumed; /* by the cursor parser */
  int whole_rc;    /* slice_to_i64 */
};

static void test_parse_i64(void **state) {
  (void)state;
  static const struct i64_case cases[] = {
      {"0", 0, 0, 1, 0},
      {"-0", 0, 0, 2, 0},
      {"42", 0, 42, 2, 0},
      {"-42", 0, -42, 3, 0},
      {"007", 0, 7, 3, 0},
      {"9223372036854775807", 0, INT64_MAX, 19, 0},
      {"-9223372036854775808", 0, INT64_MIN, 20, 0},
      {"9223372036854775808", -1, 0, 0, -1},
      {"-9223372036854775809", -1, 0, 0, -1},
      {"99999999999999999999", -1, 0, 0, -1},
      /* More than 19 digits is refused even when the value would fit. */
      {"00000000000000000001", -1, 0, 0, -1},
      {"12abc", 0, 12, 2, -1},
      {"12 ", 0, 12, 2, -1},
      {"", -1, 0, 0, -1},
      {"-", -1, 0, 0, -1},
      {"+5", -1, 0, 0, -1},
      {" 5", -1, 0, 0, -1},
      {"--5", -1, 0, 0, -1},
      {"x", -1, 0, 0, -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice s = slice_from_cstr(cases[i].in);
    struct slice cur = s;
    int64_t value = 777;
    int rc = slice_parse_i64(&cur, &value);
    assert_int_equal(rc, cases[i].rc);
    if (rc == 0) {
      assert_int_equal(value, cases[i].value);
      assert_ptr_equal(cur.p, s.p + cases[i].consumed);
      assert_int_equal(cur.len, s.len - cases[i].consumed);
    } else {
      /* Failure: cursor and output untouched. */
      assert_ptr_equal(cur.p, s.p);
      assert_int_equal(cur.len, s.len);
      assert_int_equal(value, 777);
    }
    int64_t whole = 777;
    assert_int_equal(slice_to_i64(s, &whole), cases[i].whole_rc);
    if (cases[i].whole_rc == 0) assert_int_equal(whole, cases[i].value);
  }
}

struct u64_case {
  const char *in;
  int rc;
  uint64_t value;
  size_t consumed;
  int whole_rc;
};

static void test_parse_u64(void **state) {
  (void)state;
  static const struct u64_case cases[] = {
      {"0", 0, 0, 1, 0},
      {"18446744073709551615", 0, UINT64_MAX, 20, 0},
      {"18446744073709551616", -1, 0, 0, -1},
      {"184467440737095516150", -1, 0, 0, -1},
      {"123/rest", 0, 123, 3, -1},
      {"-1", -1, 0, 0, -1},
      {"+1", -1, 0, 0, -1},
      {"", -1, 0, 0, -1},
      {" 1", -1, 0, 0, -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice s = slice_from_cstr(cases[i].in);
    struct slice cur = s;
    uint64_t value = 777;
    int rc = slice_parse_u64(&cur, &value);
    assert_int_equal(rc, cases[i].rc);
    if (rc == 0) {
      assert_true(value == cases[i].value);
      assert_ptr_equal(cur.p, s.p + cases[i].consumed);
    } else {
      assert_ptr_equal(cur.p, s.p);
      assert_int_equal(cur.len, s.len);
      assert_true(value == 777);
    }
    uint64_t whole = 777;
    assert_int_equal(slice_to_u64(s, &whole), cases[i].whole_rc);
    if (cases[i].whole_rc == 0) assert_true(whole == cases[i].value);
  }
}

static void test_parse_sequence(void **state) {
  (void)state;
  /* A cursor walks "12,-3,40" number by number. */
  struct slice cur = SLICE_LIT("12,-3,40");
  int64_t v;
  assert_int_equal(slice_parse_i64(&cur, &v), 0);
  assert_int_equal(v, 12);
  assert_true(slice_cut(cur, ',', NULL, &cur));
  assert_int_equal(slice_parse_i64(&cur, &v), 0);
  assert_int_equal(v, -3);
  assert_true(slice_cut(cur, ',', NULL, &cur));
  assert_int_equal(slice_parse_i64(&cur, &v), 0);
  assert_int_equal(v, 40);
  assert_int_equal(cur.len, 0);
  assert_int_equal(slice_parse_i64(&cur, &v), -1);
  /* A digit run bounded by len, not by a NUL. */
  const char raw[] = {'4', '2', '9'};
  assert_int_equal(slice_to_i64(slice_make(raw, 2), &v), 0);
  assert_int_equal(v, 42);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_make_and_cstr),  cmocka_unit_test(test_eq),
      cmocka_unit_test(test_starts_ends),    cmocka_unit_test(test_trim),
      cmocka_unit_test(test_index),          cmocka_unit_test(test_cut),
      cmocka_unit_test(test_parse_i64),      cmocka_unit_test(test_parse_u64),
      cmocka_unit_test(test_parse_sequence),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
