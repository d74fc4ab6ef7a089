/*
 * store/usage.c — usage records (store/usage.h).
 *
 * The accumulator runs on the single store writer, the ingestion hot path:
 * usage_acc_add folds an accepted event into a small array of distinct
 * (hour, API key, agent, model) keys — a batch of at most 100 events
 * typically has one to three — with no allocation after the first few keys
 * and pointer comparisons before string comparisons (the strings are the
 * batch's own, alive until the flush). usage_acc_flush runs one upsert per
 * distinct key with one prepared statement.
 */
#include "store/usage.h"

#include <stdatomic.h>
#include <string.h>

#include "core/errors.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "store/db.h"

static atomic_bool metering_on = true;

void usage_set_enabled(bool on) {
  atomic_store(&metering_on, on);
}

bool usage_enabled(void) {
  return atomic_load_explicit(&metering_on, memory_order_relaxed);
}

struct usage_key {
  int64_t hour;
  const char *api_key_id; /* "" for none */
  const char *agent_id;
  const char *model; /* "" unless llm_call */
  struct usage_totals t;
};

#define ACC_INLINE 4

struct usage_acc {
  bool on;
  size_t n, cap;
  struct usage_key *keys; /* inline until more than ACC_INLINE keys */
  struct usage_key inline_keys[ACC_INLINE];
};

struct usage_acc *usage_acc_new(void) {
  struct usage_acc *a = xmalloc(sizeof(*a));
  a->on = usage_enabled();
  a->n = 0;
  a->cap = ACC_INLINE;
  a->keys = a->inline_keys;
  return a;
}

void usage_acc_free(struct usage_acc *a) {
  if (!a) return;
  if (a->keys != a->inline_keys) xfree(a->keys);
  xfree(a);
}

static bool same(const char *a, const char *b) {
  return a == b || strcmp(a, b) == 0;
}

void usage_acc_add(struct usage_acc *a, const struct ingest_event *e, const char *api_key_id) {
  if (!a || !a->on) return;
  int64_t hour = e->received_us - e->received_us % US_PER_HOUR;
  const char *key = api_key_id ? api_key_id : "";
  const char *agent = e->agent_id ? e->agent_id : "default";
  bool llm = e->type == EVENT_LLM_CALL;
  const char *model = llm && e->typed.llm.model ? e->typed.llm.model : "";
  struct usage_key *k = NULL;
  for (size_t i = a->n; i-- > 0;) { /* the newest key is the likeliest */
    struct usage_key *c = &a->keys[i];
    if (c->hour == hour && same(c->agent_id, agent) && same(c->model, model) &&
        same(c->api_key_id, key)) {
      k = c;
      break;
    }
  }
  if (!k) {
    if (a->n == a->cap) {
      size_t cap = a->cap * 2;
      struct usage_key *keys = xreallocarray(NULL, cap, sizeof(*keys));
      memcpy(keys, a->keys, a->n * sizeof(*keys));
      if (a->keys != a->inline_keys) xfree(a->keys);
      a->keys = keys;
      a->cap = cap;
    }
    k = &a->keys[a->n++];
    memset(k, 0, sizeof(*k));
    k->hour = hour;
    k->api_key_id = key;
    k->agent_id = agent;
    k->model = model;
  }
  k->t.events++;
  k->t.cost_nano += e->cost_nano;
  k->t.stored_bytes += (int64_t)e->canon_len;
  if (llm) {
    k->t.llm_calls++;
    k->t.input_tokens += e->typed.llm.input_tokens;
    k->t.output_tokens += e->typed.llm.output_tokens;
    k->t.reasoning_tokens += e->typed.llm.reasoning_tokens;
    k->t.cache_read_tokens += e->typed.llm.cache_read_tokens;
    k->t.cache_write_tokens += e->typed.llm.cache_write_tokens;
  }
}

