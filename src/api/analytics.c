/*
 * analytics.c — the analytics routes (R-QRY-3, R-QRY-4, R-QRY-5, R-QRY-7;
 * docs/analytics.md):
 *
 *   GET  /v1/analytics/costs | tokens | latency | errors   hourly rollups by bucket and group
 *   GET  /v1/agents                                        agents seen, paged by id
 *   GET  /v1/agents/{id}/performance                       runs, durations, cost, slowest tools
 *   GET  /v1/agents/{id}/health                            the 0–100 score and its trend
 *   POST /v1/analytics/funnel                              ordered steps per session or user
 *   GET  /v1/analytics/cohorts                             weekly retention of end users
 *
 * All take an API key with the read scope or a session with telemetry.read
 * (the org: the key's, or X-Keel-Org / the active org). Parameters are
 * checked before anything is read (400 validation_failed naming the
 * parameter). Reads go through store/analytics.h, one store_read each;
 * aggregation by bucket and group happens here, in memory, on the worker.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/analytics.h"
#include "domain/events.h"
#include "domain/pricing.h"
#include "store/analytics.h"
#include "store/rollups.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The longest range a rollup query covers, and the longest at hourly
 * buckets (the answer's size). */
#define ANALYTICS_RANGE_MAX_DAYS     400
#define ANALYTICS_HOURLY_MAX_DAYS    31
#define ANALYTICS_FUNNEL_STEPS_MAX   10
#define ANALYTICS_FUNNEL_MATCH_MAX   8
#define ANALYTICS_FUNNEL_WINDOW_DAYS 90
#define ANALYTICS_FUNNEL_EVENTS_MAX  5000000
#define ANALYTICS_COHORT_WEEKS_MAX   52
#define ANALYTICS_SLOWEST_TOOLS      10

/* --- parameters ---------------------------------------------------------------- */

/* ?<name>= as one of names[0..n): its index, or -1 (absent: dflt). */
static int query_enum(struct ctx *ctx, struct field_errors *fe, const char *name,
                      const char *const *names, size_t n, int dflt, const char *message) {
  const char *s = http_req_query(ctx->req, name);
  if (!s) return dflt;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(names[i], s) == 0) return (int)i;
  }
  field_errors_add(fe, name, "not_allowed", message);
  return -1;
}

static void query_time(struct ctx *ctx, struct field_errors *fe, const char *name, int64_t *us) {
  const char *s = http_req_query(ctx->req, name);
  if (s && time_parse_rfc3339(slice_from_cstr(s), us) != 0) {
    field_errors_add(fe, name, "invalid_format",
                     "must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z");
  }
}

/* A window "<n>d" with n in allowed[] (or 1..max_days when allowed is NULL). */
static int64_t parse_window(const char *s, const int *allowed, size_t n_allowed, int max_days) {
  if (!s) return -1;
  size_t len = strlen(s);
  int64_t days;
  if (len < 2 || s[len - 1] != 'd' || slice_to_i64(slice_make(s, len - 1), &days) != 0 ||
      days < 1) {
    return -1;
  }
  if (allowed) {
    for (size_t i = 0; i < n_allowed; i++) {
      if (allowed[i] == days) return days * US_PER_DAY;
    }
    return -1;
  }
  return days <= max_days ? days * US_PER_DAY : -1;
}

static const char *time_text(struct ctx *ctx, int64_t us) {
  char *out = arena_alloc(ctx->arena, RFC3339_MAX);
  time_format_rfc3339(us, out);
  return out;
}

static json_t *usd(int64_t nano) {
  char text[PRICING_USD_MAX];
  size_t n = pricing_format_usd(nano, text);
  return json_stringn(text, n);
}

/* A number rounded to 3 decimals (ms), or null when negative (none). */
static json_t *ms_value(double ms) {
  return ms < 0 ? json_null() : json_real(round(ms * 1000.0) / 1000.0);
}

static json_t *ratio(int64_t num, int64_t den) {
  return den > 0 ? json_real(round((double)num / (double)den * 1e6) / 1e6) : json_null();
}

/* Runs fn in a read transaction; answers the failure (0 returned after a
 * response) or returns 1 to go on. */
static int read_or_answer(struct ctx *ctx, int (*fn)(struct store_tx *, void *), void *arg,
                          const char *not_found) {
  int rc = store_read(api_store(ctx->api), fn, arg);
  if (rc == 0) return 1;
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", not_found), 0;
  return api_status(ctx, rc), 0;
}

/* --- series: GET /v1/analytics/{costs,tokens,latency,errors} --------------------------- */

enum series_kind { SERIES_COSTS, SERIES_TOKENS, SERIES_LATENCY, SERIES_ERRORS };
enum group_by { GROUP_NONE = -1, GROUP_MODEL, GROUP_AGENT, GROUP_API_KEY, GROUP_PROVIDER };
static const char *const group_names[] = {"model", "agent", "api_key", "provider"};
static const char *const bucket_names[] = {"hour", "day", "week"};

/* One (bucket, group) cell. */
struct cell {
  uint32_t hash;
  int64_t bucket;
  char *group; /* arena; "" for none */
  struct analytics_hour_row sum;
  struct sketch latency;
};

#define SERIES_DENSE_MAX 32

struct series_job {
  struct ctx *ctx;
  enum series_kind kind;
  enum analytics_bucket bucket;
  int group_by;
  int64_t from, to; /* hour-aligned */
  struct cell *cells;
  size_t n, cap;
  int32_t *slots; /* open addressing over cells: index + 1 */
  size_t nslots;
  bool damaged;
  /* Latency: rows come in hour order, so only the current bucket's cells
   * take histograms; they merge into dense accumulators (one per group, up
   * to SERIES_DENSE_MAX; past that, straight into the cell's sketch),
   * flushed into the cells when the bucket moves on. */
  int64_t dense_bucket;
  struct {
    size_t cell;
    struct sketch_dense *d;
  } active[SERIES_DENSE_MAX];
  size_t n_active;
  struct sketch_dense *dense_pool[SERIES_DENSE_MAX]; /* allocated as needed */
};

static void dense_flush_all(struct series_job *j) {
  for (size_t i = 0; i < j->n_active; i++) {
    sketch_dense_flush(j->active[i].d, &j->cells[j->active[i].cell].latency);
  }
  j->n_active = 0;
}

/* The dense accumulator of cell c, or NULL when all are taken. */
static struct sketch_dense *dense_of(struct series_job *j, size_t c) {
  for (size_t i = 0; i < j->n_active; i++) {
    if (j->active[i].cell == c) return j->active[i].d;
  }
  if (j->n_active == SERIES_DENSE_MAX) return NULL;
  struct sketch_dense **d = &j->dense_pool[j->n_active];
  if (!*d) {
    *d = xmalloc(sizeof(**d));
    sketch_dense_init(*d);
  }
  j->active[j->n_active].cell = c;
  j->active[j->n_active].d = *d;
  j->n_active++;
  return *d;
}

static uint32_t hash_cell(int64_t bucket, const char *group) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < 8; i++) h = (h ^ (uint8_t)(bucket >> (8 * i))) * 16777619u;
  for (; *group; group++) h = (h ^ (uint8_t)*group) * 16777619u;
  return h;
}

static void cells_rehash(struct series_job *j) {
  size_t nslots = j->nslots ? j->nslots * 2 : 256;
  int32_t *slots = xcalloc(nslots, sizeof(*slots));
  for (size_t i = 0; i < j->n; i++) {
    size_t s = j->cells[i].hash & (nslots - 1);
    while (slots[s]) s = (s + 1) & (nslots - 1);
    slots[s] = (int32_t)i + 1;
  }
  xfree(j->slots);
  j->slots = slots;
  j->nslots = nslots;
}

static struct cell *cell_find(struct series_job *j, int64_t bucket, const char *group) {
  if (2 * (j->n + 1) > j->nslots) cells_rehash(j);
  uint32_t h = hash_cell(bucket, group);
  size_t s = h & (j->nslots - 1);
  for (; j->slots[s]; s = (s + 1) & (j->nslots - 1)) {
    struct cell *c = &j->cells[j->slots[s] - 1];
    if (c->hash == h && c->bucket == bucket && strcmp(c->group, group) == 0) return c;
  }
  if (j->n == j->cap) {
    j->cap = j->cap ? j->cap * 2 : 64;
    j->cells = xreallocarray(j->cells, j->cap, sizeof(*j->cells));
  }
  struct cell *c = &j->cells[j->n];
  memset(c, 0, sizeof(*c));
  c->hash = h;
  c->bucket = bucket;
  c->group = arena_strdup(j->ctx->arena, group);
  sketch_init(&c->latency);
  j->slots[s] = (int32_t)++j->n;
  return c;
}

