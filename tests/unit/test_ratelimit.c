/*
 * test_ratelimit.c — the in-process GCRA limiter (limits/gcra_local.c):
 * decisions, remaining, Retry-After and reset values against the formula of
 * ratelimit.h under bursts, with a fake clock (now is a parameter); refunds;
 * bounded memory with eviction; no lost updates under contention.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "limits/ratelimit.h"

#define SEC    INT64_C(1000000)
#define MINUTE (60 * SEC)
#define T0     (INT64_C(1800000000) * SEC) /* an arbitrary wall-clock start */

/* --- a reference model, written from the formula in ratelimit.h -------- */

struct model {
  int64_t limit, period, t, tau, tat; /* tat 0: absent */
};

static void model_init(struct model *m, int64_t limit, int64_t period) {
  m->limit = limit;
  m->period = period;
  m->t = period / limit;
  if (m->t < 1) m->t = 1;
  m->tau = (limit - 1) * m->t;
  m->tat = 0;
}

static int64_t floor_div_model(int64_t a, int64_t b) {
  /* Independent of the implementation's: by repeated correction. */
  int64_t q = a / b;
  while (q * b > a) q--;
  return q;
}

static void model_check(struct model *m, int64_t now, struct ratelimit_decision *out) {
  int64_t tat = m->tat > now ? m->tat : now;
  out->limit = m->limit;
  if (tat - now > m->tau) {
    out->allowed = false;
    out->retry_after_us = tat - m->tau - now;
    out->remaining = 0;
    out->reset_us = tat - now;
    return;
  }
  int64_t nt = tat + m->t;
  m->tat = nt;
  out->allowed = true;
  out->retry_after_us = 0;
  int64_t rem = floor_div_model(m->tau - (nt - now), m->t) + 1;
  if (rem < 0) rem = 0;
  if (rem > m->limit) rem = m->limit;
  out->remaining = rem;
  out->reset_us = nt - now;
}

static void assert_same(const struct ratelimit_decision *got, const struct ratelimit_decision *want,
                        int64_t now, int step) {
  if (got->allowed != want->allowed || got->remaining != want->remaining ||
      got->retry_after_us != want->retry_after_us || got->reset_us != want->reset_us ||
      got->limit != want->limit) {
    fail_msg(
        "step %d at +%lld us: got allowed=%d remaining=%lld retry=%lld reset=%lld; "
        "want allowed=%d remaining=%lld retry=%lld reset=%lld",
        step, (long long)(now - T0), got->allowed, (long long)got->remaining,
        (long long)got->retry_after_us, (long long)got->reset_us, want->allowed,
        (long long)want->remaining, (long long)want->retry_after_us, (long long)want->reset_us);
  }
}

/* --- bursts ------------------------------------------------------------- */

/* A full bucket admits exactly `limit` requests at one instant, for plan
 * limits and awkward ones (T not dividing the period; tiny T). */
static void test_burst_admits_exactly_limit(void **state) {
  (void)state;
  static const int64_t limits[] = {1,    2,     7,      100,    200,     5000,
                                   9999, 10000, 100000, 500000, 7000000, 59999999};
  for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
    struct ratelimiter *rl = ratelimit_new(1024);
    int64_t allowed = 0;
    struct ratelimit_decision d;
    for (int64_t n = 0; n < limits[i] + 5; n++) {
      ratelimit_check(rl, "k", limits[i], MINUTE, T0, &d);
      if (d.allowed) allowed++;
    }
    if (allowed != limits[i]) {
      fail_msg("limit %lld per minute: %lld allowed in a burst", (long long)limits[i],
               (long long)allowed);
    }
    ratelimit_free(rl);
  }
}

/* The free plan's key limit: 100/min. remaining counts down 99 … 0; the
 * 101st is refused with retry-after = T = 0.6 s; reset is 60 s. */
static void test_free_plan_burst_values(void **state) {
  (void)state;
  struct ratelimiter *rl = ratelimit_new(1024);
  struct ratelimit_decision d;
  for (int i = 0; i < 100; i++) {
    ratelimit_check(rl, "key:a", 100, MINUTE, T0, &d);
    assert_true(d.allowed);
    assert_int_equal(d.limit, 100);
    assert_int_equal(d.remaining, 99 - i);
    assert_int_equal(d.reset_us, (i + 1) * 600000);
  }
  ratelimit_check(rl, "key:a", 100, MINUTE, T0, &d);
  assert_false(d.allowed);
  assert_int_equal(d.remaining, 0);
  assert_int_equal(d.retry_after_us, 600000);
  assert_int_equal(d.reset_us, MINUTE);
  /* A refused request changes nothing: the same answer again. */
  ratelimit_check(rl, "key:a", 100, MINUTE, T0 + 100000, &d);
  assert_false(d.allowed);
  assert_int_equal(d.retry_after_us, 500000);
  /* At exactly the retry time one more is allowed, and then none. */
  ratelimit_check(rl, "key:a", 100, MINUTE, T0 + 600000, &d);
  assert_true(d.allowed);
  assert_int_equal(d.remaining, 0);
  ratelimit_check(rl, "key:a", 100, MINUTE, T0 + 600000, &d);
  assert_false(d.allowed);
  assert_int_equal(d.retry_after_us, 600000);
  /* Another key is independent. */
  ratelimit_check(rl, "key:b", 100, MINUTE, T0, &d);
  assert_true(d.allowed);
  assert_int_equal(d.remaining, 99);
  /* After a full period of silence the bucket is full again. */
  ratelimit_check(rl, "key:a", 100, MINUTE, T0 + 600000 + MINUTE, &d);
  assert_true(d.allowed);
  assert_int_equal(d.remaining, 99);
  ratelimit_free(rl);
}

