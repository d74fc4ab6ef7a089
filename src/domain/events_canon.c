/*
 * events_canon.c — the canonical form of an event and the hash chain link
 * (docs/hash-chain.md is the specification; this file and
 * tests/api/hashchain_ref.py are two implementations of it, compared by
 * tests/unit/test_events.c on tests/fixtures/hashchain_vectors.json).
 *
 * The form is keel's own rather than jansson's output, because it has to be
 * reproducible byte for byte by other implementations:
 *  - top-level members in a fixed order, nested object keys sorted by their
 *    UTF-8 bytes, no whitespace;
 *  - strings: only '"', '\' and U+0000..U+001F escaped (the latter always as
 *    \u00xx, lower-case hex), everything else as raw UTF-8;
 *  - integers in decimal; reals as the shortest correctly rounded %e form
 *    that reads back to the same double, laid out like Python's repr (jansson
 *    prints "%.17g", which is neither shortest nor what others print).
 *
 * Invariants: an encoder either appends a complete value or leaves the
 * buffer as it found it; recursion is bounded by CANON_DEPTH_MAX whatever the
 * input. The C locale is in effect (keel never calls setlocale), so %e and
 * strtod use '.'.
 *
 * Thread-safety: stateless, thread-safe.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/events.h"

/* Nesting accepted by the encoder: data and metadata are at most
 * LIMIT_EVENT_DEPTH deep (checked at validation); the event object adds one.
 * Past this the encoder refuses rather than recurse further. */
#define CANON_DEPTH_MAX (LIMIT_EVENT_DEPTH + 1)

/* Members sorted on the stack up to this many; larger objects use the heap. */
#define CANON_SORT_INLINE 16

/* --- strings -------------------------------------------------------------- */

static int put_string(struct buf *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *in = (const unsigned char *)s;
  size_t extra = 2; /* the quotes */
  for (size_t i = 0; i < n; i++) {
    if (in[i] < 0x20) {
      extra += 5;
    } else if (in[i] == '"' || in[i] == '\\') {
      extra += 1;
    }
  }
  size_t need;
  if (xadd_size(n, extra, &need) || buf_reserve(out, need)) return -1;
  char *w = out->data + out->len;
  *w++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = in[i];
    if (c < 0x20) {
      memcpy(w, "\\u00", 4);
      w[4] = hex[c >> 4];
      w[5] = hex[c & 0x0f];
      w += 6;
    } else if (c == '"' || c == '\\') {
      *w++ = '\\';
      *w++ = (char)c;
    } else {
      *w++ = (char)c; /* ASCII, or a byte of a UTF-8 sequence (jansson checked it) */
    }
  }
  *w++ = '"';
  out->len += need;
  out->data[out->len] = '\0';
  return 0;
}

static int put_cstr_string(struct buf *out, const char *s) {
  return put_string(out, s, strlen(s));
}

/* --- numbers -------------------------------------------------------------- */

/*
 * The shortest correctly rounded significand that reads back as d: "%.{p}e"
 * for p = 0, 1, ... 16 (1 to 17 significant digits; 17 always reads back).
 * Stores the significant digits without trailing zeros (at least one) and
 * the decimal exponent of the first one.
 */
static void real_digits(double d, char digits[24], size_t *ndigits, int *exp10) {
  char sci[40];
  for (int prec = 0; prec <= 16; prec++) {
    snprintf(sci, sizeof(sci), "%.*e", prec, d);
    if (strtod(sci, NULL) == d) break;
  }
  /* sci is "[-]D[.DDD]e(+|-)XX[X]". */
  const char *p = sci;
  size_t n = 0;
  if (*p == '-') p++;
  for (; *p != 'e' && *p != '\0'; p++) {
    if (*p >= '0' && *p <= '9' && n < 23) digits[n++] = *p;
  }
  int sign = 1, e = 0;
  if (*p == 'e') p++;
  if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
  for (; *p >= '0' && *p <= '9'; p++) e = e * 10 + (*p - '0');
  while (n > 1 && digits[n - 1] == '0') n--;
  digits[n] = '\0';
  *ndigits = n;
  *exp10 = sign * e;
}

