/*
 * telemetry.c — the query routes over ingested telemetry (R-QRY-1, R-QRY-2):
 *
 *   GET /v1/sessions               sessions, newest first, filtered, paged
 *   GET /v1/sessions/{id}          one session and its events in chain order, paged
 *   GET /v1/sessions/{id}/verify   the session's hash chain recomputed
 *   GET /v1/events                 events, newest first, filtered, paged
 *   GET /v1/events/{id}            one event
 *
 * All take an API key with the read scope or a session with telemetry.read
 * (viewer and above); the middleware sets ctx->scope (for a session: the org
 * of X-Keel-Org, else the active one). A foreign or unknown id is 404.
 *
 * Query parameters are checked before anything is read: a bad value is 400
 * validation_failed naming the parameter; parameters keel does not know are
 * ignored. Cursors are base64url of the last row's sort key: a kind byte,
 * the time (or seq) as 8 big-endian bytes, then the row's id. They carry no
 * secret and need none: every read is scoped by the org, so a made-up cursor
 * can only move within the caller's own rows.
 *
 * Documents are written straight into the response body rather than built
 * as jansson trees: an event's data, metadata and tags are stored as
 * canonical JSON (docs/hash-chain.md) and are copied out as they are, once
 * checked to parse, so a client receives the very text the chain covers
 * (jansson would print 0.1 as 0.10000000000000001). Shapes: docs/query.md
 * and docs/openapi/60-telemetry.json.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "domain/events.h"
#include "domain/pricing.h"
#include "store/telemetry.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Cursor kinds: one list each, so a cursor of one list is refused by the
 * others. */
#define CURSOR_SESSIONS 's'
#define CURSOR_EVENTS   'e'
#define CURSOR_SESSION  'd' /* a session's events, by seq */
#define CURSOR_RAW_MAX  (1 + 8 + TELEMETRY_KEY_ID_MAX)

/* --- ids ------------------------------------------------------------------- */

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/*
 * The {id} path parameter, percent-decoded (a client may send ':' as %3A),
 * or NULL after answering 404 when it cannot be an id of at most max bytes:
 * such an id exists nowhere.
 */