static void series_free(struct series_job *j) {
  for (size_t i = 0; i < SERIES_DENSE_MAX; i++) xfree(j->dense_pool[i]);
  for (size_t i = 0; i < j->n; i++) sketch_free(&j->cells[i].latency);
  xfree(j->cells);
  xfree(j->slots);
}

static const char *row_group(const struct analytics_hour_row *r, int group_by) {
  switch (group_by) {
    case GROUP_MODEL:
      return r->model;
    case GROUP_AGENT:
      return r->agent_id;
    case GROUP_API_KEY:
      return r->api_key_id;
    case GROUP_PROVIDER:
      return r->provider;
    default:
      return "";
  }
}

/* Adds the counters of r to s (the row's strings are not kept). */
static void hour_add(struct analytics_hour_row *s, const struct analytics_hour_row *r) {
  s->events += r->events;
  s->session_starts += r->session_starts;
  s->session_ends += r->session_ends;
  s->llm_calls += r->llm_calls;
  s->tool_calls += r->tool_calls;
  s->errors += r->errors;
  s->error_events += r->error_events;
  s->tool_errors += r->tool_errors;
  s->llm_errors += r->llm_errors;
  s->other_errors += r->other_errors;
  s->input_tokens += r->input_tokens;
  s->output_tokens += r->output_tokens;
  s->reasoning_tokens += r->reasoning_tokens;
  s->cache_read_tokens += r->cache_read_tokens;
  s->cache_write_tokens += r->cache_write_tokens;
  s->cost_nano += r->cost_nano;
  s->latency_count += r->latency_count;
  s->latency_sum_us += r->latency_sum_us;
}

static int series_row(const struct analytics_hour_row *r, void *arg) {
  struct series_job *j = arg;
  /* Costs, tokens and latency are llm_call figures: other rows add nothing. */
  if (j->kind != SERIES_ERRORS && r->llm_calls == 0) return 0;
  if (j->kind == SERIES_LATENCY && r->latency_count == 0) return 0;
  int64_t bucket = analytics_bucket_start(j->bucket, r->hour);
  if (j->n_active && bucket != j->dense_bucket) dense_flush_all(j);
  j->dense_bucket = bucket;
  struct cell *c = cell_find(j, bucket, row_group(r, j->group_by));
  hour_add(&c->sum, r);
  if (j->kind == SERIES_LATENCY && r->latency_hist.len) {
    struct sketch_dense *d = dense_of(j, (size_t)(c - j->cells));
    int rc = d ? sketch_dense_decode_merge(d, r->latency_hist.p, r->latency_hist.len)
               : sketch_decode_merge(&c->latency, r->latency_hist.p, r->latency_hist.len);
    if (rc != 0) j->damaged = true;
  }
  return 0;
}

static int series_tx(struct store_tx *tx, void *arg) {
  struct series_job *j = arg;
  for (size_t i = 0; i < j->n; i++) sketch_free(&j->cells[i].latency);
  j->n = 0;
  if (j->slots) memset(j->slots, 0, j->nslots * sizeof(*j->slots));
  j->n_active = 0; /* an earlier attempt's counts are dropped */
  for (size_t i = 0; i < SERIES_DENSE_MAX && j->dense_pool[i]; i++) {
    sketch_dense_init(j->dense_pool[i]);
  }
  static const enum analytics_series store_kind[] = {[SERIES_COSTS] = ANALYTICS_SERIES_COSTS,
                                                     [SERIES_TOKENS] = ANALYTICS_SERIES_TOKENS,
                                                     [SERIES_LATENCY] = ANALYTICS_SERIES_LATENCY,
                                                     [SERIES_ERRORS] = ANALYTICS_SERIES_ERRORS};
  int rc = store_analytics_series(tx, &j->ctx->scope, store_kind[j->kind],
                                  j->group_by == GROUP_API_KEY, j->from, j->to, series_row, j);
  if (rc == 0) dense_flush_all(j);
  return rc;
}

static int cell_cmp(const void *a, const void *b) {
  const struct cell *x = a, *y = b;
  if (x->bucket != y->bucket) return x->bucket < y->bucket ? -1 : 1;
  return strcmp(x->group, y->group);
}

static json_t *series_element(struct series_job *j, struct cell *c) {
  const struct analytics_hour_row *s = &c->sum;
  json_t *o = json_pack("{s:s, s:o}", "bucket", time_text(j->ctx, c->bucket), "group",
                        c->group[0] ? json_string(c->group) : json_null());
  switch (j->kind) {
    case SERIES_COSTS:
      json_object_set_new(o, "cost_usd", usd(s->cost_nano));
      json_object_set_new(o, "llm_calls", json_integer(s->llm_calls));
      break;
    case SERIES_TOKENS:
      json_object_set_new(
          o, "tokens",
          json_pack("{s:I, s:I, s:I, s:I, s:I}", "input", (json_int_t)s->input_tokens, "output",
                    (json_int_t)s->output_tokens, "reasoning", (json_int_t)s->reasoning_tokens,
                    "cache_read", (json_int_t)s->cache_read_tokens, "cache_write",
                    (json_int_t)s->cache_write_tokens));
      json_object_set_new(o, "llm_calls", json_integer(s->llm_calls));
      break;
    case SERIES_LATENCY:
      json_object_set_new(o, "count", json_integer(s->latency_count));
      json_object_set_new(o, "mean_ms",
                          ms_value((double)s->latency_sum_us / 1000.0 / (double)s->latency_count));
      json_object_set_new(o, "p50_ms", ms_value(sketch_quantile(&c->latency, 0.50)));
      json_object_set_new(o, "p95_ms", ms_value(sketch_quantile(&c->latency, 0.95)));
      json_object_set_new(o, "p99_ms", ms_value(sketch_quantile(&c->latency, 0.99)));
      break;
    case SERIES_ERRORS:
      json_object_set_new(o, "events", json_integer(s->events));
      json_object_set_new(o, "errors", json_integer(s->errors));
      json_object_set_new(o, "error_rate", ratio(s->errors, s->events));
      json_object_set_new(
          o, "by_type",
          json_pack("{s:I, s:I, s:I, s:I}", "error", (json_int_t)s->error_events, "tool_error",
                    (json_int_t)s->tool_errors, "llm_error", (json_int_t)s->llm_errors, "other",
                    (json_int_t)s->other_errors));
      break;
  }
  return o;
}

