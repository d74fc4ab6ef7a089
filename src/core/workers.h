/*
 * workers.h — a fixed pool of threads for work that may block (store access,
 * argon2id, outbound HTTP), so the HTTP I/O threads never do.
 *
 * Jobs run in FIFO order on any worker. The queue is bounded: workers_submit
 * fails with KEEL_EBUSY when it is full, and the caller answers 503.
 * workers_shutdown() stops accepting new jobs, runs every job already queued,
 * then joins the threads.
 *
 * Thread-safety: submit from any thread.
 */
#ifndef KEEL_CORE_WORKERS_H
#define KEEL_CORE_WORKERS_H

#include <stddef.h>

struct workers;

typedef void (*workers_fn)(void *arg);

/* nthreads >= 1; queue_max >= 1. Returns NULL when a thread cannot start. */
struct workers *workers_start(unsigned nthreads, size_t queue_max, const char *name);
/* Queues fn(arg). Returns 0, KEEL_EBUSY (queue full) or KEEL_EINVAL (shut down). */
int workers_submit(struct workers *w, workers_fn fn, void *arg);
/* Jobs queued and not yet started. */
size_t workers_queued(struct workers *w);
/* Drains the queue, joins, frees. NULL is fine. */
void workers_shutdown(struct workers *w);

#endif
