/*
 * domain/analytics.c — sketch, buckets, health, user id (domain/analytics.h).
 */
#include "domain/analytics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/time.h"
#include "core/xmalloc.h"

/* Bucket keys: k (from about -349 for 0.001 ms to about 1006 for a week)
 * shifted so that 0 stays the zero bucket. */
#define SKETCH_KEY_OFFSET 1024

static double sketch_gamma(void) {
  return (1.0 + ANALYTICS_SKETCH_ALPHA) / (1.0 - ANALYTICS_SKETCH_ALPHA);
}

void sketch_init(struct sketch *s) {
  memset(s, 0, sizeof(*s));
}

void sketch_free(struct sketch *s) {
  xfree(s->bins);
  sketch_init(s);
}

static uint16_t sketch_key(double v) {
  if (!(v > ANALYTICS_SKETCH_MIN_MS)) return 0; /* also NaN */
  double k = ceil(log(v) / log(sketch_gamma()));
  long key = (long)k + SKETCH_KEY_OFFSET;
  if (key < 1) key = 1;
  if (key >= ANALYTICS_SKETCH_KEYS) key = ANALYTICS_SKETCH_KEYS - 1;
  return (uint16_t)key;
}

/* Adds count to the bucket key at position lo, the first bin whose key is
 * not below it (kept sorted). */
static void sketch_add_at(struct sketch *s, size_t lo, uint16_t key, uint64_t count) {
  s->count += count;
  if (lo < s->n && s->bins[lo].key == key) {
    s->bins[lo].count += count;
    return;
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 8;
    s->bins = xreallocarray(s->bins, s->cap, sizeof(*s->bins));
  }
  memmove(&s->bins[lo + 1], &s->bins[lo], (s->n - lo) * sizeof(*s->bins));
  s->bins[lo] = (struct sketch_bin){.key = key, .count = count};
  s->n++;
}

/* The first bin of s at or after position from whose key is not below key. */
static size_t sketch_lower_bound(const struct sketch *s, size_t from, uint16_t key) {
  size_t lo = from, hi = s->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (s->bins[mid].key < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* Adds count to the bucket key (kept sorted). */
static void sketch_add_bin(struct sketch *s, uint16_t key, uint64_t count) {
  sketch_add_at(s, sketch_lower_bound(s, 0, key), key, count);
}

void sketch_add(struct sketch *s, double value_ms) {
  sketch_add_bin(s, sketch_key(value_ms), 1);
}

/* Keys arrive in ascending order: each search starts at the previous
 * key's bin, and steps on linearly (the usual case: the next bin or a few
 * after) before falling back to a binary search. */
static size_t sketch_seek(const struct sketch *s, size_t pos, uint16_t key) {
  for (int i = 0; i < 4; i++, pos++) {
    if (pos >= s->n || s->bins[pos].key >= key) return pos;
  }
  return sketch_lower_bound(s, pos, key);
}

void sketch_merge(struct sketch *dst, const struct sketch *src) {
  size_t pos = 0;
  for (size_t i = 0; i < src->n; i++) {
    pos = sketch_seek(dst, pos, src->bins[i].key);
    sketch_add_at(dst, pos, src->bins[i].key, src->bins[i].count);
  }
}

static int put_varint(struct buf *out, uint64_t v) {
  uint8_t b[10];
  size_t n = 0;
  do {
    b[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) b[n] |= 0x80;
    n++;
  } while (v);
  return buf_append(out, b, n);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return -1;
    uint8_t c = *(*p)++;
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return 0;
  }
  return -1;
}

int sketch_encode(const struct sketch *s, struct buf *out) {
  int rc = put_varint(out, s->n);
  uint16_t prev = 0;
  for (size_t i = 0; i < s->n; i++) {
    rc |= put_varint(out, (uint64_t)(s->bins[i].key - prev)) | put_varint(out, s->bins[i].count);
    prev = s->bins[i].key;
  }
  return rc ? -1 : 0;
}

/* Calls add(arg, key, count) for each bucket of an encoded sketch, in key
 * order. Returns 0, or -1 when p is not one (after the buckets before the
 * damage). */
static int sketch_decode_each(const void *p, size_t n, void (*add)(void *, uint16_t, uint64_t),
                              void *arg) {
  const uint8_t *c = p, *end = c + n;
  uint64_t bins, key = 0;
  if (get_varint(&c, end, &bins) != 0 || bins > ANALYTICS_SKETCH_KEYS) return -1;
  for (uint64_t i = 0; i < bins; i++) {
    uint64_t delta, count;
    if (get_varint(&c, end, &delta) != 0 || get_varint(&c, end, &count) != 0) return -1;
    key += delta;
    if (key >= ANALYTICS_SKETCH_KEYS) return -1;
    add(arg, (uint16_t)key, count);
  }
  return c == end ? 0 : -1;
}

struct sparse_add {
  struct sketch *s;
  size_t pos; /* keys ascend: each search starts at the previous key's bin */
};

static void add_sparse(void *arg, uint16_t key, uint64_t count) {
  struct sparse_add *a = arg;
  a->pos = sketch_seek(a->s, a->pos, key);
  sketch_add_at(a->s, a->pos, key, count);
}

int sketch_decode_merge(struct sketch *dst, const void *p, size_t n) {
  struct sparse_add a = {dst, 0};
  return sketch_decode_each(p, n, add_sparse, &a);
}

void sketch_dense_init(struct sketch_dense *d) {
  memset(d->counts, 0, sizeof(d->counts));
  d->lo = ANALYTICS_SKETCH_KEYS - 1;
  d->hi = 0;
}

static void add_dense(void *arg, uint16_t key, uint64_t count) {
  struct sketch_dense *d = arg;
  d->counts[key] += count;
  if (key < d->lo) d->lo = key;
  if (key > d->hi) d->hi = key;
}

int sketch_dense_decode_merge(struct sketch_dense *d, const void *p, size_t n) {
  return sketch_decode_each(p, n, add_dense, d);
}

void sketch_dense_flush(struct sketch_dense *d, struct sketch *s) {
  size_t pos = 0;
  for (unsigned k = d->lo; k <= d->hi; k++) {
    if (!d->counts[k]) continue;
    pos = sketch_seek(s, pos, (uint16_t)k);
    sketch_add_at(s, pos, (uint16_t)k, d->counts[k]);
    d->counts[k] = 0;
  }
  d->lo = ANALYTICS_SKETCH_KEYS - 1;
  d->hi = 0;
}

double sketch_quantile(const struct sketch *s, double q) {
  if (s->count == 0) return -1;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t rank = (uint64_t)floor(q * (double)(s->count - 1));
  uint64_t seen = 0;
  for (size_t i = 0; i < s->n; i++) {
    seen += s->bins[i].count;
    if (seen > rank) {
      if (s->bins[i].key == 0) return 0;
      double g = sketch_gamma();
      return 2.0 * pow(g, (double)((int)s->bins[i].key - SKETCH_KEY_OFFSET)) / (g + 1.0);
    }
  }
  return -1; /* unreachable: counts add up to count */
}

/* --- buckets ------------------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t analytics_bucket_len(enum analytics_bucket b) {
  return b == ANALYTICS_HOUR ? US_PER_HOUR : b == ANALYTICS_DAY ? US_PER_DAY : 7 * US_PER_DAY;
}

int64_t analytics_bucket_start(enum analytics_bucket b, int64_t us) {
  if (b != ANALYTICS_WEEK) return floor_div(us, analytics_bucket_len(b)) * analytics_bucket_len(b);
  /* 1970-01-01 was a Thursday: Monday 1969-12-29 is 3 days before. */
  int64_t monday0 = -3 * US_PER_DAY;
  return monday0 + floor_div(us - monday0, 7 * US_PER_DAY) * 7 * US_PER_DAY;
}