static const char *path_id(struct ctx *ctx, size_t max, const char *what) {
  const char *raw = ctx_param(ctx, "id");
  size_t n = raw ? strlen(raw) : 0;
  char *id = arena_alloc(ctx->arena, n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (raw[i] == '%' && i + 2 < n && (hi = hex_digit(raw[i + 1])) >= 0 &&
        (lo = hex_digit(raw[i + 2])) >= 0) {
      id[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      id[o++] = raw[i];
    }
  }
  id[o] = '\0';
  if (!events_id_valid(id, o, max)) {
    api_problemf(ctx, "not_found", "no such %s", what);
    return NULL;
  }
  return id;
}

/* --- query parameters ------------------------------------------------------ */

/* ?limit=: 1..LIMIT_PAGE_MAX, default LIMIT_PAGE_DEFAULT. */
static void query_limit(struct ctx *ctx, struct field_errors *fe, int64_t *limit) {
  *limit = LIMIT_PAGE_DEFAULT;
  const char *s = http_req_query(ctx->req, "limit");
  if (!s) return;
  if (slice_to_i64(slice_from_cstr(s), limit) != 0) {
    field_errors_add(fe, "limit", "invalid_format", "limit must be an integer from 1 to 200");
  } else if (*limit < 1 || *limit > LIMIT_PAGE_MAX) {
    field_errors_add(fe, "limit", "out_of_range", "limit must be an integer from 1 to 200");
  }
}

/*
 * ?cursor= of the given kind: its time (or seq) into *key and, when id is
 * not NULL, its id (1..id_max id characters) into id[]. Returns true when
 * one was sent and read.
 */
static bool query_cursor(struct ctx *ctx, struct field_errors *fe, char kind, int64_t *key,
                         char *id, size_t id_max) {
  const char *s = http_req_query(ctx->req, "cursor");
  if (!s || !s[0]) return false; /* "?cursor=" is the first page, as in other lists */
  uint8_t raw[CURSOR_RAW_MAX + 3];
  size_t len = strlen(s);
  long n = len > 0 && len <= LIMIT_CURSOR_MAX ? crypto_unb64url(s, len, raw, sizeof(raw)) : -1;
  size_t id_len = n >= 9 ? (size_t)n - 9 : 0;
  bool ok = n >= 9 && raw[0] == (uint8_t)kind &&
            (id ? events_id_valid((const char *)raw + 9, id_len, id_max) : id_len == 0);
  if (!ok) {
    field_errors_add(fe, "cursor", "invalid_format",
                     "cursor is not one this list returned; start again without it");
    return false;
  }
  uint64_t v = 0;
  for (int i = 1; i <= 8; i++) v = v << 8 | raw[i];
  *key = (int64_t)v;
  if (id) {
    memcpy(id, raw + 9, id_len);
    id[id_len] = '\0';
  }
  return true;
}

static const char *cursor_text(struct ctx *ctx, char kind, int64_t key, const char *id) {
  uint8_t raw[CURSOR_RAW_MAX];
  size_t id_len = id ? strlen(id) : 0;
  if (id_len > TELEMETRY_KEY_ID_MAX) id_len = TELEMETRY_KEY_ID_MAX;
  raw[0] = (uint8_t)kind;
  for (int i = 8; i >= 1; i--) {
    raw[i] = (uint8_t)((uint64_t)key & 0xff);
    key = (int64_t)((uint64_t)key >> 8);
  }
  if (id_len) memcpy(raw + 9, id, id_len);
  size_t size = (9 + id_len + 2) / 3 * 4 + 1;
  char *out = arena_alloc(ctx->arena, size);
  crypto_b64url(raw, 9 + id_len, out, size);
  return out;
}

/* ?<name>= as an RFC 3339 time. */
static void query_time(struct ctx *ctx, struct field_errors *fe, const char *name,
                       const char *message, bool *has, int64_t *us) {
  const char *s = http_req_query(ctx->req, name);
  *has = false;
  if (!s) return;
  if (time_parse_rfc3339(slice_from_cstr(s), us) != 0) {
    field_errors_add(fe, name, "invalid_format", message);
    return;
  }
  *has = true;
}

static void query_range(struct ctx *ctx, struct field_errors *fe, bool *has_from, int64_t *from,
                        bool *has_to, int64_t *to) {
  query_time(ctx, fe, "from", "from must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z", has_from,
             from);
  query_time(ctx, fe, "to", "to must be an RFC 3339 time, e.g. 2026-03-02T00:00:00Z", has_to, to);
  if (*has_from && *has_to && *from > *to) {
    field_errors_add(fe, "from", "out_of_range", "from is after to");
  }
}

/* ?<name>= as one of names[0..n): the value (a static string) or NULL. */
static const char *query_enum(struct ctx *ctx, struct field_errors *fe, const char *name,
                              const char *const *names, size_t n, const char *message) {
  const char *s = http_req_query(ctx->req, name);
  if (!s) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (names[i] && strcmp(names[i], s) == 0) return names[i];
  }
  field_errors_add(fe, name, "not_allowed", message);
  return NULL;
}

/* ?<name>= as an id of 1..max id characters. */
static const char *query_id(struct ctx *ctx, struct field_errors *fe, const char *name, size_t max,
                            const char *message) {
  const char *s = http_req_query(ctx->req, name);
  if (!s) return NULL;
  if (!events_id_valid(s, strlen(s), max)) {
    field_errors_add(fe, name, "invalid_format", message);
    return NULL;
  }
  return s;
}

/* --- documents --------------------------------------------------------------- */

/* Writers append to b and return 0, or -1 when it is full. */

static int put_str(struct buf *b, const char *s) {
  return buf_putc(b, '"') | buf_append_json_escaped(b, s, strlen(s)) | buf_putc(b, '"');
}

/* ,"name": (the hot path of a page: no printf). */
static int put_member(struct buf *b, const char *name) {
  return buf_append(b, ",\"", 2) | buf_append_cstr(b, name) | buf_append(b, "\":", 2);
}

static int put_i64(struct buf *b, const char *name, int64_t v) {
  return buf_printf(b, ",\"%s\":%lld", name, (long long)v);
}

/* RFC 3339 UTC with six fraction digits, as the canonical form writes an
 * event's timestamp: "2026-03-01T12:00:00.000000Z". */
