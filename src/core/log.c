/*
 * log.c — structured JSON logs, one line per event.
 *
 * Invariants:
 *  - Every line is one valid JSON object followed by '\n', at most
 *    LOG_LINE_MAX bytes. When the fields do not fit, string values are cut
 *    (at a UTF-8 boundary), members that cannot be cut are dropped, and the
 *    line says "truncated":true. Invalid UTF-8 in a value becomes U+FFFD, so
 *    a line always parses.
 *  - A line is built in a stack buffer and handed to write(2) in one call.
 *    Nothing here allocates: the OOM handler and keel_panic log through this
 *    file, so logging must work when the heap does not.
 *  - errno is preserved across log_emit, so a caller may log before reading it.
 *
 * The JSON escaper is local rather than buf_append_json_escaped because buf
 * grows on the heap; see the second invariant.
 */
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/time.h"

/* Longest line: large enough for an access line with a long URL and user
 * agent, small enough to live on any thread's stack. */
#define LOG_LINE_MAX 8192
/* Context ids are request ids (LIMIT_REQUEST_ID_MAX) or UUIDs; longer input
 * is cut rather than refused, because logging never fails. */
#define LOG_CTX_MAX LIMIT_REQUEST_ID_MAX
/* Event names and keys are short literals; a longer one is a bug, cut here
 * (escaped length) so it cannot crowd out the fields. */
#define LOG_NAME_MAX 256

static const char truncated_tail[] = ",\"truncated\":true";
/* Room kept free while writing members, so the closing part always fits. */
#define LOG_TAIL_RESERVE (sizeof(truncated_tail) - 1 + 2) /* + "}\n" */

static atomic_int log_level_cur = LOG_INFO;
static atomic_int log_fd_cur = 2;
/* Serialises writers so a short write (possible on pipes for lines longer
 * than PIPE_BUF) is finished before another thread's line starts. */
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local char ctx_request_id[LOG_CTX_MAX + 1];
static _Thread_local char ctx_org_id[LOG_CTX_MAX + 1];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level lvl) {
  if (lvl < LOG_DEBUG) lvl = LOG_DEBUG;
  if (lvl > LOG_ERROR) lvl = LOG_ERROR;
  atomic_store(&log_level_cur, (int)lvl);
}

enum log_level log_get_level(void) {
  return (enum log_level)atomic_load(&log_level_cur);
}

void log_set_fd(int fd) {
  atomic_store(&log_fd_cur, fd);
}

int log_level_parse(const char *s, enum log_level *out) {
  if (s == NULL) return -1;
  for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
    if (strcmp(s, level_names[i]) == 0) {
      if (out != NULL) *out = (enum log_level)i;
      return 0;
    }
  }
  return -1;
}

bool log_enabled(enum log_level lvl) {
  return (int)lvl >= atomic_load(&log_level_cur);
}

static void ctx_copy(char *dst, const char *src) {
  size_t n = 0;
  if (src != NULL) {
    n = strnlen(src, LOG_CTX_MAX);
    memcpy(dst, src, n);
  }
  dst[n] = '\0';
}

void log_set_request_id(const char *request_id) {
  ctx_copy(ctx_request_id, request_id);
}

void log_set_org_id(const char *org_id) {
  ctx_copy(ctx_org_id, org_id);
}

void log_clear_context(void) {
  ctx_request_id[0] = '\0';
  ctx_org_id[0] = '\0';
}

/* --- line builder --------------------------------------------------------- */

struct log_line {
  char *p;
  size_t len;
  size_t limit; /* bytes usable now (below the buffer size while members are
                   written, so the tail always fits) */
  bool truncated;
};

static int line_put(struct log_line *l, const char *s, size_t n) {
  if (n > l->limit - l->len) return -1;
  memcpy(l->p + l->len, s, n);
  l->len += n;
  return 0;
}

static int line_lit(struct log_line *l, const char *s) {
  return line_put(l, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the bytes
 * are not one (overlong forms, surrogates and code points past U+10FFFF
 * included). */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  unsigned char lo = 0x80, hi = 0xBF;
  size_t need;

  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < need) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < need; i++) {
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  }
  return need;
}

/*
 * Writes the escaped form of the next unit of s (one ASCII byte, one UTF-8
 * sequence, or one invalid byte as U+FFFD) into unit[]; returns its length
 * and stores the input bytes consumed in *used.
 */
