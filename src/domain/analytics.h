/*
 * domain/analytics.h — the rules of keel's analytics (docs/analytics.md),
 * with no SQL and no HTTP:
 *
 *   - a mergeable latency sketch (DDSketch-style log buckets): every value
 *     v > 0.001 ms falls in bucket k = ceil(log(v) / log(γ)),
 *     γ = (1 + α) / (1 − α), α = ANALYTICS_SKETCH_ALPHA, and a quantile is
 *     answered with its bucket's midpoint 2γ^k / (γ + 1), which is within a
 *     relative error α of the true order statistic; values ≤ 0.001 ms are
 *     counted as 0. Sketches merge by adding counts, so hourly rows add up
 *     to any range without losing the bound;
 *   - time buckets (hour, day, week starting Monday 00:00 UTC);
 *   - the agent health score;
 *   - the end user of an event (metadata.user_id).
 *
 * Thread-safety: a sketch belongs to one thread; everything else is pure.
 */
#ifndef KEEL_DOMAIN_ANALYTICS_H
#define KEEL_DOMAIN_ANALYTICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define ANALYTICS_SKETCH_ALPHA 0.01
/* Values at or under this (ms) count as 0. */
#define ANALYTICS_SKETCH_MIN_MS 0.001
/* The longest encoding of a sketch: a count and, per bucket, two varints. */
#define ANALYTICS_SKETCH_KEYS 2048

struct sketch_bin {
  uint16_t key; /* 0: the zero bucket; else k + SKETCH_KEY_OFFSET */
  uint64_t count;
};

struct sketch {
  struct sketch_bin *bins; /* sorted by key; xmalloc'd */
  size_t n, cap;
  uint64_t count;
};

void sketch_init(struct sketch *s);
void sketch_free(struct sketch *s); /* leaves an empty, reusable sketch */
void sketch_add(struct sketch *s, double value_ms);
void sketch_merge(struct sketch *dst, const struct sketch *src);
/* Appends the compact encoding (varints: bucket count, then per bucket the
 * key's delta from the previous key and the count). Returns 0 or -1 (full). */
int sketch_encode(const struct sketch *s, struct buf *out);
/* Adds an encoded sketch to dst. Returns 0, or -1 when p is not one (dst
 * then holds what was read before the damage). */
int sketch_decode_merge(struct sketch *dst, const void *p, size_t n);
/*
 * A dense accumulator: ANALYTICS_SKETCH_KEYS counters, for merging many
 * encoded sketches into one at one addition per bucket (the latency series
 * merges one per rollup row). lo..hi bound the keys touched since the last
 * flush. sketch_dense_flush adds the counts to s and zeroes them.
 */
struct sketch_dense {
  uint64_t counts[ANALYTICS_SKETCH_KEYS];
  uint16_t lo, hi; /* lo > hi: nothing */
};
void sketch_dense_init(struct sketch_dense *d);
/* As sketch_decode_merge, into d. */
int sketch_dense_decode_merge(struct sketch_dense *d, const void *p, size_t n);
void sketch_dense_flush(struct sketch_dense *d, struct sketch *s);

/* The q-quantile (0 ≤ q ≤ 1) in ms: the value of rank floor(q × (count − 1))
 * in ascending order, within relative error α. -1 when empty. */
double sketch_quantile(const struct sketch *s, double q);

/* Time buckets. */
enum analytics_bucket { ANALYTICS_HOUR, ANALYTICS_DAY, ANALYTICS_WEEK };
/* The start of the bucket holding us (weeks start Monday 00:00 UTC). */
int64_t analytics_bucket_start(enum analytics_bucket b, int64_t us);
int64_t analytics_bucket_len(enum analytics_bucket b);

/*
 * Health (docs/analytics.md): each dimension is 0..100; the score is their
 * weighted sum rounded to the nearest integer.
 */
struct health_inputs {
  int64_t events, errors;         /* error rate = errors / events */
  int64_t runs, cost_nano;        /* this window: runs = session_start events */
  int64_t base_runs, base_events; /* the agent's history: 4 windows before this one */
  int64_t base_cost_nano;
  int64_t tool_calls, tool_errors;      /* tool success */
  double latency_p95_ms;                /* llm_call latency; < 0: none */
  int64_t session_starts, session_ends; /* completion */
};

struct health_score {
  double error_rate, cost_efficiency, tool_success, latency, completion; /* 0..100 each */
  int score;                                                             /* 0..100 */
};

#define HEALTH_W_ERROR      0.30
#define HEALTH_W_COST       0.20
#define HEALTH_W_TOOLS      0.20
#define HEALTH_W_LATENCY    0.15
#define HEALTH_W_COMPLETION 0.15
/* Error rate at which the error dimension reaches 0. */
#define HEALTH_ERROR_RATE_ZERO 0.20
/* p95 latency (ms) scoring 100, and the one scoring 0 (linear between). */
#define HEALTH_LATENCY_GOOD_MS 2000.0
#define HEALTH_LATENCY_BAD_MS  20000.0
/* Score change beyond which the trend is improving / degrading. */
#define HEALTH_TREND_POINTS 2

void analytics_health(const struct health_inputs *in, struct health_score *out);
/* "improving", "stable" or "degrading" for score against previous. */
const char *analytics_trend(int score, int previous);

/*
 * The end user of an event: metadata.user_id when it is a string of 1..128
 * bytes, or an integer (its decimal text). Writes it NUL-terminated into
 * out[ANALYTICS_USER_ID_MAX + 1] and returns true, false when there is none.
 */
#define ANALYTICS_USER_ID_MAX 128
bool analytics_user_id(const json_t *metadata, char out[ANALYTICS_USER_ID_MAX + 1]);

#endif
