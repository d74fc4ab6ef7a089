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
#include "core/xmalloc.h"
#include "domain/pricing.h"
#include "store/db.h"
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

/* Reads the session's row, if any, into s. */
static int sess_load(struct store_tx *tx, const struct org_scope *scope, struct sess *s) {
  struct db_stmt *st = db_prepare(tx, session_select_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, s->id);
  int rc = db_step(st);
  if (rc < 0) return rc;
  if (rc == DB_DONE) return 0;
  if (db_col_len(st, 1) != EVENT_HASH_LEN) {
    db_reset(st);
    return KEEL_ESTORE; /* a damaged row: refuse rather than fork the chain */
  }
  s->exists = true;
  s->seq = db_col_i64(st, 0);
  memcpy(s->head, db_col_blob(st, 1), EVENT_HASH_LEN);
  const char *tags = db_col_text(st, 2);
  s->tags_text = xstrdup(tags ? tags : "[]");
  s->started_at = db_col_i64(st, 3);
  s->has_ended = !db_col_is_null(st, 4);
  s->ended_at = s->has_ended ? db_col_i64(st, 4) : 0;
  const char *status = db_col_text(st, 5);
  s->status = status && strcmp(status, "error") == 0       ? SESSION_ERROR
              : status && strcmp(status, "completed") == 0 ? SESSION_COMPLETED
                                                           : SESSION_ACTIVE;
  db_reset(st);
  return 0;
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
    "/* SQLite only */ INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at, severity, data,"
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
  for (size_t i = 0; i < n; i++) {
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
  for (size_t i = 0; rc == 0 && i < sessions.n; i++) {
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
