/*
 * quota.c — micro-benchmark of the ingestion quota decision (R-MTR-3: under
 * 5 ms, target 50 µs; this measures nanoseconds).
 *
 * What is timed is what usage_admit and usage_settle do per batch once the
 * org's counter is loaded: quota_reserve (hash, shard lock, probe, limit
 * arithmetic, reservation) and quota_settle (the reservation given back,
 * the accepted events counted, the thresholds checked), over ORGS orgs so
 * the table is not one cache line. RUNS runs of BATCH decisions each; a
 * run's time / BATCH is a sample; the median and p99 are printed.
 *
 *     build-release/bench_quota [runs]
 *
 * Exit status 1 when the median decision is not under 50 µs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ids.h"
#include "core/time.h"
#include "domain/plans.h"
#include "domain/quota.h"

#define ORGS  1000
#define BATCH 10000

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 200;
  if (runs < 10) runs = 10;
  char err[256];
  if (plans_load(NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "bench_quota: %s\n", err);
    return 2;
  }
  const struct plan *pro = plans_get("pro");
  struct quota *q = quota_new();
  static char ids[ORGS][ID_STR_SIZE];
  int64_t now = time_now_us();
  int64_t ps, pe;
  quota_period(now, &ps, &pe);
  for (int i = 0; i < ORGS; i++) {
    id_new_str(ids[i]);
    quota_install(q, ids[i], ps, 1000);
  }
  double *reserve = malloc(sizeof(double) * (size_t)runs);
  double *both = malloc(sizeof(double) * (size_t)runs);
  if (!reserve || !both) return 2;
  struct quota_decision d;
  for (int r = 0; r < runs; r++) {
    int64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
      quota_reserve(q, ids[i % ORGS], pro, now, 100, &d);
    }
    int64_t t1 = now_ns();
    for (int i = 0; i < BATCH; i++) {
      quota_settle(q, ids[i % ORGS], ps, 100, 0, pro->events_per_month, NULL);
    }
    int64_t t2 = now_ns();
    reserve[r] = (double)(t1 - t0) / BATCH;
    both[r] = (double)(t2 - t0) / BATCH;
  }
  qsort(reserve, (size_t)runs, sizeof(double), cmp);
  qsort(both, (size_t)runs, sizeof(double), cmp);
  double med = reserve[runs / 2], p99 = reserve[runs * 99 / 100];
  printf("quota_reserve: median %.0f ns, p99 %.0f ns (%d orgs, %d runs of %d)\n", med, p99, ORGS,
         runs, BATCH);
  printf("quota_reserve + quota_settle: median %.0f ns, p99 %.0f ns\n", both[runs / 2],
         both[runs * 99 / 100]);
  if (d.verdict != QUOTA_OK) {
    fprintf(stderr, "bench_quota: unexpected verdict %d\n", d.verdict);
    return 2;
  }
  quota_free(q);
  free(reserve);
  free(both);
  return med < 50000.0 ? 0 : 1;
}
