/*
 * quota.h — the monthly event quota of each org, decided in memory before
 * the ingestion queue (R-MTR-3, docs/usage.md).
 *
 * One counter per org for the current period: `used` (events the store
 * accepted, loaded from the usage records at first use, so a restart loses
 * nothing) and `reserved` (events admitted by quota_reserve and not yet
 * settled). quota_reserve admits at most what is left under the plan's
 * limit and reserves it in the same critical section, so concurrent
 * requests cannot overshoot; quota_settle, after the batch's commit, drops
 * the reservation and adds only the events accepted (duplicates and failures
 * give their share back).
 *
 * Limits per plan: events_per_month is the quota Q (PLAN_UNLIMITED: none).
 * A plan with overage allowed admits up to Q × cap_permille / 1000 (then
 * overage_cap_reached); a plan without stops at Q + Q × grace_permille /
 * 1000 (then quota_exceeded), events past Q being admitted with a warning.
 *
 * The period is the calendar month in UTC (quota_period): the seam where a
 * billing anchor will go. Thread-safe: sharded mutexes, no allocation on
 * the decision path once an org's counter exists.
 */
#ifndef KEEL_DOMAIN_QUOTA_H
#define KEEL_DOMAIN_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ids.h"
#include "domain/plans.h"

struct quota;

struct quota *quota_new(void);
void quota_free(struct quota *q); /* NULL is fine */

/* The period containing now_us: [*start, *end). Calendar month, UTC. */
void quota_period(int64_t now_us, int64_t *start, int64_t *end);

/* What a plan allows per period. */
struct quota_limits {
  int64_t quota;     /* Q; INT64_MAX when unlimited */
  int64_t limit;     /* events admitted at most (cap or grace), INT64_MAX when unlimited */
  bool overage;      /* events past Q are billed overage (else: grace, or none) */
  const char *block; /* the problem code past limit */
};
void quota_limits_of(const struct plan *p, struct quota_limits *out);

enum quota_verdict {
  QUOTA_OK,        /* all n admitted */
  QUOTA_PARTIAL,   /* the first `granted` admitted, the rest refused */
  QUOTA_BLOCKED,   /* none admitted */
  QUOTA_NEED_LOAD, /* no counter for this period: quota_install, then ask again */
};

struct quota_decision {
  enum quota_verdict verdict;
  int64_t granted;      /* reserved: settle exactly this */
  int64_t used;         /* accepted + reserved before this decision */
  int64_t period_start; /* the reservation's period (for quota_settle) */
  int64_t period_end;
  struct quota_limits lim;
  bool warn;  /* admitted events past the quota on a plan without overage (grace) */
  bool audit; /* refused some, and the first refusal of this org this hour */
};

int quota_reserve(struct quota *q, const char *org_id, const struct plan *p, int64_t now_us,
                  int64_t n, struct quota_decision *d);

/* Installs the counter of org for the period starting at period_start with
 * `used` events already accepted (from the records), unless one for that
 * period (or a later one) exists. */
void quota_install(struct quota *q, const char *org_id, int64_t period_start, int64_t used);

/* Threshold bits quota_settle returns. */
enum { QUOTA_NOTIFY_80 = 1u << 0, QUOTA_NOTIFY_100 = 1u << 1 };

/* After the commit: gives back a reservation of `reserved` made for
 * period_start and counts `accepted` events. Returns the thresholds (80 %,
 * 100 % of quota) reached for the first time in this period by this
 * process (each at most once per period); *used_out (may be NULL) the
 * count after. A reservation of a period already rolled over is dropped. */
unsigned quota_settle(struct quota *q, const char *org_id, int64_t period_start, int64_t reserved,
                      int64_t accepted, int64_t quota, int64_t *used_out);

/* For the reconciliation job: the counter's settle generation (0: none),
 * read before reading the records... */
uint64_t quota_generation(struct quota *q, const char *org_id);
/* ...and the records' count applied only when no settle happened since and
 * nothing is reserved. Returns true when the counter changed. */
bool quota_refresh(struct quota *q, const char *org_id, int64_t period_start, uint64_t generation,
                   int64_t used);
/* Drops counters of periods before period_start (rollover). Returns how many. */
size_t quota_drop_before(struct quota *q, int64_t period_start);
/* Calls fn for every org with a counter of period_start (ids copied out
 * first: fn may block). */
void quota_each(struct quota *q, int64_t period_start, void (*fn)(void *arg, const char *org_id),
                void *arg);

#endif
