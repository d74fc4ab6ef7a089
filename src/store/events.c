/*
 * store/events.c — appending ingested events (store/events.h).
 *
 * Runs on the writer: the session row read before an insert cannot change
 * before the update that follows, so the chain is linked without locks. An
 * event's data, metadata and tags are stored in their canonical JSON form
 * (docs/hash-chain.md), so the chain can be recomputed from the rows alone.
 */
#include "store/events.h"

#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/limits.h"
#include "domain/pricing.h"
#include "store/db.h"

/* Per-batch scratch buffers, reused from event to event. */
struct append_scratch {
  struct buf canon;
  struct buf data;
  struct buf metadata;
  struct buf tags;
  struct buf session_tags;
};

/* The session's chain position and tags as read before an append. */
struct session_head {
  int64_t seq;
  uint8_t hash[EVENT_HASH_LEN];
};

/* What one event adds to its session row. */
struct session_delta {
  int64_t tools, errors, llm_calls;
  int64_t input, output, reasoning, cache_read, cache_write;
  int64_t cost_nano;
};

static int event_exists(struct store_tx *tx, const struct org_scope *scope, const char *id,
                        bool *exists) {
  struct db_stmt *st = db_prepare(tx, "SELECT 1 FROM events WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  int rc = db_step(st);
  if (rc < 0) return rc;
  *exists = rc == DB_ROW;
  db_reset(st);
  return 0;
}

/* Reads the session's chain head and tags (into sc->session_tags), creating
 * the row on the session's first event. */
static int session_load(struct store_tx *tx, const struct org_scope *scope,
                        const struct ingest_event *e, struct session_head *head,
                        struct append_scratch *sc) {
  struct db_stmt *st = db_prepare(
      tx, "SELECT chain_seq, chain_head, tags FROM sessions WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, e->session_id);
  int rc = db_step(st);
  if (rc < 0) return rc;
  buf_reset(&sc->session_tags);
  if (rc == DB_ROW) {
    head->seq = db_col_i64(st, 0);
    if (db_col_len(st, 1) != EVENT_HASH_LEN) {
      db_reset(st);
      return KEEL_ESTORE; /* a damaged row: refuse rather than fork the chain */
    }
    memcpy(head->hash, db_col_blob(st, 1), EVENT_HASH_LEN);
    rc = buf_append(&sc->session_tags, db_col_text(st, 2), db_col_len(st, 2));
    db_reset(st);
    return rc ? KEEL_ETOOBIG : 0;
  }
  db_reset(st);
  head->seq = 0;
  memset(head->hash, 0, sizeof(head->hash));
  if (buf_append_cstr(&sc->session_tags, "[]") != 0) return KEEL_ETOOBIG;
  st = db_prepare(tx,
                  "INSERT INTO sessions(org_id, id, agent_id, started_at, status, chain_head,"
                  " updated_at) VALUES($1, $2, $3, @ts($4), 'active', $5, @ts($6))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, e->session_id);
  db_bind_text(st, 3, e->agent_id);
  db_bind_i64(st, 4, e->timestamp_us);
  db_bind_blob(st, 5, head->hash, sizeof(head->hash));
  db_bind_i64(st, 6, e->received_us);
  rc = db_step(st);
  return rc < 0 ? rc : 0;
}

/* Adds the event's tags missing from the session's (sc->session_tags, a
 * canonical JSON array), up to LIMIT_SESSION_TAGS, rewriting it. */
static int session_tags_union(const struct ingest_event *e, struct append_scratch *sc) {
  if (!e->tags || !json_is_array(e->tags) || json_array_size(e->tags) == 0) return 0;
  json_t *have = json_loadb(sc->session_tags.data, sc->session_tags.len, 0, NULL);
  if (!json_is_array(have)) {
    json_decref(have);
    have = json_array(); /* a damaged value is rebuilt rather than failing ingestion */
  }
  bool changed = false;
  size_t i;
  json_t *tag;
  json_array_foreach(e->tags, i, tag) {
    if (json_array_size(have) >= LIMIT_SESSION_TAGS) break;
    if (!json_is_string(tag)) continue;
    bool found = false;
    size_t k;
    json_t *t;
    json_array_foreach(have, k, t) {
      if (json_equal(t, tag)) {
        found = true;
        break;
      }
    }
    if (!found) {
      json_array_append(have, tag);
      changed = true;
    }
  }
  int rc = 0;
  if (changed) {
    buf_reset(&sc->session_tags);
    rc = events_canonical_json(have, &sc->session_tags) ? KEEL_ETOOBIG : 0;
  }
  json_decref(have);
  return rc;
}

/* The cost of an llm_call: the org's prices at the event's time, or the
 * client's cost when it sent one. Pricing never fails an append: a call that
 * cannot be priced costs 0, flagged unpriced. */
static void event_cost(const struct org_scope *scope, const struct ingest_event *e,
                       int64_t *cost_nano, unsigned *flags) {
  *cost_nano = 0;
  *flags = 0;
  if (e->type != EVENT_LLM_CALL) return;
  const struct ingest_llm_call *llm = &e->typed.llm;
  struct pricing_usage u = {
      .org_id = scope->org_id,
      .provider = slice_from_cstr(llm->provider),
      .model = slice_from_cstr(llm->model),
      .input_tokens = llm->input_tokens,
      .output_tokens = llm->output_tokens,
      .reasoning_tokens = llm->reasoning_tokens,
      .cache_read_tokens = llm->cache_read_tokens,
      .cache_write_tokens = llm->cache_write_tokens,
      .has_client_cost = llm->client_cost_nusd >= 0,
      .client_cost_nano = llm->client_cost_nusd >= 0 ? llm->client_cost_nusd : 0,
  };
  struct pricing_result r;
  if (pricing_cost(&u, e->timestamp_us, &r) != 0) {
    *flags = PRICING_UNPRICED;
    if (u.has_client_cost) {
      *cost_nano = u.client_cost_nano;
      *flags |= PRICING_CLIENT_SUPPLIED;
    }
    return;
  }
  *cost_nano = r.cost_nano;
  *flags = r.flags;
}

static void session_delta_of(const struct ingest_event *e, int64_t cost_nano,
                             struct session_delta *d) {
  memset(d, 0, sizeof(*d));
  d->tools = e->type == EVENT_TOOL_CALL;
  d->errors =
      e->type == EVENT_ERROR || e->type == EVENT_TOOL_ERROR || e->severity >= EVENT_SEVERITY_ERROR;
  d->cost_nano = cost_nano;
  if (e->type != EVENT_LLM_CALL) return;
  d->llm_calls = 1;
  d->input = e->typed.llm.input_tokens;
  d->output = e->typed.llm.output_tokens;
  d->reasoning = e->typed.llm.reasoning_tokens;
  d->cache_read = e->typed.llm.cache_read_tokens;
  d->cache_write = e->typed.llm.cache_write_tokens;
}

/*
 * started_at: a session_start's timestamp, else the earliest seen; ended_at:
 * the latest session_end's; status: 'error' once an error event arrives,
 * 'completed' on session_end unless already 'error'.
 */
static const char session_update_sql[] =
    "UPDATE sessions SET event_count = event_count + 1, tool_count = tool_count + $3,"
    " error_count = error_count + $4, llm_count = llm_count + $5,"
    " input_tokens = input_tokens + $6, output_tokens = output_tokens + $7,"
    " reasoning_tokens = reasoning_tokens + $8, cache_read_tokens = cache_read_tokens + $9,"
    " cache_write_tokens = cache_write_tokens + $10, cost_nano = cost_nano + $11,"
    " started_at = CASE WHEN $12 = 1 THEN @ts($13) ELSE min(started_at, @ts($13)) END,"
    " ended_at = CASE WHEN $14 = 1 THEN @ts($13) ELSE ended_at END,"
    " status = CASE WHEN $15 = 1 THEN 'error'"
    " WHEN $14 = 1 AND status = 'active' THEN 'completed' ELSE status END,"
    " tags = $16, chain_seq = $17, chain_head = $18, updated_at = @ts($19)"
    " WHERE org_id = $1 AND id = $2";

static int session_update(struct store_tx *tx, const struct org_scope *scope,
                          const struct ingest_event *e, const struct session_delta *d,
                          const struct session_head *head, const struct append_scratch *sc) {
  struct db_stmt *st = db_prepare(tx, session_update_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, e->session_id);
  db_bind_i64(st, 3, d->tools);
  db_bind_i64(st, 4, d->errors);
  db_bind_i64(st, 5, d->llm_calls);
  db_bind_i64(st, 6, d->input);
  db_bind_i64(st, 7, d->output);
  db_bind_i64(st, 8, d->reasoning);
  db_bind_i64(st, 9, d->cache_read);
  db_bind_i64(st, 10, d->cache_write);
  db_bind_i64(st, 11, d->cost_nano);
  db_bind_i64(st, 12, e->type == EVENT_SESSION_START);
  db_bind_i64(st, 13, e->timestamp_us);
  db_bind_i64(st, 14, e->type == EVENT_SESSION_END);
  db_bind_i64(st, 15, e->type == EVENT_ERROR);
  db_bind_textn(st, 16, sc->session_tags.data, sc->session_tags.len);
  db_bind_i64(st, 17, head->seq);
  db_bind_blob(st, 18, head->hash, EVENT_HASH_LEN);
  db_bind_i64(st, 19, e->received_us);
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

static const char event_insert_sql[] =
    "INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at, severity, data,"
    " metadata, tags, api_key_id, cost_nano, cost_flags, seq, prev_hash, hash)"
    " VALUES($1, $2, $3, $4, $5, @ts($6), @ts($7), $8, $9, $10, $11, $12, $13, $14, $15, $16,"
    " $17)";

/* Canonical JSON of v into b, or empty (an object or array) when absent. */
static int column_json(const json_t *v, const char *empty, struct buf *b) {
  buf_reset(b);
  if (!v || json_is_null(v)) return buf_append_cstr(b, empty) ? KEEL_ETOOBIG : 0;
  return events_canonical_json(v, b) ? KEEL_EINVAL : 0;
}

static int event_insert(struct store_tx *tx, const struct org_scope *scope,
                        const struct ingest_event *e, const char *api_key_id, int64_t seq,
                        const uint8_t prev[EVENT_HASH_LEN], const uint8_t hash[EVENT_HASH_LEN],
                        int64_t cost_nano, unsigned cost_flags, struct append_scratch *sc) {
  int rc = column_json(e->data, "{}", &sc->data);
  if (rc == 0) rc = column_json(e->metadata, "{}", &sc->metadata);
  if (rc == 0) rc = column_json(e->tags, "[]", &sc->tags);
  if (rc) return rc;
  struct db_stmt *st = db_prepare(tx, event_insert_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, e->id);
  db_bind_text(st, 3, e->session_id);
  db_bind_text(st, 4, e->agent_id);
  db_bind_text(st, 5, event_type_name(e->type));
  db_bind_i64(st, 6, e->timestamp_us);
  db_bind_i64(st, 7, e->received_us);
  db_bind_text(st, 8, event_severity_name(e->severity));
  db_bind_textn(st, 9, sc->data.data, sc->data.len);
  db_bind_textn(st, 10, sc->metadata.data, sc->metadata.len);
  db_bind_textn(st, 11, sc->tags.data, sc->tags.len);
  db_bind_text(st, 12, api_key_id);
  db_bind_i64(st, 13, cost_nano);
  db_bind_i64(st, 14, (int64_t)cost_flags);
  db_bind_i64(st, 15, seq);
  db_bind_blob(st, 16, prev, EVENT_HASH_LEN);
  db_bind_blob(st, 17, hash, EVENT_HASH_LEN);
  rc = db_step(st);
  return rc < 0 ? rc : 0;
}

static int append_one(struct store_tx *tx, const struct org_scope *scope,
                      const struct ingest_event *e, const char *api_key_id,
                      struct append_scratch *sc, enum store_append_outcome *outcome) {
  if (!e->valid) {
    *outcome = STORE_APPEND_SKIPPED;
    return 0;
  }
  if (!e->id || !e->has_timestamp || !e->session_id || !e->agent_id) return KEEL_EINVAL;
  bool exists = false;
  int rc = event_exists(tx, scope, e->id, &exists);
  if (rc) return rc;
  if (exists) {
    *outcome = STORE_APPEND_DUPLICATE;
    return 0;
  }
  struct session_head head;
  rc = session_load(tx, scope, e, &head, sc);
  if (rc) return rc;

  buf_reset(&sc->canon);
  if (events_canonical(e, &sc->canon) != 0) return KEEL_EINVAL;
  uint8_t prev[EVENT_HASH_LEN];
  memcpy(prev, head.hash, EVENT_HASH_LEN);
  events_chain_hash(prev, &sc->canon, head.hash);
  head.seq++;

  int64_t cost_nano;
  unsigned cost_flags;
  event_cost(scope, e, &cost_nano, &cost_flags);
  rc = event_insert(tx, scope, e, api_key_id, head.seq, prev, head.hash, cost_nano, cost_flags, sc);
  if (rc) return rc;

  struct session_delta d;
  session_delta_of(e, cost_nano, &d);
  rc = session_tags_union(e, sc);
  if (rc) return rc;
  rc = session_update(tx, scope, e, &d, &head, sc);
  if (rc) return rc;
  *outcome = STORE_APPEND_ACCEPTED;
  return 0;
}

int store_events_append(struct store_tx *tx, const struct org_scope *scope,
                        struct ingest_event *events, size_t n, struct store_append_result *res) {
  res->accepted = 0;
  res->duplicates = 0;
  struct append_scratch sc;
  buf_init(&sc.canon, LIMIT_EVENT_CANONICAL_MAX);
  buf_init(&sc.data, LIMIT_EVENT_CANONICAL_MAX);
  buf_init(&sc.metadata, LIMIT_EVENT_CANONICAL_MAX);
  buf_init(&sc.tags, LIMIT_EVENT_CANONICAL_MAX);
  buf_init(&sc.session_tags, LIMIT_EVENT_CANONICAL_MAX);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    enum store_append_outcome outcome = STORE_APPEND_SKIPPED;
    rc = append_one(tx, scope, &events[i], res->api_key_id, &sc, &outcome);
    if (rc) goto fail;
    if (res->outcomes) res->outcomes[i] = outcome;
    res->accepted += outcome == STORE_APPEND_ACCEPTED;
    res->duplicates += outcome == STORE_APPEND_DUPLICATE;
  }
fail:
  buf_free(&sc.session_tags);
  buf_free(&sc.tags);
  buf_free(&sc.metadata);
  buf_free(&sc.data);
  buf_free(&sc.canon);
  return rc;
}
