/*
 * store/telemetry.c — the query side of ingested telemetry
 * (store/telemetry.h).
 *
 * Newest-first lists use keyset pagination: the position is the last row's
 * (time, id), and the next page is the rows strictly below it in that order,
 * written as the row-value comparison (time, id) < ($t, $id), which SQLite
 * and PostgreSQL both turn into an index range. One upper bound serves both
 * the cursor and ?to=: it is whichever of the two comes first in the walk.
 *
 * Filters the walked index does not hold are evaluated by the query as a 0/1
 * column rather than in WHERE, so that this code sees every row the index
 * yields and can stop after TELEMETRY_SCAN_MAX of them (store/telemetry.h).
 * Events are walked as keys only (time, id, match) and the matching ones are
 * then read by primary key: rows that do not match never have their data
 * read.
 */
#include "store/telemetry.h"

#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/errors.h"
#include "store/db.h"

/* Bounds that stand for "none": every stored time lies inside them (years
 * 0001..9999: 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z in µs). Not
 * INT64_MIN/MAX: PostgreSQL turns them into timestamptz (@ts), whose range
 * they overflow. */
#define TIME_MIN INT64_C(-62135596800000000)
#define TIME_MAX INT64_C(253402300800000000)

/* --- positions ------------------------------------------------------------ */

/*
 * The exclusive upper bound of a newest-first walk: the cursor, or ?to=
 * (ts < to is (ts, id) < (to, "")), whichever is lower.
 */
static void upper_bound(const struct telemetry_page *page, bool has_to, int64_t to_us, int64_t *us,
                        const char **id) {
  *us = has_to ? to_us : TIME_MAX;
  *id = "";
  if (page->has_after && (!has_to || page->after.us < to_us)) {
    *us = page->after.us;
    *id = page->after.id;
  }
}

static void key_set(struct telemetry_key *k, int64_t us, struct db_stmt *st, int col) {
  k->us = us;
  db_col_copy(st, col, k->id, sizeof(k->id));
}

/* --- events --------------------------------------------------------------- */

/*
 * The walks, one per index. Parameters: $1 org, $2 from (µs, inclusive),
 * $3/$4 the upper bound (µs, id), $5 rows to examine, $6..$9 severity, type,
 * agent, session (NULL: any). Columns: time, id, match.
 */
#define EVENT_MATCH                                       \
  "CASE WHEN (CAST($6 AS text) IS NULL OR severity = $6)" \
  " AND (CAST($7 AS text) IS NULL OR type = $7)"          \
  " AND (CAST($8 AS text) IS NULL OR agent_id = $8)"      \
  " AND (CAST($9 AS text) IS NULL OR session_id = $9) THEN 1 ELSE 0 END"

static const char events_walk_all_sql[] =
    "SELECT @us(ts), id, " EVENT_MATCH
    " FROM events"
    " WHERE org_id = $1 AND ts >= @ts($2) AND (ts, id) < (@ts($3), $4)"
    " ORDER BY ts DESC, id DESC LIMIT $5";

static const char events_walk_type_sql[] =
    "SELECT @us(ts), id, " EVENT_MATCH
    " FROM events"
    " WHERE org_id = $1 AND type = $7 AND ts >= @ts($2) AND (ts, id) < (@ts($3), $4)"
    " ORDER BY ts DESC, id DESC LIMIT $5";

static const char events_walk_agent_sql[] =
    "SELECT @us(ts), id, " EVENT_MATCH
    " FROM events"
    " WHERE org_id = $1 AND agent_id = $8 AND ts >= @ts($2) AND (ts, id) < (@ts($3), $4)"
    " ORDER BY ts DESC, id DESC LIMIT $5";

/*
 * A session's events are found by events_session_seq, then sorted: a sort
 * bounded by the session. Without statistics SQLite would rather walk
 * events_ts (to skip the sort) and test session_id on every event of the
 * org, or seek the primary key; "seq > 0" and the "+ 0" on ts (which no
 * index can serve) make the session's index the only cheap path.
 */
