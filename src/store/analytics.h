/*
 * store/analytics.h — the reads behind the analytics routes (R-QRY-3..5,
 * R-QRY-7; docs/analytics.md). Every function is scoped by the org and
 * walks an index that starts with org_id:
 *   - hourly rollups over a range: rollup_hourly's primary key
 *     (org_id, hour, …), every column or one series route's
 *     (store_analytics_series); one agent's: rollup_hourly_agent (org_id,
 *     agent_id, hour);
 *   - an agent's tools: rollup_tools' primary key (org_id, agent_id, hour, …);
 *   - an agent's sessions by start: sessions_agent_started, which holds
 *     ended_at and status (migration 0011: no table reads);
 *   - agents: analytics_agents' primary key; events of one type over a
 *     range (funnels): events_type_ts; cohorts: analytics_users_first, then
 *     analytics_user_weeks' primary key per user.
 * Rows go to a callback one at a time; strings and blobs are borrowed from
 * the statement for the call only. A callback's non-zero return stops the
 * walk and is returned. Thread-safety: as the transaction (a store_read job).
 */
#ifndef KEEL_STORE_ANALYTICS_H
#define KEEL_STORE_ANALYTICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ids.h"
#include "core/slice.h"
#include "store/store.h"

/* One rollup_hourly row. */
struct analytics_hour_row {
  int64_t hour;
  const char *agent_id, *model, *provider; /* model, provider "" for non-llm rows */
  char api_key_id[ID_STR_SIZE];            /* "" for events ingested without a key */
  int64_t events, session_starts, session_ends, llm_calls, tool_calls;
  int64_t errors, error_events, tool_errors, llm_errors, other_errors;
  int64_t input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_write_tokens;
  int64_t cost_nano, latency_count, latency_sum_us;
  struct slice latency_hist; /* encoded sketch; len 0: none */
};
typedef int (*analytics_hour_fn)(const struct analytics_hour_row *r, void *arg);

/* Rows with from ≤ hour < to; agent_id NULL: every agent. */
int store_analytics_hours(struct store_tx *tx, const struct org_scope *scope, const char *agent_id,
                          int64_t from_us, int64_t to_us, analytics_hour_fn fn, void *arg);

/*
 * The org's rows with from ≤ hour < to for one series route, decoding only
 * what it shows (the other counters of the row are 0):
 *   COSTS    llm_calls, cost_nano; rows with llm_calls > 0
 *   TOKENS   llm_calls and the five token counters; rows with llm_calls > 0
 *   LATENCY  llm_calls, latency_count, latency_sum_us, latency_hist; rows
 *            with llm_calls > 0 and latency_count > 0
 *   ERRORS   events, errors and its four kinds; every row
 * hour, agent_id, model and provider are always set; api_key_id only with
 * key_ids (else "").
 */
enum analytics_series {
  ANALYTICS_SERIES_COSTS,
  ANALYTICS_SERIES_TOKENS,
  ANALYTICS_SERIES_LATENCY,
  ANALYTICS_SERIES_ERRORS
};
int store_analytics_series(struct store_tx *tx, const struct org_scope *scope,
                           enum analytics_series kind, bool key_ids, int64_t from_us, int64_t to_us,
                           analytics_hour_fn fn, void *arg);

struct analytics_tool_row {
  const char *tool_name;
  int64_t calls, errors, duration_count, duration_sum_us, duration_max_us;
};
typedef int (*analytics_tool_fn)(const struct analytics_tool_row *r, void *arg);
/* One agent's tool rows with from ≤ hour < to (one row per tool and hour). */
int store_analytics_tools(struct store_tx *tx, const struct org_scope *scope, const char *agent_id,
                          int64_t from_us, int64_t to_us, analytics_tool_fn fn, void *arg);

struct analytics_session_row {
  int64_t started_us, ended_us; /* ended_us valid when ended */
  bool ended;
  const char *status; /* active | completed | error */
};
typedef int (*analytics_session_fn)(const struct analytics_session_row *r, void *arg);
/* One agent's sessions with from ≤ started_at < to. */
int store_analytics_sessions(struct store_tx *tx, const struct org_scope *scope,
                             const char *agent_id, int64_t from_us, int64_t to_us,
                             analytics_session_fn fn, void *arg);

struct analytics_agent_row {
  const char *agent_id;
  int64_t first_seen_us, last_seen_us, events;
};
typedef int (*analytics_agent_fn)(const struct analytics_agent_row *r, void *arg);
/* Agents by id after `after` ("" for the first), at most limit. */
int store_analytics_agents(struct store_tx *tx, const struct org_scope *scope, const char *after,
                           int64_t limit, analytics_agent_fn fn, void *arg);
/* One agent; KEEL_ENOTFOUND when the org never saw it. */
int store_analytics_agent_get(struct store_tx *tx, const struct org_scope *scope,
                              const char *agent_id, analytics_agent_fn fn, void *arg);

struct analytics_event_row {
  int64_t ts_us;
  const char *session_id;
  struct slice data, metadata; /* canonical JSON; only when asked for */
};
typedef int (*analytics_event_fn)(const struct analytics_event_row *r, void *arg);
/* Events of one type with from ≤ ts < to, in ts order (at one ts, by id).
 * Without with_json the index events_type_ts alone answers (it holds
 * session_id, migration 0010); with_json adds data and metadata, one
 * primary-key read per event. */
int store_analytics_events_of_type(struct store_tx *tx, const struct org_scope *scope,
                                   const char *type, int64_t from_us, int64_t to_us, bool with_json,
                                   analytics_event_fn fn, void *arg);

/* funnel_marks rows with from_hour ≤ hour < to_us (from_hour: the start of
 * an hour), in key order: the hour's start and the row's lines of marks
 * (store/rollups.h). */
typedef int (*analytics_marks_fn)(int64_t hour_us, struct slice marks, void *arg);
int store_analytics_funnel_marks(struct store_tx *tx, const struct org_scope *scope,
                                 int64_t from_hour_us, int64_t to_us, analytics_marks_fn fn,
                                 void *arg);

/* Cohorts: for users whose first week is in [from, to), (first_week,
 * week, users) for each week ≥ first_week they were active in. */
typedef int (*analytics_cohort_fn)(int64_t first_week_us, int64_t week_us, int64_t users,
                                   void *arg);
int store_analytics_cohorts(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                            int64_t to_us, analytics_cohort_fn fn, void *arg);

#endif
