/*
 * quota.c — per-org quota counters (domain/quota.h).
 *
 * QUOTA_SHARDS mutex-protected open-addressing tables of counters, keyed by
 * the org id's text. A decision is one hash, one lock, a probe and a few
 * comparisons: bench/quota.c measures it.
 */
#include "domain/quota.h"

#include <pthread.h>
#include <string.h>

#include "core/time.h"
#include "core/xmalloc.h"

#define QUOTA_SHARDS 16

struct counter {
  char org_id[ID_STR_SIZE];
  int64_t period_start;
  int64_t used;     /* accepted events in the period */
  int64_t reserved; /* admitted, not yet settled */
  unsigned notified;
  uint64_t generation; /* settles so far */
  int64_t audit_hour;  /* the hour of the last audited refusal */
};

struct shard {
  pthread_mutex_t mu;
  struct counter **slots; /* cap entries, NULL empty */
  size_t n, cap;
};

struct quota {
  struct shard shards[QUOTA_SHARDS];
};

static uint64_t hash_id(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

struct quota *quota_new(void) {
  struct quota *q = xcalloc(1, sizeof(*q));
  for (size_t i = 0; i < QUOTA_SHARDS; i++) pthread_mutex_init(&q->shards[i].mu, NULL);
  return q;
}

void quota_free(struct quota *q) {
  if (!q) return;
  for (size_t i = 0; i < QUOTA_SHARDS; i++) {
    struct shard *s = &q->shards[i];
    for (size_t k = 0; k < s->cap; k++) xfree(s->slots[k]);
    xfree(s->slots);
    pthread_mutex_destroy(&s->mu);
  }
  xfree(q);
}

void quota_period(int64_t now_us, int64_t *start, int64_t *end) {
  /* The seam for billing anchors: a period starting on the org's anchor day
   * instead of the 1st would be computed here. */
  *start = time_month_start(now_us);
  *end = time_next_month_start(now_us);
}

static int64_t permille_of(int64_t q, int64_t permille) {
  if (permille <= 0) return 0;
  if (q > INT64_MAX / permille) return INT64_MAX;
  return q * permille / 1000;
}

void quota_limits_of(const struct plan *p, struct quota_limits *out) {
  if (!p || p->events_per_month == PLAN_UNLIMITED || p->events_per_month < 0) {
    *out = (struct quota_limits){INT64_MAX, INT64_MAX, false, "quota_exceeded"};
    return;
  }
  out->quota = p->events_per_month;
  out->overage = p->overage_allowed;
  if (p->overage_allowed) {
    int64_t cap = permille_of(p->events_per_month, p->overage_cap_permille);
    out->limit = cap > out->quota ? cap : out->quota;
    out->block = "overage_cap_reached";
  } else {
    int64_t grace = permille_of(p->events_per_month, p->grace_permille);
    out->limit = grace > INT64_MAX - out->quota ? INT64_MAX : out->quota + grace;
    out->block = "quota_exceeded";
  }
}

/* The slot of org_id in s (found, or the empty one where it would go). */
static struct counter **probe(struct shard *s, const char *org_id, uint64_t h) {
  size_t mask = s->cap - 1;
  for (size_t i = (size_t)(h >> 4) & mask;; i = (i + 1) & mask) {
    if (!s->slots[i] || strcmp(s->slots[i]->org_id, org_id) == 0) return &s->slots[i];
  }
}

static struct counter *find(struct shard *s, const char *org_id, uint64_t h) {
  if (s->cap == 0) return NULL;
  return *probe(s, org_id, h);
}

static void grow(struct shard *s) {
  size_t old_cap = s->cap;
  struct counter **old = s->slots;
  s->cap = old_cap ? old_cap * 2 : 16;
  s->slots = xcalloc(s->cap, sizeof(*s->slots));
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i]) *probe(s, old[i]->org_id, hash_id(old[i]->org_id)) = old[i];
  }
  xfree(old);
}

