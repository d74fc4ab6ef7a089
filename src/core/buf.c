/*
 * buf.c — growable byte buffers bounded by a maximum fixed at creation.
 *
 * Invariants (whenever data != NULL):
 *   len <= cap <= max, the allocation is cap + 1 bytes, data[len] == '\0'.
 * cap counts content bytes only: the terminating NUL always has its own byte,
 * so it never counts against max.
 *
 * Every append either succeeds completely or returns -1 with len and the
 * content untouched. Appends that need to know their size up front (printf,
 * JSON escaping) measure first, reserve, then write, so that a refusal never
 * leaves half a value behind. Memory failures are not reported: xmalloc
 * aborts (see xmalloc.h); -1 only ever means "over max".
 */
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

#include "core/xmalloc.h"

/* First allocation: small enough for short strings, big enough that typical
 * JSON responses double only a few times. */
#define BUF_CAP_INITIAL 64

void buf_init(struct buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void buf_free(struct buf *b) {
  xfree(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void buf_reset(struct buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

/* Capacity to grow to for need content bytes: doubling from the current
 * capacity (so n appends cost O(n) copies), clamped to max. Requires
 * need <= max. */
static size_t buf_grown_cap(const struct buf *b, size_t need) {
  size_t cap = b->cap ? b->cap : BUF_CAP_INITIAL;
  while (cap < need) {
    if (cap > b->max / 2) return b->max;
    cap *= 2;
  }
  return cap < b->max ? cap : b->max;
}

int buf_reserve(struct buf *b, size_t extra) {
  size_t need;
  if (xadd_size(b->len, extra, &need) || need > b->max) return -1;
  /* The first reserve allocates even for extra == 0, so a successful append
   * always leaves a valid C string in data. */
  if (b->data && need <= b->cap) return 0;
  size_t cap = buf_grown_cap(b, need);
  size_t bytes;
  if (xadd_size(cap, 1, &bytes)) return -1; /* max == SIZE_MAX and full */
  b->data = xrealloc(b->data, bytes);
  b->data[b->len] = '\0';
  b->cap = cap;
  return 0;
}

int buf_append(struct buf *b, const void *p, size_t n) {
  if (buf_reserve(b, n)) return -1;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int buf_append_cstr(struct buf *b, const char *s) {
  return buf_append(b, s, s ? strlen(s) : 0);
}

int buf_append_slice(struct buf *b, struct slice s) {
  return buf_append(b, s.p, s.len);
}

int buf_putc(struct buf *b, char c) {
  return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap) {
  va_list measure;
  va_copy(measure, ap);
  int n = vsnprintf(NULL, 0, fmt, measure);
  va_end(measure);
  if (n < 0) return -1;
  if (buf_reserve(b, (size_t)n)) return -1;
  /* cap + 1 bytes are allocated, so n + 1 (with the NUL) fit after len. */
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

/* The JSON escape for a byte, or NULL when the byte goes out as itself.
 * Control bytes without a short form use \u00XX (6 bytes). */
static const char *json_short_escape(unsigned char c) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    default:
      return NULL;
  }
}

static size_t json_escaped_len(unsigned char c) {
  const char *esc = json_short_escape(c);
  if (esc) return strlen(esc);
  return c < 0x20 ? 6 : 1;
}

size_t buf_json_escape_into(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *in = (const unsigned char *)s;
  char *start = out;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = in[i];
    const char *esc = json_short_escape(c);
    if (esc) {
      size_t esc_len = strlen(esc);
      memcpy(out, esc, esc_len);
      out += esc_len;
    } else if (c < 0x20) {
      memcpy(out, "\\u00", 4);
      out[4] = hex[c >> 4];
      out[5] = hex[c & 0x0f];
      out += 6;
    } else {
      /* Bytes >= 0x80 are UTF-8 sequences: JSON carries them as they are. */
      *out++ = (char)c;
    }
  }
  return (size_t)(out - start);
}

int buf_append_json_escaped(struct buf *b, const char *s, size_t n) {
  const unsigned char *in = (const unsigned char *)s;
  size_t out_len = 0;
  for (size_t i = 0; i < n; i++) {
    if (xadd_size(out_len, json_escaped_len(in[i]), &out_len)) return -1;
  }
  if (buf_reserve(b, out_len)) return -1;
  b->len += buf_json_escape_into(b->data + b->len, s, n);
  b->data[b->len] = '\0';
  return 0;
}

struct slice buf_slice(const struct buf *b) {
  return slice_make(b->data, b->len);
}

char *buf_steal(struct buf *b, size_t *len_out) {
  char *data = b->data;
  size_t len = b->len;
  /* Nothing was ever appended: hand out an empty string, never NULL. */
  if (!data) data = xmemdup("", 0);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  if (len_out) *len_out = len;
  return data;
}