static size_t escape_unit(const unsigned char *s, size_t n, char unit[8], size_t *used) {
  static const char hex[] = "0123456789abcdef";
  unsigned char c = s[0];
  size_t seq;

  *used = 1;
  switch (c) {
    case '"':
      memcpy(unit, "\\\"", 2);
      return 2;
    case '\\':
      memcpy(unit, "\\\\", 2);
      return 2;
    case '\n':
      memcpy(unit, "\\n", 2);
      return 2;
    case '\r':
      memcpy(unit, "\\r", 2);
      return 2;
    case '\t':
      memcpy(unit, "\\t", 2);
      return 2;
    case '\b':
      memcpy(unit, "\\b", 2);
      return 2;
    case '\f':
      memcpy(unit, "\\f", 2);
      return 2;
    default:
      break;
  }
  /* Other control bytes, and DEL, are escaped so a log line is safe to cat
   * to a terminal. */
  if (c < 0x20 || c == 0x7F) {
    memcpy(unit, "\\u00", 4);
    unit[4] = hex[c >> 4];
    unit[5] = hex[c & 0xF];
    return 6;
  }
  seq = utf8_seq_len(s, n);
  if (seq == 0) {
    memcpy(unit, "\\ufffd", 6);
    return 6;
  }
  memcpy(unit, s, seq);
  *used = seq;
  return seq;
}

/*
 * Appends s as a quoted JSON string. At most max_out escaped bytes are
 * written; a value that does not fit (in max_out or in the line) is cut at a
 * unit boundary and the line marked truncated. Returns 0 (whole, or cut at
 * max_out), 1 when cut for lack of room in the line (callers that cannot
 * accept a cut, such as keys, roll back), or -1 (line unchanged) when not even
 * the two quotes fit.
 */
static int line_str(struct log_line *l, const char *s, size_t n, size_t max_out) {
  const unsigned char *u = (const unsigned char *)s;
  size_t written = 0, pos = 0;
  int rc = 0;

  if (l->limit - l->len < 2) return -1;
  l->p[l->len++] = '"';
  while (pos < n) {
    char unit[8];
    size_t used;
    size_t ulen = escape_unit(u + pos, n - pos, unit, &used);
    if (written + ulen > max_out) {
      l->truncated = true;
      break;
    }
    /* +1 keeps room for the closing quote. */
    if (ulen + 1 > l->limit - l->len) {
      l->truncated = true;
      rc = 1;
      break;
    }
    memcpy(l->p + l->len, unit, ulen);
    l->len += ulen;
    written += ulen;
    pos += used;
  }
  l->p[l->len++] = '"'; /* the loop left room for it */
  return rc;
}

static int line_cstr(struct log_line *l, const char *s, size_t max_out) {
  if (s == NULL) return line_lit(l, "null");
  return line_str(l, s, strlen(s), max_out);
}

static int line_value(struct log_line *l, const struct log_field *f, size_t max_out) {
  char num[40];
  int n;

  switch (f->type) {
    case LF_STR:
      return line_cstr(l, f->v.s, max_out);
    case LF_INT:
      n = snprintf(num, sizeof(num), "%" PRId64, f->v.i);
      return line_put(l, num, (size_t)n);
    case LF_BOOL:
      return line_lit(l, f->v.b ? "true" : "false");
    case LF_DOUBLE:
      if (!isfinite(f->v.d)) return line_lit(l, "null");
      /* %.17g round-trips a double. keel never calls setlocale, so the
       * decimal point is '.'. */
      n = snprintf(num, sizeof(num), "%.17g", f->v.d);
      return line_put(l, num, (size_t)n);
    case LF_RAW_JSON:
      /* Trusted by contract to be valid JSON; it cannot be cut, only
       * dropped whole. */
      if (f->v.s == NULL) return line_lit(l, "null");
      return line_lit(l, f->v.s);
  }
  return line_lit(l, "null");
}

/* Appends ,"key":value, with a string value cut to fit if need be, or
 * nothing (line marked truncated) when even that does not fit. */
static void line_member(struct log_line *l, const struct log_field *f, size_t max_out) {
  size_t start = l->len;
  int rc;

  if (f->key == NULL) return;
  rc = line_put(l, ",", 1);
  if (rc) goto fail;
  /* Never cut a key for room: a cut key would name another field. (Keys
   * past LOG_NAME_MAX are a bug and are cut there.) */
  rc = line_str(l, f->key, strlen(f->key), LOG_NAME_MAX);
  if (rc) goto fail;
  rc = line_put(l, ":", 1);
  if (rc) goto fail;
  rc = line_value(l, f, max_out);
  if (rc < 0) goto fail; /* 1: a string value cut to fit, still a member */
  return;

fail:
  l->len = start;
  l->truncated = true;
}

static void line_ctx(struct log_line *l, const char *key, const char *value) {
  if (value[0] == '\0') return;
  struct log_field f = LS(key, value);
  line_member(l, &f, SIZE_MAX);
}