static int h_series(struct ctx *ctx, enum series_kind kind) {
  struct field_errors fe = {0};
  struct series_job j = {.ctx = ctx, .kind = kind};
  int b = query_enum(ctx, &fe, "bucket", bucket_names, COUNT_OF(bucket_names), ANALYTICS_DAY,
                     "bucket must be hour, day or week");
  int dflt = kind == SERIES_LATENCY  ? GROUP_MODEL
             : kind == SERIES_ERRORS ? GROUP_AGENT
                                     : GROUP_NONE;
  const char *g = http_req_query(ctx->req, "group_by");
  j.group_by = dflt;
  if (g && strcmp(g, "none") == 0) {
    j.group_by = GROUP_NONE;
  } else if (g) {
    j.group_by = query_enum(ctx, &fe, "group_by", group_names, COUNT_OF(group_names), dflt,
                            "group_by must be model, agent, api_key, provider or none");
  }
  int64_t now = time_now_us();
  int64_t to = now, from = INT64_MIN;
  query_time(ctx, &fe, "to", &to);
  query_time(ctx, &fe, "from", &from);
  if (from == INT64_MIN) from = to - 30 * US_PER_DAY;
  if (fe.count == 0 && from > to) field_errors_add(&fe, "from", "out_of_range", "from is after to");
  if (fe.count == 0 && to - from > ANALYTICS_RANGE_MAX_DAYS * US_PER_DAY) {
    field_errors_add(&fe, "from", "out_of_range", "the range from..to is at most 400 days");
  }
  if (fe.count == 0 && b == ANALYTICS_HOUR && to - from > ANALYTICS_HOURLY_MAX_DAYS * US_PER_DAY) {
    field_errors_add(&fe, "bucket", "out_of_range",
                     "hourly buckets cover at most 31 days; use day or week");
  }
  if (fe.count) return api_validation(ctx, &fe);
  j.bucket = (enum analytics_bucket)b;
  /* Whole hours: the rollups' grain. */
  j.from = analytics_bucket_start(ANALYTICS_HOUR, from);
  j.to = analytics_bucket_start(ANALYTICS_HOUR, to);
  if (j.to < to) j.to += US_PER_HOUR;
  if (!read_or_answer(ctx, series_tx, &j, NULL)) {
    series_free(&j);
    return 0;
  }
  if (j.n > 1) qsort(j.cells, j.n, sizeof(*j.cells), cell_cmp); /* cells is NULL when empty */
  json_t *data = json_array();
  int64_t total_cost = 0;
  for (size_t i = 0; i < j.n; i++) {
    json_array_append_new(data, series_element(&j, &j.cells[i]));
    total_cost += j.cells[i].sum.cost_nano;
  }
  json_t *body =
      json_pack("{s:s, s:o, s:s, s:s, s:o}", "bucket", bucket_names[b], "group_by",
                j.group_by == GROUP_NONE ? json_null() : json_string(group_names[j.group_by]),
                "from", time_text(ctx, j.from), "to", time_text(ctx, j.to), "data", data);
  if (kind == SERIES_COSTS) json_object_set_new(body, "total_cost_usd", usd(total_cost));
  series_free(&j);
  return api_json(ctx, 200, body);
}

static int h_costs(struct ctx *ctx) {
  return h_series(ctx, SERIES_COSTS);
}
static int h_tokens(struct ctx *ctx) {
  return h_series(ctx, SERIES_TOKENS);
}
static int h_latency(struct ctx *ctx) {
  return h_series(ctx, SERIES_LATENCY);
}
static int h_errors(struct ctx *ctx) {
  return h_series(ctx, SERIES_ERRORS);
}

/* --- GET /v1/agents ---------------------------------------------------------------------- */

struct agents_job {
  struct ctx *ctx;
  const char *after;
  int64_t limit;
  json_t *data;
  const char *last;
};

static json_t *agent_json(struct ctx *ctx, const struct analytics_agent_row *r) {
  return json_pack("{s:s, s:s, s:s, s:I}", "agent_id", r->agent_id, "first_seen",
                   time_text(ctx, r->first_seen_us), "last_activity",
                   time_text(ctx, r->last_seen_us), "events", (json_int_t)r->events);
}

static int agents_row(const struct analytics_agent_row *r, void *arg) {
  struct agents_job *j = arg;
  json_array_append_new(j->data, agent_json(j->ctx, r));
  j->last = arena_strdup(j->ctx->arena, r->agent_id);
  return 0;
}

static int agents_tx(struct store_tx *tx, void *arg) {
  struct agents_job *j = arg;
  json_array_clear(j->data);
  return store_analytics_agents(tx, &j->ctx->scope, j->after, j->limit + 1, agents_row, j);
}

static int h_agents(struct ctx *ctx) {
  struct field_errors fe = {0};
  struct agents_job j = {.ctx = ctx, .after = "", .limit = LIMIT_PAGE_DEFAULT};
  const char *s = http_req_query(ctx->req, "limit");
  if (s && (slice_to_i64(slice_from_cstr(s), &j.limit) != 0 || j.limit < 1 ||
            j.limit > LIMIT_PAGE_MAX)) {
    field_errors_add(&fe, "limit", "out_of_range", "limit must be an integer from 1 to 200");
  }
  const char *cursor = http_req_query(ctx->req, "cursor");
  if (cursor && cursor[0]) {
    uint8_t raw[LIMIT_EVENT_AGENT_ID_MAX + 4];
    size_t len = strlen(cursor);
    long n = len <= LIMIT_CURSOR_MAX ? crypto_unb64url(cursor, len, raw, sizeof(raw)) : -1;
    if (n < 2 || raw[0] != 'a' ||
        !events_id_valid((const char *)raw + 1, (size_t)n - 1, LIMIT_EVENT_AGENT_ID_MAX)) {
      field_errors_add(&fe, "cursor", "invalid_format",
                       "cursor is not one this list returned; start again without it");
    } else {
      j.after = arena_strndup(ctx->arena, (const char *)raw + 1, (size_t)n - 1);
    }
  }
  if (fe.count) return api_validation(ctx, &fe);
  j.data = json_array();
  if (!read_or_answer(ctx, agents_tx, &j, NULL)) {
    json_decref(j.data);
    return 0;
  }
  json_t *next = json_null();
  if ((int64_t)json_array_size(j.data) > j.limit) {
    json_array_remove(j.data, (size_t)j.limit);
    const char *last =
        json_string_value(json_object_get(json_array_get(j.data, (size_t)j.limit - 1), "agent_id"));
    uint8_t raw[LIMIT_EVENT_AGENT_ID_MAX + 1];
    size_t n = strlen(last);
    raw[0] = 'a';
    memcpy(raw + 1, last, n);
    size_t size = (n + 1 + 2) / 3 * 4 + 1;
    char *text = arena_alloc(ctx->arena, size);
    crypto_b64url(raw, n + 1, text, size);
    json_decref(next);
    next = json_string(text);
  }
  return api_json(ctx, 200, json_pack("{s:o, s:o}", "data", j.data, "next_cursor", next));
}

/* --- agent reads: the path id and the window ------------------------------------------------ */

static const int agent_windows[] = {7, 30, 90};
static const int health_windows[] = {1, 7, 14, 30, 90};

/* The {id} parameter percent-decoded, or NULL after a 404. */
static const char *agent_path_id(struct ctx *ctx) {
  const char *raw = ctx_param(ctx, "id");
  size_t n = raw ? strlen(raw) : 0;
  char *id = arena_alloc(ctx->arena, n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (raw[i] == '%' && i + 2 < n && sscanf(raw + i + 1, "%2x", &v) == 1) {
      id[o++] = (char)v;
      i += 2;
    } else {
      id[o++] = raw[i];
    }
  }
  id[o] = '\0';
  if (!events_id_valid(id, o, LIMIT_EVENT_AGENT_ID_MAX)) {
    api_problem(ctx, "not_found", "no such agent");
    return NULL;
  }
  return id;
}

/* --- GET /v1/agents/{id}/performance --------------------------------------------------------- */

struct tool_sum {
  const char *name;
  int64_t calls, errors, dur_count, dur_sum_us, dur_max_us;
};

struct perf_job {
  struct ctx *ctx;
  const char *agent;
  int64_t from, to, hour_from, hour_to;
  struct analytics_agent_row agent_row;
  struct analytics_hour_row sum;
  int64_t runs, completed, errored;
  int64_t *durations;
  size_t n_dur, cap_dur;
  struct tool_sum *tools;
  size_t n_tools, cap_tools;
};

static int perf_agent(const struct analytics_agent_row *r, void *arg) {
  struct perf_job *j = arg;
  j->agent_row = *r;
  j->agent_row.agent_id = NULL;
  return 0;
}

static int perf_hour(const struct analytics_hour_row *r, void *arg) {
  hour_add(&((struct perf_job *)arg)->sum, r);
  return 0;
}

static int perf_session(const struct analytics_session_row *r, void *arg) {
  struct perf_job *j = arg;
  j->runs++;
  j->completed += strcmp(r->status, "completed") == 0;
  j->errored += strcmp(r->status, "error") == 0;
  if (r->ended && r->ended_us >= r->started_us) {
    if (j->n_dur == j->cap_dur) {
      j->cap_dur = j->cap_dur ? j->cap_dur * 2 : 256;
      j->durations = xreallocarray(j->durations, j->cap_dur, sizeof(*j->durations));
    }
    j->durations[j->n_dur++] = r->ended_us - r->started_us;
  }
  return 0;
}

