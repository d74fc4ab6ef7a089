/*
 * gcra_local.c — in-process GCRA state: a sharded hash table of key → TAT.
 *
 * The arithmetic is in ratelimit.h; it is integer-only (µs). A shard's
 * mutex covers its buckets and count; a decision reads and updates one TAT
 * under that mutex, so concurrent requests on one key cannot lose updates.
 */
#include <pthread.h>
#include <string.h>

#include "core/xmalloc.h"
#include "limits/ratelimit.h"

#define SHARDS            64
#define BUCKETS_PER_SHARD 256

struct rl_entry {
  struct rl_entry *next;
  int64_t tat;
  uint64_t hash;
  char key[]; /* NUL-terminated */
};

struct rl_shard {
  pthread_mutex_t mu;
  struct rl_entry *buckets[BUCKETS_PER_SHARD];
  size_t count;
};

struct ratelimiter {
  size_t max_per_shard;
  struct rl_shard shards[SHARDS];
};

static uint64_t hash_key(const char *s) {
  uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
  for (; *s; s++) {
    h ^= (uint8_t)*s;
    h *= UINT64_C(1099511628211);
  }
  return h;
}

struct ratelimiter *ratelimit_new(size_t max_keys) {
  struct ratelimiter *rl = xcalloc(1, sizeof(*rl));
  rl->max_per_shard = max_keys / SHARDS;
  if (rl->max_per_shard < 1) rl->max_per_shard = 1;
  for (size_t i = 0; i < SHARDS; i++) pthread_mutex_init(&rl->shards[i].mu, NULL);
  return rl;
}

void ratelimit_free(struct ratelimiter *rl) {
  if (!rl) return;
  for (size_t i = 0; i < SHARDS; i++) {
    struct rl_shard *sh = &rl->shards[i];
    for (size_t b = 0; b < BUCKETS_PER_SHARD; b++) {
      struct rl_entry *e = sh->buckets[b];
      while (e) {
        struct rl_entry *next = e->next;
        xfree(e);
        e = next;
      }
    }
    pthread_mutex_destroy(&sh->mu);
  }
  xfree(rl);
}

/* Removes idle entries (TAT in the past); if none was idle, the entry with
 * the oldest TAT. Called with the shard locked and the shard full. */
static void shard_evict(struct rl_shard *sh, int64_t now_us) {
  struct rl_entry **oldest = NULL;
  size_t removed = 0;
  for (size_t b = 0; b < BUCKETS_PER_SHARD; b++) {
    struct rl_entry **pp = &sh->buckets[b];
    while (*pp) {
      struct rl_entry *e = *pp;
      if (e->tat <= now_us) {
        *pp = e->next;
        xfree(e);
        sh->count--;
        removed++;
        continue;
      }
      if (!oldest || e->tat < (*oldest)->tat) oldest = pp;
      pp = &e->next;
    }
  }
  if (removed == 0 && oldest) {
    struct rl_entry *e = *oldest;
    *oldest = e->next;
    xfree(e);
    sh->count--;
  }
}

/* Emission interval T and burst tolerance tau for limit per period. */
static void gcra_params(int64_t *limit, int64_t period_us, int64_t *t, int64_t *tau) {
  if (*limit < 1) *limit = 1;
  if (period_us < 1) period_us = 1;
  *t = period_us / *limit;
  if (*t < 1) *t = 1;
  /* (L - 1) * T <= P - T: exactly L requests fit in a full bucket. */
  *tau = (*limit - 1) * *t;
}

/* floor(a / b) for b > 0 (C's division truncates toward zero). */
static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The entry of key in its shard (locked by the caller), or NULL; *bucket
 * gets its bucket index. */
static struct rl_entry *shard_find(struct rl_shard *sh, uint64_t h, const char *key,
                                   size_t *bucket) {
  size_t b = (size_t)((h / SHARDS) % BUCKETS_PER_SHARD);
  *bucket = b;
  struct rl_entry *e = sh->buckets[b];
  while (e && !(e->hash == h && strcmp(e->key, key) == 0)) e = e->next;
  return e;
}

void ratelimit_check(struct ratelimiter *rl, const char *key, int64_t limit, int64_t period_us,
                     int64_t now_us, struct ratelimit_decision *out) {
  int64_t t, tau;
  gcra_params(&limit, period_us, &t, &tau);

  uint64_t h = hash_key(key);
  struct rl_shard *sh = &rl->shards[h % SHARDS];
  size_t b;
  pthread_mutex_lock(&sh->mu);
  struct rl_entry *e = shard_find(sh, h, key, &b);
  int64_t tat = e && e->tat > now_us ? e->tat : now_us;
  out->limit = limit;
  if (tat - now_us > tau) {
    out->allowed = false;
    out->retry_after_us = tat - tau - now_us;
    out->remaining = 0;
    out->reset_us = tat - now_us;
    pthread_mutex_unlock(&sh->mu);
    return;
  }
  int64_t new_tat = tat + t;
  if (!e) {
    if (sh->count >= rl->max_per_shard) shard_evict(sh, now_us);
    size_t klen = strlen(key);
    e = xmalloc(sizeof(*e) + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->next = sh->buckets[b];
    sh->buckets[b] = e;
    sh->count++;
  }
  e->tat = new_tat;
  pthread_mutex_unlock(&sh->mu);
  out->allowed = true;
  out->retry_after_us = 0;
  int64_t rem = floor_div(tau - (new_tat - now_us), t) + 1;
  out->remaining = rem < 0 ? 0 : (rem > limit ? limit : rem);
  out->reset_us = new_tat - now_us;
}

size_t ratelimit_size(struct ratelimiter *rl) {
  size_t n = 0;
  for (size_t i = 0; i < SHARDS; i++) {
    pthread_mutex_lock(&rl->shards[i].mu);
    n += rl->shards[i].count;
    pthread_mutex_unlock(&rl->shards[i].mu);
  }
  return n;
}

void ratelimit_refund(struct ratelimiter *rl, const char *key, int64_t limit, int64_t period_us) {
  int64_t t, tau;
  gcra_params(&limit, period_us, &t, &tau);
  uint64_t h = hash_key(key);
  struct rl_shard *sh = &rl->shards[h % SHARDS];
  size_t b;
  pthread_mutex_lock(&sh->mu);
  struct rl_entry *e = shard_find(sh, h, key, &b);
  if (e) e->tat -= t;
  pthread_mutex_unlock(&sh->mu);
}

void ratelimit_forget(struct ratelimiter *rl, const char *key) {
  uint64_t h = hash_key(key);
  struct rl_shard *sh = &rl->shards[h % SHARDS];
  size_t b = (size_t)((h / SHARDS) % BUCKETS_PER_SHARD);
  pthread_mutex_lock(&sh->mu);
  struct rl_entry **pp = &sh->buckets[b];
  while (*pp) {
    if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0) {
      struct rl_entry *e = *pp;
      *pp = e->next;
      xfree(e);
      sh->count--;
      break;
    }
    pp = &(*pp)->next;
  }
  pthread_mutex_unlock(&sh->mu);
}
