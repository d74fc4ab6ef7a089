/*
 * slice.c — borrowed byte ranges and cursor parsers.
 *
 * Nothing here assumes NUL termination or allocates. A slice of length 0 may
 * have p == NULL, so no function passes p to a libc routine when len is 0
 * (memcmp/memchr with NULL is undefined even for zero lengths).
 *
 * The integer parsers are strict on purpose: they read untrusted input (query
 * strings, headers, config), where "+5", " 5" or a silently wrapped value
 * would hide a client bug or an attack.
 */
#include "core/slice.h"

#include <string.h>

struct slice slice_from_cstr(const char *s) {
  if (!s) return SLICE_NULL;
  return slice_make(s, strlen(s));
}

struct slice slice_make(const char *p, size_t len) {
  return (struct slice){p, len};
}

bool slice_eq(struct slice a, struct slice b) {
  if (a.len != b.len) return false;
  return a.len == 0 || memcmp(a.p, b.p, a.len) == 0;
}

bool slice_eq_cstr(struct slice a, const char *s) {
  return slice_eq(a, slice_from_cstr(s));
}

static char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool slice_eq_nocase(struct slice a, struct slice b) {
  if (a.len != b.len) return false;
  for (size_t i = 0; i < a.len; i++) {
    if (ascii_lower(a.p[i]) != ascii_lower(b.p[i])) return false;
  }
  return true;
}

bool slice_eq_cstr_nocase(struct slice a, const char *s) {
  return slice_eq_nocase(a, slice_from_cstr(s));
}

bool slice_starts_with(struct slice a, struct slice prefix) {
  if (prefix.len > a.len) return false;
  return slice_eq(slice_make(a.p, prefix.len), prefix);
}

bool slice_ends_with(struct slice a, struct slice suffix) {
  if (suffix.len > a.len) return false;
  return slice_eq(slice_make(a.p + (a.len - suffix.len), suffix.len), suffix);
}

static bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

struct slice slice_trim(struct slice a) {
  while (a.len && is_blank(a.p[0])) {
    a.p++;
    a.len--;
  }
  while (a.len && is_blank(a.p[a.len - 1])) a.len--;
  return a;
}

long slice_index(struct slice a, char c) {
  if (a.len == 0) return -1;
  const char *hit = memchr(a.p, c, a.len);
  return hit ? (long)(hit - a.p) : -1;
}

bool slice_cut(struct slice a, char sep, struct slice *head, struct slice *rest) {
  long at = slice_index(a, sep);
  struct slice before = a;
  struct slice after = slice_make(a.p ? a.p + a.len : NULL, 0);
  if (at >= 0) {
    before = slice_make(a.p, (size_t)at);
    after = slice_make(a.p + at + 1, a.len - (size_t)at - 1);
  }
  if (head) *head = before;
  if (rest) *rest = after;
  return at >= 0;
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Reads a run of decimal digits from the start of s into *out, refusing
 * values above limit. Returns the number of digits consumed (0 = no digit or
 * overflow; callers treat both as failure). */
static size_t parse_digits(struct slice s, uint64_t limit, uint64_t *out) {
  uint64_t value = 0;
  size_t i = 0;
  while (i < s.len && is_digit(s.p[i])) {
    uint64_t digit = (uint64_t)(s.p[i] - '0');
    if (value > (limit - digit) / 10) return 0;
    value = value * 10 + digit;
    i++;
  }
  *out = value;
  return i;
}

int slice_parse_u64(struct slice *cur, uint64_t *out) {
  uint64_t value;
  size_t used = parse_digits(*cur, UINT64_MAX, &value);
  if (used == 0) return -1;
  *out = value;
  cur->p += used;
  cur->len -= used;
  return 0;
}

/* Longest digit run accepted for an int64: 9223372036854775807 has 19. */
#define I64_DIGITS_MAX 19

int slice_parse_i64(struct slice *cur, int64_t *out) {
  struct slice s = *cur;
  bool negative = s.len > 0 && s.p[0] == '-';
  if (negative) {
    s.p++;
    s.len--;
  }
  /* The magnitude of INT64_MIN is one more than INT64_MAX. */
  uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  uint64_t magnitude;
  size_t used = parse_digits(s, limit, &magnitude);
  if (used == 0 || used > I64_DIGITS_MAX) return -1;
  if (negative) {
    /* Negate in unsigned arithmetic: -(int64_t)2^63 would overflow. */
    *out = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
  } else {
    *out = (int64_t)magnitude;
  }
  size_t consumed = used + (negative ? 1 : 0);
  cur->p += consumed;
  cur->len -= consumed;
  return 0;
}

int slice_to_i64(struct slice s, int64_t *out) {
  int64_t value;
  if (slice_parse_i64(&s, &value) || s.len != 0) return -1;
  *out = value;
  return 0;
}

int slice_to_u64(struct slice s, uint64_t *out) {
  uint64_t value;
  if (slice_parse_u64(&s, &value) || s.len != 0) return -1;
  *out = value;
  return 0;
}