static int put_time(struct buf *b, int64_t us) {
  char text[RFC3339_MAX];
  size_t n = time_format_rfc3339(us, text);
  int rc = buf_putc(b, '"');
  if (n > 0 && text[n - 1] == 'Z' && !memchr(text, '.', n)) {
    rc |= buf_append(b, text, n - 1) | buf_append_cstr(b, ".000000Z");
  } else {
    rc |= buf_append(b, text, n);
  }
  return rc | buf_putc(b, '"');
}

static int put_hex(struct buf *b, const uint8_t hash[EVENT_HASH_LEN]) {
  char hex[2 * EVENT_HASH_LEN + 3];
  hex[0] = '"';
  crypto_hex(hash, EVENT_HASH_LEN, hex + 1);
  hex[2 * EVENT_HASH_LEN + 1] = '"';
  return buf_append(b, hex, 2 * EVENT_HASH_LEN + 2);
}

/* Money: a decimal string of USD with nine decimals ("0.004500000"), exact
 * to the nano-dollar keel counts in. */
static int put_usd(struct buf *b, int64_t nano) {
  char usd[PRICING_USD_MAX];
  size_t n = pricing_format_usd(nano, usd);
  return buf_printf(b, "\"%.*s\"", (int)n, usd);
}

static int put_cost_flags(struct buf *b, unsigned flags) {
  int rc = buf_putc(b, '[');
  bool first = true;
  for (unsigned i = 0; i < PRICING_FLAG_COUNT; i++) {
    const char *name = pricing_flag_name(1u << i);
    if (!(flags & (1u << i)) || !name) continue;
    rc |= (first ? 0 : buf_putc(b, ',')) | put_str(b, name);
    first = false;
  }
  return rc | buf_putc(b, ']');
}

/*
 * A stored canonical JSON value, copied as it is. It is parsed first so that
 * a damaged row (changed by hand: the verifier's business) cannot break the
 * document around it: a value that does not parse as the expected type is
 * written as null.
 */
static int put_stored_json(struct buf *b, struct slice v, bool array) {
  json_t *parsed = json_loadb(v.p, v.len, 0, NULL);
  bool ok = array ? json_is_array(parsed) : json_is_object(parsed);
  json_decref(parsed);
  if (!ok) {
    log_warn("telemetry.damaged_json", LI("bytes", (int64_t)v.len));
    return buf_append_cstr(b, "null");
  }
  return buf_append(b, v.p, v.len);
}

static int put_event(struct buf *b, const struct telemetry_event *e) {
  int rc = buf_append_cstr(b, "{\"id\":") | put_str(b, e->id);
  rc |= put_member(b, "session_id") | put_str(b, e->session_id);
  rc |= put_member(b, "agent_id") | put_str(b, e->agent_id);
  rc |= put_member(b, "type") | put_str(b, e->type);
  rc |= put_member(b, "timestamp") | put_time(b, e->ts_us);
  rc |= put_member(b, "received_at") | put_time(b, e->received_us);
  rc |= put_member(b, "severity") | put_str(b, e->severity);
  rc |= put_member(b, "data") | put_stored_json(b, e->data, false);
  rc |= put_member(b, "metadata") | put_stored_json(b, e->metadata, false);
  rc |= put_member(b, "tags") | put_stored_json(b, e->tags, true);
  rc |= put_member(b, "cost_usd") | put_usd(b, e->cost_nano);
  rc |= put_member(b, "cost_flags") | put_cost_flags(b, e->cost_flags);
  rc |= put_member(b, "api_key_id") |
        (e->api_key_id[0] ? put_str(b, e->api_key_id) : buf_append_cstr(b, "null"));
  rc |= put_i64(b, "seq", e->seq);
  rc |= put_member(b, "hash") | put_hex(b, e->hash);
  rc |= put_member(b, "prev_hash") | put_hex(b, e->prev_hash);
  return rc | buf_putc(b, '}');
}

