/*
 * store/analytics.c — the analytics reads (store/analytics.h).
 *
 * Each statement is one range of one index that starts with org_id (the
 * plans are checked by tests/unit/test_analytics.c with EXPLAIN QUERY PLAN).
 * Aggregation by bucket and group is the caller's: the rollups are small
 * (one row per org, hour, agent, model, provider and key), so one statement
 * per index serves every grouping.
 */
#include "store/analytics.h"

#include <stddef.h>
#include <string.h>

#include "core/errors.h"
#include "store/db.h"

#define HOUR_COLUMNS                                                                        \
  "@us(hour), agent_id, model, provider, api_key_id, events, session_starts, session_ends," \
  " llm_calls, tool_calls, errors, error_events, tool_errors, llm_errors, other_errors,"    \
  " input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_write_tokens,"  \
  " cost_nano, latency_count, latency_sum_us, latency_hist"

static const char hours_sql[] = "SELECT " HOUR_COLUMNS
                                " FROM rollup_hourly"
                                " WHERE org_id = $1 AND hour >= @ts($2) AND hour < @ts($3)";

/*
 * The series walks (store_analytics_series): the same range of the primary
 * key, but only the key columns and those one route shows. Decoding a
 * column costs about as much as the b-tree step itself, so each route reads
 * 3 to 6 counters of the 18, and skips the rows it would ignore.
 */
#define SERIES_KEYS  "@us(hour), agent_id, model, provider, api_key_id, "
#define SERIES_RANGE " FROM rollup_hourly WHERE org_id = $1 AND hour >= @ts($2) AND hour < @ts($3)"
static const char series_costs_sql[] =
    "SELECT " SERIES_KEYS "llm_calls, cost_nano" SERIES_RANGE " AND llm_calls > 0";
static const char series_tokens_sql[] =
    "SELECT " SERIES_KEYS
    "llm_calls, input_tokens, output_tokens, reasoning_tokens,"
    " cache_read_tokens, cache_write_tokens" SERIES_RANGE " AND llm_calls > 0";
static const char series_latency_sql[] =
    "SELECT " SERIES_KEYS "llm_calls, latency_count, latency_sum_us, latency_hist" SERIES_RANGE
    " AND llm_calls > 0 AND latency_count > 0";
static const char series_errors_sql[] =
    "SELECT " SERIES_KEYS
    "events, errors, error_events, tool_errors, llm_errors, other_errors" SERIES_RANGE;

#define ROW_FIELD(f) offsetof(struct analytics_hour_row, f)
/* Per series: its statement, the row fields of its counters (columns 5…,
 * in order), and whether the latency histogram follows them. */
static const struct series_cols {
  const char *sql;
  size_t fields[6];
  int n;
  bool hist;
} series_cols[] = {
    [ANALYTICS_SERIES_COSTS] = {series_costs_sql,
                                {ROW_FIELD(llm_calls), ROW_FIELD(cost_nano)},
                                2,
                                false},
    [ANALYTICS_SERIES_TOKENS] = {series_tokens_sql,
                                 {ROW_FIELD(llm_calls), ROW_FIELD(input_tokens),
                                  ROW_FIELD(output_tokens), ROW_FIELD(reasoning_tokens),
                                  ROW_FIELD(cache_read_tokens), ROW_FIELD(cache_write_tokens)},
                                 6,
                                 false},
    [ANALYTICS_SERIES_LATENCY] = {series_latency_sql,
                                  {ROW_FIELD(llm_calls), ROW_FIELD(latency_count),
                                   ROW_FIELD(latency_sum_us)},
                                  3,
                                  true},
    [ANALYTICS_SERIES_ERRORS] = {series_errors_sql,
                                 {ROW_FIELD(events), ROW_FIELD(errors), ROW_FIELD(error_events),
                                  ROW_FIELD(tool_errors), ROW_FIELD(llm_errors),
                                  ROW_FIELD(other_errors)},
                                 6,
                                 false},
};