int events_canonical_real(double d, struct buf *out) {
  char digits[24], text[48];
  size_t nd, w = 0;
  int e;

  if (!isfinite(d)) return -1;
  real_digits(d, digits, &nd, &e);
  if (signbit(d)) text[w++] = '-';
  if (e >= -4 && e < 16) {
    /* Positional, with at least one digit on each side of the point. */
    if (e >= 0) {
      size_t int_digits = (size_t)e + 1;
      for (size_t i = 0; i < int_digits; i++) text[w++] = i < nd ? digits[i] : '0';
      text[w++] = '.';
      if (nd > int_digits) {
        for (size_t i = int_digits; i < nd; i++) text[w++] = digits[i];
      } else {
        text[w++] = '0';
      }
    } else {
      text[w++] = '0';
      text[w++] = '.';
      for (int i = 0; i < -e - 1; i++) text[w++] = '0';
      for (size_t i = 0; i < nd; i++) text[w++] = digits[i];
    }
  } else {
    /* Exponent form: d[.ddd]e(+|-)XX, at least two exponent digits. */
    text[w++] = digits[0];
    if (nd > 1) {
      text[w++] = '.';
      for (size_t i = 1; i < nd; i++) text[w++] = digits[i];
    }
    int n = snprintf(text + w, sizeof(text) - w, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    if (n < 0 || (size_t)n >= sizeof(text) - w) return -1;
    w += (size_t)n;
  }
  return buf_append(out, text, w);
}

/* --- values --------------------------------------------------------------- */

struct canon_member {
  const char *key;
  size_t key_len;
  json_t *value;
};

/* UTF-8 byte order of the keys; a key that is a prefix of another sorts
 * first. Keys are unique within an object, so the order is total. */
static int member_cmp(const void *a, const void *b) {
  const struct canon_member *x = a, *y = b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->key, y->key, n);
  if (c) return c;
  return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

static int put_value(const json_t *v, size_t depth, struct buf *out);

static int put_object(const json_t *obj, size_t depth, struct buf *out) {
  struct canon_member inline_members[CANON_SORT_INLINE];
  struct canon_member *m = inline_members;
  size_t n = json_object_size(obj), i = 0;
  int rc = 0;

  if (n > CANON_SORT_INLINE) m = xreallocarray(NULL, n, sizeof(*m));
  /* jansson's iteration API takes non-const objects; it does not modify. */
  for (void *it = json_object_iter((json_t *)obj); it != NULL && i < n;
       it = json_object_iter_next((json_t *)obj, it)) {
    m[i].key = json_object_iter_key(it);
    m[i].key_len = json_object_iter_key_len(it);
    m[i].value = json_object_iter_value(it);
    i++;
  }
  qsort(m, i, sizeof(*m), member_cmp);
  rc = buf_putc(out, '{');
  for (size_t k = 0; k < i && rc == 0; k++) {
    if (k > 0) rc = buf_putc(out, ',');
    if (rc == 0) rc = put_string(out, m[k].key, m[k].key_len);
    if (rc == 0) rc = buf_putc(out, ':');
    if (rc == 0) rc = put_value(m[k].value, depth + 1, out);
  }
  if (rc == 0) rc = buf_putc(out, '}');
  if (m != inline_members) xfree(m);
  return rc;
}

static int put_array(const json_t *arr, size_t depth, struct buf *out) {
  size_t n = json_array_size(arr);
  int rc = buf_putc(out, '[');
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (i > 0) rc = buf_putc(out, ',');
    if (rc == 0) rc = put_value(json_array_get(arr, i), depth + 1, out);
  }
  if (rc == 0) rc = buf_putc(out, ']');
  return rc;
}

/* depth: containers above v (0 at the top). */
static int put_value(const json_t *v, size_t depth, struct buf *out) {
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      if (depth >= CANON_DEPTH_MAX) return -1;
      return put_object(v, depth, out);
    case JSON_ARRAY:
      if (depth >= CANON_DEPTH_MAX) return -1;
      return put_array(v, depth, out);
    case JSON_STRING:
      return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
      return buf_printf(out, "%lld", (long long)json_integer_value(v));
    case JSON_REAL:
      return events_canonical_real(json_real_value(v), out);
    case JSON_TRUE:
      return buf_append_cstr(out, "true");
    case JSON_FALSE:
      return buf_append_cstr(out, "false");
    case JSON_NULL:
      return buf_append_cstr(out, "null");
  }
  return -1;
}

/* Runs an encoder; on failure truncates out back to where it was. */
static int restore_on_failure(struct buf *out, size_t start, int rc) {
  if (rc != 0) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -1;
  }
  return 0;
}

int events_canonical_json(const json_t *v, struct buf *out) {
  size_t start = out->len;
  if (v == NULL) return -1;
  return restore_on_failure(out, start, put_value(v, 0, out));
}

