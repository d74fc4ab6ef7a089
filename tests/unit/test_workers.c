/*
 * test_workers.c — the thread pool: every job runs, FIFO order, a full queue
 * answers KEEL_EBUSY, shutdown drains what was queued and refuses new work.
 *
 * Jobs that must hold a worker busy wait on a gate (mutex + condvar), so the
 * queue states the tests assert on are reached deterministically, not by
 * sleeping and hoping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "core/errors.h"
#include "core/workers.h"

/* --- a gate: one job blocks on it until the test opens it --------------- */

struct gate {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool entered; /* the blocking job has started */
  bool open;
};

static void gate_init(struct gate *g) {
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->cond, NULL);
  g->entered = false;
  g->open = false;
}

static void gate_destroy(struct gate *g) {
  pthread_cond_destroy(&g->cond);
  pthread_mutex_destroy(&g->lock);
}

static void gate_job(void *arg) {
  struct gate *g = arg;
  pthread_mutex_lock(&g->lock);
  g->entered = true;
  pthread_cond_broadcast(&g->cond);
  while (!g->open) pthread_cond_wait(&g->cond, &g->lock);
  pthread_mutex_unlock(&g->lock);
}

static void gate_wait_entered(struct gate *g) {
  pthread_mutex_lock(&g->lock);
  while (!g->entered) pthread_cond_wait(&g->cond, &g->lock);
  pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g) {
  pthread_mutex_lock(&g->lock);
  g->open = true;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->lock);
}

static atomic_int jobs_run;

static void count_job(void *arg) {
  (void)arg;
  atomic_fetch_add(&jobs_run, 1);
}

static void test_invalid_arguments(void **state) {
  (void)state;
  assert_null(workers_start(0, 10, "none"));
  assert_null(workers_start(1, 0, "none"));
  workers_shutdown(NULL);
}

static void test_all_jobs_run(void **state) {
  (void)state;
  atomic_store(&jobs_run, 0);
  struct workers *w = workers_start(4, 1000, "test-pool");
  assert_non_null(w);
  for (int i = 0; i < 1000; i++) assert_int_equal(workers_submit(w, count_job, NULL), KEEL_OK);
  workers_shutdown(w);
  assert_int_equal(atomic_load(&jobs_run), 1000);
}

#define FIFO_JOBS 200

static int fifo_order[FIFO_JOBS];
static int fifo_count; /* touched by the single worker only */

static void record_order_job(void *arg) {
  fifo_order[fifo_count++] = (int)(intptr_t)arg;
}

static void test_fifo_single_thread(void **state) {
  (void)state;
  fifo_count = 0;
  struct gate g;
  gate_init(&g);
  struct workers *w = workers_start(1, FIFO_JOBS + 1, "fifo");
  assert_non_null(w);
  /* Hold the worker so the whole sequence is queued before any runs; the
   * ring wraps around because the gate job took slot 0. */
  assert_int_equal(workers_submit(w, gate_job, &g), KEEL_OK);
  gate_wait_entered(&g);
  for (int i = 0; i < FIFO_JOBS; i++) {
    assert_int_equal(workers_submit(w, record_order_job, (void *)(intptr_t)i), KEEL_OK);
  }
  assert_int_equal(workers_queued(w), FIFO_JOBS);
  gate_open(&g);
  workers_shutdown(w);
  assert_int_equal(fifo_count, FIFO_JOBS);
  for (int i = 0; i < FIFO_JOBS; i++) assert_int_equal(fifo_order[i], i);
  gate_destroy(&g);
}

static void test_queue_full_is_busy(void **state) {
  (void)state;
  atomic_store(&jobs_run, 0);
  struct gate g;
  gate_init(&g);
  struct workers *w = workers_start(1, 2, "busy");
  assert_non_null(w);
  assert_int_equal(workers_submit(w, gate_job, &g), KEEL_OK);
  gate_wait_entered(&g); /* the worker is busy, the queue is empty */
  assert_int_equal(workers_queued(w), 0);
  assert_int_equal(workers_submit(w, count_job, NULL), KEEL_OK);
  assert_int_equal(workers_submit(w, count_job, NULL), KEEL_OK);
  assert_int_equal(workers_queued(w), 2);
  /* N = queue_max accepted, N + 1 refused. */
  assert_int_equal(workers_submit(w, count_job, NULL), KEEL_EBUSY);
  assert_int_equal(workers_submit(w, count_job, NULL), KEEL_EBUSY);
  assert_int_equal(workers_queued(w), 2);
  gate_open(&g);
  workers_shutdown(w);
  assert_int_equal(atomic_load(&jobs_run), 2); /* refused jobs never ran */
  gate_destroy(&g);
}