/* The range is written on (agent_id, hour) so that only rollup_hourly_agent
 * can serve it: SQLite, without statistics, would rather walk the primary
 * key's (org_id, hour) range and test the agent on every row of the org. */
static const char hours_agent_sql[] =
    "SELECT " HOUR_COLUMNS
    " FROM rollup_hourly WHERE org_id = $1 AND agent_id = $4"
    " AND (agent_id, hour) >= ($4, @ts($2)) AND (agent_id, hour) < ($4, @ts($3))";

static const char tools_sql[] =
    "SELECT tool_name, calls, errors, duration_count, duration_sum_us, duration_max_us"
    " FROM rollup_tools WHERE org_id = $1 AND agent_id = $2 AND hour >= @ts($3)"
    " AND hour < @ts($4)";

static const char sessions_sql[] =
    "SELECT @us(started_at), @us(ended_at), status FROM sessions"
    " WHERE org_id = $1 AND agent_id = $2 AND started_at >= @ts($3) AND started_at < @ts($4)";

static const char agents_sql[] =
    "SELECT agent_id, @us(first_seen), @us(last_seen), events FROM analytics_agents"
    " WHERE org_id = $1 AND agent_id > $2 ORDER BY agent_id LIMIT $3";

static const char agent_get_sql[] =
    "SELECT agent_id, @us(first_seen), @us(last_seen), events FROM analytics_agents"
    " WHERE org_id = $1 AND agent_id = $2";

static const char events_of_type_sql[] =
    "SELECT @us(ts), session_id FROM events"
    " WHERE org_id = $1 AND type = $2 AND ts >= @ts($3) AND ts < @ts($4) ORDER BY ts";

static const char events_of_type_json_sql[] =
    "SELECT @us(ts), session_id, data, metadata FROM events"
    " WHERE org_id = $1 AND type = $2 AND ts >= @ts($3) AND ts < @ts($4) ORDER BY ts";

static const char funnel_marks_sql[] =
    "SELECT @us(hour), marks FROM funnel_marks"
    " WHERE org_id = $1 AND hour >= @ts($2) AND hour < @ts($3)";

static const char cohorts_sql[] =
    "SELECT @us(u.first_week), @us(w.week), count(*)"
    " FROM analytics_users u JOIN analytics_user_weeks w"
    " ON w.org_id = u.org_id AND w.user_id = u.user_id AND w.week >= u.first_week"
    " WHERE u.org_id = $1 AND u.first_week >= @ts($2) AND u.first_week < @ts($3)"
    " GROUP BY u.first_week, w.week ORDER BY 1, 2";

static const char *col_str(struct db_stmt *st, int col) {
  const char *p = db_col_text(st, col);
  return p ? p : "";
}

static struct slice col_slice(struct db_stmt *st, int col) {
  const char *p = db_col_text(st, col);
  return p ? slice_make(p, db_col_len(st, col)) : slice_make("", 0);
}

/* The caller's callback, of the type the row function expects. */
struct callback {
  void (*fn)(void);
  void *arg;
};

/* Steps st to the end, calling row(st, cb) for each row. */
static int walk(struct db_stmt *st, int (*row)(struct db_stmt *st, const struct callback *cb),
                void (*fn)(void), void *arg) {
  struct callback cb = {fn, arg};
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    rc = row(st, &cb);
    if (rc) break;
  }
  db_reset(st);
  return rc < 0 || rc > 0 ? rc : 0;
}