static int perf_tool(const struct analytics_tool_row *r, void *arg) {
  struct perf_job *j = arg;
  struct tool_sum *t = NULL;
  for (size_t i = 0; i < j->n_tools; i++) {
    if (strcmp(j->tools[i].name, r->tool_name) == 0) {
      t = &j->tools[i];
      break;
    }
  }
  if (!t) {
    if (j->n_tools == j->cap_tools) {
      j->cap_tools = j->cap_tools ? j->cap_tools * 2 : 16;
      j->tools = xreallocarray(j->tools, j->cap_tools, sizeof(*j->tools));
    }
    t = &j->tools[j->n_tools++];
    memset(t, 0, sizeof(*t));
    t->name = arena_strdup(j->ctx->arena, r->tool_name);
  }
  t->calls += r->calls;
  t->errors += r->errors;
  t->dur_count += r->duration_count;
  t->dur_sum_us += r->duration_sum_us;
  if (r->duration_max_us > t->dur_max_us) t->dur_max_us = r->duration_max_us;
  return 0;
}

static int perf_tx(struct store_tx *tx, void *arg) {
  struct perf_job *j = arg;
  const struct org_scope *scope = &j->ctx->scope;
  memset(&j->sum, 0, sizeof(j->sum));
  j->runs = j->completed = j->errored = 0;
  j->n_dur = j->n_tools = 0;
  int rc = store_analytics_agent_get(tx, scope, j->agent, perf_agent, j);
  if (rc == 0)
    rc = store_analytics_hours(tx, scope, j->agent, j->hour_from, j->hour_to, perf_hour, j);
  if (rc == 0) rc = store_analytics_sessions(tx, scope, j->agent, j->from, j->to, perf_session, j);
  if (rc == 0)
    rc = store_analytics_tools(tx, scope, j->agent, j->hour_from, j->hour_to, perf_tool, j);
  return rc;
}

static int i64_cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static double tool_avg_ms(const struct tool_sum *t) {
  return t->dur_count ? (double)t->dur_sum_us / 1000.0 / (double)t->dur_count : -1;
}

static int tool_cmp(const void *a, const void *b) {
  double x = tool_avg_ms(a), y = tool_avg_ms(b);
  if (x != y) return x > y ? -1 : 1;
  return strcmp(((const struct tool_sum *)a)->name, ((const struct tool_sum *)b)->name);
}

/* The window's bounds: [now − window, now + the ingestion skew), and the
 * whole hours that cover it. */
static void window_bounds(int64_t window, int64_t *from, int64_t *to, int64_t *hour_from,
                          int64_t *hour_to) {
  int64_t now = time_now_us();
  *from = now - window;
  *to = now + LIMIT_EVENT_FUTURE_SKEW_US;
  *hour_from = analytics_bucket_start(ANALYTICS_HOUR, *from);
  *hour_to = analytics_bucket_start(ANALYTICS_HOUR, *to) + US_PER_HOUR;
}

static int h_agent_performance(struct ctx *ctx) {
  const char *agent = agent_path_id(ctx);
  if (!agent) return 0;
  struct field_errors fe = {0};
  const char *w = http_req_query(ctx->req, "window");
  int64_t window = w ? parse_window(w, agent_windows, COUNT_OF(agent_windows), 0) : 7 * US_PER_DAY;
  if (window < 0) field_errors_add(&fe, "window", "not_allowed", "window must be 7d, 30d or 90d");
  if (fe.count) return api_validation(ctx, &fe);
  struct perf_job j = {.ctx = ctx, .agent = agent};
  window_bounds(window, &j.from, &j.to, &j.hour_from, &j.hour_to);
  if (!read_or_answer(ctx, perf_tx, &j, "no such agent")) {
    xfree(j.durations);
    xfree(j.tools);
    return 0;
  }
  if (j.n_dur > 1) qsort(j.durations, j.n_dur, sizeof(*j.durations), i64_cmp);
  int64_t dur_sum = 0;
  for (size_t i = 0; i < j.n_dur; i++) dur_sum += j.durations[i];
  double avg = j.n_dur ? (double)dur_sum / 1000.0 / (double)j.n_dur : -1;
  double p95 =
      j.n_dur ? (double)j.durations[(size_t)floor(0.95 * (double)(j.n_dur - 1))] / 1000.0 : -1;
  if (j.n_tools > 1) qsort(j.tools, j.n_tools, sizeof(*j.tools), tool_cmp);
  json_t *tools = json_array();
  for (size_t i = 0; i < j.n_tools && i < ANALYTICS_SLOWEST_TOOLS; i++) {
    const struct tool_sum *t = &j.tools[i];
    json_array_append_new(
        tools,
        json_pack("{s:s, s:I, s:I, s:o, s:o}", "tool_name", t->name, "calls", (json_int_t)t->calls,
                  "errors", (json_int_t)t->errors, "avg_duration_ms", ms_value(tool_avg_ms(t)),
                  "max_duration_ms", ms_value(t->dur_count ? (double)t->dur_max_us / 1000.0 : -1)));
  }
  const struct analytics_hour_row *s = &j.sum;
  json_t *body = json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:o}",
      "agent_id", agent, "window", w ? w : "7d", "from", time_text(ctx, j.from), "to",
      time_text(ctx, j.to), "runs", (json_int_t)j.runs, "completed", (json_int_t)j.completed,
      "errored", (json_int_t)j.errored, "active", (json_int_t)(j.runs - j.completed - j.errored),
      "success_rate", ratio(j.completed, j.completed + j.errored), "avg_duration_ms", ms_value(avg),
      "p95_duration_ms", ms_value(p95), "cost_usd", usd(s->cost_nano), "events",
      (json_int_t)s->events, "errors", (json_int_t)s->errors, "llm_calls", (json_int_t)s->llm_calls,
      "tokens",
      json_pack("{s:I, s:I, s:I, s:I, s:I}", "input", (json_int_t)s->input_tokens, "output",
                (json_int_t)s->output_tokens, "reasoning", (json_int_t)s->reasoning_tokens,
                "cache_read", (json_int_t)s->cache_read_tokens, "cache_write",
                (json_int_t)s->cache_write_tokens),
      "slowest_tools", tools);
  xfree(j.durations);
  xfree(j.tools);
  return api_json(ctx, 200, body);
}

/* --- GET /v1/agents/{id}/health -------------------------------------------------------------- */

/*
 * Windows, oldest first, each `window` long and ending at hour_to:
 * 0..3 the history of the previous window, 1..4 the history of the current
 * one, 4 the previous window, 5 the current one.
 */
#define HEALTH_SPANS 6

struct health_job {
  struct ctx *ctx;
  const char *agent;
  int64_t window, hour_from, hour_to;
  struct analytics_hour_row span[HEALTH_SPANS];
  struct sketch latency[HEALTH_SPANS];
};

static int health_hour(const struct analytics_hour_row *r, void *arg) {
  struct health_job *j = arg;
  int64_t k = (r->hour - j->hour_from) / j->window;
  if (k < 0 || k >= HEALTH_SPANS) return 0;
  hour_add(&j->span[k], r);
  if (r->latency_hist.len) {
    (void)sketch_decode_merge(&j->latency[k], r->latency_hist.p, r->latency_hist.len);
  }
  return 0;
}

static int health_noop(const struct analytics_agent_row *r, void *arg) {
  (void)r;
  (void)arg;
  return 0;
}

static int health_tx(struct store_tx *tx, void *arg) {
  struct health_job *j = arg;
  for (int k = 0; k < HEALTH_SPANS; k++) {
    memset(&j->span[k], 0, sizeof(j->span[k]));
    sketch_free(&j->latency[k]);
  }
  int rc = store_analytics_agent_get(tx, &j->ctx->scope, j->agent, health_noop, j);
  if (rc == 0) {
    rc = store_analytics_hours(tx, &j->ctx->scope, j->agent, j->hour_from, j->hour_to, health_hour,
                               j);
  }
  return rc;
}

/* The inputs for the window at span k, its history being k−4..k−1. */
static void health_inputs_at(const struct health_job *j, int k, struct health_inputs *in) {
  const struct analytics_hour_row *s = &j->span[k];
  memset(in, 0, sizeof(*in));
  in->events = s->events;
  in->errors = s->errors;
  in->runs = s->session_starts;
  in->cost_nano = s->cost_nano;
  for (int h = k - 4; h < k; h++) {
    if (h < 0) continue;
    in->base_runs += j->span[h].session_starts;
    in->base_events += j->span[h].events;
    in->base_cost_nano += j->span[h].cost_nano;
  }
  in->tool_calls = s->tool_calls;
  in->tool_errors = s->tool_errors;
  in->latency_p95_ms = sketch_quantile(&j->latency[k], 0.95);
  in->session_starts = s->session_starts;
  in->session_ends = s->session_ends;
}

