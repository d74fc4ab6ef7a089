/*
 * api/usage.h — the usage area's server-wide state (usage.c): the quota
 * counters (domain/quota.h) consulted by ingestion, the notifications they
 * raise, and the periodic jobs (rollover, counter refresh, daily
 * reconciliation) on the jobs/ scheduler. docs/usage.md is the contract.
 */
#ifndef KEEL_API_USAGE_H
#define KEEL_API_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/store.h"

struct api;
struct ctx;
struct usage_area;

/* Started by api_new (jobs only with a store); never NULL. */
struct usage_area *usage_start(struct api *api);
/* Stops the jobs (joining them). NULL is fine. */
void usage_stop(struct usage_area *u);
struct usage_area *api_usage(const struct api *api); /* dispatch.c */
int usage_render_metrics(struct usage_area *u, struct buf *out);

/* A quota reservation held by an ingestion job until its commit. */
struct usage_ticket {
  bool active;
  int64_t period_start;
  int64_t reserved;
  int64_t quota;
};

enum usage_admit_result {
  USAGE_ADMIT_ALL,     /* every valid event may go on */
  USAGE_ADMIT_PARTIAL, /* only the first *admitted valid events; the rest get *code */
  USAGE_ADMIT_REFUSED, /* the response is set (402 problem) */
};

/*
 * The quota decision for a batch of n valid events received at
 * received_us, for ctx's org: reserves what it admits into *t (settle it
 * with usage_settle exactly once, after the commit or on failure). When
 * events past the quota are admitted under a grace allowance, the
 * Keel-Quota-Warning header is set. Blocks may write an audit entry (at
 * most once per org per hour). Never blocks otherwise except to load the
 * org's counter on its first use in a period (one store read).
 */
enum usage_admit_result usage_admit(struct ctx *ctx, int64_t received_us, int64_t n,
                                    int64_t *admitted, const char **code, struct usage_ticket *t);
/* After the batch's commit (accepted: events stored; 0 on failure). Writer
 * thread or any other; never blocks: notifications go to the writer as an
 * asynchronous job. */
void usage_settle(struct usage_area *u, const struct org_scope *scope, struct usage_ticket *t,
                  int64_t accepted);

#endif
