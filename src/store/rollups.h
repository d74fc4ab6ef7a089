/*
 * store/rollups.h — analytics rollups (R-QRY-3/4/7): hourly aggregates the
 * writer keeps current in the same transaction as the events, so long
 * ranges read rollups instead of raw rows.
 *
 * store_events_append creates an accumulator per batch, adds every accepted
 * event, and flushes it before the batch's transaction function returns.
 * The accumulator aggregates in memory per distinct key and writes one
 * upsert per key (migration 0009, docs/analytics.md):
 *   rollup_hourly      (org, hour, agent, model, provider, api key): counts,
 *                      tokens, cost, errors by kind, an llm_call latency
 *                      sketch (domain/analytics.h) merged into the stored one;
 *   rollup_tools       (org, agent, hour, tool): calls, errors, durations;
 *   analytics_agents   (org, agent): first and last event time, events;
 *   analytics_users, analytics_user_weeks: metadata.user_id per week;
 *   funnel_marks       (org, hour, id of the batch's first event in that
 *                      hour): each event's session, type and time in the
 *                      hour (migration 0012): one INSERT per hour the
 *                      batch touches, never an update.
 *
 * Memory: the accumulator borrows the events' strings (agent, model,
 * provider, tool names: batch memory, which outlives the flush) and copies
 * the user ids. One accumulator per batch, on the writer thread.
 */
#ifndef KEEL_STORE_ROLLUPS_H
#define KEEL_STORE_ROLLUPS_H

#include "domain/events.h"
#include "store/store.h"

struct rollup_acc;

struct rollup_acc *rollup_acc_new(void);
/* An accepted event; api_key_id may be NULL. Never fails. */
void rollup_acc_add(struct rollup_acc *a, const struct ingest_event *e, const char *api_key_id);
/* Writes what was added (upserts). Returns 0 or a store status. */
int rollup_acc_flush(struct store_tx *tx, const struct org_scope *scope, struct rollup_acc *a);
void rollup_acc_free(struct rollup_acc *a); /* NULL is fine */

/* The API key id stored for events that came without one. */
#define ROLLUP_NO_KEY "00000000-0000-0000-0000-000000000000"

/*
 * funnel_marks.marks: a line per session, "<session id> <marks>\n" (session
 * ids never hold a space or a newline: docs/events.md), where marks are
 * ROLLUP_MARK_LEN characters per event: the type's letter
 * ('a' + enum event_type) and 8 lowercase hex digits of the µs after the
 * hour's start. Several rows can hold lines of one session (one per batch
 * that had its events in that hour); marks are in no particular order.
 */
#define ROLLUP_MARK_LEN 9

/*
 * Compaction (the job analytics.marks_compact, inside a write job): up to
 * max_hours org-hours of funnel_marks_dirty that start before before_us are
 * rewritten as a few rows (up to ~64 KiB each) of one line per session, its
 * marks in time order, and leave funnel_marks_dirty. *compacted: how many.
 * Returns 0 or a store status (the caller's transaction then rolls back).
 */
int rollup_marks_compact(struct store_tx *tx, int64_t before_us, int max_hours, int *compacted);

#endif