static int put_session(struct buf *b, const struct telemetry_session *s) {
  int rc = buf_append_cstr(b, "{\"id\":") | put_str(b, s->id);
  rc |= put_member(b, "agent_id") | put_str(b, s->agent_id);
  rc |= put_member(b, "started_at") | put_time(b, s->started_us);
  rc |= put_member(b, "ended_at") |
        (s->ended ? put_time(b, s->ended_us) : buf_append_cstr(b, "null"));
  rc |= put_member(b, "status") | put_str(b, s->status);
  rc |= buf_printf(b,
                   ",\"counts\":{\"events\":%lld,\"tool_calls\":%lld,\"errors\":%lld,"
                   "\"llm_calls\":%lld}",
                   (long long)s->event_count, (long long)s->tool_count, (long long)s->error_count,
                   (long long)s->llm_count);
  rc |= buf_printf(b,
                   ",\"tokens\":{\"input\":%lld,\"output\":%lld,\"reasoning\":%lld,"
                   "\"cache_read\":%lld,\"cache_write\":%lld}",
                   (long long)s->input_tokens, (long long)s->output_tokens,
                   (long long)s->reasoning_tokens, (long long)s->cache_read_tokens,
                   (long long)s->cache_write_tokens);
  rc |= put_member(b, "cost_usd") | put_usd(b, s->cost_nano);
  rc |= put_member(b, "tags") | put_stored_json(b, s->tags, true);
  rc |= buf_printf(b, ",\"chain\":{\"seq\":%lld,\"head\":", (long long)s->chain_seq);
  rc |= put_hex(b, s->chain_head) | buf_putc(b, '}');
  rc |= put_member(b, "updated_at") | put_time(b, s->updated_us);
  return rc | buf_putc(b, '}');
}

/* ,"next_cursor":"…" or null. */
static int put_next_cursor(struct buf *b, const char *cursor) {
  int rc = put_member(b, "next_cursor");
  return rc | (cursor ? put_str(b, cursor) : buf_append_cstr(b, "null"));
}

/* --- jobs ---------------------------------------------------------------------- */

/* A read job writing one document into the response body. Element
 * callbacks write a ',' before every element but the first. */
struct doc_job {
  struct ctx *ctx;
  struct buf *out;
  size_t elements;
  int (*run)(struct store_tx *tx, struct doc_job *job);
  /* What the route asked for. */
  const char *id;
  const char *not_found; /* the 404's detail */
  struct telemetry_event_filter ef;
  struct telemetry_session_filter sf;
  struct telemetry_page page;
  struct telemetry_seq_page seq_page;
  struct telemetry_verify verify;
};

static int element_sep(struct doc_job *j) {
  return j->elements++ ? buf_putc(j->out, ',') : 0;
}

static int event_element(const struct telemetry_event *e, void *arg) {
  struct doc_job *j = arg;
  return element_sep(j) | put_event(j->out, e) ? KEEL_ETOOBIG : 0;
}

static int session_element(const struct telemetry_session *s, void *arg) {
  struct doc_job *j = arg;
  return element_sep(j) | put_session(j->out, s) ? KEEL_ETOOBIG : 0;
}

static int doc_tx(struct store_tx *tx, void *arg) {
  struct doc_job *j = arg;
  buf_reset(j->out);
  j->elements = 0;
  return j->run(tx, j);
}

/* Runs the job and answers 200 with the document it wrote, or the error. */
static int run_doc(struct ctx *ctx, struct doc_job *j) {
  j->ctx = ctx;
  j->out = &ctx->req->resp_body;
  int rc = store_read(api_store(ctx->api), doc_tx, j);
  if (rc) {
    buf_reset(j->out);
    if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", j->not_found);
    /* A document past the response limit is keel's failure, not a 413. */
    return api_status(ctx, rc == KEEL_ETOOBIG ? KEEL_EINTERNAL : rc);
  }
  ctx->req->status = 200;
  ctx->req->content_type = "application/json";
  return 0;
}

static const char *list_cursor(struct ctx *ctx, char kind, const struct telemetry_page *p) {
  return p->more ? cursor_text(ctx, kind, p->next.us, p->next.id) : NULL;
}

/* --- GET /v1/sessions ------------------------------------------------------------ */

static const char *const session_statuses[] = {"active", "completed", "error"};

static int sessions_list_run(struct store_tx *tx, struct doc_job *j) {
  int rc = buf_append_cstr(j->out, "{\"data\":[") ? KEEL_ETOOBIG : 0;
  if (rc == 0) {
    rc = store_telemetry_sessions_list(tx, &j->ctx->scope, &j->sf, &j->page, session_element, j);
  }
  if (rc) return rc;
  return buf_putc(j->out, ']') |
                 put_next_cursor(j->out, list_cursor(j->ctx, CURSOR_SESSIONS, &j->page)) |
                 buf_putc(j->out, '}')
             ? KEEL_ETOOBIG
             : 0;
}

