/*
 * time.c — keel's clock, RFC 3339 text, and civil (calendar) arithmetic.
 *
 * All times are int64 microseconds since 1970-01-01T00:00:00Z, proleptic
 * Gregorian, no leap seconds (like POSIX time). Calendar conversions are done
 * here in integer arithmetic rather than through gmtime/timegm: those depend on
 * the process time zone, are limited by time_t, and timegm normalises invalid
 * dates ("02-30" silently becomes "03-02"), which a strict parser must refuse.
 *
 * The test offset is a single atomic, so a test clock can move while other
 * threads read the time.
 */
#include "core/time.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

static atomic_int_least64_t clock_offset_us;

static int64_t timespec_us(clockid_t clock) {
  struct timespec ts;
  /* Cannot fail for these clocks on any system keel runs on. */
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * US_PER_SEC + ts.tv_nsec / 1000;
}

int64_t time_now_us(void) {
  return timespec_us(CLOCK_REALTIME) + atomic_load(&clock_offset_us);
}

int64_t time_mono_us(void) {
  return timespec_us(CLOCK_MONOTONIC);
}

int64_t time_offset_add_us(int64_t delta) {
  return atomic_fetch_add(&clock_offset_us, delta) + delta;
}

int64_t time_offset_us(void) {
  return atomic_load(&clock_offset_us);
}

/* Floor division and its remainder (C division truncates towards zero, which
 * is wrong for instants before the epoch). */
static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b) {
  /* From the truncated remainder, so that INT64_MIN does not overflow. */
  int64_t r = a % b;
  return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}

/*
 * Days since 1970-01-01 of a civil date. The year is shifted to start on
 * March 1st so that the leap day is the last day of the shifted year; then a
 * year's start is a closed formula (365*y + y/4 - y/100 + y/400) and the
 * month's start within it is a linear formula (153*m + 2) / 5, because the
 * month lengths from March repeat the pattern 31 30 31 30 31 every 5 months.
 * Years are grouped in 400-year eras of exactly 146097 days.
 */
int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t year = m <= 2 ? y - 1 : y;
  int64_t era = floor_div(year, 400);
  int64_t year_of_era = year - era * 400;                             /* [0, 399] */
  int64_t month_from_march = m > 2 ? (int64_t)m - 3 : (int64_t)m + 9; /* [0, 11] */
  int64_t day_of_year = (153 * month_from_march + 2) / 5 + (int64_t)d - 1;
  int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year; /* [0, 146096] */
  /* 719468 = days from 0000-03-01 to 1970-01-01. */
  return era * 146097 + day_of_era - 719468;
}

struct civil_date {
  int64_t year;
  unsigned month; /* 1..12 */
  unsigned day;   /* 1..31 */
};

/* The inverse of time_days_from_civil, by the same March-based shift. */
static struct civil_date civil_from_days(int64_t days) {
  int64_t shifted = days + 719468;
  int64_t era = floor_div(shifted, 146097);
  int64_t day_of_era = shifted - era * 146097; /* [0, 146096] */
  /* Turn day_of_era into "365-day years" by discounting leap days: one per
   * 1460 days (4 years), none per 36524 (100 years), and the era's last day
   * (146096, the 400-year leap day) kept inside year 399; then divide. */
  int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  int64_t month_from_march = (5 * day_of_year + 2) / 153; /* [0, 11] */
  struct civil_date date;
  date.day = (unsigned)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
  date.month = (unsigned)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
  date.year = year_of_era + era * 400 + (date.month <= 2 ? 1 : 0);
  return date;
}

