/*
 * store/rollups.c — the analytics rollups the writer keeps (store/rollups.h).
 *
 * This runs on the single writer, inside the ingestion batch's transaction:
 * rollup_acc_add only updates small in-memory tables (a batch has at most a
 * few dozen distinct keys, found by hash then string compare), and the flush
 * costs one upsert per distinct key — plus, for an hourly row that got
 * latency samples, one primary-key read of the stored sketch to merge into.
 */
#include "store/rollups.h"

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/analytics.h"
#include "store/db.h"

/* One row of rollup_hourly. */
struct hourly {
  uint32_t hash;
  int64_t hour;
  const char *agent, *model, *provider, *key; /* borrowed; model/provider "" */
  int64_t c[19]; /* the counters, in the order of hourly_upsert_sql's $7..$25 */
  struct sketch latency;
};

enum {
  C_EVENTS,
  C_SESSION_STARTS,
  C_SESSION_ENDS,
  C_LLM_CALLS,
  C_TOOL_CALLS,
  C_ERRORS,
  C_ERROR_EVENTS,
  C_TOOL_ERRORS,
  C_LLM_ERRORS,
  C_OTHER_ERRORS,
  C_INPUT,
  C_OUTPUT,
  C_REASONING,
  C_CACHE_READ,
  C_CACHE_WRITE,
  C_COST,
  C_LATENCY_COUNT,
  C_LATENCY_SUM_US,
  C_COUNT
};
_Static_assert(C_COUNT <= 19, "hourly counters");

struct tool {
  uint32_t hash;
  int64_t hour;
  const char *agent, *name;
  int64_t calls, errors, dur_count, dur_sum_us, dur_max_us;
};

struct agent {
  uint32_t hash;
  const char *agent;
  int64_t first, last, events;
};

struct user_week {
  uint32_t hash;
  char *user; /* owned */
  int64_t week;
};

/* A session's marks in one hour of the batch: a line of a funnel_marks row. */
struct mark_line {
  uint32_t hash;
  int64_t hour;
  const char *session; /* borrowed */
  char *marks;         /* owned; len characters, not terminated */
  size_t len, cap;
};

/* An hour the batch has events in: one funnel_marks row, keyed by the id of
 * its first event (event ids are unique in an org, so the key is too). */
struct mark_hour {
  int64_t hour;
  const char *first_id; /* borrowed */
};

struct rollup_acc {
  /* funnel_marks lines, found through an open-addressing index (a batch
   * can touch as many sessions as it has events), and their hours. */
  struct mark_line *marks;
  size_t n_marks, cap_marks;
  uint32_t *mark_slots; /* index + 1; 0: empty */
  size_t n_mark_slots;
  struct mark_hour *mark_hours;
  size_t n_mark_hours, cap_mark_hours;
  struct hourly *hourly;
  size_t n_hourly, cap_hourly;
  struct tool *tools;
  size_t n_tools, cap_tools;
  struct agent *agents;
  size_t n_agents, cap_agents;
  struct user_week *users;
  size_t n_users, cap_users;
};

static uint32_t hash_str(uint32_t h, const char *s) {
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return (h ^ 0xff) * 16777619u; /* a separator: ("ab","c") != ("a","bc") */
}

static uint32_t hash_i64(uint32_t h, int64_t v) {
  for (int i = 0; i < 8; i++) h = (h ^ (uint8_t)(v >> (8 * i))) * 16777619u;
  return h;
}

#define GROW(arr, n, cap)                                  \
  do {                                                     \
    if ((n) == (cap)) {                                    \
      (cap) = (cap) ? (cap)*2 : 8;                         \
      (arr) = xreallocarray((arr), (cap), sizeof(*(arr))); \
    }                                                      \
  } while (0)

struct rollup_acc *rollup_acc_new(void) {
  return xcalloc(1, sizeof(struct rollup_acc));
}

void rollup_acc_free(struct rollup_acc *a) {
  if (!a) return;
  for (size_t i = 0; i < a->n_hourly; i++) sketch_free(&a->hourly[i].latency);
  for (size_t i = 0; i < a->n_users; i++) xfree(a->users[i].user);
  for (size_t i = 0; i < a->n_marks; i++) xfree(a->marks[i].marks);
  xfree(a->marks);
  xfree(a->mark_slots);
  xfree(a->mark_hours);
  xfree(a->hourly);
  xfree(a->tools);
  xfree(a->agents);
  xfree(a->users);
  xfree(a);
}

