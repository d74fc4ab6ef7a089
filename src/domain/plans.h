/*
 * plans.h — the plan registry (R-MTR-1): free, pro, team, enterprise and
 * their limits, prices and quotas.
 *
 * The defaults are data/plans.json, compiled into the binary. The setting
 * plans.file names a file of the same format whose plans are merged over the
 * defaults by id, field by field. The registry is loaded once at start-up
 * and read-only afterwards (thread-safe to read).
 */
#ifndef KEEL_DOMAIN_PLANS_H
#define KEEL_DOMAIN_PLANS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLAN_UNLIMITED INT64_C(-1)
#define PLAN_DEFAULT   "free"

struct plan {
  char id[16];
  char name[32];
  int64_t price_month_cents;
  int64_t price_year_cents;
  int64_t members_max;
  int64_t orgs_per_user_max; /* free-plan orgs one user may own */
  int64_t api_keys_max;
  int64_t rate_per_min_key;
  int64_t rate_per_min_org;
  int64_t events_per_month;
  bool overage_allowed;
  int64_t overage_nano_usd_per_1000;
  int64_t overage_cap_permille;
  int64_t grace_permille;
  int64_t retention_days;
  int64_t audit_retention_days;
};

/* Loads the defaults and merges override_path (NULL or "" for none).
 * Returns 0, or -1 with a message in err. May be called again (tests). */
int plans_load(const char *override_path, char *err, size_t errlen);
/* NULL for an unknown id. */
const struct plan *plans_get(const char *id);
const struct plan *plans_all(size_t *count);
/* The registry as served by GET /v1/plans (new reference). */
json_t *plans_json(void);
/* True when value is within limit (limit PLAN_UNLIMITED allows anything). */
bool plans_within(int64_t limit, int64_t value);

#endif