static bool is_leap_year(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m) {
  static const unsigned lengths[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return (m == 2 && is_leap_year(y)) ? 29 : lengths[m - 1];
}

size_t time_format_rfc3339(int64_t us, char out[RFC3339_MAX]) {
  int64_t days = floor_div(us, US_PER_DAY);
  int64_t us_of_day = floor_mod(us, US_PER_DAY);
  struct civil_date date = civil_from_days(days);
  int64_t secs = us_of_day / US_PER_SEC;
  int64_t frac = us_of_day % US_PER_SEC;
  int n;
  if (frac) {
    n = snprintf(out, RFC3339_MAX, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                 (long long)date.year, date.month, date.day, (long long)(secs / 3600),
                 (long long)(secs / 60 % 60), (long long)(secs % 60), (long long)frac);
  } else {
    n = snprintf(out, RFC3339_MAX, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ", (long long)date.year,
                 date.month, date.day, (long long)(secs / 3600), (long long)(secs / 60 % 60),
                 (long long)(secs % 60));
  }
  /* The longest int64 instant (a 7-character year) still fits; the clamp
   * only keeps the return value honest if that ever changes. */
  if (n < 0) n = 0;
  if (n >= RFC3339_MAX) n = RFC3339_MAX - 1;
  return (size_t)n;
}

/* Reads exactly count digits at *pos into *out. */
static int read_fixed_digits(struct slice s, size_t *pos, size_t count, unsigned *out) {
  if (s.len - *pos < count) return -1;
  unsigned value = 0;
  for (size_t i = 0; i < count; i++) {
    char c = s.p[*pos + i];
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (unsigned)(c - '0');
  }
  *pos += count;
  *out = value;
  return 0;
}

static int expect_char(struct slice s, size_t *pos, char c) {
  if (*pos >= s.len || s.p[*pos] != c) return -1;
  (*pos)++;
  return 0;
}

/* Fraction digits beyond microseconds are accepted (RFC 3339 allows any
 * number) but bounded, so a megabyte of digits is refused, and truncated. */
#define RFC3339_FRAC_DIGITS_MAX 9

static int parse_fraction(struct slice s, size_t *pos, int64_t *us_out) {
  size_t start = *pos;
  int64_t us = 0;
  size_t digits = 0;
  while (*pos < s.len && s.p[*pos] >= '0' && s.p[*pos] <= '9') {
    if (digits < 6) us = us * 10 + (s.p[*pos] - '0');
    digits++;
    (*pos)++;
  }
  if (digits == 0 || digits > RFC3339_FRAC_DIGITS_MAX) {
    *pos = start;
    return -1;
  }
  for (size_t i = digits; i < 6; i++) us *= 10;
  *us_out = us;
  return 0;
}

/* Parses "Z" or "±HH:MM" into seconds east of UTC. */
static int parse_zone(struct slice s, size_t *pos, int64_t *offset_s) {
  if (*pos >= s.len) return -1;
  char c = s.p[*pos];
  if (c == 'Z' || c == 'z') {
    (*pos)++;
    *offset_s = 0;
    return 0;
  }
  if (c != '+' && c != '-') return -1;
  (*pos)++;
  unsigned hh, mm;
  if (read_fixed_digits(s, pos, 2, &hh) || expect_char(s, pos, ':') ||
      read_fixed_digits(s, pos, 2, &mm)) {
    return -1;
  }
  if (hh > 23 || mm > 59) return -1;
  int64_t offset = (int64_t)hh * 3600 + (int64_t)mm * 60;
  *offset_s = c == '-' ? -offset : offset;
  return 0;
}

int time_parse_rfc3339(struct slice s, int64_t *us_out) {
  size_t pos = 0;
  unsigned year, month, day, hour, minute, second;
  if (read_fixed_digits(s, &pos, 4, &year) || expect_char(s, &pos, '-') ||
      read_fixed_digits(s, &pos, 2, &month) || expect_char(s, &pos, '-') ||
      read_fixed_digits(s, &pos, 2, &day)) {
    return -1;
  }
  if (pos >= s.len || (s.p[pos] != 'T' && s.p[pos] != 't' && s.p[pos] != ' ')) return -1;
  pos++;
  if (read_fixed_digits(s, &pos, 2, &hour) || expect_char(s, &pos, ':') ||
      read_fixed_digits(s, &pos, 2, &minute) || expect_char(s, &pos, ':') ||
      read_fixed_digits(s, &pos, 2, &second)) {
    return -1;
  }
  int64_t frac_us = 0;
  if (pos < s.len && s.p[pos] == '.') {
    pos++;
    if (parse_fraction(s, &pos, &frac_us)) return -1;
  }
  int64_t offset_s;
  if (parse_zone(s, &pos, &offset_s) || pos != s.len) return -1;

  /* Leap seconds (second 60) are refused: keel time has none, and mapping
   * one onto the next second would make two instants compare equal. */
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
      hour > 23 || minute > 59 || second > 59) {
    return -1;
  }
  int64_t days = time_days_from_civil(year, month, day);
  int64_t secs = days * 86400 + (int64_t)hour * 3600 + (int64_t)minute * 60 + second;
  int64_t us = (secs - offset_s) * US_PER_SEC + frac_us;
  /* An offset can carry the instant out of years 0001..9999 (e.g.
   * 9999-12-31T23:59:59-00:30): such a time could not be written back in
   * RFC 3339, so it is refused. */
  if (us < time_days_from_civil(1, 1, 1) * US_PER_DAY ||
      us >= time_days_from_civil(10000, 1, 1) * US_PER_DAY) {
    return -1;
  }
  *us_out = us;
  return 0;
}

int64_t time_day_start(int64_t us) {
  return floor_div(us, US_PER_DAY) * US_PER_DAY;
}

int64_t time_month_start(int64_t us) {
  struct civil_date date = civil_from_days(floor_div(us, US_PER_DAY));
  return time_days_from_civil(date.year, date.month, 1) * US_PER_DAY;
}

int64_t time_next_month_start(int64_t us) {
  struct civil_date date = civil_from_days(floor_div(us, US_PER_DAY));
  int64_t year = date.month == 12 ? date.year + 1 : date.year;
  unsigned month = date.month == 12 ? 1 : date.month + 1;
  return time_days_from_civil(year, month, 1) * US_PER_DAY;
}