static const char events_walk_session_sql[] =
    "SELECT @us(ts), id, " EVENT_MATCH
    " FROM events"
    " WHERE org_id = $1 AND session_id = $9 AND seq > 0 AND @us(ts) + 0 >= $2"
    " AND (@us(ts) + 0, id) < ($3, $4)"
    " ORDER BY @us(ts) + 0 DESC, id DESC LIMIT $5";

#define EVENT_COLUMNS                                                                          \
  "id, session_id, agent_id, type, @us(ts), @us(received_at), severity, data, metadata, tags," \
  " api_key_id, cost_nano, cost_flags, seq, hash"

static const char event_get_sql[] =
    "SELECT " EVENT_COLUMNS " FROM events WHERE org_id = $1 AND id = $2";

static const char event_hash_at_sql[] =
    "SELECT hash FROM events WHERE org_id = $1 AND session_id = $2 AND seq = $3";

static const char session_events_sql[] =
    "SELECT " EVENT_COLUMNS
    " FROM events WHERE org_id = $1 AND session_id = $2 AND seq > $3"
    " ORDER BY seq LIMIT $4";

static struct slice col_slice(struct db_stmt *st, int col) {
  const char *p = db_col_text(st, col);
  return p ? slice_make(p, db_col_len(st, col)) : slice_make("", 0);
}

static const char *col_str(struct db_stmt *st, int col) {
  const char *p = db_col_text(st, col);
  return p ? p : "";
}

static void col_hash(struct db_stmt *st, int col, uint8_t out[EVENT_HASH_LEN]) {
  if (db_col_len(st, col) == EVENT_HASH_LEN) {
    memcpy(out, db_col_blob(st, col), EVENT_HASH_LEN);
  } else {
    memset(out, 0, EVENT_HASH_LEN); /* a damaged row: the verifier says so */
  }
}

/* Fills e from a row of EVENT_COLUMNS (prev_hash zeroed). Returns false when
 * the row's hash is not 32 bytes. */
static bool event_from_row(struct db_stmt *st, struct telemetry_event *e) {
  memset(e, 0, sizeof(*e));
  e->id = col_str(st, 0);
  e->session_id = col_str(st, 1);
  e->agent_id = col_str(st, 2);
  e->type = col_str(st, 3);
  e->ts_us = db_col_i64(st, 4);
  e->received_us = db_col_i64(st, 5);
  e->severity = col_str(st, 6);
  e->data = col_slice(st, 7);
  e->metadata = col_slice(st, 8);
  e->tags = col_slice(st, 9);
  db_col_uuid(st, 10, e->api_key_id);
  e->cost_nano = db_col_i64(st, 11);
  e->cost_flags = (unsigned)db_col_i64(st, 12);
  e->seq = db_col_i64(st, 13);
  col_hash(st, 14, e->hash);
  return db_col_len(st, 14) == EVENT_HASH_LEN;
}

/* The hash of the session's event at seq (zeros before the first, or when
 * that event is missing: the verifier reports the gap). */
static int hash_at(struct store_tx *tx, const struct org_scope *scope, const char *session_id,
                   int64_t seq, uint8_t out[EVENT_HASH_LEN]) {
  memset(out, 0, EVENT_HASH_LEN);
  if (seq < 1) return 0;
  struct db_stmt *st = db_prepare(tx, event_hash_at_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, session_id);
  db_bind_i64(st, 3, seq);
  int rc = db_step(st);
  if (rc == DB_ROW) col_hash(st, 0, out);
  db_reset(st);
  return rc < 0 ? rc : 0;
}