/* Builds the whole line into buf (LOG_LINE_MAX bytes); returns its length.
 * per_value_max caps each string value's escaped length. */
static size_t line_build(char *buf, enum log_level lvl, const char *ts, const char *event,
                         const struct log_field *fields, unsigned nfields, size_t per_value_max,
                         bool *truncated) {
  struct log_line l = {.p = buf, .len = 0, .limit = LOG_LINE_MAX - LOG_TAIL_RESERVE};

  /* The fixed head is far below the limit: ts, level and the event (capped)
   * always fit, so these cannot fail. */
  (void)line_lit(&l, "{\"ts\":\"");
  (void)line_lit(&l, ts);
  (void)line_lit(&l, "\",\"level\":\"");
  (void)line_lit(&l, level_names[lvl]);
  (void)line_lit(&l, "\",\"event\":");
  (void)line_cstr(&l, event, LOG_NAME_MAX);
  line_ctx(&l, "request_id", ctx_request_id);
  line_ctx(&l, "org_id", ctx_org_id);
  for (unsigned i = 0; i < nfields; i++) line_member(&l, &fields[i], per_value_max);

  l.limit = LOG_LINE_MAX;
  if (l.truncated) (void)line_lit(&l, truncated_tail);
  (void)line_lit(&l, "}\n");
  *truncated = l.truncated;
  return l.len;
}

static void write_all(int fd, const char *p, size_t n) {
  pthread_mutex_lock(&log_write_lock);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      break; /* nowhere to report a failing log fd */
    }
    p += w;
    n -= (size_t)w;
  }
  pthread_mutex_unlock(&log_write_lock);
}

/* Escaped length of s, counted only up to a little past cap. */
static size_t escaped_len(const char *s, size_t cap) {
  const unsigned char *u = (const unsigned char *)s;
  size_t n = strlen(s), pos = 0, total = 0;
  while (pos < n && total <= cap) {
    char unit[8];
    size_t used;
    total += escape_unit(u + pos, n - pos, unit, &used);
    pos += used;
  }
  return total;
}

/*
 * The largest per-value cap such that the string values, each cut to the cap
 * (or whole when shorter), fit in budget bytes: short values keep all their
 * bytes, long values share what is left equally.
 */
static size_t fair_value_cap(const struct log_field *fields, unsigned nfields, size_t budget) {
  size_t level = 0;
  for (;;) {
    size_t used = 0, over = 0, step;
    for (unsigned i = 0; i < nfields; i++) {
      if (fields[i].type != LF_STR || fields[i].v.s == NULL || fields[i].key == NULL) continue;
      size_t e = escaped_len(fields[i].v.s, LOG_LINE_MAX);
      if (e <= level) {
        used += e;
      } else {
        used += level;
        over++;
      }
    }
    if (over == 0 || used >= budget) return level;
    /* Raising every long value by step keeps used within budget. */
    step = (budget - used) / over;
    if (step == 0) return level;
    level += step;
  }
}

static void emit_line(enum log_level lvl, const char *event, const struct log_field *fields,
                      unsigned nfields) {
  char buf[LOG_LINE_MAX];
  char ts[RFC3339_MAX];
  bool truncated;
  size_t len;
  int saved_errno = errno;

  if (lvl < LOG_DEBUG || lvl > LOG_ERROR) lvl = LOG_ERROR;
  if (fields == NULL) nfields = 0;
  time_format_rfc3339(time_now_us(), ts);

  len = line_build(buf, lvl, ts, event, fields, nfields, SIZE_MAX, &truncated);
  if (truncated) {
    /* Too long: measure the line with every string value empty, then share
     * the space left between the string values, so one huge value does not
     * push the later members out of the line. */
    size_t bare = line_build(buf, lvl, ts, event, fields, nfields, 0, &truncated);
    size_t body = bare - (truncated ? LOG_TAIL_RESERVE : 2); /* without the tail */
    size_t room = LOG_LINE_MAX - LOG_TAIL_RESERVE;
    size_t cap = body < room ? fair_value_cap(fields, nfields, room - body) : 0;
    len = line_build(buf, lvl, ts, event, fields, nfields, cap, &truncated);
  }
  write_all(atomic_load(&log_fd_cur), buf, len);
  errno = saved_errno;
}

void log_emit(enum log_level lvl, const char *event, const struct log_field *fields,
              unsigned nfields) {
  if (!log_enabled(lvl)) return;
  emit_line(lvl, event, fields, nfields);
}

_Noreturn void keel_panic(const char *file, int line, const char *what) {
  const struct log_field fields[] = {LS("file", file), LI("line", line), LS("what", what)};
  /* Bypasses the level: a panic is always worth a line. */
  emit_line(LOG_ERROR, "panic", fields, 3);
  abort();
}