static struct hourly *hourly_find(struct rollup_acc *a, int64_t hour, const char *agent,
                                  const char *model, const char *provider, const char *key) {
  uint32_t h = hash_str(
      hash_str(hash_str(hash_str(hash_i64(2166136261u, hour), agent), model), provider), key);
  for (size_t i = 0; i < a->n_hourly; i++) {
    struct hourly *r = &a->hourly[i];
    if (r->hash == h && r->hour == hour && strcmp(r->agent, agent) == 0 &&
        strcmp(r->model, model) == 0 && strcmp(r->provider, provider) == 0 &&
        strcmp(r->key, key) == 0) {
      return r;
    }
  }
  GROW(a->hourly, a->n_hourly, a->cap_hourly);
  struct hourly *r = &a->hourly[a->n_hourly++];
  memset(r, 0, sizeof(*r));
  *r = (struct hourly){
      .hash = h, .hour = hour, .agent = agent, .model = model, .provider = provider, .key = key};
  sketch_init(&r->latency);
  return r;
}

static struct tool *tool_find(struct rollup_acc *a, int64_t hour, const char *agent,
                              const char *name) {
  uint32_t h = hash_str(hash_str(hash_i64(2166136261u, hour), agent), name);
  for (size_t i = 0; i < a->n_tools; i++) {
    struct tool *t = &a->tools[i];
    if (t->hash == h && t->hour == hour && strcmp(t->agent, agent) == 0 &&
        strcmp(t->name, name) == 0) {
      return t;
    }
  }
  GROW(a->tools, a->n_tools, a->cap_tools);
  struct tool *t = &a->tools[a->n_tools++];
  *t = (struct tool){.hash = h, .hour = hour, .agent = agent, .name = name};
  return t;
}

static void agent_add(struct rollup_acc *a, const char *agent, int64_t ts) {
  uint32_t h = hash_str(2166136261u, agent);
  for (size_t i = 0; i < a->n_agents; i++) {
    struct agent *g = &a->agents[i];
    if (g->hash == h && strcmp(g->agent, agent) == 0) {
      if (ts < g->first) g->first = ts;
      if (ts > g->last) g->last = ts;
      g->events++;
      return;
    }
  }
  GROW(a->agents, a->n_agents, a->cap_agents);
  a->agents[a->n_agents++] =
      (struct agent){.hash = h, .agent = agent, .first = ts, .last = ts, .events = 1};
}

static void user_add(struct rollup_acc *a, const char *user, int64_t week) {
  uint32_t h = hash_str(hash_i64(2166136261u, week), user);
  for (size_t i = 0; i < a->n_users; i++) {
    if (a->users[i].hash == h && a->users[i].week == week && strcmp(a->users[i].user, user) == 0) {
      return;
    }
  }
  GROW(a->users, a->n_users, a->cap_users);
  a->users[a->n_users++] = (struct user_week){.hash = h, .user = xstrdup(user), .week = week};
}

static struct mark_line *mark_find(struct rollup_acc *a, int64_t hour, const char *session) {
  if (2 * (a->n_marks + 1) > a->n_mark_slots) {
    size_t n = a->n_mark_slots ? a->n_mark_slots * 2 : 64;
    uint32_t *slots = xcalloc(n, sizeof(*slots));
    for (size_t i = 0; i < a->n_marks; i++) {
      size_t k = a->marks[i].hash & (n - 1);
      while (slots[k]) k = (k + 1) & (n - 1);
      slots[k] = (uint32_t)i + 1;
    }
    xfree(a->mark_slots);
    a->mark_slots = slots;
    a->n_mark_slots = n;
  }
  uint32_t h = hash_str(hash_i64(2166136261u, hour), session);
  size_t k = h & (a->n_mark_slots - 1);
  for (; a->mark_slots[k]; k = (k + 1) & (a->n_mark_slots - 1)) {
    struct mark_line *m = &a->marks[a->mark_slots[k] - 1];
    if (m->hash == h && m->hour == hour && strcmp(m->session, session) == 0) return m;
  }
  GROW(a->marks, a->n_marks, a->cap_marks);
  struct mark_line *m = &a->marks[a->n_marks++];
  *m = (struct mark_line){.hash = h, .hour = hour, .session = session};
  a->mark_slots[k] = (uint32_t)a->n_marks;
  return m;
}