/* Reads one event by id and calls fn with it. KEEL_ENOTFOUND when absent. */
static int event_emit(struct store_tx *tx, const struct org_scope *scope, const char *id,
                      telemetry_event_fn fn, void *arg) {
  struct db_stmt *st = db_prepare(tx, event_get_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  int rc = db_step(st);
  if (rc != DB_ROW) {
    db_reset(st);
    return rc < 0 ? rc : KEEL_ENOTFOUND;
  }
  struct telemetry_event e;
  event_from_row(st, &e);
  rc = hash_at(tx, scope, e.session_id, e.seq - 1, e.prev_hash);
  if (rc == 0) rc = fn(&e, arg);
  db_reset(st);
  return rc;
}

int store_telemetry_event_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                              telemetry_event_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  return event_emit(tx, scope, id, fn, arg);
}

static const char *events_walk_for(const struct telemetry_event_filter *f) {
  if (f->session_id) return events_walk_session_sql;
  if (f->type) return events_walk_type_sql;
  if (f->agent_id) return events_walk_agent_sql;
  return events_walk_all_sql;
}

int store_telemetry_events_list(struct store_tx *tx, const struct org_scope *scope,
                                const struct telemetry_event_filter *f, struct telemetry_page *page,
                                telemetry_event_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  page->rows = 0;
  page->more = false;
  int64_t upper_us;
  const char *upper_id;
  upper_bound(page, f->has_to, f->to_us, &upper_us, &upper_id);
  struct db_stmt *walk = db_prepare(tx, events_walk_for(f));
  if (!walk) return KEEL_ESTORE;
  db_bind_uuid(walk, 1, scope->org_id);
  db_bind_i64(walk, 2, f->has_from ? f->from_us : TIME_MIN);
  db_bind_i64(walk, 3, upper_us);
  db_bind_text(walk, 4, upper_id);
  db_bind_i64(walk, 5, TELEMETRY_SCAN_MAX + 1); /* one more: is there anything left? */
  db_bind_text(walk, 6, f->severity);
  db_bind_text(walk, 7, f->type);
  db_bind_text(walk, 8, f->agent_id);
  db_bind_text(walk, 9, f->session_id);

  struct telemetry_key examined = {0};
  int64_t seen = 0;
  int rc = 0, step;
  while ((step = db_step(walk)) == DB_ROW) {
    if (++seen > TELEMETRY_SCAN_MAX) {
      page->more = true; /* the budget is spent: continue after the last row examined */
      page->next = examined;
      break;
    }
    key_set(&examined, db_col_i64(walk, 0), walk, 1);
    if (db_col_i64(walk, 2) == 0) continue;
    if ((int64_t)page->rows == page->limit) {
      page->more = true; /* a match past the page: next is the last row given */
      break;
    }
    rc = event_emit(tx, scope, examined.id, fn, arg);
    if (rc) break;
    page->rows++;
    page->next = examined;
  }
  db_reset(walk);
  return rc ? rc : step < 0 ? step : 0;
}

int store_telemetry_session_events(struct store_tx *tx, const struct org_scope *scope,
                                   const char *session_id, struct telemetry_seq_page *page,
                                   telemetry_event_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  page->rows = 0;
  page->more = false;
  page->next_seq = page->after_seq;
  /* Each event's prev_hash is the hash of the row before it; the page's
   * first row looks its predecessor up. */
  uint8_t prev[EVENT_HASH_LEN];
  int rc = hash_at(tx, scope, session_id, page->after_seq, prev);
  if (rc) return rc;
  struct db_stmt *st = db_prepare(tx, session_events_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, session_id);
  db_bind_i64(st, 3, page->after_seq);
  db_bind_i64(st, 4, page->limit < INT64_MAX ? page->limit + 1 : INT64_MAX);
  int step;
  while ((step = db_step(st)) == DB_ROW) {
    if ((int64_t)page->rows == page->limit) {
      page->more = true;
      break;
    }
    struct telemetry_event e;
    event_from_row(st, &e);
    memcpy(e.prev_hash, prev, EVENT_HASH_LEN);
    rc = fn(&e, arg);
    if (rc) break;
    memcpy(prev, e.hash, EVENT_HASH_LEN);
    page->rows++;
    page->next_seq = e.seq;
  }
  db_reset(st);
  return rc ? rc : step < 0 ? step : 0;
}

