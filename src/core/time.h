/*
 * time.h — keel's clock and RFC 3339.
 *
 * Time is UTC, held as int64 microseconds since the Unix epoch. time_now_us()
 * reads the wall clock plus an offset; the offset exists for tests (a test
 * clock moved by a --dev-only endpoint) and is always 0 in production.
 *
 * Thread-safety: all functions are thread-safe.
 */
#ifndef KEEL_CORE_TIME_H
#define KEEL_CORE_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

#define US_PER_SEC  INT64_C(1000000)
#define US_PER_MIN  (60 * US_PER_SEC)
#define US_PER_HOUR (60 * US_PER_MIN)
#define US_PER_DAY  (24 * US_PER_HOUR)

/* Wall clock (plus the test offset), microseconds since the epoch. */
int64_t time_now_us(void);
/* Monotonic clock in microseconds (durations, timeouts); no offset. */
int64_t time_mono_us(void);
/* Test clock: adds delta to the offset; returns the new offset. */
int64_t time_offset_add_us(int64_t delta);
int64_t time_offset_us(void);

#define RFC3339_MAX 32 /* "2026-11-22T00:55:09.123456Z" + NUL fits */

/*
 * Formats us as RFC 3339 UTC with a 'Z' suffix. Fractional seconds are
 * printed with 6 digits when non-zero, omitted otherwise. out must hold
 * RFC3339_MAX bytes. Returns the length written.
 */
size_t time_format_rfc3339(int64_t us, char out[RFC3339_MAX]);

/*
 * Parses RFC 3339 ("YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)"), 't'/'z' and a
 * space separator accepted, fraction up to 9 digits (truncated to µs). Years
 * 0001..9999. Validates ranges (including days per month and leap years).
 * Returns 0 and stores µs UTC, or -1.
 */
int time_parse_rfc3339(struct slice s, int64_t *us_out);

/* Civil date helpers (proleptic Gregorian, UTC). */
int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d);
/* Start of the UTC day / month containing us. */
int64_t time_day_start(int64_t us);
int64_t time_month_start(int64_t us);
/* Start of the month after the one containing us. */
int64_t time_next_month_start(int64_t us);

#endif