static int hour_row(struct db_stmt *st, const struct callback *cb) {
  struct analytics_hour_row r;
  memset(&r, 0, sizeof(r));
  r.hour = db_col_i64(st, 0);
  r.agent_id = col_str(st, 1);
  r.model = col_str(st, 2);
  r.provider = col_str(st, 3);
  db_col_uuid(st, 4, r.api_key_id);
  if (strcmp(r.api_key_id, "00000000-0000-0000-0000-000000000000") == 0) r.api_key_id[0] = '\0';
  int64_t *v[] = {&r.events,           &r.session_starts,    &r.session_ends,
                  &r.llm_calls,        &r.tool_calls,        &r.errors,
                  &r.error_events,     &r.tool_errors,       &r.llm_errors,
                  &r.other_errors,     &r.input_tokens,      &r.output_tokens,
                  &r.reasoning_tokens, &r.cache_read_tokens, &r.cache_write_tokens,
                  &r.cost_nano,        &r.latency_count,     &r.latency_sum_us};
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) *v[i] = db_col_i64(st, 5 + (int)i);
  if (!db_col_is_null(st, 23)) {
    r.latency_hist = slice_make(db_col_blob(st, 23), db_col_len(st, 23));
  }
  return ((analytics_hour_fn)cb->fn)(&r, cb->arg);
}

int store_analytics_hours(struct store_tx *tx, const struct org_scope *scope, const char *agent_id,
                          int64_t from_us, int64_t to_us, analytics_hour_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, agent_id ? hours_agent_sql : hours_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  if (agent_id) db_bind_text(st, 4, agent_id);
  return walk(st, hour_row, (void (*)(void))fn, arg);
}

/* A series row: the keys, then the counters of series_cols[kind]. */
struct series_walk {
  const struct series_cols *cols;
  bool key_ids; /* whether api_key_id is formatted */
  analytics_hour_fn fn;
  void *arg;
};

static int series_walk_row(struct db_stmt *st, const struct series_walk *w) {
  struct analytics_hour_row r;
  memset(&r, 0, sizeof(r));
  r.hour = db_col_i64(st, 0);
  r.agent_id = col_str(st, 1);
  r.model = col_str(st, 2);
  r.provider = col_str(st, 3);
  if (w->key_ids) {
    db_col_uuid(st, 4, r.api_key_id);
    if (strcmp(r.api_key_id, "00000000-0000-0000-0000-000000000000") == 0) r.api_key_id[0] = '\0';
  }
  for (int i = 0; i < w->cols->n; i++) {
    *(int64_t *)((char *)&r + w->cols->fields[i]) = db_col_i64(st, 5 + i);
  }
  int h = 5 + w->cols->n;
  if (w->cols->hist && !db_col_is_null(st, h)) {
    r.latency_hist = slice_make(db_col_blob(st, h), db_col_len(st, h));
  }
  return w->fn(&r, w->arg);
}

int store_analytics_series(struct store_tx *tx, const struct org_scope *scope,
                           enum analytics_series kind, bool key_ids, int64_t from_us, int64_t to_us,
                           analytics_hour_fn fn, void *arg) {
  if ((unsigned)kind >= sizeof(series_cols) / sizeof(series_cols[0])) return KEEL_EINVAL;
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, series_cols[kind].sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  struct series_walk w = {&series_cols[kind], key_ids, fn, arg};
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    rc = series_walk_row(st, &w);
    if (rc) break;
  }
  db_reset(st);
  return rc < 0 || rc > 0 ? rc : 0;
}

static int tool_row(struct db_stmt *st, const struct callback *cb) {
  struct analytics_tool_row r = {.tool_name = col_str(st, 0),
                                 .calls = db_col_i64(st, 1),
                                 .errors = db_col_i64(st, 2),
                                 .duration_count = db_col_i64(st, 3),
                                 .duration_sum_us = db_col_i64(st, 4),
                                 .duration_max_us = db_col_i64(st, 5)};
  return ((analytics_tool_fn)cb->fn)(&r, cb->arg);
}

int store_analytics_tools(struct store_tx *tx, const struct org_scope *scope, const char *agent_id,
                          int64_t from_us, int64_t to_us, analytics_tool_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, tools_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, agent_id);
  db_bind_i64(st, 3, from_us);
  db_bind_i64(st, 4, to_us);
  return walk(st, tool_row, (void (*)(void))fn, arg);
}