/* remaining must be floor(), not truncation toward zero: after an emptied
 * bucket has refilled by slightly more than one request, one is allowed and
 * then none is left. */
static void test_remaining_rounds_down(void **state) {
  (void)state;
  struct ratelimiter *rl = ratelimit_new(1024);
  struct ratelimit_decision d;
  for (int i = 0; i < 100; i++) ratelimit_check(rl, "k", 100, MINUTE, T0, &d);
  ratelimit_check(rl, "k", 100, MINUTE, T0 + 610000, &d);
  assert_true(d.allowed);
  assert_int_equal(d.remaining, 0);
  ratelimit_check(rl, "k", 100, MINUTE, T0 + 610000, &d);
  assert_false(d.allowed);
  assert_int_equal(d.retry_after_us, 590000);
  ratelimit_free(rl);
}

/* Bursts, pauses and steady traffic against the model, for several limits:
 * every field of every decision must match the formula. */
static void test_against_formula(void **state) {
  (void)state;
  static const int64_t limits[] = {1, 3, 7, 100, 200, 5000};
  uint64_t rng = 88172645463325252ull;
  for (size_t li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
    struct ratelimiter *rl = ratelimit_new(1024);
    struct model m;
    model_init(&m, limits[li], MINUTE);
    int64_t now = T0;
    for (int step = 0; step < 20000; step++) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      /* Mostly bursts at one instant, sometimes small or large gaps. */
      unsigned r = (unsigned)(rng % 100);
      if (r < 60) {
        /* same instant */
      } else if (r < 90) {
        now += (int64_t)(rng % (uint64_t)(2 * m.t + 1));
      } else if (r < 99) {
        now += (int64_t)(rng % (uint64_t)MINUTE);
      } else {
        now += 2 * MINUTE;
      }
      struct ratelimit_decision got, want;
      ratelimit_check(rl, "k", limits[li], MINUTE, now, &got);
      model_check(&m, now, &want);
      assert_same(&got, &want, now, step);
      if (!got.allowed) {
        assert_true(got.retry_after_us > 0);
        /* Waiting exactly retry_after admits the request. */
        struct ratelimit_decision later;
        struct model copy = m;
        model_check(&copy, now + got.retry_after_us, &later);
        assert_true(later.allowed);
      }
    }
    ratelimit_free(rl);
  }
}

/* Retry-After in whole seconds as the API sends it: ceil, at least 1. */
static void test_retry_after_seconds(void **state) {
  (void)state;
  struct ratelimiter *rl = ratelimit_new(1024);
  struct ratelimit_decision d;
  /* 2 per minute: T = 30 s. After 2, the next waits 30 s. */
  ratelimit_check(rl, "k", 2, MINUTE, T0, &d);
  ratelimit_check(rl, "k", 2, MINUTE, T0, &d);
  ratelimit_check(rl, "k", 2, MINUTE, T0 + 1, &d);
  assert_false(d.allowed);
  assert_int_equal(d.retry_after_us, 30 * SEC - 1);
  int64_t secs = (d.retry_after_us + SEC - 1) / SEC;
  assert_int_equal(secs, 30);
  ratelimit_free(rl);
}

/* --- refund and forget ------------------------------------------------- */

static void test_refund_returns_one_request(void **state) {
  (void)state;
  struct ratelimiter *rl = ratelimit_new(1024);
  struct ratelimit_decision d;
  for (int i = 0; i < 10; i++) ratelimit_check(rl, "k", 10, MINUTE, T0, &d);
  ratelimit_check(rl, "k", 10, MINUTE, T0, &d);
  assert_false(d.allowed);
  ratelimit_refund(rl, "k", 10, MINUTE);
  ratelimit_check(rl, "k", 10, MINUTE, T0, &d);
  assert_true(d.allowed);
  assert_int_equal(d.remaining, 0);
  ratelimit_check(rl, "k", 10, MINUTE, T0, &d);
  assert_false(d.allowed);
  /* Refunding an unknown key is harmless. */
  ratelimit_refund(rl, "nobody", 10, MINUTE);
  assert_int_equal(ratelimit_size(rl), 1);
  ratelimit_free(rl);
}