/* --- health -------------------------------------------------------------------- */

static double clamp01(double x) {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

void analytics_health(const struct health_inputs *in, struct health_score *out) {
  double rate = in->events > 0 ? (double)in->errors / (double)in->events : 0;
  out->error_rate = 100.0 * clamp01(1.0 - rate / HEALTH_ERROR_RATE_ZERO);

  /* Cost per run against the agent's history (per event when either side
   * has no runs); no history or no cost: 100. */
  double cur = -1, base = -1;
  if (in->runs > 0 && in->base_runs > 0) {
    cur = (double)in->cost_nano / (double)in->runs;
    base = (double)in->base_cost_nano / (double)in->base_runs;
  } else if (in->events > 0 && in->base_events > 0) {
    cur = (double)in->cost_nano / (double)in->events;
    base = (double)in->base_cost_nano / (double)in->base_events;
  }
  out->cost_efficiency = base > 0 ? 100.0 * clamp01(2.0 - cur / base) : 100.0;

  out->tool_success = in->tool_calls > 0
                          ? 100.0 * clamp01(1.0 - (double)in->tool_errors / (double)in->tool_calls)
                          : (in->tool_errors > 0 ? 0.0 : 100.0);

  out->latency = in->latency_p95_ms < 0
                     ? 100.0
                     : 100.0 * clamp01((HEALTH_LATENCY_BAD_MS - in->latency_p95_ms) /
                                       (HEALTH_LATENCY_BAD_MS - HEALTH_LATENCY_GOOD_MS));

  out->completion = in->session_starts > 0
                        ? 100.0 * clamp01((double)in->session_ends / (double)in->session_starts)
                        : 100.0;

  double score = HEALTH_W_ERROR * out->error_rate + HEALTH_W_COST * out->cost_efficiency +
                 HEALTH_W_TOOLS * out->tool_success + HEALTH_W_LATENCY * out->latency +
                 HEALTH_W_COMPLETION * out->completion;
  out->score = (int)lround(score);
}

const char *analytics_trend(int score, int previous) {
  if (score - previous > HEALTH_TREND_POINTS) return "improving";
  if (previous - score > HEALTH_TREND_POINTS) return "degrading";
  return "stable";
}

/* --- users ------------------------------------------------------------------------ */

bool analytics_user_id(const json_t *metadata, char out[ANALYTICS_USER_ID_MAX + 1]) {
  json_t *v = json_is_object(metadata) ? json_object_get(metadata, "user_id") : NULL;
  if (json_is_string(v)) {
    size_t n = json_string_length(v);
    if (n == 0 || n > ANALYTICS_USER_ID_MAX) return false;
    memcpy(out, json_string_value(v), n);
    out[n] = '\0';
    return true;
  }
  if (json_is_integer(v)) {
    snprintf(out, ANALYTICS_USER_ID_MAX + 1, "%lld", (long long)json_integer_value(v));
    return true;
  }
  return false;
}