_Static_assert(EVENT_TYPE_COUNT <= 26, "a mark's type is one letter");

static void mark_add(struct rollup_acc *a, const struct ingest_event *e, int64_t hour) {
  size_t h = 0;
  while (h < a->n_mark_hours && a->mark_hours[h].hour != hour) h++;
  if (h == a->n_mark_hours) {
    GROW(a->mark_hours, a->n_mark_hours, a->cap_mark_hours);
    a->mark_hours[a->n_mark_hours++] = (struct mark_hour){.hour = hour, .first_id = e->id};
  }
  struct mark_line *m = mark_find(a, hour, e->session_id);
  if (m->len + ROLLUP_MARK_LEN > m->cap) {
    m->cap = m->cap ? m->cap * 2 : 8 * ROLLUP_MARK_LEN;
    m->marks = xrealloc(m->marks, m->cap);
  }
  static const char hex[] = "0123456789abcdef";
  char *p = m->marks + m->len;
  uint32_t off = (uint32_t)(e->timestamp_us - hour); /* < 3.6e9 */
  p[0] = (char)('a' + (int)e->type);
  for (int i = 8; i >= 1; i--, off >>= 4) p[i] = hex[off & 15];
  m->len += ROLLUP_MARK_LEN;
}

static bool status_failed(enum event_status s) {
  return s == EVENT_STATUS_ERROR || s == EVENT_STATUS_TIMEOUT;
}

static bool is_tool(enum event_type t) {
  return t == EVENT_TOOL_CALL || t == EVENT_TOOL_RESULT || t == EVENT_TOOL_ERROR;
}

void rollup_acc_add(struct rollup_acc *a, const struct ingest_event *e, const char *api_key_id) {
  int64_t ts = e->timestamp_us;
  int64_t hour = analytics_bucket_start(ANALYTICS_HOUR, ts);
  mark_add(a, e, hour);
  bool llm = e->type == EVENT_LLM_CALL;
  const char *model = llm && e->typed.llm.model ? e->typed.llm.model : "";
  const char *provider = llm && e->typed.llm.provider ? e->typed.llm.provider : "";
  /* A key id that is not a UUID (none comes from the API) would bind NULL
   * into the key column: it is counted as no key. */
  struct id parsed;
  if (!api_key_id || id_parse(slice_from_cstr(api_key_id), &parsed) != 0) {
    api_key_id = ROLLUP_NO_KEY;
  }
  struct hourly *r = hourly_find(a, hour, e->agent_id, model, provider, api_key_id);
  int64_t *c = r->c;
  c[C_EVENTS]++;
  c[C_SESSION_STARTS] += e->type == EVENT_SESSION_START;
  c[C_SESSION_ENDS] += e->type == EVENT_SESSION_END;
  c[C_TOOL_CALLS] += e->type == EVENT_TOOL_CALL;
  /* Each event counts as one error at most, of the first kind that fits. */
  int kind =
      e->type == EVENT_ERROR ? C_ERROR_EVENTS
      : e->type == EVENT_TOOL_ERROR || (is_tool(e->type) && status_failed(e->typed.tool.status))
          ? C_TOOL_ERRORS
      : llm && status_failed(e->typed.llm.status) ? C_LLM_ERRORS
      : e->severity >= EVENT_SEVERITY_ERROR       ? C_OTHER_ERRORS
                                                  : -1;
  if (kind >= 0) {
    c[kind]++;
    c[C_ERRORS]++;
  }
  if (llm) {
    const struct ingest_llm_call *l = &e->typed.llm;
    c[C_LLM_CALLS]++;
    c[C_INPUT] += l->input_tokens;
    c[C_OUTPUT] += l->output_tokens;
    c[C_REASONING] += l->reasoning_tokens;
    c[C_CACHE_READ] += l->cache_read_tokens;
    c[C_CACHE_WRITE] += l->cache_write_tokens;
    c[C_COST] += e->cost_nano;
    if (l->latency_ms >= 0) {
      c[C_LATENCY_COUNT]++;
      c[C_LATENCY_SUM_US] += (int64_t)(l->latency_ms * 1000.0 + 0.5);
      sketch_add(&r->latency, l->latency_ms);
    }
  }
  if (is_tool(e->type) && e->typed.tool.tool_name) {
    struct tool *t = tool_find(a, hour, e->agent_id, e->typed.tool.tool_name);
    t->calls += e->type == EVENT_TOOL_CALL;
    t->errors += kind == C_TOOL_ERRORS;
    if (e->typed.tool.duration_ms >= 0) {
      int64_t us = (int64_t)(e->typed.tool.duration_ms * 1000.0 + 0.5);
      t->dur_count++;
      t->dur_sum_us += us;
      if (us > t->dur_max_us) t->dur_max_us = us;
    }
  }
  agent_add(a, e->agent_id, ts);
  char user[ANALYTICS_USER_ID_MAX + 1];
  if (analytics_user_id(e->metadata, user)) {
    user_add(a, user, analytics_bucket_start(ANALYTICS_WEEK, ts));
  }
}