static json_t *dimension(double score, double weight, const char *name, json_t *value) {
  return json_pack("{s:f, s:f, s:o}", "score", round(score * 10.0) / 10.0, "weight", weight, name,
                   value);
}

static int h_agent_health(struct ctx *ctx) {
  const char *agent = agent_path_id(ctx);
  if (!agent) return 0;
  struct field_errors fe = {0};
  const char *w = http_req_query(ctx->req, "window");
  int64_t window =
      w ? parse_window(w, health_windows, COUNT_OF(health_windows), 0) : 7 * US_PER_DAY;
  if (window < 0) {
    field_errors_add(&fe, "window", "not_allowed", "window must be 1d, 7d, 14d, 30d or 90d");
  }
  if (fe.count) return api_validation(ctx, &fe);
  struct health_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->agent = agent;
  j->window = window;
  int64_t from, to, hf;
  window_bounds(window, &from, &to, &hf, &j->hour_to);
  j->hour_from = j->hour_to - HEALTH_SPANS * window;
  for (int k = 0; k < HEALTH_SPANS; k++) sketch_init(&j->latency[k]);
  int ok = read_or_answer(ctx, health_tx, j, "no such agent");
  struct health_inputs cur_in, prev_in;
  health_inputs_at(j, 5, &cur_in);
  health_inputs_at(j, 4, &prev_in);
  for (int k = 0; k < HEALTH_SPANS; k++) sketch_free(&j->latency[k]);
  if (!ok) return 0;
  struct health_score cur, prev;
  analytics_health(&cur_in, &cur);
  analytics_health(&prev_in, &prev);
  bool has_cur = cur_in.events > 0, has_prev = prev_in.events > 0;
  double cost_per = -1, base_per = -1;
  if (cur_in.runs > 0 && cur_in.base_runs > 0) {
    cost_per = (double)cur_in.cost_nano / (double)cur_in.runs;
    base_per = (double)cur_in.base_cost_nano / (double)cur_in.base_runs;
  } else if (cur_in.events > 0 && cur_in.base_events > 0) {
    cost_per = (double)cur_in.cost_nano / (double)cur_in.events;
    base_per = (double)cur_in.base_cost_nano / (double)cur_in.base_events;
  }
  json_t *dims = json_object();
  json_object_set_new(
      dims, "error_rate",
      dimension(cur.error_rate, HEALTH_W_ERROR, "error_rate", ratio(cur_in.errors, cur_in.events)));
  json_object_set_new(
      dims, "cost_efficiency",
      dimension(cur.cost_efficiency, HEALTH_W_COST, "cost_ratio",
                base_per > 0 ? json_real(round(cost_per / base_per * 1e4) / 1e4) : json_null()));
  json_object_set_new(dims, "tool_success",
                      dimension(cur.tool_success, HEALTH_W_TOOLS, "tool_error_rate",
                                ratio(cur_in.tool_errors, cur_in.tool_calls)));
  json_object_set_new(
      dims, "latency",
      dimension(cur.latency, HEALTH_W_LATENCY, "p95_ms", ms_value(cur_in.latency_p95_ms)));
  json_object_set_new(dims, "completion",
                      dimension(cur.completion, HEALTH_W_COMPLETION, "completion_rate",
                                ratio(cur_in.session_ends, cur_in.session_starts)));
  json_t *body = json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o}", "agent_id", agent, "window", w ? w : "7d",
      "from", time_text(ctx, j->hour_to - window), "to", time_text(ctx, j->hour_to), "events",
      (json_int_t)cur_in.events, "score", has_cur ? json_integer(cur.score) : json_null(),
      "previous_score", has_prev ? json_integer(prev.score) : json_null(), "trend",
      has_cur && has_prev ? json_string(analytics_trend(cur.score, prev.score)) : json_null(),
      "dimensions", dims);
  return api_json(ctx, 200, body);
}

/* --- CSV ------------------------------------------------------------------------------- */

/* ?format=: json (default) or csv; -1 after recording an error. */
static int query_format(struct ctx *ctx, struct field_errors *fe) {
  static const char *const formats[] = {"json", "csv"};
  return query_enum(ctx, fe, "format", formats, COUNT_OF(formats), 0, "format must be json or csv");
}

/* A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. */
static int csv_field(struct buf *b, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) return buf_append_cstr(b, s);
  int rc = buf_putc(b, '"');
  for (; *s; s++) rc |= *s == '"' ? buf_append(b, "\"\"", 2) : buf_putc(b, *s);
  return rc | buf_putc(b, '"');
}

static int answer_csv(struct ctx *ctx, struct buf *csv) {
  ctx->req->status = 200;
  ctx->req->content_type = "text/csv; charset=utf-8";
  buf_reset(&ctx->req->resp_body);
  if (buf_append(&ctx->req->resp_body, csv->data, csv->len) != 0) {
    buf_reset(&ctx->req->resp_body);
    return api_status(ctx, KEEL_EINTERNAL);
  }
  return 0;
}

/* --- POST /v1/analytics/funnel ------------------------------------------------------------ */

struct funnel_step {
  const char *type;
  json_t *match; /* borrowed from the body; NULL: none */
};

/* One event of a step's type, reduced to what the funnel needs. */
struct funnel_item {
  int64_t ts;
  uint32_t entity;
  uint16_t mask; /* bit i: the event satisfies step i */
  uint8_t first; /* the lowest bit of mask: the order at one instant */
};

/*
 * Entities (session or user ids) interned to indexes. The keys sit end to
 * end in one pool and each slot holds its key's hash, so a lookup touches
 * the slot and, on a hash match, the key: the funnel does one per event or
 * per line of marks.
 */
struct intern_slot {
  uint32_t hash;
  uint32_t index1; /* index + 1; 0: empty */
};

struct intern {
  char *pool;
  size_t pool_len, pool_cap;
  uint32_t *offsets, *lens, *hashes;
  size_t n, cap;
  struct intern_slot *slots;
  size_t nslots;
};

static void intern_free(struct intern *t) {
  xfree(t->pool);
  xfree(t->offsets);
  xfree(t->lens);
  xfree(t->hashes);
  xfree(t->slots);
}

#define INTERN_NONE UINT32_MAX

static uint32_t intern_hash(const char *key, size_t len) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ len;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, key + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 32;
  }
  uint64_t w = 0;
  memcpy(&w, key + i, len - i);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
  h ^= h >> 29;
  return (uint32_t)h;
}

/* The index of key[0..len), added when new if add, else INTERN_NONE when new. */
static uint32_t intern_idn(struct intern *t, const char *key, size_t len, bool add) {
  if (2 * (t->n + 1) > t->nslots) {
    size_t nslots = t->nslots ? t->nslots * 2 : 1024;
    struct intern_slot *slots = xcalloc(nslots, sizeof(*slots));
    for (size_t i = 0; i < t->n; i++) {
      size_t s = t->hashes[i] & (nslots - 1);
      while (slots[s].index1) s = (s + 1) & (nslots - 1);
      slots[s] = (struct intern_slot){t->hashes[i], (uint32_t)i + 1};
    }
    xfree(t->slots);
    t->slots = slots;
    t->nslots = nslots;
  }
  uint32_t h = intern_hash(key, len);
  size_t s = h & (t->nslots - 1);
  for (; t->slots[s].index1; s = (s + 1) & (t->nslots - 1)) {
    if (t->slots[s].hash != h) continue;
    size_t i = t->slots[s].index1 - 1;
    if (t->lens[i] == len && memcmp(t->pool + t->offsets[i], key, len) == 0) return (uint32_t)i;
  }
  if (!add) return INTERN_NONE;
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 1024;
    t->offsets = xreallocarray(t->offsets, t->cap, sizeof(*t->offsets));
    t->lens = xreallocarray(t->lens, t->cap, sizeof(*t->lens));
    t->hashes = xreallocarray(t->hashes, t->cap, sizeof(*t->hashes));
  }
  if (t->pool_len + len > t->pool_cap) {
    t->pool_cap = (t->pool_len + len) * 2 + 4096;
    t->pool = xrealloc(t->pool, t->pool_cap);
  }
  memcpy(t->pool + t->pool_len, key, len);
  t->offsets[t->n] = (uint32_t)t->pool_len;
  t->lens[t->n] = (uint32_t)len;
  t->hashes[t->n] = h;
  t->pool_len += len;
  t->slots[s] = (struct intern_slot){h, (uint32_t)t->n + 1};
  return (uint32_t)t->n++;
}

