/*
 * buf.h — growable byte buffers with a maximum size fixed at creation.
 *
 * An append that would take the buffer past its max fails with -1 and leaves
 * the buffer unchanged (so a caller can answer 413, not crash). The data is
 * always kept NUL-terminated (the NUL is not counted in len and not counted
 * against max), so buf.data can be handed to C string functions when the
 * content has no embedded NUL.
 *
 * Ownership: the buf owns data; buf_free releases it. Not thread-safe.
 */
#ifndef KEEL_CORE_BUF_H
#define KEEL_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/slice.h"

struct buf {
  char *data; /* NULL until the first append */
  size_t len;
  size_t cap;
  size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);  /* releases; the buf may be re-initialised */
void buf_reset(struct buf *b); /* len = 0, keeps the memory */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_cstr(struct buf *b, const char *s);
int buf_append_slice(struct buf *b, struct slice s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s JSON-escaped (without surrounding quotes). */
int buf_append_json_escaped(struct buf *b, const char *s, size_t n);
/* Bytes the JSON escape of n bytes may take (\u00XX: 6 a byte). */
#define BUF_JSON_ESCAPED_MAX(n) (6 * (n))
/* Writes s JSON-escaped (no quotes, no NUL) at out, which has room for
 * BUF_JSON_ESCAPED_MAX(n) bytes; returns the bytes written. The escaping of
 * buf_append_json_escaped, for callers writing into their own arrays. */
size_t buf_json_escape_into(char *out, const char *s, size_t n);
struct slice buf_slice(const struct buf *b);
/* Transfers ownership of the bytes to the caller (NUL-terminated, never NULL);
 * the buf is left empty. */
char *buf_steal(struct buf *b, size_t *len_out);

#endif
