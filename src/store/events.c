/*
 * store/events.c — appending ingested events (store/events.h).
 *
 * Runs on the writer, which is the hot path of ingestion: everything that
 * can be done before (canonical form, column JSON, cost) was done by
 * events_prepare on a worker thread. Per event this costs one INSERT (the
 * dedup is the primary key: ON CONFLICT DO NOTHING, and no row changed means
 * a duplicate). Sessions are read once per batch (the first event of each
 * session), their chain, counters, tags and status advanced in memory, and
 * written once at the end of the batch. Being on the single writer, nothing
 * interleaves between the read of a session's head and its update, so
 * concurrent batches to one session still form one chain.
 *
 * An event's data, metadata and tags are stored in their canonical JSON
 * form (docs/hash-chain.md), so the chain can be recomputed from the rows.
 */
#include "store/events.h"

#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "domain/pricing.h"
#include "store/db.h"
#include "store/pg/pg.h"
#include "store/rollups.h"
#include "store/usage.h"

enum session_status { SESSION_ACTIVE, SESSION_COMPLETED, SESSION_ERROR };

static const char *const status_names[] = {"active", "completed", "error"};

/* One session touched by the batch. */
struct sess {
  const char *id; /* borrowed from the batch's first event of the session */
  uint32_t hash;
  bool exists;  /* the row was there before this batch */
  bool touched; /* an event was accepted */
  int64_t seq;
  uint8_t head[EVENT_HASH_LEN];
  const char *agent_id; /* a new session's: its first event's */
  int64_t started_at;
  bool started_changed; /* an existing row's started_at moves (it is indexed) */
  bool has_ended;
  int64_t ended_at;
  enum session_status status;
  /* Increments. */
  int64_t events, tools, errors, llm_calls;
  int64_t input, output, reasoning, cache_read, cache_write, cost_nano;
  /* Tags: the stored canonical array (loaded), and the union once an event
   * brings tags (NULL until then). */
  char *tags_text;
  json_t *tags;
  bool tags_changed;
  int64_t updated_at;
};

/* The batch's sessions: an open-addressing table over a small array. */
#define SESS_SLOTS 256 /* > 2 × LIMIT_INGEST_BATCH_EVENTS */
_Static_assert(SESS_SLOTS >= 2 * LIMIT_INGEST_BATCH_EVENTS, "session table load");

struct sess_table {
  struct sess *items; /* n used, cap allocated */
  size_t n, cap;
  int32_t slots[SESS_SLOTS]; /* index + 1; 0 empty (only while n <= SESS_SLOTS / 2) */
};

static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static void sess_table_free(struct sess_table *t) {
  for (size_t i = 0; i < t->n; i++) {
    xfree(t->items[i].tags_text);
    json_decref(t->items[i].tags);
  }
  xfree(t->items);
}

/* Finds the session, or adds an unloaded entry (*fresh set). Beyond
 * SESS_SLOTS / 2 sessions (an event list longer than a batch) it falls back
 * to a linear scan. */
static struct sess *sess_find(struct sess_table *t, const char *id, bool *fresh) {
  uint32_t h = fnv1a(id);
  *fresh = false;
  if (t->n < SESS_SLOTS / 2) {
    for (uint32_t i = h % SESS_SLOTS;; i = (i + 1) % SESS_SLOTS) {
      int32_t k = t->slots[i];
      if (k == 0) {
        t->slots[i] = (int32_t)t->n + 1;
        break;
      }
      struct sess *s = &t->items[k - 1];
      if (s->hash == h && strcmp(s->id, id) == 0) return s;
    }
  } else {
    for (size_t i = 0; i < t->n; i++) {
      if (t->items[i].hash == h && strcmp(t->items[i].id, id) == 0) return &t->items[i];
    }
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 8;
    t->items = xreallocarray(t->items, t->cap, sizeof(*t->items));
  }
  struct sess *s = &t->items[t->n++];
  memset(s, 0, sizeof(*s));
  s->id = id;
  s->hash = h;
  *fresh = true;
  return s;
}

static const char session_select_sql[] =
    "SELECT chain_seq, chain_head, tags, @us(started_at), @us(ended_at), status"
    " FROM sessions WHERE org_id = $1 AND id = $2";

/* Fills s from the row's columns c… (those of session_select_sql). */
static int sess_from_row(struct db_stmt *st, int c, struct sess *s) {
  if (db_col_len(st, c + 1) != EVENT_HASH_LEN) {
    return KEEL_ESTORE; /* a damaged row: refuse rather than fork the chain */
  }
  s->exists = true;
  s->seq = db_col_i64(st, c);
  memcpy(s->head, db_col_blob(st, c + 1), EVENT_HASH_LEN);
  const char *tags = db_col_text(st, c + 2);
  s->tags_text = xstrdup(tags ? tags : "[]");
  s->started_at = db_col_i64(st, c + 3);
  s->has_ended = !db_col_is_null(st, c + 4);
  s->ended_at = s->has_ended ? db_col_i64(st, c + 4) : 0;
  const char *status = db_col_text(st, c + 5);
  s->status = status && strcmp(status, "error") == 0       ? SESSION_ERROR
              : status && strcmp(status, "completed") == 0 ? SESSION_COMPLETED
                                                           : SESSION_ACTIVE;
  return 0;
}

