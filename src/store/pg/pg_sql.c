/*
 * pg_sql.c — text helpers of the PostgreSQL backend: the portable-SQL
 * rewrite, bytea decoding, SQLSTATE mapping and URL redaction (store/pg/pg.h).
 * Pure functions: no connection, no global state.
 */
#include "store/pg/pg.h"

#include <inttypes.h>
#include <string.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/xmalloc.h"

#define SQL_MAX (1 << 20) /* statements are string literals: far below this */

/* Copies the quoted run starting at *p (a ' literal or a " identifier, the
 * doubled quote being its own escape) and returns the character after it. */
static const char *copy_quoted(struct buf *b, const char *p) {
  char q = *p;
  buf_putc(b, *p++);
  while (*p) {
    char c = *p++;
    buf_putc(b, c);
    if (c == q) {
      if (*p != q) break; /* closing quote; a doubled one carries on */
      buf_putc(b, *p++);
    }
  }
  return p;
}

/* Reads "$N" at p (p[1] is a digit): returns N and sets *end past it. */
static int param_number(const char *p, const char **end) {
  int n = 0;
  for (p++; *p >= '0' && *p <= '9'; p++) {
    if (n < 100000) n = n * 10 + (*p - '0');
  }
  *end = p;
  return n;
}

static void note_params(const char *from, const char *to, int *max) {
  const char *p = from;
  while (p < to) {
    if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
      int n = param_number(p, &p);
      if (n > *max) *max = n;
    } else {
      p++;
    }
  }
}