static uint32_t intern_id(struct intern *t, const char *key, bool add) {
  return intern_idn(t, key, strlen(key), add);
}

struct funnel_job {
  struct ctx *ctx;
  struct funnel_step steps[ANALYTICS_FUNNEL_STEPS_MAX];
  size_t n_steps;
  bool by_user;
  int64_t from, to;
  /* The type being read, and the steps of that type. */
  const char *type;
  uint16_t type_steps;
  bool with_json;
  struct funnel_item *items;
  size_t n, cap;
  size_t seen; /* step events read (the limit counts them all) */
  /* Where each pass's items start (a pass reads one type in time order). */
  size_t runs[ANALYTICS_FUNNEL_STEPS_MAX + 1];
  size_t n_runs;
  struct intern entities;
  bool too_many;
};

/* Whether the event's data/metadata hold every member of the step's match. */
static bool step_matches(const json_t *match, json_t *data, json_t *metadata) {
  const char *key;
  json_t *want;
  json_object_foreach((json_t *)match, key, want) {
    json_t *obj = strncmp(key, "data.", 5) == 0 ? data : metadata;
    const char *name = strchr(key, '.') + 1;
    json_t *have = json_is_object(obj) ? json_object_get(obj, name) : NULL;
    if (!have || !json_equal(have, want)) return false;
  }
  return true;
}

static int funnel_event(const struct analytics_event_row *r, void *arg) {
  struct funnel_job *j = arg;
  json_t *data = NULL, *metadata = NULL;
  if (j->with_json) {
    data = json_loadb(r->data.p, r->data.len, 0, NULL);
    metadata = json_loadb(r->metadata.p, r->metadata.len, 0, NULL);
  }
  uint16_t mask = 0;
  for (size_t i = 0; i < j->n_steps; i++) {
    if (!(j->type_steps & (1u << i))) continue;
    if (!j->steps[i].match || step_matches(j->steps[i].match, data, metadata)) {
      mask |= (uint16_t)(1u << i);
    }
  }
  char user[ANALYTICS_USER_ID_MAX + 1];
  const char *entity = r->session_id;
  if (j->by_user) entity = analytics_user_id(metadata, user) ? user : NULL;
  json_decref(data);
  json_decref(metadata);
  if (!mask || !entity) return 0;
  if (++j->seen > ANALYTICS_FUNNEL_EVENTS_MAX) {
    j->too_many = true;
    return KEEL_ETOOBIG;
  }
  /* The first pass reads every event of the first step's type; an entity
   * without one never reaches step 1, so later passes keep only the events
   * of entities already seen. */
  uint32_t id = intern_id(&j->entities, entity, j->n_runs == 1);
  if (id == INTERN_NONE) return 0;
  if (j->n == j->cap) {
    j->cap = j->cap ? j->cap * 2 : 4096;
    j->items = xreallocarray(j->items, j->cap, sizeof(*j->items));
  }
  j->items[j->n++] = (struct funnel_item){
      .ts = r->ts_us, .entity = id, .mask = mask, .first = (uint8_t)__builtin_ctz(mask)};
  return 0;
}

static int funnel_tx(struct store_tx *tx, void *arg) {
  struct funnel_job *j = arg;
  j->n = 0;
  j->seen = 0;
  j->n_runs = 0;
  intern_free(&j->entities);
  memset(&j->entities, 0, sizeof(j->entities));
  uint16_t done = 0;
  for (size_t i = 0; i < j->n_steps; i++) {
    if (done & (1u << i)) continue;
    j->type = j->steps[i].type;
    j->type_steps = 0;
    j->with_json = j->by_user;
    for (size_t k = i; k < j->n_steps; k++) {
      if (strcmp(j->steps[k].type, j->type) == 0) {
        j->type_steps |= (uint16_t)(1u << k);
        if (j->steps[k].match) j->with_json = true;
      }
    }
    done |= j->type_steps;
    j->runs[j->n_runs++] = j->n;
    int rc = store_analytics_events_of_type(tx, &j->ctx->scope, j->type, j->from, j->to,
                                            j->with_json, funnel_event, j);
    if (rc) return rc;
  }
  j->runs[j->n_runs] = j->n;
  return 0;
}

/* Time order; at one instant, in step order. */
static bool item_before(const struct funnel_item *x, const struct funnel_item *y) {
  return x->ts < y->ts || (x->ts == y->ts && x->first < y->first);
}

/*
 * --- the funnel from funnel_marks (migration 0012) ---
 *
 * Without a match on any step and by session, a step is satisfied by the
 * event's type alone, which funnel_marks holds with each event's session
 * and time: one row per ingestion batch and hour instead of one index entry
 * per step event, and one session lookup per line instead of per event.
 * The answer is the same as from the events (tests/api/test_funnel_marks.py).
 */
static bool funnel_by_marks(const struct funnel_job *j) {
  if (j->by_user) return false;
  for (size_t i = 0; i < j->n_steps; i++) {
    if (j->steps[i].match) return false;
  }
  return true;
}

struct marks_job {
  struct funnel_job *f;
  uint16_t type_mask[EVENT_TYPE_COUNT]; /* bit i: the type satisfies step i */
  int8_t hex[256];                      /* a hex digit's value, or -1 */
};

/* One funnel_marks row: lines of "<session> <marks>\n" (store/rollups.h). */
static int funnel_mark_row(int64_t hour, struct slice text, void *arg) {
  struct marks_job *m = arg;
  struct funnel_job *j = m->f;
  const char *p = text.p, *end = text.p + text.len;
  while (p < end) {
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    const char *nl = sp ? memchr(sp, '\n', (size_t)(end - sp)) : NULL;
    if (!nl) break; /* not written by keel: the rest is skipped */
    size_t slen = (size_t)(sp - p);
    const uint8_t *mk = (const uint8_t *)sp + 1;
    size_t n = (size_t)(nl - (sp + 1)) / ROLLUP_MARK_LEN;
    p = nl + 1;
    if (slen == 0 || slen > LIMIT_EVENT_SESSION_ID_MAX) continue;
    uint32_t id = INTERN_NONE;
    for (size_t k = 0; k < n; k++, mk += ROLLUP_MARK_LEN) {
      unsigned t = (unsigned)(mk[0] - 'a');
      if (t >= EVENT_TYPE_COUNT || !m->type_mask[t]) continue;
      uint32_t off = 0;
      int bad = 0;
      for (size_t d = 1; d < ROLLUP_MARK_LEN; d++) {
        int v = m->hex[mk[d]];
        bad |= v;
        off = off << 4 | (uint32_t)(v & 15);
      }
      if (bad < 0) continue; /* not written by keel: skipped */
      int64_t ts = hour + (int64_t)off;
      if (ts < j->from || ts >= j->to) continue;
      if (++j->seen > ANALYTICS_FUNNEL_EVENTS_MAX) {
        j->too_many = true;
        return KEEL_ETOOBIG;
      }
      if (id == INTERN_NONE) id = intern_idn(&j->entities, sp - slen, slen, true);
      if (j->n == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 4096;
        j->items = xreallocarray(j->items, j->cap, sizeof(*j->items));
      }
      uint16_t mask = m->type_mask[t];
      j->items[j->n++] = (struct funnel_item){
          .ts = ts, .entity = id, .mask = mask, .first = (uint8_t)__builtin_ctz(mask)};
    }
  }
  return 0;
}

static int funnel_marks_tx(struct store_tx *tx, void *arg) {
  struct marks_job *m = arg;
  struct funnel_job *j = m->f;
  j->n = 0;
  j->seen = 0;
  intern_free(&j->entities);
  memset(&j->entities, 0, sizeof(j->entities));
  return store_analytics_funnel_marks(tx, &j->ctx->scope,
                                      analytics_bucket_start(ANALYTICS_HOUR, j->from), j->to,
                                      funnel_mark_row, m);
}