/* Reads the session's row, if any, into s. */
static int sess_load(struct store_tx *tx, const struct org_scope *scope, struct sess *s) {
  struct db_stmt *st = db_prepare(tx, session_select_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, s->id);
  int rc = db_step(st);
  if (rc < 0) return rc;
  if (rc == DB_DONE) return 0;
  rc = sess_from_row(st, 0, s);
  db_reset(st);
  return rc;
}

/* Adds the event's tags missing from the session's, in first-seen order,
 * up to LIMIT_SESSION_TAGS. */
static void sess_tags_union(struct sess *s, const struct ingest_event *e) {
  if (!e->tags || !json_is_array(e->tags) || json_array_size(e->tags) == 0) return;
  if (!s->tags) {
    s->tags = s->tags_text ? json_loads(s->tags_text, 0, NULL) : NULL;
    if (!json_is_array(s->tags)) {
      json_decref(s->tags);
      s->tags = json_array(); /* a damaged value is rebuilt rather than failing ingestion */
    }
  }
  size_t i;
  json_t *tag;
  json_array_foreach(e->tags, i, tag) {
    if (json_array_size(s->tags) >= LIMIT_SESSION_TAGS) break;
    if (!json_is_string(tag)) continue;
    bool found = false;
    size_t k;
    json_t *t;
    json_array_foreach(s->tags, k, t) {
      if (json_equal(t, tag)) {
        found = true;
        break;
      }
    }
    if (!found) {
      json_array_append(s->tags, tag);
      s->tags_changed = true;
    }
  }
}

/*
 * What an accepted event does to its session: started_at is a
 * session_start's timestamp, else the earliest seen; ended_at the latest
 * session_end's; status 'error' once an error event arrives, 'completed' on
 * session_end unless already 'error'.
 */
static void sess_apply(struct sess *s, const struct ingest_event *e, const uint8_t hash[]) {
  if (!s->exists && !s->touched) {
    s->agent_id = e->agent_id;
    s->started_at = e->timestamp_us;
  }
  s->touched = true;
  s->seq++;
  memcpy(s->head, hash, EVENT_HASH_LEN);
  int64_t started = s->started_at;
  if (e->type == EVENT_SESSION_START || e->timestamp_us < started) started = e->timestamp_us;
  if (started != s->started_at) {
    s->started_at = started;
    s->started_changed = true;
  }
  if (e->type == EVENT_SESSION_END) {
    s->has_ended = true;
    s->ended_at = e->timestamp_us;
  }
  if (e->type == EVENT_ERROR) {
    s->status = SESSION_ERROR;
  } else if (e->type == EVENT_SESSION_END && s->status == SESSION_ACTIVE) {
    s->status = SESSION_COMPLETED;
  }
  s->events++;
  s->tools += e->type == EVENT_TOOL_CALL;
  s->errors +=
      e->type == EVENT_ERROR || e->type == EVENT_TOOL_ERROR || e->severity >= EVENT_SEVERITY_ERROR;
  s->cost_nano += e->cost_nano;
  if (e->type == EVENT_LLM_CALL) {
    s->llm_calls++;
    s->input += e->typed.llm.input_tokens;
    s->output += e->typed.llm.output_tokens;
    s->reasoning += e->typed.llm.reasoning_tokens;
    s->cache_read += e->typed.llm.cache_read_tokens;
    s->cache_write += e->typed.llm.cache_write_tokens;
  }
  if (e->received_us > s->updated_at) s->updated_at = e->received_us;
  sess_tags_union(s, e);
}

static const char session_insert_sql[] =
    "INSERT INTO sessions(org_id, id, started_at, ended_at, status, event_count, tool_count,"
    " error_count, llm_count, input_tokens, output_tokens, reasoning_tokens, cache_read_tokens,"
    " cache_write_tokens, cost_nano, tags, chain_seq, chain_head, updated_at, agent_id)"
    " VALUES($1, $2, @ts($3), @ts($4), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
    " $17, $18, @ts($19), $20)";

/* The same parameters but the last (the agent is a new session's). started_at
 * is in the index the session list walks: a statement that sets it rewrites
 * the index entry, so it is set only when it moved (the second form keeps
 * $3 in a condition that is always true, so both take the same parameters). */
static const char session_update_started_sql[] =
    "UPDATE sessions SET started_at = @ts($3), ended_at = @ts($4), status = $5,"
    " event_count = event_count + $6, tool_count = tool_count + $7,"
    " error_count = error_count + $8, llm_count = llm_count + $9,"
    " input_tokens = input_tokens + $10, output_tokens = output_tokens + $11,"
    " reasoning_tokens = reasoning_tokens + $12, cache_read_tokens = cache_read_tokens + $13,"
    " cache_write_tokens = cache_write_tokens + $14, cost_nano = cost_nano + $15,"
    " tags = coalesce($16, tags), chain_seq = $17, chain_head = $18, updated_at = @ts($19)"
    " WHERE org_id = $1 AND id = $2";

