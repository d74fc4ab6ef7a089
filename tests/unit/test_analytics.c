/*
 * test_analytics.c — analytics (docs/analytics.md): the latency sketch's
 * relative error bound, merging and encoding; time buckets; the health
 * formula; and the query plans of the analytics statements (every one a
 * search of an index that starts with org_id, never a scan) on a real
 * store. The routes are covered end to end by tests/api/test_analytics.py.
 *
 * The store files are included to reach their SQL texts.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/store/analytics.c"
#include "../../src/store/rollups.c"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/analytics.h"

/* --- sketch ------------------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;
static double rnd(void) { /* xorshift64, uniform in [0, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int dbl_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The documented bound: within α of the order statistic of the same rank. */
static void check_quantiles(struct sketch *s, double *values, size_t n) {
  qsort(values, n, sizeof(*values), dbl_cmp);
  const double qs[] = {0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};
  for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
    double exact = values[(size_t)floor(qs[i] * (double)(n - 1))];
    double est = sketch_quantile(s, qs[i]);
    if (exact <= ANALYTICS_SKETCH_MIN_MS) {
      assert_true(est == 0);
    } else {
      assert_true(fabs(est - exact) <= ANALYTICS_SKETCH_ALPHA * exact * (1 + 1e-9));
    }
  }
}

static void test_sketch_error_bound(void **state) {
  (void)state;
  size_t n = 100000;
  double *values = xmalloc(n * sizeof(*values));
  struct sketch s;
  sketch_init(&s);
  for (size_t i = 0; i < n; i++) {
    /* Log-uniform over 0.01 ms .. a week, and some zeros. */
    values[i] = i % 97 == 0 ? 0 : exp(log(0.01) + rnd() * (log(604800000.0) - log(0.01)));
    sketch_add(&s, values[i]);
  }
  assert_int_equal(s.count, n);
  check_quantiles(&s, values, n);
  sketch_free(&s);
  /* A narrow, realistic spread: 200..3000 ms. */
  sketch_init(&s);
  for (size_t i = 0; i < 1000; i++) {
    values[i] = 200 + rnd() * 2800;
    sketch_add(&s, values[i]);
  }
  check_quantiles(&s, values, 1000);
  sketch_free(&s);
  xfree(values);
  assert_true(sketch_quantile(&s, 0.5) < 0); /* empty */
}

/* Encoded sketches merged through the dense accumulator, flushed into a
 * sketch that already holds bins, equal the same merged bin by bin. */
static void test_sketch_dense(void **state) {
  (void)state;
  struct sketch parts[6], want, got;
  sketch_init(&want);
  sketch_init(&got);
  struct sketch_dense *d = xmalloc(sizeof(*d));
  assert_non_null(d);
  sketch_dense_init(d);
  struct buf enc;
  buf_init(&enc, 1 << 20);
  for (int k = 0; k < 6; k++) {
    sketch_init(&parts[k]);
    for (int i = 0; i < 700; i++) sketch_add(&parts[k], (k == 0 ? 0.0005 : 1.0) + rnd() * 3000 * k);
    sketch_merge(&want, &parts[k]);
    buf_reset(&enc);
    assert_int_equal(sketch_encode(&parts[k], &enc), 0);
    if (k == 0) {
      assert_int_equal(sketch_decode_merge(&got, enc.data, enc.len), 0); /* already in got */
    } else {
      assert_int_equal(sketch_dense_decode_merge(d, enc.data, enc.len), 0);
    }
    if (k == 3) sketch_dense_flush(d, &got); /* twice: the second adds to the first */
  }
  sketch_dense_flush(d, &got);
  assert_int_equal(sketch_dense_decode_merge(d, "\x05\x01", 2), -1); /* damaged */
  sketch_dense_init(d);
  sketch_dense_flush(d, &got); /* nothing */
  buf_reset(&enc);
  assert_int_equal(sketch_encode(&parts[5], &enc), 0);
  sketch_merge(&want, &parts[5]);
  assert_int_equal(sketch_dense_decode_merge(d, enc.data, enc.len), 0);
  sketch_dense_flush(d, &got);
  assert_int_equal(got.count, want.count);
  assert_int_equal(got.n, want.n);
  for (size_t i = 0; i < want.n; i++) {
    assert_int_equal(got.bins[i].key, want.bins[i].key);
    assert_int_equal(got.bins[i].count, want.bins[i].count);
  }
  for (size_t i = 0; i < ANALYTICS_SKETCH_KEYS; i++) assert_int_equal(d->counts[i], 0);
  for (int k = 0; k < 6; k++) sketch_free(&parts[k]);
  sketch_free(&want);
  sketch_free(&got);
  buf_free(&enc);
  xfree(d);
}

