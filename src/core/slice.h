/*
 * slice.h — borrowed byte ranges.
 *
 * A slice never owns its bytes and is never assumed NUL-terminated: network
 * input is handled as (pointer, length). Parsers here are cursor parsers: they
 * advance the cursor only on success and return 0, or return -1 and leave the
 * cursor where it was.
 */
#ifndef KEEL_CORE_SLICE_H
#define KEEL_CORE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct slice {
  const char *p;
  size_t len;
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})
#define SLICE_NULL   ((struct slice){NULL, 0})

struct slice slice_from_cstr(const char *s); /* s may be NULL → empty */
struct slice slice_make(const char *p, size_t len);
bool slice_eq(struct slice a, struct slice b);
bool slice_eq_cstr(struct slice a, const char *s);
bool slice_eq_nocase(struct slice a, struct slice b); /* ASCII only */
bool slice_eq_cstr_nocase(struct slice a, const char *s);
bool slice_starts_with(struct slice a, struct slice prefix);
bool slice_ends_with(struct slice a, struct slice suffix);
struct slice slice_trim(struct slice a); /* strips ASCII space and tab */
/* Index of the first c in a, or -1. */
long slice_index(struct slice a, char c);
/* Splits at the first sep: head gets the part before, *rest the part after
 * (empty when sep is absent). Returns true when sep was found. */
bool slice_cut(struct slice a, char sep, struct slice *head, struct slice *rest);

/*
 * Cursor parsers. *cur is advanced past what was consumed only on success.
 * slice_parse_i64: optional '-', 1..19 decimal digits, no overflow, no
 * leading '+', no spaces. slice_parse_u64: digits only.
 */
int slice_parse_i64(struct slice *cur, int64_t *out);
int slice_parse_u64(struct slice *cur, uint64_t *out);
/* Whole-slice variants: the slice must be exactly one number. */
int slice_to_i64(struct slice s, int64_t *out);
int slice_to_u64(struct slice s, uint64_t *out);

#endif
