/*
 * ratelimit.h — rate limiting by GCRA (generic cell rate algorithm).
 *
 * One number per key, the theoretical arrival time (TAT). For a limit of L
 * requests per period P (both integers, times in µs): the emission interval
 * is T = floor(P / L) (at least 1 µs) and the burst tolerance is
 * tau = (L - 1) * T, so a full bucket allows exactly L requests at once.
 * (Not P - T: with a truncated T, P - T can exceed (L - 1) * T by up to
 * L - 1 µs, which admits an (L+1)th request once T <= P mod L.)
 * A request at time now:
 *     tat     = max(TAT, now)
 *     allowed iff tat - now <= tau          (then TAT = tat + T)
 *     otherwise retry after (tat - tau) - now
 * remaining = floor((tau - (new_tat - now)) / T) + 1 clipped to [0, L]
 * (floor, not C's truncation toward zero: the numerator can be negative).
 * reset = new_tat - now (allowed) or tat - now (refused): the time until the
 * bucket is full again.
 *
 * This implementation keeps the state in process memory (sharded, one mutex
 * per shard). Memory is bounded: when a shard is full, keys whose TAT has
 * passed (idle: their state equals "absent") are evicted first, then the one
 * with the oldest TAT. A Redis implementation comes with the scaled mode.
 *
 * Thread-safety: all functions are thread-safe.
 */
#ifndef KEEL_LIMITS_RATELIMIT_H
#define KEEL_LIMITS_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimiter;

struct ratelimit_decision {
  bool allowed;
  int64_t limit;          /* L */
  int64_t remaining;      /* requests left in the window after this one */
  int64_t retry_after_us; /* when refused: wait this long (> 0) */
  int64_t reset_us;       /* time until the bucket is full again */
};

/* max_keys: bound on keys held (>= 64). */
struct ratelimiter *ratelimit_new(size_t max_keys);
void ratelimit_free(struct ratelimiter *rl);
/*
 * Decides one request of key against limit per period_us at now_us.
 * limit >= 1, period_us >= 1. A refused request does not change the state.
 */
void ratelimit_check(struct ratelimiter *rl, const char *key, int64_t limit, int64_t period_us,
                     int64_t now_us, struct ratelimit_decision *out);
/*
 * Gives back one request of key previously allowed by ratelimit_check with
 * the same limit and period (TAT -= T), e.g. when a second limit checked
 * after this one refused the request, so a refusal costs no budget here.
 * GCRA updates commute, so concurrent checks in between do not matter.
 * Does nothing for a key not held.
 */
void ratelimit_refund(struct ratelimiter *rl, const char *key, int64_t limit, int64_t period_us);
/* Keys currently held (for tests and metrics). */
size_t ratelimit_size(struct ratelimiter *rl);
/* Forgets a key (e.g. after its limit changed). */
void ratelimit_forget(struct ratelimiter *rl, const char *key);

#endif