static void test_sketch_merge_and_encoding(void **state) {
  (void)state;
  struct sketch a, b, all, back;
  sketch_init(&a);
  sketch_init(&b);
  sketch_init(&all);
  sketch_init(&back);
  for (int i = 0; i < 5000; i++) {
    double v = 1 + rnd() * 10000;
    sketch_add(i % 3 ? &a : &b, v);
    sketch_add(&all, v);
  }
  struct buf enc;
  buf_init(&enc, 1 << 20);
  assert_int_equal(sketch_encode(&a, &enc), 0);
  assert_true(enc.len < 3 * a.n + 4); /* compact: about 2-3 bytes per bucket */
  assert_int_equal(sketch_decode_merge(&back, enc.data, enc.len), 0);
  buf_reset(&enc);
  assert_int_equal(sketch_encode(&b, &enc), 0);
  assert_int_equal(sketch_decode_merge(&back, enc.data, enc.len), 0);
  assert_int_equal(back.count, all.count);
  assert_int_equal(back.n, all.n);
  for (size_t i = 0; i < all.n; i++) {
    assert_int_equal(back.bins[i].key, all.bins[i].key);
    assert_int_equal(back.bins[i].count, all.bins[i].count);
  }
  sketch_merge(&a, &b);
  assert_true(sketch_quantile(&a, 0.95) == sketch_quantile(&all, 0.95));
  assert_int_equal(a.n, all.n);
  for (size_t i = 0; i < all.n; i++) {
    assert_int_equal(a.bins[i].key, all.bins[i].key);
    assert_int_equal(a.bins[i].count, all.bins[i].count);
  }
  /* Many sparse sketches (a few values each, 0.001 ms to a day apart):
   * merging walks the destination forward, inserting between and after
   * existing bins and skipping over long runs of them. */
  struct sketch sparse, direct, merged;
  sketch_init(&direct);
  sketch_init(&merged);
  for (int k = 0; k < 300; k++) {
    sketch_init(&sparse);
    for (int i = 0; i < 1 + k % 7; i++) {
      double v = k % 11 == 0 ? 0 : pow(10, -3 + rnd() * 11);
      sketch_add(&sparse, v);
      sketch_add(&direct, v);
    }
    buf_reset(&enc);
    assert_int_equal(sketch_encode(&sparse, &enc), 0);
    /* odd: decoded into merged; even: merged as a sketch (back is a sink) */
    assert_int_equal(sketch_decode_merge(k % 2 ? &merged : &back, enc.data, enc.len), 0);
    if (k % 2 == 0) sketch_merge(&merged, &sparse);
    sketch_free(&sparse);
  }
  assert_int_equal(merged.count, direct.count);
  assert_int_equal(merged.n, direct.n);
  for (size_t i = 0; i < direct.n; i++) {
    assert_int_equal(merged.bins[i].key, direct.bins[i].key);
    assert_int_equal(merged.bins[i].count, direct.bins[i].count);
  }
  sketch_free(&direct);
  sketch_free(&merged);
  /* Damaged encodings are refused. */
  struct sketch d;
  sketch_init(&d);
  assert_int_equal(sketch_decode_merge(&d, enc.data, enc.len - 1), -1);
  assert_int_equal(sketch_decode_merge(&d, "\xff\xff\xff", 3), -1);
  sketch_free(&d);
  buf_free(&enc);
  sketch_free(&a);
  sketch_free(&b);
  sketch_free(&all);
  sketch_free(&back);
}

/* --- buckets and health --------------------------------------------------------- */

static void test_buckets(void **state) {
  (void)state;
  int64_t t = INT64_C(1772366400000000) + 5 * US_PER_HOUR / 2; /* 2026-03-01T14:30:00Z, a Sunday */
  assert_true(analytics_bucket_start(ANALYTICS_HOUR, t) == t - 30 * US_PER_MIN);
  assert_true(analytics_bucket_start(ANALYTICS_DAY, t) ==
              time_days_from_civil(2026, 3, 1) * US_PER_DAY);
  assert_true(analytics_bucket_start(ANALYTICS_WEEK, t) ==
              time_days_from_civil(2026, 2, 23) * US_PER_DAY); /* the Monday before */
  int64_t monday = time_days_from_civil(2026, 3, 2) * US_PER_DAY;
  assert_true(analytics_bucket_start(ANALYTICS_WEEK, monday) == monday);
  assert_true(analytics_bucket_start(ANALYTICS_WEEK, monday - 1) == monday - 7 * US_PER_DAY);
  assert_true(analytics_bucket_start(ANALYTICS_HOUR, -1) == -US_PER_HOUR);
}