static const char session_update_sql[] =
    "UPDATE sessions SET ended_at = @ts($4), status = $5,"
    " event_count = event_count + $6, tool_count = tool_count + $7,"
    " error_count = error_count + $8, llm_count = llm_count + $9,"
    " input_tokens = input_tokens + $10, output_tokens = output_tokens + $11,"
    " reasoning_tokens = reasoning_tokens + $12, cache_read_tokens = cache_read_tokens + $13,"
    " cache_write_tokens = cache_write_tokens + $14, cost_nano = cost_nano + $15,"
    " tags = coalesce($16, tags), chain_seq = $17, chain_head = $18, updated_at = @ts($19)"
    " WHERE org_id = $1 AND id = $2 AND @ts($3) IS NOT NULL";

static int sess_write(struct store_tx *tx, const struct org_scope *scope, struct sess *s,
                      struct buf *tags_buf) {
  const char *tags = NULL;
  size_t tags_len = 0;
  if (s->tags_changed) {
    buf_reset(tags_buf);
    if (events_canonical_json(s->tags, tags_buf) != 0) return KEEL_ETOOBIG;
    tags = tags_buf->data;
    tags_len = tags_buf->len;
  } else if (!s->exists) {
    tags = "[]";
    tags_len = 2;
  }
  const char *sql = !s->exists           ? session_insert_sql
                    : s->started_changed ? session_update_started_sql
                                         : session_update_sql;
  struct db_stmt *st = db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  const int64_t sums[] = {s->events, s->tools,     s->errors,     s->llm_calls,   s->input,
                          s->output, s->reasoning, s->cache_read, s->cache_write, s->cost_nano};
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, s->id);
  db_bind_i64(st, 3, s->started_at);
  if (s->has_ended) {
    db_bind_i64(st, 4, s->ended_at);
  } else {
    db_bind_null(st, 4);
  }
  db_bind_text(st, 5, status_names[s->status]);
  for (int i = 0; i < 10; i++) db_bind_i64(st, 6 + i, sums[i]);
  if (tags) {
    db_bind_textn(st, 16, tags, tags_len);
  } else {
    db_bind_null(st, 16);
  }
  db_bind_i64(st, 17, s->seq);
  db_bind_blob(st, 18, s->head, EVENT_HASH_LEN);
  db_bind_i64(st, 19, s->updated_at);
  if (!s->exists) db_bind_text(st, 20, s->agent_id);
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

/* The dedup key is (org_id, id): an event whose id the org already stored
 * is a duplicate, whatever else it carries.
 *  - SQLite: the primary key, and ON CONFLICT on it.
 *  - PostgreSQL: events is partitioned by month of ts, and a partitioned
 *    table's unique keys must hold the partition column, so its key is
 *    (org_id, id, ts) and cannot catch an id sent again with another
 *    timestamp (an event without one gets the time it was received). The
 *    insert therefore first looks the id up in every partition (one probe
 *    of each partition's primary key on its (org_id, id) prefix). Appends
 *    are serialised by the single writer, so nothing can come between the
 *    probe and the insert. Parameters in a SELECT list have no column to
 *    take their type from: each is cast. */
static const char event_insert_sql[] =
    "/* SQLite only */ INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at, "
    "severity, data,"
    " metadata, tags, api_key_id, cost_nano, cost_flags, seq, hash)"
    " VALUES($1, $2, $3, $4, $5, @ts($6), @ts($7), $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    " ON CONFLICT (org_id, id) DO NOTHING";

static const char event_insert_pg_sql[] =
    "INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at, severity, data,"
    " metadata, tags, api_key_id, cost_nano, cost_flags, seq, hash)"
    " SELECT CAST($1 AS uuid), CAST($2 AS text), CAST($3 AS text), CAST($4 AS text),"
    " CAST($5 AS text), @ts($6), @ts($7), CAST($8 AS text), CAST($9 AS text), CAST($10 AS text),"
    " CAST($11 AS text), CAST($12 AS uuid), CAST($13 AS bigint), CAST($14 AS bigint),"
    " CAST($15 AS bigint), CAST($16 AS bytea)"
    " WHERE NOT EXISTS (SELECT 1 FROM events WHERE org_id = CAST($1 AS uuid)"
    " AND id = CAST($2 AS text))"
    " ON CONFLICT DO NOTHING";

/* Inserts the event; *inserted false when its id was already stored. */
static int event_insert(struct store_tx *tx, const struct org_scope *scope,
                        const struct ingest_event *e, const char *api_key_id, int64_t seq,
                        const uint8_t hash[EVENT_HASH_LEN], bool *inserted) {
  bool pg = strcmp(db_backend(tx), "postgres") == 0;
  struct db_stmt *st = db_prepare(tx, pg ? event_insert_pg_sql : event_insert_sql);
  if (!st) return KEEL_ESTORE;
  /* The event's strings live in the batch, longer than the statement's
   * use: bound without copies. */
  const char *type = event_type_name(e->type), *severity = event_severity_name(e->severity);
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_textn_nocopy(st, 2, e->id, strlen(e->id));
  db_bind_textn_nocopy(st, 3, e->session_id, strlen(e->session_id));
  db_bind_textn_nocopy(st, 4, e->agent_id, strlen(e->agent_id));
  db_bind_textn_nocopy(st, 5, type, strlen(type));
  db_bind_i64(st, 6, e->timestamp_us);
  db_bind_i64(st, 7, e->received_us);
  db_bind_textn_nocopy(st, 8, severity, strlen(severity));
  db_bind_textn_nocopy(st, 9, e->canon + e->canon_data.off, e->canon_data.len);
  db_bind_textn_nocopy(st, 10, e->canon + e->canon_metadata.off, e->canon_metadata.len);
  db_bind_textn_nocopy(st, 11, e->canon + e->canon_tags.off, e->canon_tags.len);
  db_bind_uuid(st, 12, api_key_id);
  db_bind_i64(st, 13, e->cost_nano);
  db_bind_i64(st, 14, (int64_t)e->cost_flags);
  db_bind_i64(st, 15, seq);
  db_bind_blob(st, 16, hash, EVENT_HASH_LEN);
  int rc = db_step(st);
  if (rc < 0) return rc;
  *inserted = db_changes(tx) == 1;
  return 0;
}

