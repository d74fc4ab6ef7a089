/*
 * store/usage.h — usage records (metering, R-MTR-*): what the writer adds
 * to them for each batch, in the same transaction as the events, so usage
 * never disagrees with what was stored; and the reads behind the usage API.
 *
 * store_events_append creates an accumulator per batch, adds every accepted
 * event (never duplicates or rejected events), and flushes it before the
 * batch's transaction function returns.
 *
 * Table usage_hourly (migration 0008): per org, UTC hour of the received
 * time, API key ('' for none), agent and model ('' unless llm_call): events,
 * llm calls, the five token kinds, cost (nano-USD), stored bytes (the
 * events' canonical length). docs/usage.md is the contract.
 */
#ifndef KEEL_STORE_USAGE_H
#define KEEL_STORE_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "domain/events.h"
#include "store/store.h"

struct usage_acc;

struct usage_acc *usage_acc_new(void);
/* An accepted event; api_key_id may be NULL. Never fails. */
void usage_acc_add(struct usage_acc *a, const struct ingest_event *e, const char *api_key_id);
/* Writes what was added (upserts). Returns 0 or a store status. */
int usage_acc_flush(struct store_tx *tx, const struct org_scope *scope, struct usage_acc *a);
void usage_acc_free(struct usage_acc *a); /* NULL is fine */

/* Metering on (the default) or off (metering.enabled=false, the benchmark's
 * reference): when off, accumulators record nothing. Process-wide. */
void usage_set_enabled(bool on);
bool usage_enabled(void);

/* Sums of usage records. */
struct usage_totals {
  int64_t events, llm_calls;
  int64_t input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_write_tokens;
  int64_t cost_nano, stored_bytes;
};

/* The org's records with hour in [from_us, to_us). */
int store_usage_totals(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                       int64_t to_us, struct usage_totals *out);

/* One row of a series or breakdown; key is the hour (series) or the group
 * value as text (breakdown: api key id, agent id or model; "" for none). */
typedef int (*usage_row_fn)(void *arg, int64_t hour_us, const char *key,
                            const struct usage_totals *t);

/* Per hour in [from_us, to_us), oldest first; hours without events are
 * not reported. */
int store_usage_hours(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                      int64_t to_us, usage_row_fn fn, void *arg);

enum usage_by { USAGE_BY_API_KEY, USAGE_BY_AGENT, USAGE_BY_MODEL };
/* Grouped by the dimension over [from_us, to_us), most events first, at
 * most limit groups. USAGE_BY_MODEL lists llm_call models only. */
int store_usage_breakdown(struct store_tx *tx, const struct org_scope *scope, enum usage_by by,
                          int64_t from_us, int64_t to_us, int limit, usage_row_fn fn, void *arg);

/* Recounts from the raw events table (received time in [from_us, to_us)):
 * events, llm calls and cost; the other members are left 0. */
int store_usage_recount(struct store_tx *tx, const struct org_scope *scope, int64_t from_us,
                        int64_t to_us, struct usage_totals *out);

/* Quota notifications (usage_notifications). */
struct usage_notification {
  char id[ID_STR_SIZE];
  int64_t period_start;
  int threshold; /* percent */
  int64_t quota, used;
  int64_t created_at;
};

/* Inserts the notification unless the org already has one for (period,
 * threshold); *inserted tells. Returns 0 or a store status. */
int store_usage_notification_put(struct store_tx *tx, const struct org_scope *scope,
                                 const struct usage_notification *n, bool *inserted);
/* The org's notifications, newest first, at most limit. */
int store_usage_notifications(struct store_tx *tx, const struct org_scope *scope, int limit,
                              int (*fn)(void *arg, const struct usage_notification *n), void *arg);
/* The e-mail addresses of the org's owners. */
int store_usage_owner_emails(struct store_tx *tx, const struct org_scope *scope,
                             int (*fn)(void *arg, const char *email), void *arg);

#endif
