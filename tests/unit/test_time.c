/*
 * test_time.c — clock, RFC 3339 formatting and strict parsing, civil dates.
 *
 * Expected instants were computed independently (Python's datetime), not by
 * the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "core/time.h"

struct format_case {
  int64_t us;
  const char *text;
};

static const struct format_case format_cases[] = {
    {0, "1970-01-01T00:00:00Z"},
    {1700000000123456, "2023-11-14T22:13:20.123456Z"},
    {1700000000000001, "2023-11-14T22:13:20.000001Z"},
    {1709200800000000, "2024-02-29T10:00:00Z"},
    {951782400000000, "2000-02-29T00:00:00Z"},
    {1704067199000000, "2023-12-31T23:59:59Z"},
    {-1, "1969-12-31T23:59:59.999999Z"},
    {-1447200000000, "1969-12-15T06:00:00Z"},
    {253402300799999999, "9999-12-31T23:59:59.999999Z"},
    {-62135596800000000, "0001-01-01T00:00:00Z"},
};

static void test_format(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof format_cases / sizeof format_cases[0]; i++) {
    char out[RFC3339_MAX];
    memset(out, '#', sizeof out);
    size_t n = time_format_rfc3339(format_cases[i].us, out);
    assert_string_equal(out, format_cases[i].text);
    assert_int_equal(n, strlen(format_cases[i].text));
  }
}

static void test_format_extremes_fit(void **state) {
  (void)state;
  /* Far outside 0001..9999 the text is not RFC 3339, but it must fit. */
  char out[RFC3339_MAX];
  size_t n = time_format_rfc3339(INT64_MAX, out);
  assert_true(n < RFC3339_MAX);
  assert_int_equal(strlen(out), n);
  n = time_format_rfc3339(INT64_MIN, out);
  assert_true(n < RFC3339_MAX);
  assert_int_equal(strlen(out), n);
}

struct parse_case {
  const char *text;
  int rc;
  int64_t us;
};

static const struct parse_case parse_cases[] = {
    /* valid */
    {"1970-01-01T00:00:00Z", 0, 0},
    {"2023-11-14T22:13:20.123456Z", 0, 1700000000123456},
    {"2024-02-29T12:00:00+02:00", 0, 1709200800000000},
    {"2024-02-29T10:00:00-00:00", 0, 1709200800000000},
    {"2024-02-29t10:00:00z", 0, 1709200800000000},
    {"2024-02-29 10:00:00Z", 0, 1709200800000000},
    {"2024-03-01T00:00:00-05:30", 0, 1709271000000000},
    {"2026-01-01T00:00:00+23:59", 0, 1767139260000000},
    {"2000-02-29T00:00:00Z", 0, 951782400000000},
    {"1969-12-31T23:59:59.999999Z", 0, -1},
    {"0001-01-01T00:00:00Z", 0, -62135596800000000},
    {"0001-01-01T00:00:00+01:00", -1, 0}, /* before year 1 in UTC */
    {"9999-12-31T23:59:59.999999Z", 0, 253402300799999999},
    {"1970-01-01T00:00:00.1Z", 0, 100000},
    {"1970-01-01T00:00:00.000001Z", 0, 1},
    {"1970-01-01T00:00:00.123456789Z", 0, 123456}, /* truncated, not rounded */
    {"1970-01-01T00:00:00.999999999Z", 0, 999999},
    /* an offset that carries the instant out of years 0001..9999 (found by
     * fuzz_time: it parsed, then could not be formatted back) */
    {"9999-12-31T23:59:59.999999999-00:30", -1, 0},
    {"9999-12-31T23:30:00-00:30", -1, 0},
    {"9999-12-31T23:29:59-00:30", 0, 253402300799000000},
    {"0001-01-01T00:00:00+00:01", -1, 0},
    /* calendar */
    {"2023-02-29T00:00:00Z", -1, 0},
    {"2026-02-30T00:00:00Z", -1, 0},
    {"1900-02-29T00:00:00Z", -1, 0},
    {"2100-02-29T00:00:00Z", -1, 0},
    {"2024-04-31T00:00:00Z", -1, 0},
    {"2024-01-32T00:00:00Z", -1, 0},
    {"2024-01-00T00:00:00Z", -1, 0},
    {"2024-00-10T00:00:00Z", -1, 0},
    {"2024-13-01T00:00:00Z", -1, 0},
    {"0000-01-01T00:00:00Z", -1, 0},
    /* clock */
    {"2024-01-01T24:00:00Z", -1, 0},
    {"2024-01-01T23:60:00Z", -1, 0},
    {"2024-01-01T23:59:60Z", -1, 0}, /* leap second */
    /* zone */
    {"2024-01-01T00:00:00", -1, 0},
    {"2024-01-01T00:00:00+24:00", -1, 0},
    {"2024-01-01T00:00:00+05:60", -1, 0},
    {"2024-01-01T00:00:00+0530", -1, 0},
    {"2024-01-01T00:00:00+05", -1, 0},
    {"2024-01-01T00:00:00 Z", -1, 0},
    {"2024-01-01T00:00:00UTC", -1, 0},
    /* fraction */
    {"2024-01-01T00:00:00.Z", -1, 0},
    {"2024-01-01T00:00:00.1234567891Z", -1, 0},
    {"2024-01-01T00:00:00,5Z", -1, 0},
    /* shape */
    {"", -1, 0},
    {"2024-01-01", -1, 0},
    {"2024-1-01T00:00:00Z", -1, 0},
    {"2024-01-01T0:00:00Z", -1, 0},
    {"2024-01-01X00:00:00Z", -1, 0},
    {"2024/01/01T00:00:00Z", -1, 0},
    {" 2024-01-01T00:00:00Z", -1, 0},
    {"2024-01-01T00:00:00Z ", -1, 0},
    {"2024-01-01T00:00:00ZZ", -1, 0},
    {"+2024-01-01T00:00:00Z", -1, 0},
    {"12024-01-01T00:00:00Z", -1, 0},
    {"2024-01-01T00:00:00Zjunk", -1, 0},
};