/* What a batch accumulates besides its sessions: usage records and
 * analytics rollups, written once at the end of the batch. */
struct batch_accs {
  struct usage_acc *usage;
  struct rollup_acc *rollups;
};

static int append_one(struct store_tx *tx, const struct org_scope *scope, struct ingest_event *e,
                      const char *api_key_id, struct sess_table *sessions, struct batch_accs *accs,
                      enum store_append_outcome *outcome) {
  bool fresh;
  struct sess *s = sess_find(sessions, e->session_id, &fresh);
  if (fresh) {
    int rc = sess_load(tx, scope, s);
    if (rc) return rc;
  }
  uint8_t hash[EVENT_HASH_LEN];
  events_chain_hash_raw(s->head, e->canon, e->canon_len, hash);
  bool inserted = false;
  int rc = event_insert(tx, scope, e, api_key_id, s->seq + 1, hash, &inserted);
  if (rc) return rc;
  if (!inserted) {
    *outcome = STORE_APPEND_DUPLICATE;
    return 0;
  }
  sess_apply(s, e, hash);
  usage_acc_add(accs->usage, e, api_key_id);
  rollup_acc_add(accs->rollups, e, api_key_id);
  *outcome = STORE_APPEND_ACCEPTED;
  return 0;
}

/* --- PostgreSQL: a batch in a constant number of round trips -------------
 *
 * Each statement is a network round trip there, so the batch is appended
 * with a fixed number of them whatever its size: the ids already stored
 * (one lookup by an array of ids), the sessions touched (one lookup), one
 * INSERT of every accepted event, one INSERT of the new sessions and one
 * UPDATE of the others, then the usage and rollup flushes. Chains, counters
 * and outcomes are computed in C exactly as on SQLite, in between. Every
 * value travels as a parameter: a column of the batch is one array literal
 * (pg_array_*, store/pg/pg.h) that unnest turns back into rows. The lookups
 * and the UPDATE, whose plans depend on the values, are adhoc (planned with
 * them: a generic plan made while the tables were empty walks an org_id
 * prefix index instead of the primary key). */

/* Both lookups go key by key (a LATERAL subquery per array element: one
 * primary-key probe each). "id = ANY($2)" is planned as one scan, and before
 * the table is first analyzed PostgreSQL's default estimates make a scan of
 * the org's whole (org_id, agent_id, …) index look cheaper than 100 probes. */
static const char pg_ids_stored_sql[] =
    "SELECT k.id FROM unnest(CAST($2 AS text[])) AS k(id) CROSS JOIN LATERAL"
    " (SELECT 1 FROM events AS e WHERE e.org_id = CAST($1 AS uuid) AND e.id = k.id LIMIT 1) AS x";

static const char pg_sessions_select_sql[] =
    "SELECT k.id, s.chain_seq, s.chain_head, s.tags, s.started_us, s.ended_us, s.status"
    " FROM unnest(CAST($2 AS text[])) AS k(id) CROSS JOIN LATERAL"
    " (SELECT chain_seq, chain_head, tags, @us(started_at) AS started_us,"
    " @us(ended_at) AS ended_us, status FROM sessions"
    " WHERE org_id = CAST($1 AS uuid) AND id = k.id LIMIT 1) AS s";

/* The dedup was done by the lookup above (the key also holds ts, see
 * event_insert_pg_sql): every row must go in, and a row not inserted is a
 * bug that fails the job. */
static const char pg_events_insert_sql[] = /* "events (": not the fragment test_pg_schema.py
                                                runs with event_insert_pg_sql's values */
    "INSERT INTO events (org_id, id, session_id, agent_id, type, ts, received_at, severity, data,"
    " metadata, tags, api_key_id, cost_nano, cost_flags, seq, hash)"
    " SELECT CAST($1 AS uuid), u.id, u.session_id, u.agent_id, u.type, @ts(u.ts),"
    " @ts(u.received_at), u.severity, u.data, u.metadata, u.tags, CAST($2 AS uuid), u.cost_nano,"
    " u.cost_flags, u.seq, u.hash"
    " FROM unnest(CAST($3 AS text[]), CAST($4 AS text[]), CAST($5 AS text[]),"
    " CAST($6 AS text[]), CAST($7 AS bigint[]), CAST($8 AS bigint[]), CAST($9 AS text[]),"
    " CAST($10 AS text[]), CAST($11 AS text[]), CAST($12 AS text[]), CAST($13 AS bigint[]),"
    " CAST($14 AS bigint[]), CAST($15 AS bigint[]), CAST($16 AS bytea[]))"
    " AS u(id, session_id, agent_id, type, ts, received_at, severity, data, metadata, tags,"
    " cost_nano, cost_flags, seq, hash)"
    " ON CONFLICT DO NOTHING";