/* --- flush ------------------------------------------------------------------------ */

static const char hourly_hist_sql[] =
    "SELECT latency_hist FROM rollup_hourly WHERE org_id = $1 AND hour = @ts($2)"
    " AND agent_id = $3 AND model = $4 AND provider = $5 AND api_key_id = $6";

#define ADD(col) col " = rollup_hourly." col " + excluded." col
static const char hourly_upsert_sql[] =
    "INSERT INTO rollup_hourly(org_id, hour, agent_id, model, provider, api_key_id, events,"
    " session_starts, session_ends, llm_calls, tool_calls, errors, error_events, tool_errors,"
    " llm_errors, other_errors, input_tokens, output_tokens, reasoning_tokens,"
    " cache_read_tokens, cache_write_tokens, cost_nano, latency_count, latency_sum_us,"
    " latency_hist)"
    " VALUES($1, @ts($2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
    " $18, $19, $20, $21, $22, $23, $24, $25)"
    " ON CONFLICT (org_id, hour, agent_id, model, provider, api_key_id) DO UPDATE SET " ADD(
        "events") ", " ADD("session_starts") ", " ADD("session_ends") ", " ADD("llm_calls") ", " ADD("tool_calls") ", " ADD("errors") ", " ADD("error_events") ", " ADD("tool_errors") ", " ADD("llm_errors") ", " ADD("other_errors") ", " ADD("input_tokens") ", " ADD("output_tokens") ", " ADD("reasoning_tokens") ", " ADD("cache_read_tokens") ", " ADD("cache_write_tokens") ", " ADD("cost_nano") ", " ADD("latency_count") ", " ADD("latency_sum_us") ","
    " latency_hist = coalesce(excluded.latency_hist, rollup_hourly.latency_hist)";
#undef ADD

static void bind_hourly_key(struct db_stmt *st, const struct org_scope *scope,
                            const struct hourly *r) {
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, r->hour);
  db_bind_textn_nocopy(st, 3, r->agent, strlen(r->agent));
  db_bind_textn_nocopy(st, 4, r->model, strlen(r->model));
  db_bind_textn_nocopy(st, 5, r->provider, strlen(r->provider));
  db_bind_uuid(st, 6, r->key);
}

