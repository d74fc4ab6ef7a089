/*
 * metrics.c — request counters and latency histograms per route, rendered in
 * the Prometheus text format at /metrics.
 *
 * Recording is lock-free (relaxed atomics): a counter per (route, status) and
 * a fixed-bucket histogram per route. Rendering reads the atomics without a
 * lock; a scrape may see a request counted in one metric and not yet in
 * another, which Prometheus tolerates.
 */
#include <stdatomic.h>
#include <string.h>

#include "api/api.h"
#include "core/xmalloc.h"
#include "keel_build.h"

#define STATUS_MIN  100
#define STATUS_SPAN 500 /* 100..599 */

/* Upper bounds of the latency buckets, in microseconds. */
static const int64_t bucket_us[] = {100,     250,     500,     1000,    2500,   5000,
                                    10000,   25000,   50000,   100000,  250000, 500000,
                                    1000000, 2500000, 5000000, 10000000};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

struct route_metrics {
  atomic_uint_fast64_t by_status[STATUS_SPAN];
  atomic_uint_fast64_t buckets[NBUCKETS + 1]; /* last: +Inf */
  atomic_uint_fast64_t sum_us;
  atomic_uint_fast64_t count;
};

/*
 * Recording threads are spread over METRICS_SHARDS copies of the counters
 * (a thread keeps its shard for life), so two I/O threads never bounce one
 * cache line between cores on every request; a scrape sums the shards.
 */
#define METRICS_SHARDS 4

struct metrics {
  size_t nroutes;
  struct route_metrics *routes[METRICS_SHARDS]; /* nroutes + 1 each: the last is "no route" */
  atomic_int inflight;
  atomic_uint next_shard;
};

static __thread int thread_shard = -1;

struct metrics *metrics_new(size_t nroutes) {
  struct metrics *m = xcalloc(1, sizeof(*m));
  m->nroutes = nroutes;
  for (size_t i = 0; i < METRICS_SHARDS; i++) {
    m->routes[i] = xcalloc(nroutes + 1, sizeof(*m->routes[i]));
  }
  return m;
}

void metrics_free(struct metrics *m) {
  if (!m) return;
  for (size_t i = 0; i < METRICS_SHARDS; i++) xfree(m->routes[i]);
  xfree(m);
}

void metrics_observe(struct metrics *m, size_t route_index, int status, int64_t duration_us) {
  if (route_index > m->nroutes) route_index = m->nroutes;
  if (thread_shard < 0) thread_shard = (int)(atomic_fetch_add(&m->next_shard, 1) % METRICS_SHARDS);
  struct route_metrics *r = &m->routes[thread_shard][route_index];
  if (status >= STATUS_MIN && status < STATUS_MIN + STATUS_SPAN) {
    atomic_fetch_add_explicit(&r->by_status[status - STATUS_MIN], 1, memory_order_relaxed);
  }
  size_t b = 0;
  while (b < NBUCKETS && duration_us > bucket_us[b]) b++;
  atomic_fetch_add_explicit(&r->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&r->sum_us, (uint_fast64_t)(duration_us > 0 ? duration_us : 0),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

void metrics_inflight_add(struct metrics *m, int delta) {
  atomic_fetch_add_explicit(&m->inflight, delta, memory_order_relaxed);
}

/* The shards summed, per route (a scrape's view). Caller frees. */
struct route_snapshot {
  uint64_t by_status[STATUS_SPAN];
  uint64_t buckets[NBUCKETS + 1];
  uint64_t sum_us;
  uint64_t count;
};

static struct route_snapshot *snapshot(struct metrics *m) {
  struct route_snapshot *snap = xcalloc(m->nroutes + 1, sizeof(*snap));
  for (size_t sh = 0; sh < METRICS_SHARDS; sh++) {
    for (size_t i = 0; i <= m->nroutes; i++) {
      struct route_metrics *r = &m->routes[sh][i];
      struct route_snapshot *o = &snap[i];
      for (int s = 0; s < STATUS_SPAN; s++) {
        o->by_status[s] += atomic_load_explicit(&r->by_status[s], memory_order_relaxed);
      }
      for (size_t b = 0; b <= NBUCKETS; b++) {
        o->buckets[b] += atomic_load_explicit(&r->buckets[b], memory_order_relaxed);
      }
      o->sum_us += atomic_load_explicit(&r->sum_us, memory_order_relaxed);
      o->count += atomic_load_explicit(&r->count, memory_order_relaxed);
    }
  }
  return snap;
}

static const char *route_label(const struct route *routes, size_t nroutes, size_t i) {
  return i < nroutes ? routes[i].pattern : "unmatched";
}

static const char *method_label(const struct route *routes, size_t nroutes, size_t i) {
  return i < nroutes ? http_method_name(routes[i].method) : "any";
}

int metrics_render(struct metrics *m, const struct route *routes, size_t nroutes, struct buf *out) {
  int rc = 0;
  rc |= buf_printf(out,
                   "# HELP keel_build_info Build information.\n"
                   "# TYPE keel_build_info gauge\n"
                   "keel_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                   KEEL_VERSION, KEEL_COMMIT);
  rc |= buf_printf(out,
                   "# HELP keel_http_requests_in_flight Requests being handled.\n"
                   "# TYPE keel_http_requests_in_flight gauge\n"
                   "keel_http_requests_in_flight %d\n",
                   atomic_load(&m->inflight));
  struct route_snapshot *snap = snapshot(m);
  rc |= buf_printf(out,
                   "# HELP keel_http_requests_total Requests answered, by route and status.\n"
                   "# TYPE keel_http_requests_total counter\n");
  for (size_t i = 0; i <= m->nroutes && i <= nroutes; i++) {
    struct route_snapshot *r = &snap[i];
    for (int s = 0; s < STATUS_SPAN; s++) {
      uint64_t v = r->by_status[s];
      if (!v) continue;
      rc |= buf_printf(out,
                       "keel_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                       route_label(routes, nroutes, i), method_label(routes, nroutes, i),
                       s + STATUS_MIN, (unsigned long long)v);
    }
  }
  rc |= buf_printf(out,
                   "# HELP keel_http_request_duration_seconds Time from headers to response.\n"
                   "# TYPE keel_http_request_duration_seconds histogram\n");
  for (size_t i = 0; i <= m->nroutes && i <= nroutes; i++) {
    struct route_snapshot *r = &snap[i];
    uint64_t count = r->count;
    if (!count) continue;
    const char *rl = route_label(routes, nroutes, i);
    const char *ml = method_label(routes, nroutes, i);
    uint_fast64_t cum = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
      cum += r->buckets[b];
      if (b < NBUCKETS) {
        rc |= buf_printf(out,
                         "keel_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                         "le=\"%g\"} %llu\n",
                         rl, ml, (double)bucket_us[b] / 1e6, (unsigned long long)cum);
      } else {
        rc |= buf_printf(out,
                         "keel_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                         "le=\"+Inf\"} %llu\n",
                         rl, ml, (unsigned long long)cum);
      }
    }
    rc |=
        buf_printf(out, "keel_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n",
                   rl, ml, (double)r->sum_us / 1e6);
    rc |= buf_printf(out,
                     "keel_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n",
                     rl, ml, (unsigned long long)count);
  }
  xfree(snap);
  return rc ? -1 : 0;
}