/* The columns of both session statements, as arrays: $2… below. */
#define PG_SESS_UNNEST                                                                           \
  " FROM unnest(CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS bigint[]),"                   \
  " CAST($5 AS bigint[]), CAST($6 AS text[]), CAST($7 AS bigint[]), CAST($8 AS bigint[]),"       \
  " CAST($9 AS bigint[]), CAST($10 AS bigint[]), CAST($11 AS bigint[]), CAST($12 AS bigint[]),"  \
  " CAST($13 AS bigint[]), CAST($14 AS bigint[]), CAST($15 AS bigint[]), CAST($16 AS bigint[])," \
  " CAST($17 AS text[]), CAST($18 AS bigint[]), CAST($19 AS bytea[]), CAST($20 AS bigint[]))"    \
  " AS u(id, agent_id, started_at, ended_at, status, n_events, n_tools, n_errors, n_llm,"        \
  " tok_input, tok_output, tok_reasoning, tok_cache_read, tok_cache_write, cost_nano, tags,"     \
  " chain_seq, chain_head, updated_at)"

/* New sessions: session_insert_sql, row by row. */
static const char pg_sessions_insert_sql[] =
    "INSERT INTO sessions(org_id, id, agent_id, started_at, ended_at, status, event_count,"
    " tool_count, error_count, llm_count, input_tokens, output_tokens, reasoning_tokens,"
    " cache_read_tokens, cache_write_tokens, cost_nano, tags, chain_seq, chain_head, updated_at)"
    " SELECT CAST($1 AS uuid), u.id, u.agent_id, @ts(u.started_at), @ts(u.ended_at), u.status,"
    " u.n_events, u.n_tools, u.n_errors, u.n_llm, u.tok_input, u.tok_output, u.tok_reasoning,"
    " u.tok_cache_read, u.tok_cache_write, u.cost_nano, u.tags, u.chain_seq, u.chain_head,"
    " @ts(u.updated_at)" PG_SESS_UNNEST;

/* Existing sessions: session_update_sql / session_update_started_sql, row by
 * row (agent_id is not touched; a NULL tags keeps the stored ones).
 * started_at is set to the row's value, which is the stored one unless it
 * moved: PostgreSQL keeps the index entries (a HOT update) when an indexed
 * column is set to the value it had. Each row is found by one probe of the
 * primary key (the LATERAL … LIMIT 1) and updated by its ctid: a plain
 * join on id lets a planner without statistics (a new database, before
 * autovacuum's first ANALYZE) walk every session of the org per batch
 * through sessions_agent_started, which made ingestion 3× slower. */
static const char pg_sessions_update_sql[] =
    "UPDATE sessions AS s SET started_at = @ts(u.started_at), ended_at = @ts(u.ended_at),"
    " status = u.status, event_count = s.event_count + u.n_events,"
    " tool_count = s.tool_count + u.n_tools, error_count = s.error_count + u.n_errors,"
    " llm_count = s.llm_count + u.n_llm, input_tokens = s.input_tokens + u.tok_input,"
    " output_tokens = s.output_tokens + u.tok_output,"
    " reasoning_tokens = s.reasoning_tokens + u.tok_reasoning,"
    " cache_read_tokens = s.cache_read_tokens + u.tok_cache_read,"
    " cache_write_tokens = s.cache_write_tokens + u.tok_cache_write,"
    " cost_nano = s.cost_nano + u.cost_nano, tags = coalesce(u.tags, s.tags),"
    " chain_seq = u.chain_seq, chain_head = u.chain_head, updated_at = "
    "@ts(u.updated_at)" PG_SESS_UNNEST
    " CROSS JOIN LATERAL (SELECT ctid AS tid FROM sessions WHERE org_id = CAST($1 AS uuid)"
    " AND id = u.id LIMIT 1) AS k WHERE s.ctid = k.tid AND s.org_id = CAST($1 AS uuid)";

#define PG_ARRAY_MAX ((size_t)1 << 30) /* a parameter's length is an int */

enum {
  EV_ID,
  EV_SESSION,
  EV_AGENT,
  EV_TYPE,
  EV_TS,
  EV_RECEIVED,
  EV_SEVERITY,
  EV_DATA,
  EV_METADATA,
  EV_TAGS,
  EV_COST,
  EV_COST_FLAGS,
  EV_SEQ,
  EV_HASH,
  EV_NCOLS
};

enum {
  SS_ID,
  SS_AGENT,
  SS_STARTED,
  SS_ENDED,
  SS_STATUS,
  SS_SUMS, /* 10 sums */
  SS_TAGS = SS_SUMS + 10,
  SS_SEQ,
  SS_HEAD,
  SS_UPDATED,
  SS_NCOLS
};

