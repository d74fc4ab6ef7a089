/*
 * test_quota.c — the quota counters and decision (domain/quota.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/time.h"
#include "domain/plans.h"
#include "domain/quota.h"

#define ORG "0190f5c8-2c1a-7d3e-9b7a-1f2e3d4c5b6a"

static const int64_t NOW = INT64_C(1772323200000000) + 5 * US_PER_DAY; /* 2026-03-06 */

static struct plan plan_of(int64_t q, bool overage, int64_t cap, int64_t grace) {
  struct plan p;
  memset(&p, 0, sizeof(p));
  p.events_per_month = q;
  p.overage_allowed = overage;
  p.overage_cap_permille = cap;
  p.grace_permille = grace;
  return p;
}

static void test_period(void **state) {
  (void)state;
  int64_t s, e;
  quota_period(NOW, &s, &e);
  assert_int_equal(s, time_month_start(NOW));
  assert_int_equal(e, time_next_month_start(NOW));
  assert_true(s <= NOW && NOW < e);
}

static void test_hard_stop_boundaries(void **state) {
  (void)state;
  struct quota *q = quota_new();
  struct plan p = plan_of(10, false, 1000, 0);
  struct quota_decision d;
  quota_reserve(q, ORG, &p, NOW, 1, &d);
  assert_int_equal(d.verdict, QUOTA_NEED_LOAD);
  quota_install(q, ORG, d.period_start, 9); /* quota - 1 */
  quota_reserve(q, ORG, &p, NOW, 1, &d);    /* reaches the quota */
  assert_int_equal(d.verdict, QUOTA_OK);
  assert_false(d.warn);
  quota_reserve(q, ORG, &p, NOW, 1, &d); /* quota + 1, while the first is in flight */
  assert_int_equal(d.verdict, QUOTA_BLOCKED);
  assert_true(d.audit);
  assert_string_equal(d.lim.block, "quota_exceeded");
  quota_reserve(q, ORG, &p, NOW, 1, &d);
  assert_false(d.audit); /* once per hour */
  /* The in-flight event turns out a duplicate: its share comes back. */
  unsigned fire = quota_settle(q, ORG, d.period_start, 1, 0, 10, NULL);
  assert_int_equal(fire, QUOTA_NOTIFY_80); /* 9 ≥ 80 % */
  quota_reserve(q, ORG, &p, NOW, 5, &d);
  assert_int_equal(d.verdict, QUOTA_PARTIAL);
  assert_int_equal(d.granted, 1);
  int64_t used;
  fire = quota_settle(q, ORG, d.period_start, 1, 1, 10, &used);
  assert_int_equal(used, 10);
  assert_int_equal(fire, QUOTA_NOTIFY_100);
  assert_int_equal(quota_settle(q, ORG, d.period_start, 0, 0, 10, NULL), 0); /* once */
  quota_free(q);
}

static void test_overage_and_grace(void **state) {
  (void)state;
  struct quota *q = quota_new();
  struct plan pro = plan_of(10, true, 2000, 0);
  struct plan graced = plan_of(10, false, 1000, 200);
  struct quota_decision d;
  int64_t s, e;
  quota_period(NOW, &s, &e);
  quota_install(q, ORG, s, 10);
  quota_reserve(q, ORG, &pro, NOW, 15, &d);
  assert_int_equal(d.verdict, QUOTA_PARTIAL);
  assert_int_equal(d.granted, 10); /* cap 20 */
  assert_false(d.warn);            /* overage is billed, not warned */
  assert_string_equal(d.lim.block, "overage_cap_reached");
  quota_settle(q, ORG, s, 10, 10, 10, NULL);
  struct quota_limits lim;
  quota_limits_of(&graced, &lim);
  assert_int_equal(lim.limit, 12);
  struct quota *q2 = quota_new();
  quota_install(q2, ORG, s, 10);
  quota_reserve(q2, ORG, &graced, NOW, 1, &d);
  assert_int_equal(d.verdict, QUOTA_OK);
  assert_true(d.warn);
  quota_free(q2);
  struct plan unlimited = plan_of(PLAN_UNLIMITED, false, 1000, 0);
  quota_reserve(q, ORG, &unlimited, NOW, 1000000, &d);
  assert_int_equal(d.verdict, QUOTA_OK);
  quota_free(q);
}

static void test_rollover_and_refresh(void **state) {
  (void)state;
  struct quota *q = quota_new();
  struct plan p = plan_of(10, false, 1000, 0);
  struct quota_decision d;
  int64_t s, e;
  quota_period(NOW, &s, &e);
  quota_install(q, ORG, s, 10);
  quota_reserve(q, ORG, &p, NOW, 1, &d);
  assert_int_equal(d.verdict, QUOTA_BLOCKED);
  quota_reserve(q, ORG, &p, e, 1, &d); /* the next period: load it */
  assert_int_equal(d.verdict, QUOTA_NEED_LOAD);
  assert_int_equal(d.period_start, e);
  quota_install(q, ORG, e, 0);
  quota_install(q, ORG, s, 10); /* a late loader of the old period changes nothing */
  quota_reserve(q, ORG, &p, e, 3, &d);
  assert_int_equal(d.verdict, QUOTA_OK);
  quota_settle(q, ORG, s, 5, 5, 10, NULL); /* an old reservation: dropped */
  uint64_t g = quota_generation(q, ORG);
  assert_false(quota_refresh(q, ORG, e, g, 7)); /* 3 reserved: not now */
  quota_settle(q, ORG, e, 3, 3, 10, NULL);
  g = quota_generation(q, ORG);
  assert_true(quota_refresh(q, ORG, e, g, 4));
  assert_false(quota_refresh(q, ORG, e, g, 5)); /* stale generation */
  quota_reserve(q, ORG, &p, e, 10, &d);
  assert_int_equal(d.granted, 6);
  assert_int_equal(quota_drop_before(q, e + 1), 1);
  quota_reserve(q, ORG, &p, e, 1, &d);
  assert_int_equal(d.verdict, QUOTA_NEED_LOAD);
  quota_free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_period),
      cmocka_unit_test(test_hard_stop_boundaries),
      cmocka_unit_test(test_overage_and_grace),
      cmocka_unit_test(test_rollover_and_refresh),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