/* --- the event ------------------------------------------------------------ */

/* RFC 3339 UTC with exactly six fractional digits: "2026-03-01T12:00:00.000000Z". */
static int put_timestamp(struct buf *out, int64_t us) {
  char text[RFC3339_MAX];
  size_t n = time_format_rfc3339(us, text);
  /* time_format_rfc3339 leaves the fraction out when it is zero. */
  if (n < 1 || text[n - 1] != 'Z') return -1;
  if (memchr(text, '.', n) != NULL) return buf_printf(out, "\"%s\"", text);
  return buf_printf(out, "\"%.*s.000000Z\"", (int)(n - 1), text);
}

/* One "key":value member, with the comma before it unless first. */
static int put_member_name(struct buf *out, const char *key, bool first) {
  if (!first && buf_putc(out, ',')) return -1;
  if (put_cstr_string(out, key)) return -1;
  return buf_putc(out, ':');
}

static int put_event(const struct ingest_event *e, struct buf *out, size_t start,
                     struct events_span *spans) {
  const char *type = event_type_name(e->type);
  const char *severity = event_severity_name(e->severity);

  if (e->id == NULL || e->session_id == NULL || e->agent_id == NULL || !e->has_timestamp ||
      type == NULL || severity == NULL) {
    return -1;
  }
  if (buf_putc(out, '{')) return -1;
  if (put_member_name(out, "id", true) || put_cstr_string(out, e->id)) return -1;
  if (put_member_name(out, "session_id", false) || put_cstr_string(out, e->session_id)) return -1;
  if (put_member_name(out, "agent_id", false) || put_cstr_string(out, e->agent_id)) return -1;
  if (put_member_name(out, "type", false) || put_cstr_string(out, type)) return -1;
  if (put_member_name(out, "timestamp", false) || put_timestamp(out, e->timestamp_us)) return -1;
  if (put_member_name(out, "severity", false) || put_cstr_string(out, severity)) return -1;
  /* Absent data/metadata/tags are the same event as {} / {} / []. The event
   * object is level 1, so its members start at depth 1. */
  if (put_member_name(out, "data", false)) return -1;
  spans[0].off = out->len - start;
  if (e->data && e->data_canon.p ? buf_append(out, e->data_canon.p, e->data_canon.len)
      : e->data                  ? put_value(e->data, 1, out)
                                 : buf_append_cstr(out, "{}")) {
    return -1;
  }
  spans[0].len = out->len - start - spans[0].off;
  if (put_member_name(out, "metadata", false)) return -1;
  spans[1].off = out->len - start;
  if (e->metadata && e->metadata_canon.p
          ? buf_append(out, e->metadata_canon.p, e->metadata_canon.len)
      : e->metadata ? put_value(e->metadata, 1, out)
                    : buf_append_cstr(out, "{}")) {
    return -1;
  }
  spans[1].len = out->len - start - spans[1].off;
  if (put_member_name(out, "tags", false)) return -1;
  spans[2].off = out->len - start;
  if (e->tags ? put_value(e->tags, 1, out) : buf_append_cstr(out, "[]")) return -1;
  spans[2].len = out->len - start - spans[2].off;
  return buf_putc(out, '}');
}

int events_canonical(const struct ingest_event *e, struct buf *out) {
  struct events_span spans[3];
  size_t start = out->len;
  return restore_on_failure(out, start, put_event(e, out, start, spans));
}

int events_canonical_spans(const struct ingest_event *e, struct buf *out, struct events_span *data,
                           struct events_span *metadata, struct events_span *tags) {
  struct events_span spans[3];
  size_t start = out->len;
  int rc = restore_on_failure(out, start, put_event(e, out, start, spans));
  if (rc == 0) {
    *data = spans[0];
    *metadata = spans[1];
    *tags = spans[2];
  }
  return rc;
}

void events_chain_hash_raw(const uint8_t prev[EVENT_HASH_LEN], const void *canon, size_t len,
                           uint8_t out[EVENT_HASH_LEN]) {
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, prev, EVENT_HASH_LEN);
  if (len > 0) crypto_hash_sha256_update(&st, (const unsigned char *)canon, len);
  crypto_hash_sha256_final(&st, out);
}

void events_chain_hash(const uint8_t prev[EVENT_HASH_LEN], const struct buf *canon,
                       uint8_t out[EVENT_HASH_LEN]) {
  events_chain_hash_raw(prev, canon->data, canon->len, out);
}