static void arrays_init(struct buf *a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    buf_init(&a[i], PG_ARRAY_MAX);
    pg_array_begin(&a[i]);
  }
}

static void arrays_free(struct buf *a, size_t n) {
  for (size_t i = 0; i < n; i++) buf_free(&a[i]);
}

/* Closes the arrays and binds them as $first…; 0 or KEEL_ETOOBIG. */
static int arrays_bind(struct db_stmt *st, int first, struct buf *a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (pg_array_end(&a[i]) != 0) return KEEL_ETOOBIG;
    if (db_bind_textn(st, first + (int)i, a[i].data, a[i].len) != 0) return KEEL_ESTORE;
  }
  return 0;
}

/* The rows of an event (rc accumulates the appends' failures). */
static int event_row_add(struct buf *a, const struct ingest_event *e, int64_t seq,
                         const uint8_t hash[EVENT_HASH_LEN]) {
  const char *type = event_type_name(e->type), *severity = event_severity_name(e->severity);
  int rc = 0;
  rc |= pg_array_add_text(&a[EV_ID], e->id, strlen(e->id));
  rc |= pg_array_add_text(&a[EV_SESSION], e->session_id, strlen(e->session_id));
  rc |= pg_array_add_text(&a[EV_AGENT], e->agent_id, strlen(e->agent_id));
  rc |= pg_array_add_text(&a[EV_TYPE], type, strlen(type));
  rc |= pg_array_add_i64(&a[EV_TS], e->timestamp_us);
  rc |= pg_array_add_i64(&a[EV_RECEIVED], e->received_us);
  rc |= pg_array_add_text(&a[EV_SEVERITY], severity, strlen(severity));
  rc |= pg_array_add_text(&a[EV_DATA], e->canon + e->canon_data.off, e->canon_data.len);
  rc |= pg_array_add_text(&a[EV_METADATA], e->canon + e->canon_metadata.off, e->canon_metadata.len);
  rc |= pg_array_add_text(&a[EV_TAGS], e->canon + e->canon_tags.off, e->canon_tags.len);
  rc |= pg_array_add_i64(&a[EV_COST], e->cost_nano);
  rc |= pg_array_add_i64(&a[EV_COST_FLAGS], (int64_t)e->cost_flags);
  rc |= pg_array_add_i64(&a[EV_SEQ], seq);
  rc |= pg_array_add_bytea(&a[EV_HASH], hash, EVENT_HASH_LEN);
  return rc ? KEEL_ETOOBIG : 0;
}

/* A session's row for pg_sessions_insert_sql / pg_sessions_update_sql. */
static int sess_row_add(struct buf *a, struct sess *s, struct buf *tags_buf) {
  int rc = 0;
  rc |= pg_array_add_text(&a[SS_ID], s->id, strlen(s->id));
  if (s->agent_id) {
    rc |= pg_array_add_text(&a[SS_AGENT], s->agent_id, strlen(s->agent_id));
  } else {
    rc |= pg_array_add_null(&a[SS_AGENT]); /* an existing session's: not written */
  }
  rc |= pg_array_add_i64(&a[SS_STARTED], s->started_at);
  if (s->has_ended) {
    rc |= pg_array_add_i64(&a[SS_ENDED], s->ended_at);
  } else {
    rc |= pg_array_add_null(&a[SS_ENDED]);
  }
  rc |= pg_array_add_text(&a[SS_STATUS], status_names[s->status], strlen(status_names[s->status]));
  const int64_t sums[] = {s->events, s->tools,     s->errors,     s->llm_calls,   s->input,
                          s->output, s->reasoning, s->cache_read, s->cache_write, s->cost_nano};
  for (int i = 0; i < 10; i++) rc |= pg_array_add_i64(&a[SS_SUMS + i], sums[i]);
  if (s->tags_changed) {
    buf_reset(tags_buf);
    if (events_canonical_json(s->tags, tags_buf) != 0) return KEEL_ETOOBIG;
    rc |= pg_array_add_text(&a[SS_TAGS], tags_buf->data, tags_buf->len);
  } else if (!s->exists) {
    rc |= pg_array_add_text(&a[SS_TAGS], "[]", 2);
  } else {
    rc |= pg_array_add_null(&a[SS_TAGS]);
  }
  rc |= pg_array_add_i64(&a[SS_SEQ], s->seq);
  rc |= pg_array_add_bytea(&a[SS_HEAD], s->head, EVENT_HASH_LEN);
  rc |= pg_array_add_i64(&a[SS_UPDATED], s->updated_at);
  return rc ? KEEL_ETOOBIG : 0;
}

/* Runs a session statement over its rows (none: nothing to do); every row
 * must be written. */
static int sess_rows_write(struct store_tx *tx, const struct org_scope *scope, const char *sql,
                           bool adhoc, struct buf *a, size_t rows) {
  if (rows == 0) return 0;
  struct db_stmt *st = adhoc ? db_prepare_adhoc(tx, sql) : db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  int rc = arrays_bind(st, 2, a, SS_NCOLS);
  if (rc) return rc;
  rc = db_step(st);
  if (rc < 0) return rc;
  if (db_changes(tx) != (int64_t)rows) {
    log_error("store.append_mismatch", LS("what", "sessions"), LI("expected", rows),
              LI("written", db_changes(tx)));
    return KEEL_ESTORE;
  }
  return 0;
}