static void test_parse(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
    int64_t us = 424242;
    int rc = time_parse_rfc3339(slice_from_cstr(parse_cases[i].text), &us);
    if (rc != parse_cases[i].rc) fail_msg("\"%s\": rc %d", parse_cases[i].text, rc);
    if (rc == 0) {
      assert_int_equal(us, parse_cases[i].us);
    } else {
      assert_int_equal(us, 424242); /* untouched on failure */
    }
  }
}

static void test_parse_not_nul_terminated(void **state) {
  (void)state;
  /* The slice ends at the Z; the bytes after it must not be read as input. */
  const char text[] = "2024-02-29T10:00:00Z123";
  int64_t us = 0;
  assert_int_equal(time_parse_rfc3339(slice_make(text, 20), &us), 0);
  assert_int_equal(us, 1709200800000000);
  /* Cut inside the fraction or the offset: refused, no read past len. */
  const char frac[] = "2024-02-29T10:00:00.5Z";
  assert_int_equal(time_parse_rfc3339(slice_make(frac, 20), &us), -1);
  const char zone[] = "2024-02-29T10:00:00+02:00";
  assert_int_equal(time_parse_rfc3339(slice_make(zone, 24), &us), -1);
}

/* A small deterministic generator, so failures reproduce. */
static uint64_t next_random(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void test_round_trip(void **state) {
  (void)state;
  const int64_t lo = -62135596800000000; /* 0001-01-01 */
  const int64_t hi = 253402300799999999; /* 9999-12-31T23:59:59.999999 */
  uint64_t seed = 0x6b65656c;
  for (int i = 0; i < 20000; i++) {
    int64_t us = lo + (int64_t)(next_random(&seed) % (uint64_t)(hi - lo));
    if (i % 2) us -= us % US_PER_SEC; /* exercise the no-fraction form too */
    char text[RFC3339_MAX];
    size_t n = time_format_rfc3339(us, text);
    int64_t back = 0;
    if (time_parse_rfc3339(slice_make(text, n), &back) != 0) fail_msg("cannot parse %s", text);
    assert_int_equal(back, us);
  }
}

struct civil_case {
  int64_t y;
  unsigned m, d;
  int64_t days;
};

static void test_days_from_civil(void **state) {
  (void)state;
  static const struct civil_case cases[] = {
      {1970, 1, 1, 0},    {1969, 12, 31, -1},      {2000, 3, 1, 11017},    {2024, 2, 29, 19782},
      {1, 1, 1, -719162}, {9999, 12, 31, 2932896}, {1600, 2, 29, -135081},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(time_days_from_civil(cases[i].y, cases[i].m, cases[i].d), cases[i].days);
  }
  /* Consecutive dates are consecutive days across a whole 400-year era. */
  static const unsigned month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int64_t expected = time_days_from_civil(1800, 1, 1);
  for (int64_t y = 1800; y < 2200; y++) {
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    for (unsigned m = 1; m <= 12; m++) {
      unsigned len = month_days[m - 1] + (m == 2 && leap ? 1 : 0);
      for (unsigned d = 1; d <= len; d++) {
        assert_int_equal(time_days_from_civil(y, m, d), expected);
        expected++;
      }
    }
  }
}

struct boundary_case {
  const char *at;
  const char *day_start;
  const char *month_start;
  const char *next_month;
};

static void test_day_and_month_starts(void **state) {
  (void)state;
  static const struct boundary_case cases[] = {
      {"2024-02-29T12:34:56.789Z", "2024-02-29T00:00:00Z", "2024-02-01T00:00:00Z",
       "2024-03-01T00:00:00Z"},
      {"2024-12-31T23:59:59.999999Z", "2024-12-31T00:00:00Z", "2024-12-01T00:00:00Z",
       "2025-01-01T00:00:00Z"},
      {"2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z",
       "2024-02-01T00:00:00Z"},
      {"1969-12-15T06:00:00Z", "1969-12-15T00:00:00Z", "1969-12-01T00:00:00Z",
       "1970-01-01T00:00:00Z"},
      {"1969-12-31T23:59:59.999999Z", "1969-12-31T00:00:00Z", "1969-12-01T00:00:00Z",
       "1970-01-01T00:00:00Z"},
      {"2023-01-31T10:00:00Z", "2023-01-31T00:00:00Z", "2023-01-01T00:00:00Z",
       "2023-02-01T00:00:00Z"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t at, day, month, next;
    assert_int_equal(time_parse_rfc3339(slice_from_cstr(cases[i].at), &at), 0);
    assert_int_equal(time_parse_rfc3339(slice_from_cstr(cases[i].day_start), &day), 0);
    assert_int_equal(time_parse_rfc3339(slice_from_cstr(cases[i].month_start), &month), 0);
    assert_int_equal(time_parse_rfc3339(slice_from_cstr(cases[i].next_month), &next), 0);
    assert_int_equal(time_day_start(at), day);
    assert_int_equal(time_month_start(at), month);
    assert_int_equal(time_next_month_start(at), next);
  }
}

static void test_clock(void **state) {
  (void)state;
  assert_int_equal(time_offset_us(), 0);
  /* time() and CLOCK_REALTIME are read at different instants through
   * different kernel paths (time() may be tick-based), and the check once
   * failed under ASan: a second's slack on each side. */
  int64_t before = ((int64_t)time(NULL) - 1) * US_PER_SEC;
  int64_t now = time_now_us();
  int64_t after = ((int64_t)time(NULL) + 1) * US_PER_SEC;
  assert_true(now >= before && now <= after);

  /* The test clock moves time_now_us, not the monotonic clock. */
  assert_int_equal(time_offset_add_us(US_PER_DAY), US_PER_DAY);
  assert_int_equal(time_offset_add_us(US_PER_HOUR), US_PER_DAY + US_PER_HOUR);
  assert_int_equal(time_offset_us(), US_PER_DAY + US_PER_HOUR);
  int64_t shifted = time_now_us();
  assert_true(shifted >= now + US_PER_DAY + US_PER_HOUR);
  assert_true(shifted <= after + US_PER_DAY + US_PER_HOUR + US_PER_SEC);
  assert_int_equal(time_offset_add_us(-(US_PER_DAY + US_PER_HOUR)), 0);

  int64_t m1 = time_mono_us();
  int64_t m2 = time_mono_us();
  assert_true(m1 > 0);
  assert_true(m2 >= m1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_format_extremes_fit),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_parse_not_nul_terminated),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_days_from_civil),
      cmocka_unit_test(test_day_and_month_starts),
      cmocka_unit_test(test_clock),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
