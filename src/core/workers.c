/*
 * workers.c — a fixed thread pool with a bounded FIFO queue.
 *
 * The queue is a ring buffer of queue_max slots allocated once at start, so
 * submitting never allocates and a full queue is a cheap, immediate
 * KEEL_EBUSY (the HTTP layer turns it into 503 instead of queueing without
 * bound under overload). One mutex guards the ring and the stopping flag; one
 * condition variable wakes idle workers.
 *
 * Shutdown: stopping is set under the lock, so every submit that returned 0
 * enqueued before it, and the workers exit only when stopping is set AND the
 * ring is empty: every accepted job runs exactly once.
 *
 * Worker threads block asynchronous signals, so SIGTERM/SIGINT are delivered
 * to the thread that runs the server's signal handling, never in the middle of
 * a job.
 */
#include "core/workers.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include "core/errors.h"
#include "core/xmalloc.h"

/* Linux limits thread names to 16 bytes including the NUL. */
#define WORKERS_NAME_MAX 15

struct workers_job {
  workers_fn fn;
  void *arg;
};

struct workers {
  pthread_mutex_t lock;
  pthread_cond_t job_ready;
  struct workers_job *ring; /* queue_max slots */
  size_t queue_max;
  size_t head;  /* next job to run */
  size_t count; /* jobs queued, not started */
  bool stopping;
  pthread_t *threads;
  unsigned nthreads; /* threads started (and to be joined) */
  char name[WORKERS_NAME_MAX + 1];
};

static void *workers_main(void *opaque) {
  struct workers *w = opaque;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->count == 0 && !w->stopping) pthread_cond_wait(&w->job_ready, &w->lock);
    if (w->count == 0) break; /* stopping and drained */
    struct workers_job job = w->ring[w->head];
    w->head = (w->head + 1) % w->queue_max;
    w->count--;
    pthread_mutex_unlock(&w->lock);
    job.fn(job.arg);
    pthread_mutex_lock(&w->lock);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

/* Stops and joins the threads started so far, then frees everything. */
static void workers_destroy(struct workers *w) {
  pthread_mutex_lock(&w->lock);
  w->stopping = true;
  pthread_cond_broadcast(&w->job_ready);
  pthread_mutex_unlock(&w->lock);
  for (unsigned i = 0; i < w->nthreads; i++) pthread_join(w->threads[i], NULL);
  pthread_cond_destroy(&w->job_ready);
  pthread_mutex_destroy(&w->lock);
  xfree(w->threads);
  xfree(w->ring);
  xfree(w);
}

/* Blocks the signals a worker must not take; returns the previous mask via
 * old so the caller can restore it. Faults stay unblocked: blocking a
 * synchronous SIGSEGV is undefined and would hide crashes from sanitizers. */
static void workers_block_signals(sigset_t *old) {
  sigset_t set;
  sigfillset(&set);
  sigdelset(&set, SIGSEGV);
  sigdelset(&set, SIGBUS);
  sigdelset(&set, SIGFPE);
  sigdelset(&set, SIGILL);
  sigdelset(&set, SIGABRT);
  sigdelset(&set, SIGTRAP);
  pthread_sigmask(SIG_BLOCK, &set, old);
}

struct workers *workers_start(unsigned nthreads, size_t queue_max, const char *name) {
  if (nthreads == 0 || queue_max == 0) return NULL;
  struct workers *w = xcalloc(1, sizeof *w);
  w->ring = xcalloc(queue_max, sizeof *w->ring);
  w->queue_max = queue_max;
  w->threads = xcalloc(nthreads, sizeof *w->threads);
  const char *base = name ? name : "keel-worker";
  size_t name_len = strlen(base);
  if (name_len > WORKERS_NAME_MAX) name_len = WORKERS_NAME_MAX;
  memcpy(w->name, base, name_len);
  w->name[name_len] = '\0';
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->job_ready, NULL);

  /* New threads inherit the creating thread's mask. */
  sigset_t old_mask;
  workers_block_signals(&old_mask);
  int rc = 0;
  for (unsigned i = 0; i < nthreads; i++) {
    rc = pthread_create(&w->threads[i], NULL, workers_main, w);
    if (rc) break;
    w->nthreads++;
    /* Only a diagnostic aid (top -H, gdb); failure is harmless. */
    pthread_setname_np(w->threads[i], w->name);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  if (rc) goto fail;
  return w;

fail:
  workers_destroy(w);
  return NULL;
}

int workers_submit(struct workers *w, workers_fn fn, void *arg) {
  int rc = KEEL_OK;
  pthread_mutex_lock(&w->lock);
  if (w->stopping) {
    rc = KEEL_EINVAL;
  } else if (w->count == w->queue_max) {
    rc = KEEL_EBUSY;
  } else {
    size_t tail = (w->head + w->count) % w->queue_max;
    w->ring[tail] = (struct workers_job){fn, arg};
    w->count++;
    pthread_cond_signal(&w->job_ready);
  }
  pthread_mutex_unlock(&w->lock);
  return rc;
}

size_t workers_queued(struct workers *w) {
  pthread_mutex_lock(&w->lock);
  size_t count = w->count;
  pthread_mutex_unlock(&w->lock);
  return count;
}

void workers_shutdown(struct workers *w) {
  if (!w) return;
  workers_destroy(w);
}