/* --- sessions ------------------------------------------------------------- */

#define SESSION_COLUMNS                                                                        \
  "id, agent_id, status, @us(started_at), @us(ended_at), event_count, tool_count,"             \
  " error_count, llm_count, input_tokens, output_tokens, reasoning_tokens, cache_read_tokens," \
  " cache_write_tokens, cost_nano, tags, chain_seq, chain_head, @us(updated_at)"

static const char session_get_sql[] =
    "SELECT " SESSION_COLUMNS " FROM sessions WHERE org_id = $1 AND id = $2";

/* Parameters: $1 org, $2 from, $3/$4 the upper bound, $5 rows to examine,
 * $6 agent, $7 status (NULL: any). The tag is tested here, on the row. */
static const char sessions_walk_sql[] =
    "SELECT " SESSION_COLUMNS
    ", CASE WHEN (CAST($6 AS text) IS NULL OR agent_id = $6)"
    " AND (CAST($7 AS text) IS NULL OR status = $7) THEN 1 ELSE 0 END FROM sessions"
    " WHERE org_id = $1 AND started_at >= @ts($2) AND (started_at, id) < (@ts($3), $4)"
    " ORDER BY started_at DESC, id DESC LIMIT $5";

static void session_from_row(struct db_stmt *st, struct telemetry_session *s) {
  memset(s, 0, sizeof(*s));
  s->id = col_str(st, 0);
  s->agent_id = col_str(st, 1);
  s->status = col_str(st, 2);
  s->started_us = db_col_i64(st, 3);
  s->ended = !db_col_is_null(st, 4);
  s->ended_us = s->ended ? db_col_i64(st, 4) : 0;
  s->event_count = db_col_i64(st, 5);
  s->tool_count = db_col_i64(st, 6);
  s->error_count = db_col_i64(st, 7);
  s->llm_count = db_col_i64(st, 8);
  s->input_tokens = db_col_i64(st, 9);
  s->output_tokens = db_col_i64(st, 10);
  s->reasoning_tokens = db_col_i64(st, 11);
  s->cache_read_tokens = db_col_i64(st, 12);
  s->cache_write_tokens = db_col_i64(st, 13);
  s->cost_nano = db_col_i64(st, 14);
  s->tags = col_slice(st, 15);
  s->chain_seq = db_col_i64(st, 16);
  col_hash(st, 17, s->chain_head);
  s->updated_us = db_col_i64(st, 18);
}

int store_telemetry_session_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                                telemetry_session_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, session_get_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  int rc = db_step(st);
  if (rc == DB_ROW) {
    struct telemetry_session s;
    session_from_row(st, &s);
    rc = fn(&s, arg);
  } else if (rc == DB_DONE) {
    rc = KEEL_ENOTFOUND;
  }
  db_reset(st);
  return rc;
}

/*
 * Whether a canonical JSON array of strings (a tags column) holds the
 * string whose canonical encoding, quotes included, is want. The canonical
 * form writes each string one way only, so comparing encodings compares
 * strings; inside a string every '"' is escaped, so an element ends at the
 * first '"' not escaped by a '\'. Text that is not such an array (a row
 * changed by hand) holds nothing, so the whole array is walked.
 */
static bool tags_hold(struct slice tags, struct slice want) {
  const char *p = tags.p, *end = tags.p + tags.len;
  if (p == end || *p++ != '[') return false;
  if (p < end && *p == ']') return false;
  bool found = false;
  while (p < end && *p == '"') {
    const char *start = p++;
    while (p < end && *p != '"') p += *p == '\\' ? 2 : 1;
    if (p >= end) return false;
    p++; /* the closing quote */
    found = found || ((size_t)(p - start) == want.len && memcmp(start, want.p, want.len) == 0);
    if (p < end && *p == ']') return found && p + 1 == end;
    if (p == end || *p++ != ',') return false;
  }
  return false;
}

