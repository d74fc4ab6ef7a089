/*
 * writeq.h — the single writer's job queue and group commit, shared by both
 * backends (private to store/).
 *
 * store_write queues a job and waits; store_write_async queues one and
 * returns. One writer thread takes every job waiting (up to batch_max) and
 * hands the group to the backend's run_group, which runs each job inside its
 * own savepoint in one transaction and commits once. The queue then moves
 * the write generation on (when the group committed), fails every job of a
 * group whose commit failed, wakes the synchronous callers and runs the
 * asynchronous callbacks on the writer thread, outside the lock.
 */
#ifndef KEEL_STORE_WRITEQ_H
#define KEEL_STORE_WRITEQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* A queued write. A synchronous job lives on its caller's stack and is told
 * it is done through done/done_cv; an asynchronous one is heap-allocated,
 * owned by the queue, has on_done called after the commit, then is freed. */
struct write_job {
  store_tx_fn fn;
  void *arg;
  void (*on_done)(void *arg, int rc); /* NULL: a synchronous job */
  int rc;                             /* set by run_group */
  bool done;
  struct write_job *next;
};

/* Runs the group batch (linked by next) in one transaction, setting each
 * job's rc; returns 0 when the transaction committed. */
typedef int (*writeq_group_fn)(void *backend, struct write_job *batch);

struct writeq {
  writeq_group_fn run_group;
  void *backend;
  size_t batch_max;
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t job_cv;  /* the writer waits for jobs */
  pthread_cond_t done_cv; /* callers wait for completion */
  struct write_job *head, *tail;
  size_t queued;
  bool stopping;
  atomic_uint fail_writes;
  atomic_uint_fast64_t generation; /* store_write_generation; starts at 1 */
};

/* Initialises q (generation 1) without starting the thread. */
void writeq_init(struct writeq *q, size_t batch_max, writeq_group_fn run_group, void *backend);
/* Starts the writer thread. 0, or -1. */
int writeq_start(struct writeq *q);
/* Refuses new jobs, lets the writer run every queued one (callbacks
 * included), joins it and frees what init made. */
void writeq_stop(struct writeq *q);

/* Whether the calling thread is q's writer (a nested write runs inline). */
bool writeq_on_writer(const struct writeq *q);

/* Queues and waits: the job's status, or KEEL_EBUSY when stopping. */
int writeq_write(struct writeq *q, store_tx_fn fn, void *arg);
/* Queues: 0, or KEEL_EBUSY when stopping (done is then never called). */
int writeq_write_async(struct writeq *q, store_tx_fn fn, void *arg,
                       void (*done)(void *arg, int rc));
size_t writeq_depth(struct writeq *q);

uint64_t writeq_generation(struct writeq *q);
void writeq_generation_bump(struct writeq *q);

/* Test hook: the next n jobs fail. writeq_take_failure consumes one: true
 * when the job about to run must fail with KEEL_ESTORE. */
void writeq_fail_next(struct writeq *q, unsigned n);
bool writeq_take_failure(struct writeq *q);

#endif