static int h_sessions_list(struct ctx *ctx) {
  struct doc_job *j = arena_alloc(ctx->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  struct field_errors fe = {0};
  j->sf.agent_id = query_id(ctx, &fe, "agent_id", LIMIT_EVENT_AGENT_ID_MAX,
                            "agent_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
  j->sf.status = query_enum(ctx, &fe, "status", session_statuses, COUNT_OF(session_statuses),
                            "status must be active, completed or error");
  const char *tag = http_req_query(ctx->req, "tag");
  if (tag) {
    size_t n = strlen(tag);
    json_t *probe = n ? json_string(tag) : NULL; /* NULL: not UTF-8 */
    if (n == 0 || n > LIMIT_EVENT_TAG_MAX || !probe) {
      field_errors_add(&fe, "tag", n > LIMIT_EVENT_TAG_MAX ? "too_long" : "invalid_format",
                       "tag must be 1 to 64 bytes of UTF-8");
    } else {
      j->sf.tag = tag;
    }
    json_decref(probe);
  }
  query_range(ctx, &fe, &j->sf.has_from, &j->sf.from_us, &j->sf.has_to, &j->sf.to_us);
  query_limit(ctx, &fe, &j->page.limit);
  j->page.has_after = query_cursor(ctx, &fe, CURSOR_SESSIONS, &j->page.after.us, j->page.after.id,
                                   LIMIT_EVENT_SESSION_ID_MAX);
  if (fe.count) return api_validation(ctx, &fe);
  j->run = sessions_list_run;
  return run_doc(ctx, j);
}

/* --- GET /v1/sessions/{id} ------------------------------------------------------- */

static int session_header(const struct telemetry_session *s, void *arg) {
  struct doc_job *j = arg;
  return buf_append_cstr(j->out, "{\"session\":") | put_session(j->out, s) ? KEEL_ETOOBIG : 0;
}

static int session_detail_run(struct store_tx *tx, struct doc_job *j) {
  int rc = store_telemetry_session_get(tx, &j->ctx->scope, j->id, session_header, j);
  if (rc) return rc;
  if (buf_append_cstr(j->out, ",\"events\":[")) return KEEL_ETOOBIG;
  rc = store_telemetry_session_events(tx, &j->ctx->scope, j->id, &j->seq_page, event_element, j);
  if (rc) return rc;
  const char *next =
      j->seq_page.more ? cursor_text(j->ctx, CURSOR_SESSION, j->seq_page.next_seq, NULL) : NULL;
  return buf_putc(j->out, ']') | put_next_cursor(j->out, next) | buf_putc(j->out, '}')
             ? KEEL_ETOOBIG
             : 0;
}

static int h_session_get(struct ctx *ctx) {
  struct doc_job *j = arena_alloc(ctx->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  j->id = path_id(ctx, LIMIT_EVENT_SESSION_ID_MAX, "session");
  if (!j->id) return 0;
  j->not_found = "no such session";
  struct field_errors fe = {0};
  query_limit(ctx, &fe, &j->seq_page.limit);
  int64_t after = 0;
  if (query_cursor(ctx, &fe, CURSOR_SESSION, &after, NULL, 0)) {
    if (after < 1) {
      field_errors_add(&fe, "cursor", "invalid_format",
                       "cursor is not one this list returned; start again without it");
    }
    j->seq_page.after_seq = after;
  }
  if (fe.count) return api_validation(ctx, &fe);
  j->run = session_detail_run;
  return run_doc(ctx, j);
}

/* --- GET /v1/sessions/{id}/verify ------------------------------------------------ */

static int verify_run(struct store_tx *tx, struct doc_job *j) {
  const struct telemetry_verify *v = &j->verify;
  int rc = store_telemetry_session_verify(tx, &j->ctx->scope, j->id, &j->verify);
  if (rc) return rc;
  struct buf *b = j->out;
  rc = buf_append_cstr(b, "{\"session_id\":") | put_str(b, j->id);
  rc |= buf_printf(b, ",\"valid\":%s", v->valid ? "true" : "false");
  rc |= put_i64(b, "events", v->events);
  rc |= put_member(b, "failed_at_index");
  rc |=
      v->valid ? buf_append_cstr(b, "null") : buf_printf(b, "%lld", (long long)v->failed_at_index);
  rc |= put_member(b, "reason") | (v->reason ? put_str(b, v->reason) : buf_append_cstr(b, "null"));
  rc |= put_i64(b, "chain_seq", v->chain_seq);
  rc |= put_member(b, "head") | put_hex(b, v->chain_head);
  return rc | buf_putc(b, '}') ? KEEL_ETOOBIG : 0;
}

static int h_session_verify(struct ctx *ctx) {
  struct doc_job *j = arena_alloc(ctx->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  j->id = path_id(ctx, LIMIT_EVENT_SESSION_ID_MAX, "session");
  if (!j->id) return 0;
  j->not_found = "no such session";
  j->run = verify_run;
  return run_doc(ctx, j);
}

/* --- GET /v1/events ---------------------------------------------------------------- */

static int events_list_run(struct store_tx *tx, struct doc_job *j) {
  int rc = buf_append_cstr(j->out, "{\"data\":[") ? KEEL_ETOOBIG : 0;
  if (rc == 0) {
    rc = store_telemetry_events_list(tx, &j->ctx->scope, &j->ef, &j->page, event_element, j);
  }
  if (rc) return rc;
  return buf_putc(j->out, ']') |
                 put_next_cursor(j->out, list_cursor(j->ctx, CURSOR_EVENTS, &j->page)) |
                 buf_putc(j->out, '}')
             ? KEEL_ETOOBIG
             : 0;
}

static int h_events_list(struct ctx *ctx) {
  struct doc_job *j = arena_alloc(ctx->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  struct field_errors fe = {0};
  const char *types[EVENT_TYPE_COUNT];
  for (int i = 0; i < EVENT_TYPE_COUNT; i++) types[i] = event_type_name((enum event_type)i);
  const char *severities[EVENT_SEVERITY_COUNT];
  for (int i = 0; i < EVENT_SEVERITY_COUNT; i++) {
    severities[i] = event_severity_name((enum event_severity)i);
  }
  j->ef.type = query_enum(ctx, &fe, "type", types, COUNT_OF(types),
                          "type must be an event type such as llm_call (docs/events.md)");
  j->ef.severity = query_enum(ctx, &fe, "severity", severities, COUNT_OF(severities),
                              "severity must be debug, info, warn, error or critical");
  j->ef.session_id = query_id(ctx, &fe, "session_id", LIMIT_EVENT_SESSION_ID_MAX,
                              "session_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
  j->ef.agent_id = query_id(ctx, &fe, "agent_id", LIMIT_EVENT_AGENT_ID_MAX,
                            "agent_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -");
  query_range(ctx, &fe, &j->ef.has_from, &j->ef.from_us, &j->ef.has_to, &j->ef.to_us);
  query_limit(ctx, &fe, &j->page.limit);
  j->page.has_after = query_cursor(ctx, &fe, CURSOR_EVENTS, &j->page.after.us, j->page.after.id,
                                   LIMIT_EVENT_ID_MAX);
  if (fe.count) return api_validation(ctx, &fe);
  j->run = events_list_run;
  return run_doc(ctx, j);
}

/* --- GET /v1/events/{id} ----------------------------------------------------------- */

static int event_get_run(struct store_tx *tx, struct doc_job *j) {
  return store_telemetry_event_get(tx, &j->ctx->scope, j->id, event_element, j);
}

static int h_event_get(struct ctx *ctx) {
  struct doc_job *j = arena_alloc(ctx->arena, sizeof(*j));
  memset(j, 0, sizeof(*j));
  j->id = path_id(ctx, LIMIT_EVENT_ID_MAX, "event");
  if (!j->id) return 0;
  j->not_found = "no such event";
  j->run = event_get_run;
  return run_doc(ctx, j);
}

/* --- routes ------------------------------------------------------------------------ */

/* Every route: a key with the read scope, or a session with telemetry.read. */
static const struct route telemetry_routes[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/sessions",
     .handler = h_sessions_list,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/sessions/{id}",
     .handler = h_session_get,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/sessions/{id}/verify",
     .handler = h_session_verify,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/events",
     .handler = h_events_list,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/events/{id}",
     .handler = h_event_get,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_READ,
     .scope = SCOPE_READ},
};

const struct route *routes_telemetry(size_t *count) {
  *count = COUNT_OF(telemetry_routes);
  return telemetry_routes;
}
