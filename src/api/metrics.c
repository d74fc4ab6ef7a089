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

struct metrics {
  size_t nroutes;
  struct route_metrics *routes; /* nroutes + 1: the last is "no route" */
  atomic_int inflight;
  int64_t start_unix_s;
};

struct metrics *metrics_new(size_t nroutes) {
  struct metrics *m = xcalloc(1, sizeof(*m));
  m->nroutes = nroutes;
  m->routes = xcalloc(nroutes + 1, sizeof(*m->routes));
  return m;
}

void metrics_free(struct metrics *m) {
  if (!m) return;
  xfree(m->routes);
  xfree(m);
}

void metrics_observe(struct metrics *m, size_t route_index, int status, int64_t duration_us) {
  if (route_index > m->nroutes) route_index = m->nroutes;
  struct route_metrics *r = &m->routes[route_index];
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
  rc |= buf_printf(out,
                   "# HELP keel_http_requests_total Requests answered, by route and status.\n"
                   "# TYPE keel_http_requests_total counter\n");
  for (size_t i = 0; i <= m->nroutes && i <= nroutes; i++) {
    struct route_metrics *r = &m->routes[i];
    for (int s = 0; s < STATUS_SPAN; s++) {
      uint_fast64_t v = atomic_load_explicit(&r->by_status[s], memory_order_relaxed);
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
    struct route_metrics *r = &m->routes[i];
    uint_fast64_t count = atomic_load_explicit(&r->count, memory_order_relaxed);
    if (!count) continue;
    const char *rl = route_label(routes, nroutes, i);
    const char *ml = method_label(routes, nroutes, i);
    uint_fast64_t cum = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
      cum += atomic_load_explicit(&r->buckets[b], memory_order_relaxed);
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
                   rl, ml, (double)atomic_load(&r->sum_us) / 1e6);
    rc |= buf_printf(out,
                     "keel_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n",
                     rl, ml, (unsigned long long)count);
  }
  return rc ? -1 : 0;
}
