/*
 * api/deadletters.h — the dead-letters area's server-wide state
 * (deadletters.c): the depth gauge shown by /readyz and /metrics, and the
 * expiry job (rows older than 7 days are deleted).
 */
#ifndef KEEL_API_DEADLETTERS_H
#define KEEL_API_DEADLETTERS_H

#include <stdint.h>

#include "core/buf.h"

struct api;
struct deadletters;

/* Reads the current depth from the store and starts the expiry job.
 * Called by api_new when there is a store; never NULL. */
struct deadletters *deadletters_start(struct api *api);
/* Stops the job (waiting for a run in progress). NULL is fine. */
void deadletters_stop(struct deadletters *d);
/* The area's state of an api (dispatch.c). */
struct deadletters *api_deadletters(const struct api *api);

/* Rows added (positive) or removed (negative) by this process, after the
 * commit. Thread-safe, never blocks. */
void deadletters_adjust(struct deadletters *d, int64_t delta);
/* The number of dead letters (all orgs). Thread-safe, never blocks. */
int64_t deadletters_depth(const struct deadletters *d);
/* Prometheus text (keel_dead_letters_depth, expiry runs). 0 or -1. */
int deadletters_render_metrics(const struct deadletters *d, struct buf *out);

#endif