char *pg_sql_rewrite(const char *sql, int *nparams) {
  struct buf b;
  buf_init(&b, SQL_MAX);
  int max = 0;
  for (const char *p = sql; *p;) {
    if (*p == '\'' || *p == '"') {
      p = copy_quoted(&b, p);
    } else if (p[0] == '-' && p[1] == '-') {
      const char *eol = strchr(p, '\n');
      size_t n = eol ? (size_t)(eol - p) : strlen(p);
      buf_append(&b, p, n);
      p += n;
    } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
      const char *end;
      int n = param_number(p, &end);
      if (n > max) max = n;
      buf_append(&b, p, (size_t)(end - p));
      p = end;
    } else if (strncmp(p, "@ts(", 4) == 0 || strncmp(p, "@us(", 4) == 0) {
      const char *arg = p + 4, *close = strchr(arg, ')');
      if (!close) {
        buf_free(&b);
        return NULL;
      }
      note_params(arg, close, &max);
      int len = (int)(close - arg);
      if (p[1] == 't') {
        /* timestamptz arithmetic is exact to the microsecond, unlike
         * to_timestamp(double), which rounds far-off values. */
        buf_printf(&b, "('epoch'::timestamptz + (%.*s)::bigint * interval '1 microsecond')", len,
                   arg);
      } else {
        /* extract() is numeric since PostgreSQL 14: exact, then cast. */
        buf_printf(&b, "(extract(epoch from (%.*s)) * 1000000)::bigint", len, arg);
      }
      p = close + 1;
    } else {
      buf_putc(&b, *p++);
    }
  }
  if (nparams) *nparams = max;
  size_t len;
  return buf_steal(&b, &len);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long pg_bytea_decode(const char *text, size_t n, unsigned char *out) {
  if (n < 2 || text[0] != '\\' || text[1] != 'x' || (n - 2) % 2 != 0) return -1;
  size_t m = (n - 2) / 2;
  for (size_t i = 0; i < m; i++) {
    int hi = hexval(text[2 + 2 * i]), lo = hexval(text[3 + 2 * i]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return (long)m;
}

int pg_sqlstate_status(const char *sqlstate) {
  if (!sqlstate) return KEEL_ESTORE;
  if (strcmp(sqlstate, "23505") == 0) return KEEL_ECONFLICT;
  if (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0 ||
      strcmp(sqlstate, "55P03") == 0) {
    return KEEL_EBUSY;
  }
  return KEEL_ESTORE;
}

/* Appends at most what fits, always leaving room for the NUL. */
static void put(char *out, size_t n, size_t *at, const char *s, size_t len) {
  if (*at + 1 >= n) return;
  size_t room = n - 1 - *at;
  if (len > room) len = room;
  memcpy(out + *at, s, len);
  *at += len;
}

void pg_url_redact(const char *url, char *out, size_t n) {
  if (n == 0) return;
  size_t at = 0;
  out[0] = '\0';
  if (!url) return;
  const char *p = url;
  const char *scheme = strstr(p, "://");
  if (scheme) {
    /* The userinfo ends at the last '@' of the authority (a password may
     * hold an unescaped '@'); the authority ends at the first '/' or '?'
     * after that. */
    const char *auth = scheme + 3;
    const char *auth_end = auth + strcspn(auth, "/?");
    const char *at_sign = NULL;
    for (const char *q = auth; *q; q++) {
      if (*q == '@') at_sign = q;
    }
    if (at_sign && at_sign > auth_end) auth_end = at_sign + strcspn(at_sign, "/?");
    if (at_sign && at_sign < auth_end) {
      const char *colon = memchr(auth, ':', (size_t)(at_sign - auth));
      if (colon) {
        put(out, n, &at, p, (size_t)(colon + 1 - p));
        put(out, n, &at, "***", 3);
        p = at_sign;
      }
    }
  }
  /* The rest, masking any password= parameter (keyword/value strings too). */
  while (*p) {
    const char *hit = strstr(p, "password=");
    if (!hit) {
      put(out, n, &at, p, strlen(p));
      break;
    }
    put(out, n, &at, p, (size_t)(hit - p) + 9);
    put(out, n, &at, "***", 3);
    p = hit + 9 + strcspn(hit + 9, "& ");
  }
  out[at] = '\0';
}

/* --- array literals ------------------------------------------------------ */

int pg_array_begin(struct buf *b) {
  return buf_putc(b, '{');
}

int pg_array_end(struct buf *b) {
  return buf_putc(b, '}');
}

/* The comma before every element but the first (the array so far ends with
 * its '{' only when empty: an element never ends with one, quoted text
 * ending with '"'). */
static int separate(struct buf *b) {
  if (b->len > 0 && b->data[b->len - 1] == '{') return 0;
  return buf_putc(b, ',');
}

int pg_array_add_text(struct buf *b, const char *s, size_t n) {
  /* At most 2 bytes a byte, the quotes and the comma: reserved at once so
   * the loop below cannot fail half-way. */
  if (n > (SIZE_MAX - 3) / 2 || buf_reserve(b, 2 * n + 3) != 0) return -1;
  separate(b);
  char *out = b->data + b->len;
  *out++ = '"';
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '"' || c == '\\') *out++ = '\\';
    *out++ = c;
  }
  *out++ = '"';
  b->len = (size_t)(out - b->data);
  b->data[b->len] = '\0';
  return 0;
}

int pg_array_add_null(struct buf *b) {
  if (separate(b) != 0) return -1;
  return buf_append(b, "NULL", 4);
}

int pg_array_add_i64(struct buf *b, int64_t v) {
  if (separate(b) != 0) return -1;
  return buf_printf(b, "%" PRId64, v);
}

int pg_array_add_bytea(struct buf *b, const void *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (n > (SIZE_MAX - 6) / 2 || buf_reserve(b, 2 * n + 6) != 0) return -1;
  separate(b);
  char *out = b->data + b->len;
  memcpy(out, "\"\\\\x", 4); /* "\\x: the bytea's backslash, escaped */
  out += 4;
  const unsigned char *u = p;
  for (size_t i = 0; i < n; i++) {
    *out++ = hex[u[i] >> 4];
    *out++ = hex[u[i] & 15];
  }
  *out++ = '"';
  b->len = (size_t)(out - b->data);
  b->data[b->len] = '\0';
  return 0;
}