/* --- shutdown drains the queue and refuses new work -------------------- */

struct drain_test {
  struct workers *w;
  struct gate gate;
  atomic_int probes_accepted;
  atomic_int resubmit_rc; /* what a job saw when submitting during the drain */
};

static void resubmit_job(void *arg) {
  struct drain_test *t = arg;
  atomic_store(&t->resubmit_rc, workers_submit(t->w, count_job, NULL));
  atomic_fetch_add(&jobs_run, 1);
}

/* Probes until submit says the pool is shutting down, then opens the gate:
 * this proves shutdown began while jobs were still queued behind it. */
static void *opener_thread(void *arg) {
  struct drain_test *t = arg;
  for (;;) {
    int rc = workers_submit(t->w, count_job, NULL);
    if (rc == KEEL_EINVAL) break;
    if (rc == KEEL_OK) atomic_fetch_add(&t->probes_accepted, 1);
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
  }
  gate_open(&t->gate);
  return NULL;
}

static void test_shutdown_drains(void **state) {
  (void)state;
  atomic_store(&jobs_run, 0);
  static struct drain_test t;
  gate_init(&t.gate);
  atomic_store(&t.probes_accepted, 0);
  atomic_store(&t.resubmit_rc, 1);
  t.w = workers_start(1, 10000, "drain");
  assert_non_null(t.w);
  assert_int_equal(workers_submit(t.w, gate_job, &t.gate), KEEL_OK);
  gate_wait_entered(&t.gate);
  for (int i = 0; i < 50; i++) assert_int_equal(workers_submit(t.w, count_job, NULL), KEEL_OK);
  assert_int_equal(workers_submit(t.w, resubmit_job, &t), KEEL_OK);

  pthread_t opener;
  assert_int_equal(pthread_create(&opener, NULL, opener_thread, &t), 0);
  workers_shutdown(t.w); /* returns only after every queued job ran */
  pthread_join(opener, NULL);

  assert_int_equal(atomic_load(&jobs_run), 50 + 1 + atomic_load(&t.probes_accepted));
  assert_int_equal(atomic_load(&t.resubmit_rc), KEEL_EINVAL);
  gate_destroy(&t.gate);
}

/* --- thread names ------------------------------------------------------- */

static char seen_name[32];

static void name_job(void *arg) {
  (void)arg;
  pthread_getname_np(pthread_self(), seen_name, sizeof seen_name);
}

static void test_thread_name_truncated(void **state) {
  (void)state;
  memset(seen_name, 0, sizeof seen_name);
  struct workers *w = workers_start(1, 1, "abcdefghijklmnopqrstuvwxyz");
  assert_non_null(w);
  assert_int_equal(workers_submit(w, name_job, NULL), KEEL_OK);
  workers_shutdown(w);
  assert_string_equal(seen_name, "abcdefghijklmno");
}

/* --- many submitters ---------------------------------------------------- */

#define SUBMITTERS         4
#define JOBS_PER_SUBMITTER 2000

static struct workers *shared_pool;
static atomic_int busy_refusals;

static void *submitter(void *arg) {
  (void)arg;
  for (int i = 0; i < JOBS_PER_SUBMITTER; i++) {
    int rc;
    /* A full queue is back-pressure: the caller decides to retry. */
    while ((rc = workers_submit(shared_pool, count_job, NULL)) == KEEL_EBUSY) {
      atomic_fetch_add(&busy_refusals, 1);
      sched_yield();
    }
    if (rc != KEEL_OK) return (void *)1;
  }
  return NULL;
}

static void test_concurrent_submitters(void **state) {
  (void)state;
  atomic_store(&jobs_run, 0);
  atomic_store(&busy_refusals, 0);
  shared_pool = workers_start(3, 16, "many");
  assert_non_null(shared_pool);
  pthread_t threads[SUBMITTERS];
  for (int i = 0; i < SUBMITTERS; i++) {
    assert_int_equal(pthread_create(&threads[i], NULL, submitter, NULL), 0);
  }
  for (int i = 0; i < SUBMITTERS; i++) {
    void *result = NULL;
    pthread_join(threads[i], &result);
    assert_null(result);
  }
  workers_shutdown(shared_pool);
  assert_int_equal(atomic_load(&jobs_run), SUBMITTERS * JOBS_PER_SUBMITTER);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_invalid_arguments),     cmocka_unit_test(test_all_jobs_run),
      cmocka_unit_test(test_fifo_single_thread),    cmocka_unit_test(test_queue_full_is_busy),
      cmocka_unit_test(test_shutdown_drains),       cmocka_unit_test(test_thread_name_truncated),
      cmocka_unit_test(test_concurrent_submitters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