/* The walk of store_telemetry_sessions_list; want: the tag's canonical
 * encoding, or NULL for any. */
static int sessions_walk(struct store_tx *tx, const struct org_scope *scope,
                         const struct telemetry_session_filter *f, const struct slice *want,
                         struct telemetry_page *page, telemetry_session_fn fn, void *arg) {
  int64_t upper_us;
  const char *upper_id;
  upper_bound(page, f->has_to, f->to_us, &upper_us, &upper_id);
  struct db_stmt *walk = db_prepare(tx, sessions_walk_sql);
  if (!walk) return KEEL_ESTORE;
  db_bind_text(walk, 1, scope->org_id);
  db_bind_i64(walk, 2, f->has_from ? f->from_us : TIME_MIN);
  db_bind_i64(walk, 3, upper_us);
  db_bind_text(walk, 4, upper_id);
  db_bind_i64(walk, 5, TELEMETRY_SCAN_MAX + 1);
  db_bind_text(walk, 6, f->agent_id);
  db_bind_text(walk, 7, f->status);

  struct telemetry_key examined = {0};
  int64_t seen = 0;
  int rc = 0, step;
  while ((step = db_step(walk)) == DB_ROW) {
    if (++seen > TELEMETRY_SCAN_MAX) {
      page->more = true;
      page->next = examined;
      break;
    }
    struct telemetry_session s;
    session_from_row(walk, &s);
    key_set(&examined, s.started_us, walk, 0);
    if (db_col_i64(walk, 19) == 0) continue;
    if (want && !tags_hold(s.tags, *want)) continue;
    if ((int64_t)page->rows == page->limit) {
      page->more = true;
      break;
    }
    rc = fn(&s, arg);
    if (rc) break;
    page->rows++;
    page->next = examined;
  }
  db_reset(walk);
  return rc ? rc : step < 0 ? step : 0;
}

int store_telemetry_sessions_list(struct store_tx *tx, const struct org_scope *scope,
                                  const struct telemetry_session_filter *f,
                                  struct telemetry_page *page, telemetry_session_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  page->rows = 0;
  page->more = false;
  if (!f->tag) return sessions_walk(tx, scope, f, NULL, page, fn, arg);
  /* A tag that is not a JSON string (broken UTF-8) is on no session. */
  json_t *tag = json_string(f->tag);
  if (!tag) return 0;
  struct buf want;
  buf_init(&want, BUF_JSON_ESCAPED_MAX(LIMIT_EVENT_TAG_MAX) + 2);
  int rc = events_canonical_json(tag, &want) == 0 ? 0 : KEEL_EINVAL;
  json_decref(tag);
  if (rc == 0) {
    struct slice w = buf_slice(&want);
    rc = sessions_walk(tx, scope, f, &w, page, fn, arg);
  }
  buf_free(&want);
  return rc;
}

/* --- chain verification ----------------------------------------------------- */

struct verify_state {
  struct telemetry_verify *out;
  uint8_t prev[EVENT_HASH_LEN]; /* the hash of the event before */
  int64_t last_seq;
  struct buf canon;
};

static bool type_of(const char *name, enum event_type *t) {
  for (int i = 0; i < EVENT_TYPE_COUNT; i++) {
    if (strcmp(event_type_name((enum event_type)i), name) == 0) {
      *t = (enum event_type)i;
      return true;
    }
  }
  return false;
}

static bool severity_of(const char *name, enum event_severity *s) {
  for (int i = 0; i < EVENT_SEVERITY_COUNT; i++) {
    if (strcmp(event_severity_name((enum event_severity)i), name) == 0) {
      *s = (enum event_severity)i;
      return true;
    }
  }
  return false;
}

static json_t *parse_column(struct slice s) {
  return json_loadb(s.p, s.len, 0, NULL);
}