/* The batch's ids, to find duplicates: an open-addressing table of event
 * indexes (first event of each id). */
struct id_index {
  int32_t *slots; /* index + 1; 0 empty */
  size_t mask;
};

/* The index of the first event with this id, after adding i as it when
 * absent (i < 0: look up only; returns -1 when absent). */
static long id_index_find(struct id_index *x, const struct ingest_event *events, const char *id,
                          long i) {
  for (size_t k = fnv1a(id) & x->mask;; k = (k + 1) & x->mask) {
    int32_t v = x->slots[k];
    if (v == 0) {
      if (i >= 0) x->slots[k] = (int32_t)i + 1;
      return i >= 0 ? i : -1;
    }
    if (strcmp(events[v - 1].id, id) == 0) return v - 1;
  }
}

static int append_batch_pg(struct store_tx *tx, const struct org_scope *scope,
                           struct ingest_event *events, size_t n, struct store_append_result *res,
                           struct sess_table *sessions, struct batch_accs *accs,
                           struct buf *scratch) {
  if (n > INT32_MAX / 4) return KEEL_ETOOBIG;
  /* The ids (first of each) and the sessions of the valid events. */
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  struct id_index ids = {.slots = xcalloc(cap, sizeof(int32_t)), .mask = cap - 1};
  uint8_t *state = xcalloc(n ? n : 1, 1); /* 1: an earlier event has its id; 2: stored */
  struct buf ev[EV_NCOLS], ss_new[SS_NCOLS], ss_old[SS_NCOLS], keys;
  arrays_init(ev, EV_NCOLS);
  arrays_init(ss_new, SS_NCOLS);
  arrays_init(ss_old, SS_NCOLS);
  buf_init(&keys, PG_ARRAY_MAX);
  int rc = 0;
  bool any = false;
  pg_array_begin(&keys);
  for (size_t i = 0; i < n; i++) {
    struct ingest_event *e = &events[i];
    if (!e->valid) continue;
    if (!e->id || !e->has_timestamp || !e->session_id || !e->agent_id) {
      rc = KEEL_EINVAL;
      goto out;
    }
    long first = id_index_find(&ids, events, e->id, (long)i);
    if ((size_t)first != i) {
      state[i] = 1;
      continue;
    }
    any = true;
    if (pg_array_add_text(&keys, e->id, strlen(e->id)) != 0) {
      rc = KEEL_ETOOBIG;
      goto out;
    }
  }
  if (any) {
    if (pg_array_end(&keys) != 0) {
      rc = KEEL_ETOOBIG;
      goto out;
    }
    struct db_stmt *st = db_prepare_adhoc(tx, pg_ids_stored_sql);
    if (!st) {
      rc = KEEL_ESTORE;
      goto out;
    }
    db_bind_uuid(st, 1, scope->org_id);
    db_bind_textn(st, 2, keys.data, keys.len);
    while ((rc = db_step(st)) == DB_ROW) {
      const char *id = db_col_text(st, 0);
      long k = id ? id_index_find(&ids, events, id, -1) : -1;
      if (k >= 0) state[k] = 2;
    }
    if (rc < 0) goto out;
    rc = 0;
    /* The sessions of the events not already stored. */
    buf_reset(&keys);
    pg_array_begin(&keys);
    bool any_sess = false;
    for (size_t i = 0; i < n; i++) {
      struct ingest_event *e = &events[i];
      if (!e->valid || state[i] != 0) continue;
      bool fresh;
      sess_find(sessions, e->session_id, &fresh);
      if (!fresh) continue;
      any_sess = true;
      if (pg_array_add_text(&keys, e->session_id, strlen(e->session_id)) != 0) {
        rc = KEEL_ETOOBIG;
        goto out;
      }
    }
    if (any_sess) {
      if (pg_array_end(&keys) != 0) {
        rc = KEEL_ETOOBIG;
        goto out;
      }
      st = db_prepare_adhoc(tx, pg_sessions_select_sql);
      if (!st) {
        rc = KEEL_ESTORE;
        goto out;
      }
      db_bind_text(st, 1, scope->org_id);
      db_bind_textn(st, 2, keys.data, keys.len);
      while ((rc = db_step(st)) == DB_ROW) {
        const char *id = db_col_text(st, 0);
        bool fresh;
        struct sess *s = id ? sess_find(sessions, id, &fresh) : NULL;
        if (!s || fresh) {
          rc = KEEL_ESTORE; /* a row not asked for */
          goto out;
        }
        rc = sess_from_row(st, 1, s);
        if (rc) goto out;
      }
      if (rc < 0) goto out;
      rc = 0;
    }
  }
  /* The chain, in order, as store_events_append does on SQLite. */
  size_t accepted = 0;
  for (size_t i = 0; i < n; i++) {
    struct ingest_event *e = &events[i];
    enum store_append_outcome outcome = STORE_APPEND_SKIPPED;
    if (e->valid) {
      bool local = !e->prepared;
      if (local && events_prepare_one(e, scope->org_id, scratch) != 0) {
        rc = KEEL_EINVAL;
        break;
      }
      if (state[i] != 0) {
        outcome = STORE_APPEND_DUPLICATE;
      } else {
        bool fresh;
        struct sess *s = sess_find(sessions, e->session_id, &fresh);
        uint8_t hash[EVENT_HASH_LEN];
        events_chain_hash_raw(s->head, e->canon, e->canon_len, hash);
        rc = event_row_add(ev, e, s->seq + 1, hash);
        if (rc == 0) {
          sess_apply(s, e, hash);
          usage_acc_add(accs->usage, e, res->api_key_id);
          rollup_acc_add(accs->rollups, e, res->api_key_id);
          outcome = STORE_APPEND_ACCEPTED;
          accepted++;
        }
      }
      if (local) {
        e->prepared = false; /* its canonical form was in scratch */
        e->canon = NULL;
      }
      if (rc) break;
    }
    if (res->outcomes) res->outcomes[i] = outcome;
    res->accepted += outcome == STORE_APPEND_ACCEPTED;
    res->duplicates += outcome == STORE_APPEND_DUPLICATE;
  }
  if (rc == 0 && accepted > 0) {
    struct db_stmt *st = db_prepare(tx, pg_events_insert_sql);
    if (!st) {
      rc = KEEL_ESTORE;
      goto out;
    }
    db_bind_uuid(st, 1, scope->org_id);
    db_bind_uuid(st, 2, res->api_key_id);
    rc = arrays_bind(st, 3, ev, EV_NCOLS);
    if (rc == 0) rc = db_step(st);
    if (rc < 0) goto out;
    rc = 0;
    if (db_changes(tx) != (int64_t)accepted) {
      log_error("store.append_mismatch", LS("what", "events"), LI("expected", accepted),
                LI("written", db_changes(tx)));
      rc = KEEL_ESTORE;
      goto out;
    }
  }
  size_t rows_new = 0, rows_old = 0;
  for (size_t i = 0; rc == 0 && i < sessions->n; i++) {
    struct sess *s = &sessions->items[i];
    if (!s->touched) continue;
    rc = sess_row_add(s->exists ? ss_old : ss_new, s, scratch);
    if (s->exists) {
      rows_old++;
    } else {
      rows_new++;
    }
  }
  if (rc == 0) rc = sess_rows_write(tx, scope, pg_sessions_insert_sql, false, ss_new, rows_new);
  if (rc == 0) rc = sess_rows_write(tx, scope, pg_sessions_update_sql, true, ss_old, rows_old);
out:
  arrays_free(ev, EV_NCOLS);
  arrays_free(ss_new, SS_NCOLS);
  arrays_free(ss_old, SS_NCOLS);
  buf_free(&keys);
  xfree(state);
  xfree(ids.slots);
  return rc;
}

