/*
 * jobs.h — a small in-process scheduler for periodic jobs (usage rollover
 * and reconciliation, docs/internals/jobs.md).
 *
 * One scheduler thread runs the jobs that are due, one after the other;
 * each job runs every interval plus a random jitter (so several keel
 * processes do not run in step). jobs_run_now runs one at once on the
 * caller's thread (the dev route, tests); a per-job mutex keeps a job to
 * one run at a time whoever starts it. Each run is logged (job.run) and its
 * last time, duration and result are in /metrics. jobs_stop wakes the
 * thread and joins it, after a run in progress ends.
 */
#ifndef KEEL_JOBS_JOBS_H
#define KEEL_JOBS_JOBS_H

#include <stdint.h>

#include "core/buf.h"

struct jobs;

/* A job's work: 0, or a KEEL_E* status (logged, counted as failed). */
typedef int (*job_fn)(void *arg);

struct jobs *jobs_new(void);
/* Registers a job before jobs_start (at most JOBS_MAX). The first run is
 * after one interval (plus jitter). Returns 0 or KEEL_EINVAL. */
#define JOBS_MAX 8
int jobs_add(struct jobs *js, const char *name, int64_t interval_us, int64_t jitter_us, job_fn fn,
             void *arg);
/* Starts the scheduler thread. 0, or KEEL_EINTERNAL (logged). */
int jobs_start(struct jobs *js);
/* Stops and joins the thread (waiting for a run in progress), frees js.
 * NULL is fine. */
void jobs_stop(struct jobs *js);
/* Runs the named job now on this thread (waiting for a run in progress).
 * Returns the job's status, KEEL_ENOTFOUND for an unknown name;
 * *duration_us (may be NULL) the run's duration. */
int jobs_run_now(struct jobs *js, const char *name, int64_t *duration_us);
/* keel_job_runs_total, keel_job_last_run_timestamp_seconds,
 * keel_job_last_duration_seconds. 0 or -1. */
int jobs_render_metrics(struct jobs *js, struct buf *out);

#endif