/* The event's canonical form, rebuilt from its row, into canon. Returns
 * false when the row cannot be read back as an event. */
static bool canonical_of_row(const struct telemetry_event *row, struct buf *canon) {
  struct ingest_event e;
  memset(&e, 0, sizeof(e));
  e.valid = true;
  e.id = row->id;
  e.session_id = row->session_id;
  e.agent_id = row->agent_id;
  e.timestamp_us = row->ts_us;
  e.has_timestamp = true;
  e.received_us = row->received_us;
  bool ok = type_of(row->type, &e.type) && severity_of(row->severity, &e.severity);
  e.data = ok ? parse_column(row->data) : NULL;
  e.metadata = ok ? parse_column(row->metadata) : NULL;
  e.tags = ok ? parse_column(row->tags) : NULL;
  ok = ok && json_is_object(e.data) && json_is_object(e.metadata) && json_is_array(e.tags);
  buf_reset(canon);
  ok = ok && events_canonical(&e, canon) == 0;
  json_decref(e.tags);
  json_decref(e.metadata);
  json_decref(e.data);
  return ok;
}

static void verify_fail(struct verify_state *v, const char *reason, int64_t index) {
  v->out->valid = false;
  v->out->reason = reason;
  v->out->failed_at_index = index;
}

#define VERIFY_STOP 1 /* a failure was found: the walk ends */

static int verify_row(const struct telemetry_event *row, void *arg) {
  struct verify_state *v = arg;
  int64_t index = v->out->events++;
  if (row->seq != index + 1) {
    verify_fail(v, row->seq > index + 1 ? "missing_event" : "seq_mismatch", index);
    return VERIFY_STOP;
  }
  if (!canonical_of_row(row, &v->canon)) {
    verify_fail(v, "malformed_event", index);
    return VERIFY_STOP;
  }
  uint8_t hash[EVENT_HASH_LEN];
  events_chain_hash(v->prev, &v->canon, hash);
  if (memcmp(hash, row->hash, EVENT_HASH_LEN) != 0) {
    verify_fail(v, "hash_mismatch", index);
    return VERIFY_STOP;
  }
  memcpy(v->prev, hash, EVENT_HASH_LEN);
  v->last_seq = row->seq;
  return 0;
}

static int copy_head(const struct telemetry_session *s, void *arg) {
  struct telemetry_verify *out = arg;
  out->chain_seq = s->chain_seq;
  memcpy(out->chain_head, s->chain_head, EVENT_HASH_LEN);
  return 0;
}

int store_telemetry_session_verify(struct store_tx *tx, const struct org_scope *scope,
                                   const char *session_id, struct telemetry_verify *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  memset(out, 0, sizeof(*out));
  out->valid = true;
  out->failed_at_index = -1;
  int rc = store_telemetry_session_get(tx, scope, session_id, copy_head, out);
  if (rc) return rc;

  struct verify_state v = {.out = out};
  buf_init(&v.canon, LIMIT_EVENT_CANONICAL_MAX);
  /* Every row of the session, even one whose seq was set below 1. */
  struct telemetry_seq_page page = {.limit = INT64_MAX, .after_seq = INT64_MIN};
  rc = store_telemetry_session_events(tx, scope, session_id, &page, verify_row, &v);
  buf_free(&v.canon);
  if (rc == VERIFY_STOP) return 0;
  if (rc) return rc;
  /* Every event links; the session's head must name the last one. */
  if (out->chain_seq > v.last_seq) {
    verify_fail(&v, "missing_event", v.last_seq); /* the first one missing */
  } else if (out->chain_seq < v.last_seq) {
    verify_fail(&v, "head_mismatch", out->chain_seq); /* the first past the head */
  } else if (memcmp(out->chain_head, v.prev, EVENT_HASH_LEN) != 0) {
    verify_fail(&v, "head_mismatch", v.last_seq > 0 ? v.last_seq - 1 : 0);
  }
  return 0;
}