int quota_reserve(struct quota *q, const char *org_id, const struct plan *p, int64_t now_us,
                  int64_t n, struct quota_decision *d) {
  memset(d, 0, sizeof(*d));
  quota_period(now_us, &d->period_start, &d->period_end);
  quota_limits_of(p, &d->lim);
  uint64_t h = hash_id(org_id);
  struct shard *s = &q->shards[h % QUOTA_SHARDS];
  pthread_mutex_lock(&s->mu);
  struct counter *c = find(s, org_id, h);
  if (!c || c->period_start != d->period_start) {
    pthread_mutex_unlock(&s->mu);
    d->verdict = QUOTA_NEED_LOAD;
    return 0;
  }
  int64_t used = c->used + c->reserved;
  int64_t left = d->lim.limit > used ? d->lim.limit - used : 0;
  int64_t granted = n < left ? n : left;
  c->reserved += granted;
  d->used = used;
  d->granted = granted;
  d->verdict = granted == n ? QUOTA_OK : granted == 0 ? QUOTA_BLOCKED : QUOTA_PARTIAL;
  d->warn = !d->lim.overage && granted > 0 && used + granted > d->lim.quota;
  if (d->verdict != QUOTA_OK) {
    int64_t hour = now_us - now_us % US_PER_HOUR;
    if (c->audit_hour != hour) {
      c->audit_hour = hour;
      d->audit = true;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return 0;
}

void quota_install(struct quota *q, const char *org_id, int64_t period_start, int64_t used) {
  uint64_t h = hash_id(org_id);
  struct shard *s = &q->shards[h % QUOTA_SHARDS];
  pthread_mutex_lock(&s->mu);
  if (s->n + 1 > s->cap / 2) grow(s);
  struct counter **slot = probe(s, org_id, h);
  struct counter *c = *slot;
  if (!c) {
    c = xcalloc(1, sizeof(*c));
    size_t len = strnlen(org_id, sizeof(c->org_id) - 1);
    memcpy(c->org_id, org_id, len);
    c->period_start = INT64_MIN;
    *slot = c;
    s->n++;
  }
  if (c->period_start < period_start) {
    c->period_start = period_start;
    c->used = used;
    c->reserved = 0;
    c->notified = 0;
    c->generation++;
  }
  pthread_mutex_unlock(&s->mu);
}

unsigned quota_settle(struct quota *q, const char *org_id, int64_t period_start, int64_t reserved,
                      int64_t accepted, int64_t quota, int64_t *used_out) {
  uint64_t h = hash_id(org_id);
  struct shard *s = &q->shards[h % QUOTA_SHARDS];
  unsigned fire = 0;
  pthread_mutex_lock(&s->mu);
  struct counter *c = find(s, org_id, h);
  if (c && c->period_start == period_start) {
    c->reserved -= reserved;
    if (c->reserved < 0) c->reserved = 0;
    c->used += accepted;
    c->generation++;
    if (quota > 0 && quota != INT64_MAX) {
      /* used × 100 ≥ quota × t, without overflow for any realistic quota */
      if (!(c->notified & QUOTA_NOTIFY_80) && c->used >= quota - quota / 5) {
        fire |= QUOTA_NOTIFY_80;
      }
      if (!(c->notified & QUOTA_NOTIFY_100) && c->used >= quota) fire |= QUOTA_NOTIFY_100;
      c->notified |= fire;
    }
    if (used_out) *used_out = c->used;
  } else if (used_out) {
    *used_out = 0;
  }
  pthread_mutex_unlock(&s->mu);
  return fire;
}

uint64_t quota_generation(struct quota *q, const char *org_id) {
  uint64_t h = hash_id(org_id);
  struct shard *s = &q->shards[h % QUOTA_SHARDS];
  pthread_mutex_lock(&s->mu);
  struct counter *c = find(s, org_id, h);
  uint64_t g = c ? c->generation : 0;
  pthread_mutex_unlock(&s->mu);
  return g;
}

bool quota_refresh(struct quota *q, const char *org_id, int64_t period_start, uint64_t generation,
                   int64_t used) {
  uint64_t h = hash_id(org_id);
  struct shard *s = &q->shards[h % QUOTA_SHARDS];
  bool changed = false;
  pthread_mutex_lock(&s->mu);
  struct counter *c = find(s, org_id, h);
  if (c && c->period_start == period_start && c->generation == generation && c->reserved == 0 &&
      c->used != used) {
    c->used = used;
    c->generation++;
    changed = true;
  }
  pthread_mutex_unlock(&s->mu);
  return changed;
}

size_t quota_drop_before(struct quota *q, int64_t period_start) {
  size_t dropped = 0;
  for (size_t i = 0; i < QUOTA_SHARDS; i++) {
    struct shard *s = &q->shards[i];
    pthread_mutex_lock(&s->mu);
    bool any = false;
    for (size_t k = 0; k < s->cap; k++) {
      if (s->slots[k] && s->slots[k]->period_start < period_start) any = true;
    }
    if (any) { /* rebuild the table without them (open addressing: no holes) */
      struct counter **old = s->slots;
      size_t cap = s->cap;
      s->slots = xcalloc(cap, sizeof(*s->slots));
      s->n = 0;
      for (size_t k = 0; k < cap; k++) {
        if (!old[k]) continue;
        if (old[k]->period_start < period_start) {
          xfree(old[k]);
          dropped++;
          continue;
        }
        *probe(s, old[k]->org_id, hash_id(old[k]->org_id)) = old[k];
        s->n++;
      }
      xfree(old);
    }
    pthread_mutex_unlock(&s->mu);
  }
  return dropped;
}

void quota_each(struct quota *q, int64_t period_start, void (*fn)(void *arg, const char *org_id),
                void *arg) {
  for (size_t i = 0; i < QUOTA_SHARDS; i++) {
    struct shard *s = &q->shards[i];
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    char(*ids)[ID_STR_SIZE] = s->n ? xreallocarray(NULL, s->n, ID_STR_SIZE) : NULL;
    for (size_t k = 0; k < s->cap; k++) {
      if (s->slots[k] && s->slots[k]->period_start == period_start && n < s->n) {
        memcpy(ids[n++], s->slots[k]->org_id, ID_STR_SIZE);
      }
    }
    pthread_mutex_unlock(&s->mu);
    for (size_t k = 0; k < n; k++) fn(arg, ids[k]);
    xfree(ids);
  }
}
