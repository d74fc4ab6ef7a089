/*
 * writeq.c — the single writer's job queue and group commit (writeq.h).
 */
#include "store/writeq.h"

#include <pthread.h>

#include "core/errors.h"
#include "core/log.h"
#include "core/xmalloc.h"

/* The queue whose writer this thread is (NULL elsewhere). */
static __thread const struct writeq *writer_of;

void writeq_init(struct writeq *q, size_t batch_max, writeq_group_fn run_group, void *backend) {
  q->run_group = run_group;
  q->backend = backend;
  q->batch_max = batch_max;
  q->started = false;
  q->head = q->tail = NULL;
  q->queued = 0;
  q->stopping = false;
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->job_cv, NULL);
  pthread_cond_init(&q->done_cv, NULL);
  atomic_init(&q->fail_writes, 0);
  atomic_init(&q->generation, 1);
}

bool writeq_on_writer(const struct writeq *q) {
  return writer_of == q;
}

uint64_t writeq_generation(struct writeq *q) {
  return atomic_load_explicit(&q->generation, memory_order_acquire);
}

void writeq_generation_bump(struct writeq *q) {
  atomic_fetch_add_explicit(&q->generation, 1, memory_order_release);
}

void writeq_fail_next(struct writeq *q, unsigned n) {
  atomic_store(&q->fail_writes, n);
}

bool writeq_take_failure(struct writeq *q) {
#ifdef KEEL_TEST_HOOKS
  unsigned f = atomic_load(&q->fail_writes);
  while (f > 0 && !atomic_compare_exchange_weak(&q->fail_writes, &f, f - 1)) {
  }
  return f > 0;
#else
  (void)q;
  return false;
#endif
}

/*
 * Tells every job of a committed (or failed) group that it is done. The
 * group is split first: a synchronous job's memory is its caller's and may
 * vanish as soon as it is marked done, so its link is never read after.
 * Waiters are woken first (they hold HTTP requests), then the asynchronous
 * callbacks run here on the writer thread, outside the lock (a callback may
 * queue more work), and their jobs are freed.
 */
static void group_finish(struct writeq *q, struct write_job *batch) {
  struct write_job *waiters = NULL, *async = NULL, **async_tail = &async;
  for (struct write_job *j = batch, *next; j; j = next) {
    next = j->next;
    if (j->on_done) {
      j->next = NULL;
      *async_tail = j;
      async_tail = &j->next;
    } else {
      j->next = waiters;
      waiters = j;
    }
  }
  if (waiters) {
    pthread_mutex_lock(&q->mu);
    for (struct write_job *j = waiters, *next; j; j = next) {
      next = j->next;
      j->done = true;
    }
    pthread_cond_broadcast(&q->done_cv);
    pthread_mutex_unlock(&q->mu);
  }
  for (struct write_job *j = async, *next; j; j = next) {
    next = j->next;
    j->on_done(j->arg, j->rc);
    xfree(j);
  }
}

static void group_run(struct writeq *q, struct write_job *batch) {
  for (struct write_job *j = batch; j; j = j->next) j->rc = 0;
  int rc = q->run_group(q->backend, batch);
  if (rc == 0) {
    /* Before any job is told it is done, so its caller's next request
     * already sees the new generation. */
    writeq_generation_bump(q);
  } else {
    /* Nothing committed: every job fails, run or not. */
    for (struct write_job *j = batch; j; j = j->next) {
      if (j->rc == 0) j->rc = KEEL_ESTORE;
    }
  }
  group_finish(q, batch);
}

static void *writer_main(void *arg) {
  struct writeq *q = arg;
  writer_of = q;
  pthread_setname_np(pthread_self(), "keel-writer");
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->head && !q->stopping) pthread_cond_wait(&q->job_cv, &q->mu);
    if (!q->head && q->stopping) break;
    /* Take up to batch_max jobs. */
    struct write_job *batch = q->head, *last = q->head;
    size_t n = 1;
    while (last->next && n < q->batch_max) {
      last = last->next;
      n++;
    }
    q->head = last->next;
    if (!q->head) q->tail = NULL;
    last->next = NULL;
    q->queued -= n;
    pthread_mutex_unlock(&q->mu);
    group_run(q, batch);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int writeq_start(struct writeq *q) {
  if (pthread_create(&q->thread, NULL, writer_main, q) != 0) return -1;
  q->started = true;
  return 0;
}

void writeq_stop(struct writeq *q) {
  pthread_mutex_lock(&q->mu);
  q->stopping = true;
  pthread_cond_signal(&q->job_cv);
  pthread_mutex_unlock(&q->mu);
  if (q->started) pthread_join(q->thread, NULL);
  q->started = false;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->job_cv);
  pthread_cond_destroy(&q->done_cv);
}

/* Appends job; false when the queue is stopping. */
static bool enqueue(struct writeq *q, struct write_job *job) {
  if (q->stopping) return false;
  if (q->tail) {
    q->tail->next = job;
  } else {
    q->head = job;
  }
  q->tail = job;
  q->queued++;
  pthread_cond_signal(&q->job_cv);
  return true;
}

int writeq_write(struct writeq *q, store_tx_fn fn, void *arg) {
  struct write_job job = {.fn = fn, .arg = arg};
  pthread_mutex_lock(&q->mu);
  if (!enqueue(q, &job)) {
    pthread_mutex_unlock(&q->mu);
    return KEEL_EBUSY;
  }
  while (!job.done) pthread_cond_wait(&q->done_cv, &q->mu);
  pthread_mutex_unlock(&q->mu);
  return job.rc;
}

int writeq_write_async(struct writeq *q, store_tx_fn fn, void *arg,
                       void (*done)(void *arg, int rc)) {
  KEEL_ASSERT(fn != NULL && done != NULL);
  struct write_job *job = xcalloc(1, sizeof(*job));
  job->fn = fn;
  job->arg = arg;
  job->on_done = done;
  pthread_mutex_lock(&q->mu);
  /* Queued even when called from a write job on the writer thread: it then
   * runs in a later group, after the current one commits. */
  bool queued = enqueue(q, job);
  pthread_mutex_unlock(&q->mu);
  if (!queued) {
    xfree(job);
    return KEEL_EBUSY;
  }
  return 0;
}

size_t writeq_depth(struct writeq *q) {
  pthread_mutex_lock(&q->mu);
  size_t n = q->queued;
  pthread_mutex_unlock(&q->mu);
  return n;
}