static int session_row(struct db_stmt *st, const struct callback *cb) {
  struct analytics_session_row r = {.started_us = db_col_i64(st, 0),
                                    .ended = !db_col_is_null(st, 1),
                                    .ended_us = db_col_i64(st, 1),
                                    .status = col_str(st, 2)};
  return ((analytics_session_fn)cb->fn)(&r, cb->arg);
}

int store_analytics_sessions(struct store_tx *tx, const struct org_scope *scope,
                             const char *agent_id, int64_t from_us, int64_t to_us,
                             analytics_session_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, sessions_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id); /* sessions keep the org id as text */
  db_bind_text(st, 2, agent_id);
  db_bind_i64(st, 3, from_us);
  db_bind_i64(st, 4, to_us);
  return walk(st, session_row, (void (*)(void))fn, arg);
}

static int agent_row(struct db_stmt *st, const struct callback *cb) {
  struct analytics_agent_row r = {.agent_id = col_str(st, 0),
                                  .first_seen_us = db_col_i64(st, 1),
                                  .last_seen_us = db_col_i64(st, 2),
                                  .events = db_col_i64(st, 3)};
  return ((analytics_agent_fn)cb->fn)(&r, cb->arg);
}

int store_analytics_agents(struct store_tx *tx, const struct org_scope *scope, const char *after,
                           int64_t limit, analytics_agent_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, agents_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, after ? after : "");
  db_bind_i64(st, 3, limit);
  return walk(st, agent_row, (void (*)(void))fn, arg);
}

int store_analytics_agent_get(struct store_tx *tx, const struct org_scope *scope,
                              const char *agent_id, analytics_agent_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, agent_get_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, agent_id);
  int rc = db_step(st);
  if (rc != DB_ROW) {
    db_reset(st);
    return rc < 0 ? rc : KEEL_ENOTFOUND;
  }
  struct callback cb = {(void (*)(void))fn, arg};
  rc = agent_row(st, &cb);
  db_reset(st);
  return rc;
}

static int event_row(struct db_stmt *st, const struct callback *cb) {
  struct analytics_event_row r = {.ts_us = db_col_i64(st, 0), .session_id = col_str(st, 1)};
  return ((analytics_event_fn)cb->fn)(&r, cb->arg);
}

static int event_row_json(struct db_stmt *st, const struct callback *cb) {
  struct analytics_event_row r = {.ts_us = db_col_i64(st, 0),
                                  .session_id = col_str(st, 1),
                                  .data = col_slice(st, 2),
                                  .metadata = col_slice(st, 3)};
  return ((analytics_event_fn)cb->fn)(&r, cb->arg);
}

int store_analytics_events_of_type(struct store_tx *tx, const struct org_scope *scope,
                                   const char *type, int64_t from_us, int64_t to_us, bool with_json,
                                   analytics_event_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, with_json ? events_of_type_json_sql : events_of_type_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_text(st, 2, type);
  db_bind_i64(st, 3, from_us);
  db_bind_i64(st, 4, to_us);
  return walk(st, with_json ? event_row_json : event_row, (void (*)(void))fn, arg);
}

static int marks_row(struct db_stmt *st, const struct callback *cb) {
  return ((analytics_marks_fn)cb->fn)(db_col_i64(st, 0), col_slice(st, 1), cb->arg);
}

int store_analytics_funnel_marks(struct store_tx *tx, const struct org_scope *scope,
                                 int64_t from_hour_us, int64_t to_us, analytics_marks_fn fn,
                                 void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, funnel_marks_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_hour_us);
  db_bind_i64(st, 3, to_us);
  return walk(st, marks_row, (void (*)(void))fn, arg);
}

static int cohort_row(struct db_stmt *st, const struct callback *cb) {
  return ((analytics_cohort_fn)cb->fn)(db_col_i64(st, 0), db_col_i64(st, 1), db_col_i64(st, 2),
                                       cb->arg);
}

int store_analytics_cohorts(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                            int64_t to_us, analytics_cohort_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, cohorts_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, from_us);
  db_bind_i64(st, 3, to_us);
  return walk(st, cohort_row, (void (*)(void))fn, arg);
}
