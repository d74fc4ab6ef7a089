/*
 * tenancy.h — organisations and membership rules (R-TEN-1, R-IAM-6..8,
 * R-IAM-10): names and slugs, plan limits on members and orgs, the
 * last-owner rules, ownership transfer. Invitations are in
 * domain/invitations.h.
 *
 * The rules are pure functions (unit-tested); the operations run inside the
 * caller's write transaction so the caller writes the audit entry in the
 * same one. A refusal is described by struct tenancy_err: a problem code of
 * the catalogue (core/errors.c) and, for plan limits, the limit, its value
 * and the plan (the API answers with api_plan_limit).
 *
 * Orgs-per-user limit (docs/internals/tenancy.md): a user may own at most
 * plans_get("free")->orgs_per_user_max orgs on the free plan; orgs on paid
 * plans do not count. Checked when an org is created, and when someone is
 * made an owner of a free-plan org (role change, ownership transfer).
 *
 * Thread-safety: no state; the store functions are called on tx.
 */
#ifndef KEEL_DOMAIN_TENANCY_H
#define KEEL_DOMAIN_TENANCY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/rbac.h"
#include "store/orgs.h"
#include "store/store.h"

/* Buffer size for a slug (LIMIT_SLUG_MAX and the NUL, rounded up). */
#define TENANCY_SLUG_SIZE 64

/* Why an operation refused. code is a problem code ("last_owner",
 * "forbidden", "plan_limit_reached", …); the strings are static. */
struct tenancy_err {
  const char *code;
  const char *detail;
  const char *field;   /* validation_failed: the field at fault */
  const char *limit;   /* plan_limit_reached: "members" | "orgs_per_user" */
  int64_t limit_value; /* plan_limit_reached */
  const char *plan;    /* plan_limit_reached: the plan id (static registry memory) */
};

/* --- names and slugs ---------------------------------------------------- */

/* NULL when name is a valid org name (1..LIMIT_ORG_NAME_CHARS characters of
 * valid UTF-8, no control characters, not blank), else the reason. */
const char *tenancy_name_check(const char *name);
/* NULL when slug is valid (LIMIT_SLUG_MIN..LIMIT_SLUG_MAX of [a-z0-9-],
 * alphanumeric at both ends, not reserved), else the reason. */
const char *tenancy_slug_check(const char *slug);
bool tenancy_slug_valid(const char *slug);
bool tenancy_slug_reserved(const char *slug);
/* A slug from a name ("Acme Labs!" → "acme-labs"): ASCII letters and digits
 * lower-cased, every other run of bytes one '-', no '-' at either end, at
 * most LIMIT_SLUG_MAX bytes; nothing left → "org". The result may still be
 * too short or reserved (tenancy_org_create adds a suffix then). */
void tenancy_slug_from_name(const char *name, char *out, size_t outsize);

/* --- organisations ------------------------------------------------------ */

/*
 * Creates an org inside tx with owner_id as its owner: validates the name,
 * the slug (NULL: generated from the name, made unique with a random
 * "-xxxx" suffix), the plan (NULL: the default), and the creator's org limit.
 * Fills *out. Returns 0, KEEL_EINVAL (*why), KEEL_ECONFLICT (slug taken), or
 * KEEL_EDENIED (plan limit; *why names it; the limit is
 * plans_get(PLAN_DEFAULT)->orgs_per_user_max).
 */
int tenancy_org_create(struct store_tx *tx, const char *owner_id, const char *name,
                       const char *slug, const char *plan, struct org *out, const char **why);

/*
 * May user_id become an owner of an org on plan? 0, or KEEL_EDENIED with
 * *err filled (orgs_per_user) when plan is the free plan and the user owns
 * as many free orgs as it allows.
 */
int tenancy_owner_capacity(struct store_tx *tx, const char *user_id, const char *plan,
                           struct tenancy_err *err);

/* The org as the API shows it, with the caller's role (new reference). */
json_t *tenancy_org_json(const struct org *org, enum role role);

/* --- membership rules (pure) -------------------------------------------- */

/*
 * May actor (role actor_role) change a member from role from to role to,
 * in an org with owners owners? 0, KEEL_EDENIED (admins cannot touch owners
 * nor grant owner), KEEL_ECONFLICT (the last owner cannot be demoted); err
 * filled on refusal.
 */
int tenancy_role_change_rule(enum role actor_role, enum role from, enum role to, int64_t owners,
                             struct tenancy_err *err);
/* May actor remove a member of role target (self: the actor leaves)? */
int tenancy_removal_rule(enum role actor_role, enum role target, bool self, int64_t owners,
                         struct tenancy_err *err);
/* Seats: members + pending invitations + adding within the plan's members
 * limit? */
bool tenancy_seats_within(const char *plan, int64_t members, int64_t pending, int64_t adding);

/* --- membership operations (inside tx) ---------------------------------- */

/*
 * Sets target_id's role in org (the org's plan matters for the owner limit)
 * as actor (actor_role). *from gets the previous role. Returns 0,
 * KEEL_ENOTFOUND (not a member), KEEL_EDENIED, KEEL_ECONFLICT; err filled.
 */
int tenancy_member_set_role(struct store_tx *tx, const struct org *org, enum role actor_role,
                            const char *target_id, enum role to, enum role *from,
                            struct tenancy_err *err);
/* Removes target_id (self when it is actor_id: leaving). *was gets the
 * removed role. Same returns. */
int tenancy_member_remove(struct store_tx *tx, const struct org *org, const char *actor_id,
                          enum role actor_role, const char *target_id, enum role *was,
                          struct tenancy_err *err);
/*
 * Ownership transfer: to_id (a member, not from_id) becomes owner, from_id
 * (an owner) becomes admin. Returns 0, KEEL_ENOTFOUND (to_id not a member),
 * KEEL_EINVAL (to_id is from_id), KEEL_EDENIED (from_id not an owner, or
 * the owner limit of to_id); err filled.
 */
int tenancy_ownership_transfer(struct store_tx *tx, const struct org *org, const char *from_id,
                               const char *to_id, struct tenancy_err *err);

/* --- small helpers shared by the tenancy modules ------------------------ */

/* A JSON timestamp (RFC 3339) for µs, or null for 0. */
json_t *tenancy_time_json(int64_t us);
/* Fills *err (may be NULL) with a code and detail (static strings). */
void tenancy_err_set(struct tenancy_err *err, const char *code, const char *detail);
/* Fills *err for plan_limit_reached on limit ("members" | "orgs_per_user")
 * of plan. */
struct plan;
void tenancy_err_limit(struct tenancy_err *err, const char *limit, const struct plan *plan);
/* Whether s[0..n) is valid UTF-8 without NUL bytes. */
bool tenancy_utf8_valid(const char *s, size_t n);

#endif
