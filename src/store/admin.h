/*
 * store/admin.h — the platform administrators' view of the store (R-IAM-11):
 * counts, search over every org and every user, an org's plan, a user's
 * suspension.
 *
 * This is the one deliberately cross-tenant part of the store. Its callers
 * are the AUTH_PLATFORM routes (api/admin.c, the middleware has checked the
 * platform-admin flag) and the CLI (`keel bootstrap`), never a tenant route.
 * Operations on one org still take that org's scope, so the org they touch is
 * always explicit.
 *
 * Thread-safety: like every store function, only inside a transaction
 * function (store_read / store_write); strings handed to callbacks are valid
 * during the call only.
 */
#ifndef KEEL_STORE_ADMIN_H
#define KEEL_STORE_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* Longest search string accepted by the list functions (bytes). */
#define STORE_ADMIN_QUERY_MAX 128

struct admin_overview {
  int64_t users;
  int64_t orgs;        /* not deleted */
  int64_t active_orgs; /* not deleted, with activity since the given time */
};

/*
 * Counts for the admin overview. An org is active when, at or after
 * active_since_us, its audit chain got an entry or a membership was created
 * in it (role changes and removals are audited, so they count through the
 * chain). Platform-chain entries (logins, sign-ups) make no org active.
 */
int store_admin_overview(struct store_tx *tx, int64_t active_since_us, struct admin_overview *out);
/* Number of users (bootstrap: "is this store initialised?"). */
int store_admin_user_count(struct store_tx *tx, int64_t *out);

struct admin_org {
  char id[ID_STR_SIZE];
  char name[128];
  char slug[64];
  char plan[16];
  char billing_status[16];
  int64_t members;
  int64_t created_at; /* µs */
  bool deleted;
};

struct admin_user {
  char id[ID_STR_SIZE];
  char email[256];
  char name[128];
  bool verified;
  bool platform_admin;
  bool suspended;
  int64_t created_at; /* µs */
};

typedef int (*admin_org_fn)(const struct admin_org *org, void *arg);
typedef int (*admin_user_fn)(const struct admin_user *user, void *arg);

/*
 * Every org (deleted ones included, flagged) whose name or slug contains q
 * (case-insensitive for ASCII; NULL or "" matches all; at most
 * STORE_ADMIN_QUERY_MAX bytes), with id > after_id (NULL: from the start),
 * in id order, at most limit rows. Calls fn per row; returns 0, fn's
 * non-zero result, KEEL_EINVAL (q too long) or a store error.
 */
int store_admin_orgs_list(struct store_tx *tx, const char *q, const char *after_id, int64_t limit,
                          admin_org_fn fn, void *arg);
/* One org by scope, deleted or not. KEEL_ENOTFOUND when absent. */
int store_admin_org_get(struct store_tx *tx, const struct org_scope *scope, struct admin_org *out);
/* Sets the org's plan (the caller validated it against the registry).
 * KEEL_ENOTFOUND when the org is absent or deleted. */
int store_admin_org_set_plan(struct store_tx *tx, const struct org_scope *scope, const char *plan);

/* Users whose email or name contains q; the rest as store_admin_orgs_list. */
int store_admin_users_list(struct store_tx *tx, const char *q, const char *after_id, int64_t limit,
                           admin_user_fn fn, void *arg);
int store_admin_user_get(struct store_tx *tx, const char *user_id, struct admin_user *out);
/*
 * Sets or clears the suspension. Suspending also bumps session_version, so
 * every session of the user is revoked at once (the middleware compares it
 * on each request). KEEL_ENOTFOUND when the user is absent.
 */
int store_admin_user_set_suspended(struct store_tx *tx, const char *user_id, bool suspended);

#endif