static const char upsert_sql[] =
    "INSERT INTO usage_hourly(org_id, hour, api_key_id, agent_id, model, events, llm_calls,"
    " input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_write_tokens,"
    " cost_nano, stored_bytes) VALUES($1, @ts($2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
    " $13, $14) ON CONFLICT (org_id, hour, api_key_id, agent_id, model) DO UPDATE SET"
    " events = usage_hourly.events + excluded.events, llm_calls = usage_hourly.llm_calls + "
    "excluded.llm_calls,"
    " input_tokens = usage_hourly.input_tokens + excluded.input_tokens,"
    " output_tokens = usage_hourly.output_tokens + excluded.output_tokens,"
    " reasoning_tokens = usage_hourly.reasoning_tokens + excluded.reasoning_tokens,"
    " cache_read_tokens = usage_hourly.cache_read_tokens + excluded.cache_read_tokens,"
    " cache_write_tokens = usage_hourly.cache_write_tokens + excluded.cache_write_tokens,"
    " cost_nano = usage_hourly.cost_nano + excluded.cost_nano,"
    " stored_bytes = usage_hourly.stored_bytes + excluded.stored_bytes";

int usage_acc_flush(struct store_tx *tx, const struct org_scope *scope, struct usage_acc *a) {
  if (!a || a->n == 0) return 0;
  struct db_stmt *st = db_prepare(tx, upsert_sql);
  if (!st) return KEEL_ESTORE;
  for (size_t i = 0; i < a->n; i++) {
    const struct usage_key *k = &a->keys[i];
    if (i) db_reset(st);
    db_bind_text(st, 1, scope->org_id);
    db_bind_i64(st, 2, k->hour);
    db_bind_textn_nocopy(st, 3, k->api_key_id, strlen(k->api_key_id));
    db_bind_textn_nocopy(st, 4, k->agent_id, strlen(k->agent_id));
    db_bind_textn_nocopy(st, 5, k->model, strlen(k->model));
    const int64_t v[] = {
        k->t.events,           k->t.llm_calls,         k->t.input_tokens,       k->t.output_tokens,
        k->t.reasoning_tokens, k->t.cache_read_tokens, k->t.cache_write_tokens, k->t.cost_nano,
        k->t.stored_bytes};
    for (int j = 0; j < 9; j++) db_bind_i64(st, 6 + j, v[j]);
    int rc = db_step(st);
    if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  }
  a->n = 0;
  return 0;
}

/* --- reads -------------------------------------------------------------------- */

#define SUMS                                                                               \
  "coalesce(sum(events), 0), coalesce(sum(llm_calls), 0), coalesce(sum(input_tokens), 0)," \
  " coalesce(sum(output_tokens), 0), coalesce(sum(reasoning_tokens), 0),"                  \
  " coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0),"            \
  " coalesce(sum(cost_nano), 0), coalesce(sum(stored_bytes), 0)"

static void read_sums(struct db_stmt *st, int col, struct usage_totals *t) {
  t->events = db_col_i64(st, col);
  t->llm_calls = db_col_i64(st, col + 1);
  t->input_tokens = db_col_i64(st, col + 2);
  t->output_tokens = db_col_i64(st, col + 3);
  t->reasoning_tokens = db_col_i64(st, col + 4);
  t->cache_read_tokens = db_col_i64(st, col + 5);
  t->cache_write_tokens = db_col_i64(st, col + 6);
  t->cost_nano = db_col_i64(st, col + 7);
  t->stored_bytes = db_col_i64(st, col + 8);
}

int store_usage_totals(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                       int64_t to_us, struct usage_totals *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  memset(out, 0, sizeof(*out));
  struct db_stmt *st = db_prepare(tx, "SELECT " SUMS
                                      " FROM usage_hourly WHERE org_id = $1"
                                      " AND hour >= @ts($2) AND hour < @ts($3)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  int rc = db_step(st);
  if (rc < 0) return rc;
  if (rc == DB_ROW) read_sums(st, 0, out);
  return 0;
}

int store_usage_hours(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                      int64_t to_us, usage_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT @us(hour), " SUMS
                                      " FROM usage_hourly"
                                      " WHERE org_id = $1 AND hour >= @ts($2) AND hour < @ts($3)"
                                      " GROUP BY hour ORDER BY hour");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct usage_totals t;
    read_sums(st, 1, &t);
    if ((rc = fn(arg, db_col_i64(st, 0), NULL, &t)) != 0) return rc;
  }
  return rc < 0 ? rc : 0;
}