int store_events_append(struct store_tx *tx, const struct org_scope *scope,
                        struct ingest_event *events, size_t n, struct store_append_result *res) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  res->accepted = 0;
  res->duplicates = 0;
  struct sess_table sessions;
  memset(&sessions, 0, sizeof(sessions));
  struct batch_accs accs = {.usage = usage_acc_new(), .rollups = rollup_acc_new()};
  struct buf scratch; /* for events not prepared by the caller, and the tags */
  buf_init(&scratch, LIMIT_EVENT_CANONICAL_MAX);
  int rc = 0;
  /* PostgreSQL: the events and sessions in a few statements for the batch;
   * then on to the usage and rollups, below. */
  bool pg = strcmp(db_backend(tx), "postgres") == 0;
  if (pg) rc = append_batch_pg(tx, scope, events, n, res, &sessions, &accs, &scratch);
  for (size_t i = 0; !pg && i < n; i++) {
    struct ingest_event *e = &events[i];
    enum store_append_outcome outcome = STORE_APPEND_SKIPPED;
    if (e->valid) {
      if (!e->id || !e->has_timestamp || !e->session_id || !e->agent_id) {
        rc = KEEL_EINVAL;
        break;
      }
      bool local = !e->prepared;
      if (local && events_prepare_one(e, scope->org_id, &scratch) != 0) {
        rc = KEEL_EINVAL;
        break;
      }
      rc = append_one(tx, scope, e, res->api_key_id, &sessions, &accs, &outcome);
      if (local) {
        e->prepared = false; /* its canonical form was in scratch */
        e->canon = NULL;
      }
      if (rc) break;
    }
    if (res->outcomes) res->outcomes[i] = outcome;
    res->accepted += outcome == STORE_APPEND_ACCEPTED;
    res->duplicates += outcome == STORE_APPEND_DUPLICATE;
  }
  for (size_t i = 0; !pg && rc == 0 && i < sessions.n; i++) {
    if (sessions.items[i].touched) rc = sess_write(tx, scope, &sessions.items[i], &scratch);
  }
  if (rc == 0) rc = usage_acc_flush(tx, scope, accs.usage);
  if (rc == 0) rc = rollup_acc_flush(tx, scope, accs.rollups);
  usage_acc_free(accs.usage);
  rollup_acc_free(accs.rollups);
  sess_table_free(&sessions);
  buf_free(&scratch);
  return rc;
}