static int item_cmp(const void *a, const void *b) {
  const struct funnel_item *x = a, *y = b;
  return item_before(x, y) ? -1 : item_before(y, x) ? 1 : 0;
}

/*
 * The items grouped by entity (a counting sort, stable: an entity's items
 * keep their read order), each entity's sorted into time order (already so,
 * as a rule: a sort only where they are not), then the greedy walk of
 * funnel_count per entity. Items that tie in item_before have the same
 * mask here (the type decides it), so their order does not matter.
 */
static void funnel_count_entities(struct funnel_job *j, int64_t *counts) {
  size_t ne = j->entities.n;
  size_t *start = xcalloc(ne + 1, sizeof(*start));
  for (size_t i = 0; i < j->n; i++) start[j->items[i].entity + 1]++;
  for (size_t e = 0; e < ne; e++) start[e + 1] += start[e];
  struct funnel_item *by = xreallocarray(NULL, j->n ? j->n : 1, sizeof(*by));
  size_t *fill = xreallocarray(NULL, ne ? ne : 1, sizeof(*fill));
  memcpy(fill, start, ne * sizeof(*fill));
  for (size_t i = 0; i < j->n; i++) by[fill[j->items[i].entity]++] = j->items[i];
  for (size_t e = 0; e < ne; e++) {
    struct funnel_item *a = by + start[e];
    size_t n = start[e + 1] - start[e];
    for (size_t i = 1; i < n; i++) {
      if (item_before(&a[i], &a[i - 1])) {
        qsort(a, n, sizeof(*a), item_cmp);
        break;
      }
    }
    size_t p = 0;
    for (size_t i = 0; i < n && p < j->n_steps; i++) {
      if (a[i].mask & (1u << p)) counts[p++]++;
    }
  }
  xfree(fill);
  xfree(by);
  xfree(start);
}

/*
 * Each pass read one type in time order (at one instant, by id), so its
 * items form a run that is sorted but for equal timestamps of different
 * steps of that type, which an insertion sort fixes in one linear pass. The
 * runs (one per distinct step type) are then merged on the fly by
 * funnel_count: no sort of all the items.
 */
static void funnel_fix_runs(struct funnel_job *j) {
  struct funnel_item *a = j->items;
  for (size_t r = 0; r < j->n_runs; r++) {
    for (size_t i = j->runs[r] + 1; i < j->runs[r + 1]; i++) {
      struct funnel_item t = a[i];
      size_t k = i;
      for (; k > j->runs[r] && item_before(&t, &a[k - 1]); k--) a[k] = a[k - 1];
      a[k] = t;
    }
  }
}

/*
 * Greedy in time order (at one instant, in step order; else in read order):
 * an entity moves to its next step with the first event that satisfies it
 * (the earliest completion of each step). counts[k]: entities that reached
 * step k.
 */
static void funnel_count(struct funnel_job *j, int64_t *counts) {
  funnel_fix_runs(j);
  uint8_t *progress = xcalloc(j->entities.n ? j->entities.n : 1, 1);
  size_t pos[ANALYTICS_FUNNEL_STEPS_MAX];
  for (size_t r = 0; r < j->n_runs; r++) pos[r] = j->runs[r];
  for (;;) {
    size_t best = SIZE_MAX;
    for (size_t r = 0; r < j->n_runs; r++) {
      if (pos[r] < j->runs[r + 1] &&
          (best == SIZE_MAX || item_before(&j->items[pos[r]], &j->items[pos[best]]))) {
        best = r;
      }
    }
    if (best == SIZE_MAX) break;
    const struct funnel_item *it = &j->items[pos[best]++];
    uint8_t *p = &progress[it->entity];
    if (*p < j->n_steps && (it->mask & (1u << *p))) counts[(*p)++]++;
  }
  xfree(progress);
}

/* Parses the body into j; the field errors into fe. */
static void funnel_parse(struct ctx *ctx, json_t *body, struct funnel_job *j,
                         struct field_errors *fe, const char **window_text) {
  static const char *const allowed[] = {"steps", "by", "window"};
  json_reject_unknown(body, NULL, allowed, COUNT_OF(allowed), fe);
  json_t *steps = NULL;
  if (json_get_arr(body, "steps", NULL, JSON_REQUIRED, ANALYTICS_FUNNEL_STEPS_MAX, &steps, fe) ==
      0) {
    size_t n = json_array_size(steps);
    if (n == 0) field_errors_add(fe, "steps", "too_short", "steps must hold 1 to 10 steps");
    for (size_t i = 0; i < n && i < ANALYTICS_FUNNEL_STEPS_MAX; i++) {
      json_t *s = json_array_get(steps, i);
      char *path = arena_printf(ctx->arena, "steps[%zu]", i);
      if (!json_is_object(s)) {
        field_errors_add(fe, path, "wrong_type", "a step is an object {type, match?}");
        continue;
      }
      static const char *const step_members[] = {"type", "match"};
      json_reject_unknown(s, path, step_members, COUNT_OF(step_members), fe);
      const char *types[EVENT_TYPE_COUNT];
      for (int t = 0; t < EVENT_TYPE_COUNT; t++) types[t] = event_type_name((enum event_type)t);
      int type = 0;
      if (json_get_enum(s, "type", arena_printf(ctx->arena, "%s.type", path), JSON_REQUIRED, types,
                        EVENT_TYPE_COUNT, &type, fe) == 0) {
        j->steps[i].type = types[type];
      }
      json_t *match = NULL;
      char *mpath = arena_printf(ctx->arena, "%s.match", path);
      if (json_get_obj(s, "match", mpath, JSON_OPTIONAL, &match, fe) == 0) {
        const char *key;
        json_t *v;
        if (json_object_size(match) > ANALYTICS_FUNNEL_MATCH_MAX) {
          field_errors_add(fe, mpath, "too_long", "match holds at most 8 members");
        }
        json_object_foreach(match, key, v) {
          bool key_ok = (strncmp(key, "data.", 5) == 0 && key[5]) ||
                        (strncmp(key, "metadata.", 9) == 0 && key[9]);
          if (!key_ok) {
            field_errors_add(fe, mpath, "invalid_format",
                             "match members are data.<name> or metadata.<name>");
          } else if (!(json_is_string(v) || json_is_integer(v) || json_is_boolean(v))) {
            field_errors_add(fe, mpath, "wrong_type",
                             "match values are strings, integers or booleans");
          }
        }
        j->steps[i].match = json_object_size(match) ? match : NULL;
      }
    }
    j->n_steps = n <= ANALYTICS_FUNNEL_STEPS_MAX ? n : 0;
  }
  static const char *const bys[] = {"session", "user"};
  int by = 0;
  json_get_enum(body, "by", NULL, JSON_OPTIONAL, bys, COUNT_OF(bys), &by, fe);
  j->by_user = by == 1;
  const char *window = "7d";
  json_get_str(body, "window", NULL, JSON_OPTIONAL, 2, 8, &window, fe);
  int64_t w = parse_window(window, NULL, 0, ANALYTICS_FUNNEL_WINDOW_DAYS);
  if (w < 0) field_errors_add(fe, "window", "out_of_range", "window must be 1d to 90d");
  int64_t now = time_now_us();
  j->from = now - w;
  j->to = now + LIMIT_EVENT_FUTURE_SKEW_US;
  *window_text = window;
}