static const char *const breakdown_sql[] = {
    [USAGE_BY_API_KEY] = "SELECT api_key_id, " SUMS
                         " FROM usage_hourly WHERE org_id = $1"
                         " AND hour >= @ts($2) AND hour < @ts($3) GROUP BY api_key_id"
                         " ORDER BY 2 DESC, 1 LIMIT $4",
    [USAGE_BY_AGENT] = "SELECT agent_id, " SUMS
                       " FROM usage_hourly WHERE org_id = $1"
                       " AND hour >= @ts($2) AND hour < @ts($3) GROUP BY agent_id"
                       " ORDER BY 2 DESC, 1 LIMIT $4",
    [USAGE_BY_MODEL] = "SELECT model, " SUMS
                       " FROM usage_hourly WHERE org_id = $1"
                       " AND hour >= @ts($2) AND hour < @ts($3) AND model <> '' GROUP BY model"
                       " ORDER BY 2 DESC, 1 LIMIT $4",
};

int store_usage_breakdown(struct store_tx *tx, const struct org_scope *scope, enum usage_by by,
                          int64_t from_us, int64_t to_us, int limit, usage_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, breakdown_sql[by]);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  db_bind_i64(st, 4, limit);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct usage_totals t;
    read_sums(st, 1, &t);
    const char *key = db_col_text(st, 0);
    if ((rc = fn(arg, 0, key ? key : "", &t)) != 0) return rc;
  }
  return rc < 0 ? rc : 0;
}

int store_usage_recount(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                        int64_t to_us, struct usage_totals *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  memset(out, 0, sizeof(*out));
  /* The events table keeps org_id as 16 raw bytes (0006). received_at has
   * no index: this walks the org's primary-key range, once per day asked. */
  struct db_stmt *st =
      db_prepare(tx,
                 "SELECT count(*), coalesce(sum(CASE WHEN type = 'llm_call' THEN 1 ELSE 0 END), 0),"
                 " coalesce(sum(cost_nano), 0) FROM events"
                 " WHERE org_id = $1 AND received_at >= @ts($2)"
                 " AND received_at < @ts($3)");
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  int rc = db_step(st);
  if (rc < 0) return rc;
  if (rc == DB_ROW) {
    out->events = db_col_i64(st, 0);
    out->llm_calls = db_col_i64(st, 1);
    out->cost_nano = db_col_i64(st, 2);
  }
  return 0;
}

int store_usage_notification_put(struct store_tx *tx, const struct org_scope *scope,
                                 const struct usage_notification *n, bool *inserted) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  *inserted = false;
  struct db_stmt *st = db_prepare(tx,
                                  "INSERT INTO usage_notifications(org_id, period_start,"
                                  " threshold, id, quota, used, created_at) VALUES($1,"
                                  " @ts($2), $3, $4, $5, $6, @ts($7))"
                                  " ON CONFLICT (org_id, period_start, threshold) DO NOTHING");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, n->period_start);
  db_bind_i64(st, 3, n->threshold);
  db_bind_text(st, 4, n->id);
  db_bind_i64(st, 5, n->quota);
  db_bind_i64(st, 6, n->used);
  db_bind_i64(st, 7, n->created_at);
  int rc = db_step(st);
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  *inserted = db_changes(tx) == 1;
  return 0;
}

int store_usage_notifications(struct store_tx *tx, const struct org_scope *scope, int limit,
                              int (*fn)(void *arg, const struct usage_notification *n), void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT id, @us(period_start), threshold, quota, used,"
                                  " @us(created_at) FROM usage_notifications WHERE org_id = $1"
                                  " ORDER BY created_at DESC, id DESC LIMIT $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, limit);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct usage_notification n;
    db_col_copy(st, 0, n.id, sizeof(n.id));
    n.period_start = db_col_i64(st, 1);
    n.threshold = (int)db_col_i64(st, 2);
    n.quota = db_col_i64(st, 3);
    n.used = db_col_i64(st, 4);
    n.created_at = db_col_i64(st, 5);
    if ((rc = fn(arg, &n)) != 0) return rc;
  }
  return rc < 0 ? rc : 0;
}

int store_usage_owner_emails(struct store_tx *tx, const struct org_scope *scope,
                             int (*fn)(void *arg, const char *email), void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT u.email FROM memberships m JOIN users u"
                                  " ON u.id = m.user_id WHERE m.org_id = $1"
                                  " AND m.role = 'owner' AND NOT u.suspended ORDER BY u.email");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    const char *email = db_col_text(st, 0);
    if (email && (rc = fn(arg, email)) != 0) return rc;
  }
  return rc < 0 ? rc : 0;
}