static void test_forget(void **state) {
  (void)state;
  struct ratelimiter *rl = ratelimit_new(1024);
  struct ratelimit_decision d;
  for (int i = 0; i < 5; i++) ratelimit_check(rl, "k", 5, MINUTE, T0, &d);
  ratelimit_check(rl, "k", 5, MINUTE, T0, &d);
  assert_false(d.allowed);
  assert_int_equal(ratelimit_size(rl), 1);
  ratelimit_forget(rl, "k");
  assert_int_equal(ratelimit_size(rl), 0);
  ratelimit_check(rl, "k", 5, MINUTE, T0, &d);
  assert_true(d.allowed);
  assert_int_equal(d.remaining, 4);
  ratelimit_forget(rl, "absent");
  ratelimit_free(rl);
}

/* --- memory bound ------------------------------------------------------- */

/* Many keys over time: idle keys are evicted, the count never passes the
 * bound, and a key still in debt keeps its state while idle ones go. */
static void test_eviction_keeps_memory_bounded(void **state) {
  (void)state;
  const size_t max_keys = 64 * 4;
  struct ratelimiter *rl = ratelimit_new(max_keys);
  struct ratelimit_decision d;
  char key[32];
  int64_t now = T0;
  for (int i = 0; i < 50000; i++) {
    snprintf(key, sizeof(key), "key:%d", i);
    ratelimit_check(rl, key, 100, MINUTE, now, &d);
    assert_true(d.allowed);
    now += SEC; /* each key is idle again 0.6 s after its one request */
    assert_true(ratelimit_size(rl) <= max_keys);
  }
  assert_true(ratelimit_size(rl) > 0);
  ratelimit_free(rl);

  /* Every key busy (none idle): still bounded; the oldest TAT goes. */
  rl = ratelimit_new(max_keys);
  for (int i = 0; i < 20000; i++) {
    snprintf(key, sizeof(key), "busy:%d", i);
    for (int j = 0; j < 3; j++) ratelimit_check(rl, key, 2, MINUTE, T0, &d);
    assert_false(d.allowed);
    assert_true(ratelimit_size(rl) <= max_keys);
  }
  ratelimit_free(rl);

  /* A key in debt survives a flood of keys that go idle quickly (2 per
   * shard: the hot key and the latest cold one; the previous cold one is
   * idle and is the one evicted). */
  rl = ratelimit_new(128);
  for (int j = 0; j < 3; j++) ratelimit_check(rl, "hot", 2, MINUTE, T0, &d);
  assert_false(d.allowed);
  now = T0 + SEC;
  for (int i = 0; now < T0 + 25 * SEC; i++) {
    snprintf(key, sizeof(key), "cold:%d", i);
    ratelimit_check(rl, key, 100000, MINUTE, now, &d); /* idle 0.6 ms later */
    assert_true(d.allowed);
    assert_true(ratelimit_size(rl) <= 128);
    now += 1000;
  }
  ratelimit_check(rl, "hot", 2, MINUTE, T0 + 25 * SEC, &d);
  assert_false(d.allowed); /* T = 30 s: still in debt, state kept */
  ratelimit_free(rl);
}

/* --- concurrency -------------------------------------------------------- */

#define THREADS           8
#define CHECKS_PER_THREAD 10000

struct worker {
  struct ratelimiter *rl;
  const char *key;
  int64_t limit;
  int64_t allowed;
  pthread_barrier_t *start;
};

static void *hammer(void *arg) {
  struct worker *w = arg;
  pthread_barrier_wait(w->start);
  struct ratelimit_decision d;
  for (int i = 0; i < CHECKS_PER_THREAD; i++) {
    ratelimit_check(w->rl, w->key, w->limit, MINUTE, T0, &d);
    if (d.allowed) w->allowed++;
  }
  return NULL;
}

/* 8 threads x 10 000 checks on one key at the same instant: exactly `limit`
 * allowed in total (no lost updates, no double admission). */
static void test_concurrent_no_lost_updates(void **state) {
  (void)state;
  static const int64_t limits[] = {1, 100, 5000, 50000};
  for (size_t li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
    struct ratelimiter *rl = ratelimit_new(1024);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
      w[i] = (struct worker){.rl = rl, .key = "shared", .limit = limits[li], .start = &start};
      pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    int64_t total = 0;
    for (int i = 0; i < THREADS; i++) {
      pthread_join(th[i], NULL);
      total += w[i].allowed;
    }
    pthread_barrier_destroy(&start);
    if (total != limits[li]) {
      fail_msg("limit %lld: %lld allowed by %d threads", (long long)limits[li], (long long)total,
               THREADS);
    }
    ratelimit_free(rl);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_admits_exactly_limit),
      cmocka_unit_test(test_free_plan_burst_values),
      cmocka_unit_test(test_remaining_rounds_down),
      cmocka_unit_test(test_against_formula),
      cmocka_unit_test(test_retry_after_seconds),
      cmocka_unit_test(test_refund_returns_one_request),
      cmocka_unit_test(test_forget),
      cmocka_unit_test(test_eviction_keeps_memory_bounded),
      cmocka_unit_test(test_concurrent_no_lost_updates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