static int hourly_write(struct store_tx *tx, const struct org_scope *scope, struct hourly *r,
                        struct buf *scratch) {
  if (r->latency.count) {
    /* The stored sketch is merged here (SQL cannot add two sketches). */
    struct db_stmt *st = db_prepare(tx, hourly_hist_sql);
    if (!st) return KEEL_ESTORE;
    bind_hourly_key(st, scope, r);
    int rc = db_step(st);
    if (rc < 0) return rc;
    if (rc == DB_ROW && !db_col_is_null(st, 0)) {
      /* A damaged stored sketch keeps what could be read of it. */
      (void)sketch_decode_merge(&r->latency, db_col_blob(st, 0), db_col_len(st, 0));
    }
    db_reset(st);
  }
  struct db_stmt *st = db_prepare(tx, hourly_upsert_sql);
  if (!st) return KEEL_ESTORE;
  bind_hourly_key(st, scope, r);
  for (int i = 0; i < C_COUNT; i++) db_bind_i64(st, 7 + i, r->c[i]);
  if (r->latency.count) {
    buf_reset(scratch);
    if (sketch_encode(&r->latency, scratch) != 0) return KEEL_ETOOBIG;
    db_bind_blob(st, 25, scratch->data, scratch->len);
  } else {
    db_bind_null(st, 25);
  }
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

static const char tool_upsert_sql[] =
    "INSERT INTO rollup_tools(org_id, agent_id, hour, tool_name, calls, errors, duration_count,"
    " duration_sum_us, duration_max_us) VALUES($1, $2, @ts($3), $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT (org_id, agent_id, hour, tool_name) DO UPDATE SET"
    " calls = rollup_tools.calls + excluded.calls, errors = rollup_tools.errors + excluded.errors,"
    " duration_count = rollup_tools.duration_count + excluded.duration_count,"
    " duration_sum_us = rollup_tools.duration_sum_us + excluded.duration_sum_us,"
    " duration_max_us = CASE WHEN excluded.duration_max_us > rollup_tools.duration_max_us"
    " THEN excluded.duration_max_us ELSE rollup_tools.duration_max_us END";

static const char agent_upsert_sql[] =
    "INSERT INTO analytics_agents(org_id, agent_id, first_seen, last_seen, events)"
    " VALUES($1, $2, @ts($3), @ts($4), $5)"
    " ON CONFLICT (org_id, agent_id) DO UPDATE SET"
    " first_seen = CASE WHEN excluded.first_seen < analytics_agents.first_seen"
    " THEN excluded.first_seen ELSE analytics_agents.first_seen END,"
    " last_seen = CASE WHEN excluded.last_seen > analytics_agents.last_seen"
    " THEN excluded.last_seen ELSE analytics_agents.last_seen END,"
    " events = analytics_agents.events + excluded.events";

static const char user_upsert_sql[] =
    "INSERT INTO analytics_users(org_id, user_id, first_week) VALUES($1, $2, @ts($3))"
    " ON CONFLICT (org_id, user_id) DO UPDATE SET first_week = excluded.first_week"
    " WHERE excluded.first_week < analytics_users.first_week";

static const char user_week_sql[] =
    "INSERT INTO analytics_user_weeks(org_id, user_id, week) VALUES($1, $2, @ts($3))"
    " ON CONFLICT (org_id, user_id, week) DO NOTHING";

static const char mark_insert_sql[] =
    "INSERT INTO funnel_marks(org_id, hour, first_id, marks) VALUES($1, @ts($2), $3, $4)";

static const char mark_dirty_sql[] =
    "INSERT INTO funnel_marks_dirty(org_id, hour) VALUES($1, @ts($2))"
    " ON CONFLICT (org_id, hour) DO NOTHING";

static const char mark_append_sql[] =
    "UPDATE funnel_marks SET marks = marks || $4"
    " WHERE org_id = $1 AND hour = @ts($2) AND first_id = $3";

/* Runs sql, whose $1 and $2 are the org and an hour. 0 or a store status. */
static int exec_org_hour(struct store_tx *tx, const char *sql, const struct org_scope *scope,
                         int64_t hour) {
  struct db_stmt *st = db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, hour);
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

/*
 * The funnel_marks rows this writer thread inserted last, per org and hour.
 * A batch whose lines fit appends them to such a row instead of inserting
 * one, so single events (a batch each) do not cost the funnel a row each.
 * A row the writer no longer has (its job or transaction rolled back, or it
 * was deleted) updates nothing, and the batch inserts a row then: this is a
 * hint, never trusted. Up to ROLLUP_MARK_ROW_MAX characters a row keeps its
 * marks on the b-tree page (no overflow pages to rewrite on an append).
 */
#define ROLLUP_MARK_ROW_MAX 896
#define RECENT_ROWS         16

struct recent_row {
  char org_id[ID_STR_SIZE];
  int64_t hour;
  char first_id[LIMIT_EVENT_ID_MAX + 1];
  size_t len;
};

static _Thread_local struct recent_row recent_rows[RECENT_ROWS];
static _Thread_local unsigned recent_next;

static struct recent_row *recent_find(const char *org_id, int64_t hour) {
  for (size_t i = 0; i < RECENT_ROWS; i++) {
    struct recent_row *r = &recent_rows[i];
    if (r->first_id[0] && r->hour == hour && strcmp(r->org_id, org_id) == 0) return r;
  }
  return NULL;
}

static void recent_note(struct recent_row *r, const char *org_id, int64_t hour,
                        const char *first_id, size_t len) {
  if (!r) r = &recent_rows[recent_next++ % RECENT_ROWS];
  if (strlen(first_id) > LIMIT_EVENT_ID_MAX || len > ROLLUP_MARK_ROW_MAX) {
    r->first_id[0] = '\0';
    return;
  }
  snprintf(r->org_id, sizeof(r->org_id), "%s", org_id);
  r->hour = hour;
  snprintf(r->first_id, sizeof(r->first_id), "%s", first_id);
  r->len = len;
}

/* One hour's lines: appended to the row this writer inserted last for the
 * org and hour when they fit, else a new row. */
static int marks_write(struct store_tx *tx, const struct org_scope *scope, int64_t hour,
                       const char *first_id, const struct buf *text) {
  struct recent_row *r = recent_find(scope->org_id, hour);
  if (r && r->len + text->len <= ROLLUP_MARK_ROW_MAX) {
    struct db_stmt *st = db_prepare(tx, mark_append_sql);
    if (!st) return KEEL_ESTORE;
    db_bind_uuid(st, 1, scope->org_id);
    db_bind_i64(st, 2, hour);
    db_bind_textn_nocopy(st, 3, r->first_id, strlen(r->first_id));
    db_bind_textn_nocopy(st, 4, text->data, text->len);
    int rc = db_step(st);
    if (rc < 0) return rc;
    if (db_changes(tx) == 1) {
      r->len += text->len;
      return 0;
    }
  }
  struct db_stmt *st = db_prepare(tx, mark_insert_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, hour);
  db_bind_textn_nocopy(st, 3, first_id, strlen(first_id));
  db_bind_textn_nocopy(st, 4, text->data, text->len);
  int rc = db_step(st);
  if (rc < 0) return rc;
  recent_note(r, scope->org_id, hour, first_id, text->len);
  /* The hour has one more row: the compaction job merges it once ended. */
  return exec_org_hour(tx, mark_dirty_sql, scope, hour);
}

static void recent_forget(const char *org_id, int64_t hour) {
  struct recent_row *r;
  while ((r = recent_find(org_id, hour)) != NULL) r->first_id[0] = '\0';
}

/* --- compaction of funnel_marks ----------------------------------------------------- */

static const char compact_hours_sql[] =
    "SELECT org_id, @us(hour) FROM funnel_marks_dirty WHERE hour < @ts($1) LIMIT $2";
static const char compact_read_sql[] =
    "SELECT first_id, marks FROM funnel_marks WHERE org_id = $1 AND hour = @ts($2)";
static const char compact_delete_sql[] =
    "DELETE FROM funnel_marks WHERE org_id = $1 AND hour = @ts($2)";
static const char compact_done_sql[] =
    "DELETE FROM funnel_marks_dirty WHERE org_id = $1 AND hour = @ts($2)";

/* A compacted row holds lines up to about this many characters. */
#define COMPACT_ROW_TARGET 65536

struct compact_line {
  char *session; /* owned, terminated */
  char *marks;   /* owned */
  size_t len, cap;
};

static int line_cmp(const void *a, const void *b) {
  return strcmp(((const struct compact_line *)a)->session,
                ((const struct compact_line *)b)->session);
}

/* Marks in time order (8 hex digits of fixed width sort as numbers), then
 * by type. */
static int mark_cmp(const void *a, const void *b) {
  int c = memcmp((const char *)a + 1, (const char *)b + 1, ROLLUP_MARK_LEN - 1);
  return c ? c : (int)*(const unsigned char *)a - (int)*(const unsigned char *)b;
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One org-hour: its rows rewritten as a line per session. */
static int compact_hour(struct store_tx *tx, const struct org_scope *scope, int64_t hour) {
  struct compact_line *lines = NULL;
  size_t n_lines = 0, cap_lines = 0;
  char **ids = NULL;
  size_t n_ids = 0, cap_ids = 0;
  struct buf text;
  buf_init(&text, SIZE_MAX);
  int rc = 0;
  struct db_stmt *st = db_prepare(tx, compact_read_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, scope->org_id);
  db_bind_i64(st, 2, hour);
  while ((rc = db_step(st)) == DB_ROW) {
    const char *id = db_col_text(st, 0), *p = db_col_text(st, 1);
    GROW(ids, n_ids, cap_ids);
    ids[n_ids++] = xstrdup(id ? id : "");
    const char *end = p ? p + db_col_len(st, 1) : NULL;
    while (p && p < end) {
      const char *sp = memchr(p, ' ', (size_t)(end - p));
      const char *nl = sp ? memchr(sp, '\n', (size_t)(end - sp)) : NULL;
      if (!nl) break; /* not written by keel: dropped */
      size_t mlen = (size_t)(nl - sp - 1) / ROLLUP_MARK_LEN * ROLLUP_MARK_LEN;
      GROW(lines, n_lines, cap_lines);
      struct compact_line *l = &lines[n_lines++];
      l->session = xstrndup(p, (size_t)(sp - p));
      l->marks = xmalloc(mlen ? mlen : 1);
      memcpy(l->marks, sp + 1, mlen);
      l->len = l->cap = mlen;
      p = nl + 1;
    }
  }
  rc = rc == DB_DONE ? 0 : rc < 0 ? rc : KEEL_ESTORE;
  db_reset(st);
  /* Lines of one session together, then merged, their marks in time order. */
  qsort(lines, n_lines, sizeof(*lines), line_cmp);
  size_t out = 0;
  for (size_t i = 0; i < n_lines; i++) {
    if (out > 0 && strcmp(lines[out - 1].session, lines[i].session) == 0) {
      struct compact_line *d = &lines[out - 1];
      if (d->len + lines[i].len > d->cap) {
        d->cap = (d->len + lines[i].len) * 2;
        d->marks = xrealloc(d->marks, d->cap);
      }
      memcpy(d->marks + d->len, lines[i].marks, lines[i].len);
      d->len += lines[i].len;
      xfree(lines[i].session);
      xfree(lines[i].marks);
    } else {
      lines[out++] = lines[i];
    }
  }
  n_lines = out;
  if (rc == 0) rc = exec_org_hour(tx, compact_delete_sql, scope, hour);
  /* The new rows take the old rows' keys, in order: there are fewer. */
  if (rc == 0) qsort(ids, n_ids, sizeof(*ids), str_cmp);
  size_t next_id = 0;
  for (size_t i = 0; rc == 0 && i < n_lines; i++) {
    struct compact_line *l = &lines[i];
    qsort(l->marks, l->len / ROLLUP_MARK_LEN, ROLLUP_MARK_LEN, mark_cmp);
    buf_append_cstr(&text, l->session);
    buf_putc(&text, ' ');
    buf_append(&text, l->marks, l->len);
    buf_putc(&text, '\n');
    if (text.len < COMPACT_ROW_TARGET && i + 1 < n_lines) continue;
    if (next_id == n_ids) {
      rc = KEEL_ESTORE; /* unreachable: a row holds at least one line */
      break;
    }
    st = db_prepare(tx, mark_insert_sql);
    if (!st) {
      rc = KEEL_ESTORE;
      break;
    }
    db_bind_uuid(st, 1, scope->org_id);
    db_bind_i64(st, 2, hour);
    db_bind_text(st, 3, ids[next_id++]);
    db_bind_textn_nocopy(st, 4, text.data, text.len);
    rc = db_step(st);
    rc = rc < 0 ? rc : 0;
    buf_reset(&text);
  }
  if (rc == 0) rc = exec_org_hour(tx, compact_done_sql, scope, hour);
  if (rc == 0) recent_forget(scope->org_id, hour);
  for (size_t i = 0; i < n_lines; i++) {
    xfree(lines[i].session);
    xfree(lines[i].marks);
  }
  xfree(lines);
  for (size_t i = 0; i < n_ids; i++) xfree(ids[i]);
  xfree(ids);
  buf_free(&text);
  return rc;
}

int rollup_marks_compact(struct store_tx *tx, int64_t before_us, int max_hours, int *compacted) {
  *compacted = 0;
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, compact_hours_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, before_us);
  db_bind_i64(st, 2, max_hours);
  struct {
    struct org_scope scope;
    int64_t hour;
  } *todo = xcalloc((size_t)(max_hours > 0 ? max_hours : 1), sizeof(*todo));
  int n = 0, rc = DB_DONE;
  while (n < max_hours && (rc = db_step(st)) == DB_ROW) {
    db_col_uuid(st, 0, todo[n].scope.org_id);
    todo[n].hour = db_col_i64(st, 1);
    n++;
  }
  db_reset(st);
  if (rc < 0) {
    xfree(todo);
    return rc;
  }
  rc = 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    if (db_scope(tx, &todo[i].scope) != 0) {
      rc = KEEL_ESTORE;
      break;
    }
    rc = compact_hour(tx, &todo[i].scope, todo[i].hour);
    if (rc == 0) (*compacted)++;
  }
  xfree(todo);
  return rc;
}