static int h_funnel(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  int format = query_format(ctx, &fe);
  struct funnel_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  const char *window = "7d";
  funnel_parse(ctx, body, j, &fe, &window);
  if (fe.count) return api_validation(ctx, &fe);
  bool marks = funnel_by_marks(j);
  struct marks_job *mj = NULL;
  if (marks) {
    mj = arena_calloc(ctx->arena, 1, sizeof(*mj));
    mj->f = j;
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
      for (size_t i = 0; i < j->n_steps; i++) {
        if (strcmp(j->steps[i].type, event_type_name((enum event_type)t)) == 0) {
          mj->type_mask[t] |= (uint16_t)(1u << i);
        }
      }
    }
    memset(mj->hex, -1, sizeof(mj->hex));
    for (int d = 0; d < 16; d++) mj->hex[(uint8_t) "0123456789abcdef"[d]] = (int8_t)d;
  }
  int rc = marks ? store_read(api_store(ctx->api), funnel_marks_tx, mj)
                 : store_read(api_store(ctx->api), funnel_tx, j);
  if (rc) {
    xfree(j->items);
    intern_free(&j->entities);
    if (j->too_many) {
      return api_problem(ctx, "validation_failed",
                         "the window holds too many step events; use a shorter window");
    }
    return api_status(ctx, rc);
  }
  int64_t counts[ANALYTICS_FUNNEL_STEPS_MAX] = {0};
  if (marks) {
    funnel_count_entities(j, counts);
  } else {
    funnel_count(j, counts);
  }
  xfree(j->items);
  intern_free(&j->entities);
  const char *by = j->by_user ? "user" : "session";
  if (format == 1) {
    struct buf csv;
    buf_init(&csv, 1u << 20);
    buf_append_cstr(&csv,
                    "step,type,match,count,conversion_from_previous,conversion_from_first\r\n");
    for (size_t i = 0; i < j->n_steps; i++) {
      struct buf m;
      buf_init(&m, LIMIT_BODY_DEFAULT);
      if (j->steps[i].match) json_dump_buf(j->steps[i].match, &m);
      buf_putc(&m, '\0');
      buf_printf(&csv, "%zu,%s,", i + 1, j->steps[i].type);
      csv_field(&csv, m.data);
      buf_free(&m);
      buf_printf(&csv, ",%lld,", (long long)counts[i]);
      if (i == 0 || counts[i - 1] == 0) {
        buf_append_cstr(&csv, i == 0 && counts[0] ? "1" : "");
      } else {
        buf_printf(&csv, "%.6f", (double)counts[i] / (double)counts[i - 1]);
      }
      buf_putc(&csv, ',');
      if (counts[0]) buf_printf(&csv, "%.6f", (double)counts[i] / (double)counts[0]);
      buf_append_cstr(&csv, "\r\n");
    }
    rc = answer_csv(ctx, &csv);
    buf_free(&csv);
    return rc;
  }
  json_t *steps = json_array();
  for (size_t i = 0; i < j->n_steps; i++) {
    json_t *match = j->steps[i].match;
    json_array_append_new(
        steps, json_pack("{s:I, s:s, s:O?, s:I, s:o, s:o}", "step", (json_int_t)(i + 1), "type",
                         j->steps[i].type, "match", match, "count", (json_int_t)counts[i],
                         "conversion_from_previous",
                         i == 0 ? ratio(counts[0], counts[0]) : ratio(counts[i], counts[i - 1]),
                         "conversion_from_first", ratio(counts[i], counts[0])));
  }
  return api_json(ctx, 200,
                  json_pack("{s:s, s:s, s:s, s:s, s:o}", "by", by, "window", window, "from",
                            time_text(ctx, j->from), "to", time_text(ctx, j->to), "steps", steps));
}

/* --- GET /v1/analytics/cohorts ------------------------------------------------------------- */

struct cohort_job {
  struct ctx *ctx;
  int64_t from, to; /* week starts */
  int64_t weeks;
  int64_t *matrix; /* weeks × weeks: [cohort][age] */
};

static int cohort_cell(int64_t first, int64_t week, int64_t users, void *arg) {
  struct cohort_job *j = arg;
  int64_t c = (first - j->from) / (7 * US_PER_DAY), age = (week - first) / (7 * US_PER_DAY);
  if (c >= 0 && c < j->weeks && age >= 0 && c + age < j->weeks) {
    j->matrix[c * j->weeks + age] += users;
  }
  return 0;
}

static int cohort_tx(struct store_tx *tx, void *arg) {
  struct cohort_job *j = arg;
  memset(j->matrix, 0, (size_t)(j->weeks * j->weeks) * sizeof(*j->matrix));
  return store_analytics_cohorts(tx, &j->ctx->scope, j->from, j->to, cohort_cell, j);
}

static int h_cohorts(struct ctx *ctx) {
  struct field_errors fe = {0};
  static const char *const periods[] = {"week"};
  query_enum(ctx, &fe, "period", periods, 1, 0, "period must be week");
  int format = query_format(ctx, &fe);
  struct cohort_job j = {.ctx = ctx, .weeks = 12};
  const char *s = http_req_query(ctx->req, "weeks");
  if (s && (slice_to_i64(slice_from_cstr(s), &j.weeks) != 0 || j.weeks < 1 ||
            j.weeks > ANALYTICS_COHORT_WEEKS_MAX)) {
    field_errors_add(&fe, "weeks", "out_of_range", "weeks must be an integer from 1 to 52");
  }
  if (fe.count) return api_validation(ctx, &fe);
  j.to = analytics_bucket_start(ANALYTICS_WEEK, time_now_us()) + 7 * US_PER_DAY;
  j.from = j.to - j.weeks * 7 * US_PER_DAY;
  j.matrix = arena_calloc(ctx->arena, (size_t)(j.weeks * j.weeks), sizeof(*j.matrix));
  if (!read_or_answer(ctx, cohort_tx, &j, NULL)) return 0;
  if (format == 1) {
    struct buf csv;
    buf_init(&csv, 1u << 20);
    buf_append_cstr(&csv, "cohort_week,users");
    for (int64_t a = 0; a < j.weeks; a++) buf_printf(&csv, ",week_%lld", (long long)a);
    buf_append_cstr(&csv, "\r\n");
    for (int64_t c = 0; c < j.weeks; c++) {
      const int64_t *row = &j.matrix[c * j.weeks];
      buf_printf(&csv, "%s,%lld", time_text(ctx, j.from + c * 7 * US_PER_DAY), (long long)row[0]);
      for (int64_t a = 0; a < j.weeks; a++) {
        if (c + a < j.weeks) {
          buf_printf(&csv, ",%lld", (long long)row[a]);
        } else {
          buf_putc(&csv, ',');
        }
      }
      buf_append_cstr(&csv, "\r\n");
    }
    int rc = answer_csv(ctx, &csv);
    buf_free(&csv);
    return rc;
  }
  json_t *cohorts = json_array();
  for (int64_t c = 0; c < j.weeks; c++) {
    const int64_t *row = &j.matrix[c * j.weeks];
    json_t *retained = json_array(), *rates = json_array();
    for (int64_t a = 0; c + a < j.weeks; a++) {
      json_array_append_new(retained, json_integer(row[a]));
      json_array_append_new(rates, ratio(row[a], row[0]));
    }
    json_array_append_new(
        cohorts,
        json_pack("{s:s, s:I, s:o, s:o}", "week", time_text(ctx, j.from + c * 7 * US_PER_DAY),
                  "users", (json_int_t)row[0], "retained", retained, "retention", rates));
  }
  return api_json(
      ctx, 200,
      json_pack("{s:s, s:s, s:s, s:s, s:o}", "period", "week", "entity", "user", "from",
                time_text(ctx, j.from), "to", time_text(ctx, j.to), "cohorts", cohorts));
}

/* --- routes ------------------------------------------------------------------------------ */

#define READ_ROUTE(m, p, h)                                          \
  {                                                                  \
    .method = (m), .pattern = (p), .handler = (h), .auth = AUTH_ANY, \
    .permission = PERM_TELEMETRY_READ, .scope = SCOPE_READ,          \
    .body = (m) == HTTP_POST ? ROUTE_BODY_DEFAULT : ROUTE_BODY_NONE  \
  }

/* Every route: a key with the read scope, or a session with telemetry.read.
 * The funnel is a POST only for its body: it changes nothing. */
static const struct route analytics_routes[] = {
    READ_ROUTE(HTTP_GET, "/v1/analytics/costs", h_costs),
    READ_ROUTE(HTTP_GET, "/v1/analytics/tokens", h_tokens),
    READ_ROUTE(HTTP_GET, "/v1/analytics/latency", h_latency),
    READ_ROUTE(HTTP_GET, "/v1/analytics/errors", h_errors),
    READ_ROUTE(HTTP_POST, "/v1/analytics/funnel", h_funnel),
    READ_ROUTE(HTTP_GET, "/v1/analytics/cohorts", h_cohorts),
    READ_ROUTE(HTTP_GET, "/v1/agents", h_agents),
    READ_ROUTE(HTTP_GET, "/v1/agents/{id}/performance", h_agent_performance),
    READ_ROUTE(HTTP_GET, "/v1/agents/{id}/health", h_agent_health),
};

const struct route *routes_analytics(size_t *count) {
  *count = COUNT_OF(analytics_routes);
  return analytics_routes;
}