static void test_health_formula(void **state) {
  (void)state;
  struct health_score h;
  struct health_inputs in = {.events = 100, .latency_p95_ms = -1};
  analytics_health(&in, &h);
  assert_int_equal(h.score, 100);
  /* 10% errors: error dimension 50; 1 of 4 tool calls failed: 75; p95 11 s:
   * 50; 1 of 2 sessions ended: 50; cost per run doubled against history: 0. */
  in = (struct health_inputs){.events = 100,
                              .errors = 10,
                              .tool_calls = 4,
                              .tool_errors = 1,
                              .latency_p95_ms = 11000,
                              .session_starts = 2,
                              .session_ends = 1,
                              .runs = 2,
                              .cost_nano = 400,
                              .base_runs = 8,
                              .base_cost_nano = 800};
  analytics_health(&in, &h);
  assert_true(fabs(h.error_rate - 50) < 1e-9);
  assert_true(fabs(h.tool_success - 75) < 1e-9);
  assert_true(fabs(h.latency - 50) < 1e-9);
  assert_true(fabs(h.completion - 50) < 1e-9);
  assert_true(fabs(h.cost_efficiency - 0) < 1e-9);
  assert_int_equal(h.score, (int)lround(0.3 * 50 + 0.2 * 0 + 0.2 * 75 + 0.15 * 50 + 0.15 * 50));
  in.cost_nano = 300; /* 1.5× the history: 50 */
  analytics_health(&in, &h);
  assert_true(fabs(h.cost_efficiency - 50) < 1e-9);
  assert_string_equal(analytics_trend(80, 77), "improving");
  assert_string_equal(analytics_trend(80, 78), "stable");
  assert_string_equal(analytics_trend(78, 80), "stable");
  assert_string_equal(analytics_trend(77, 80), "degrading");
}

static void test_user_id(void **state) {
  (void)state;
  char out[ANALYTICS_USER_ID_MAX + 1];
  json_t *m = json_pack("{s:s}", "user_id", "u-1");
  assert_true(analytics_user_id(m, out));
  assert_string_equal(out, "u-1");
  json_object_set_new(m, "user_id", json_integer(42));
  assert_true(analytics_user_id(m, out));
  assert_string_equal(out, "42");
  json_object_set_new(m, "user_id", json_string(""));
  assert_false(analytics_user_id(m, out));
  json_object_set_new(m, "user_id", json_real(1.5));
  assert_false(analytics_user_id(m, out));
  json_decref(m);
  assert_false(analytics_user_id(NULL, out));
}

/* --- query plans ------------------------------------------------------------------ */

static char dir[256];
static struct store *store;

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-analytics-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char err[256];
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  return store_open(&o, &store, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  store_close(store);
  char path[512];
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

struct plan_case {
  const char *sql;
  const char *index; /* the index the plan must search */
  int params;
};

static const struct plan_case plan_cases[] = {
    {hours_sql, "PRIMARY KEY", 3},
    {hours_agent_sql, "rollup_hourly_agent", 4},
    {tools_sql, "PRIMARY KEY", 4},
    {series_costs_sql, "PRIMARY KEY", 3},
    {series_tokens_sql, "PRIMARY KEY", 3},
    {series_latency_sql, "PRIMARY KEY", 3},
    {series_errors_sql, "PRIMARY KEY", 3},
    {sessions_sql, "COVERING INDEX sessions_agent_started", 4}, /* 0011: no table reads */
    {agents_sql, "PRIMARY KEY", 3},
    {agent_get_sql, "PRIMARY KEY", 2},
    {events_of_type_sql, "COVERING INDEX events_type_ts", 4}, /* 0010: no table reads */
    {events_of_type_json_sql, "events_type_ts", 4},
    {funnel_marks_sql, "PRIMARY KEY", 3}, /* 0012 */
    {cohorts_sql, "analytics_users_first", 3},
    {hourly_hist_sql, "PRIMARY KEY", 6},
};

/* Statement texts live as long as the store caches them: one buffer each. */
static char plan_sql[sizeof(plan_cases) / sizeof(plan_cases[0])][4096];

static int plans_fn(struct store_tx *tx, void *arg) {
  (void)arg;
  for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
    snprintf(plan_sql[i], sizeof(plan_sql[i]), "EXPLAIN QUERY PLAN %s", plan_cases[i].sql);
    struct db_stmt *st = db_prepare(tx, plan_sql[i]);
    assert_non_null(st);
    for (int p = 1; p <= plan_cases[i].params; p++) db_bind_null(st, p);
    bool found = false;
    char all[2048] = "";
    while (db_step(st) == DB_ROW) {
      const char *detail = db_col_text(st, 3);
      strncat(all, detail, sizeof(all) - strlen(all) - 2);
      strncat(all, "; ", sizeof(all) - strlen(all) - 1);
      if (strncmp(detail, "SCAN ", 5) == 0) fail_msg("full scan in plan %zu: %s", i, detail);
      if (strstr(detail, plan_cases[i].index)) found = true;
    }
    db_reset(st);
    printf("# plan %zu: %s\n", i, all);
    if (!found) fail_msg("plan %zu does not use %s: %s", i, plan_cases[i].index, all);
  }
  return 0;
}

static void test_query_plans(void **state) {
  (void)state;
  assert_int_equal(store_write(store, plans_fn, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sketch_error_bound),
      cmocka_unit_test(test_sketch_merge_and_encoding),
      cmocka_unit_test(test_sketch_dense),
      cmocka_unit_test(test_buckets),
      cmocka_unit_test(test_health_formula),
      cmocka_unit_test(test_user_id),
      cmocka_unit_test_setup_teardown(test_query_plans, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