static int step_done(struct db_stmt *st) {
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

int rollup_acc_flush(struct store_tx *tx, const struct org_scope *scope, struct rollup_acc *a) {
  struct buf scratch;
  buf_init(&scratch, 4 * ANALYTICS_SKETCH_KEYS * 6);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < a->n_hourly; i++) {
    rc = hourly_write(tx, scope, &a->hourly[i], &scratch);
  }
  buf_free(&scratch);
  for (size_t i = 0; rc == 0 && i < a->n_tools; i++) {
    const struct tool *t = &a->tools[i];
    struct db_stmt *st = db_prepare(tx, tool_upsert_sql);
    if (!st) return KEEL_ESTORE;
    db_bind_uuid(st, 1, scope->org_id);
    db_bind_textn_nocopy(st, 2, t->agent, strlen(t->agent));
    db_bind_i64(st, 3, t->hour);
    db_bind_textn_nocopy(st, 4, t->name, strlen(t->name));
    db_bind_i64(st, 5, t->calls);
    db_bind_i64(st, 6, t->errors);
    db_bind_i64(st, 7, t->dur_count);
    db_bind_i64(st, 8, t->dur_sum_us);
    db_bind_i64(st, 9, t->dur_max_us);
    rc = step_done(st);
  }
  for (size_t i = 0; rc == 0 && i < a->n_agents; i++) {
    const struct agent *g = &a->agents[i];
    struct db_stmt *st = db_prepare(tx, agent_upsert_sql);
    if (!st) return KEEL_ESTORE;
    db_bind_uuid(st, 1, scope->org_id);
    db_bind_textn_nocopy(st, 2, g->agent, strlen(g->agent));
    db_bind_i64(st, 3, g->first);
    db_bind_i64(st, 4, g->last);
    db_bind_i64(st, 5, g->events);
    rc = step_done(st);
  }
  /* funnel_marks: one row per hour, a line per session (store/rollups.h). */
  struct buf text;
  buf_init(&text, SIZE_MAX);
  for (size_t h = 0; rc == 0 && h < a->n_mark_hours; h++) {
    const struct mark_hour *mh = &a->mark_hours[h];
    buf_reset(&text);
    for (size_t i = 0; i < a->n_marks; i++) {
      const struct mark_line *m = &a->marks[i];
      if (m->hour != mh->hour) continue;
      buf_append_cstr(&text, m->session);
      buf_putc(&text, ' ');
      buf_append(&text, m->marks, m->len);
      buf_putc(&text, '\n');
    }
    rc = marks_write(tx, scope, mh->hour, mh->first_id, &text);
  }
  buf_free(&text);
  for (size_t i = 0; rc == 0 && i < a->n_users; i++) {
    const struct user_week *u = &a->users[i];
    const char *sqls[] = {user_upsert_sql, user_week_sql};
    for (int k = 0; rc == 0 && k < 2; k++) {
      struct db_stmt *st = db_prepare(tx, sqls[k]);
      if (!st) return KEEL_ESTORE;
      db_bind_uuid(st, 1, scope->org_id);
      db_bind_text(st, 2, u->user);
      db_bind_i64(st, 3, u->week);
      rc = step_done(st);
    }
  }
  return rc;
}
