/*
 * store/orgs.h — organisations and memberships.
 *
 * Organisations are the tenants themselves: looking one up by id or slug is
 * the step that establishes an org scope, so those lookups take the
 * requesting user instead of a scope, and find nothing unless the user is a
 * member (a foreign org is indistinguishable from a missing one). Everything
 * about one org's members takes that org's scope.
 *
 * Deleted orgs (deleted_at set) are invisible to every function here.
 */
#ifndef KEEL_STORE_ORGS_H
#define KEEL_STORE_ORGS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/limits.h"
#include "domain/rbac.h"
#include "store/store.h"

struct org {
  char id[ID_STR_SIZE];
  char name[LIMIT_ORG_NAME_SIZE];
  char slug[64];
  char plan[16];
  char billing_status[16];
  char settings[LIMIT_ORG_SETTINGS_MAX + 1]; /* JSON text */
  int64_t created_at;
  int64_t updated_at;
};

/*
 * The org named by ref (an id or a slug), not deleted, of which user_id is a
 * member: fills *org and *role. KEEL_ENOTFOUND otherwise.
 */
int store_org_for_member(struct store_tx *tx, const char *user_id, const char *ref, struct org *org,
                         enum role *role);
/* The org of a scope (platform code and keys). KEEL_ENOTFOUND when deleted. */
int store_org_get(struct store_tx *tx, const struct org_scope *scope, struct org *out);
/* Inserts org (id, name, slug, plan, settings set by the caller; times
 * stamped here) and makes owner_id its owner. KEEL_ECONFLICT when the slug
 * is taken. */
int store_org_insert(struct store_tx *tx, const struct org *org, const char *owner_id);
/* *taken: whether any org (deleted ones too: their slugs stay reserved until
 * the purge) uses slug. */
int store_org_slug_taken(struct store_tx *tx, const char *slug, bool *taken);
/* Orgs on plan that user_id owns (not deleted), into *count. */
int store_org_count_owned(struct store_tx *tx, const char *user_id, const char *plan,
                          int64_t *count);

/* Calls fn for each org user_id is a member of (not deleted), in id order
 * (creation order), with ids greater than after_id ("" for the first page),
 * at most limit rows. fn returns non-zero to stop (returned). */
typedef int (*store_org_row_fn)(const struct org *org, enum role role, void *arg);
int store_org_list_for_user(struct store_tx *tx, const char *user_id, const char *after_id,
                            int64_t limit, store_org_row_fn fn, void *arg);

/* Updates the given fields (NULL: unchanged) and stamps updated_at.
 * KEEL_ECONFLICT when slug is taken, KEEL_ENOTFOUND when deleted. */
int store_org_update(struct store_tx *tx, const struct org_scope *scope, const char *name,
                     const char *slug, const char *settings);
/* Soft delete: sets deleted_at. KEEL_ENOTFOUND when already deleted. */
int store_org_soft_delete(struct store_tx *tx, const struct org_scope *scope);

/* --- memberships (one org's) -------------------------------------------- */

struct member_row {
  char user_id[ID_STR_SIZE];
  char email[256];
  char name[128];
  enum role role;
  int64_t joined_at; /* µs */
};

/* One member with their user's email and name; KEEL_ENOTFOUND when not a
 * member. */
int store_member_get(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                     struct member_row *out);
/* user_id's role in scope; KEEL_ENOTFOUND when not a member. */
int store_member_role(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                      enum role *role);
/* *found: whether a member of scope has the normalised email. */
int store_member_with_email(struct store_tx *tx, const struct org_scope *scope,
                            const char *email_norm, bool *found);
/* Members, and members with a given role. */
int store_member_count(struct store_tx *tx, const struct org_scope *scope, int64_t *count);
int store_member_count_role(struct store_tx *tx, const struct org_scope *scope, enum role role,
                            int64_t *count);
/* KEEL_ECONFLICT when already a member. */
int store_member_insert(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                        enum role role);
/* KEEL_ENOTFOUND when not a member. */
int store_member_set_role(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                          enum role role);
int store_member_delete(struct store_tx *tx, const struct org_scope *scope, const char *user_id);

/* Members in joined order (then user id), after the cursor (after_joined,
 * after_user; after_user "" for the first page), at most limit rows. */
typedef int (*store_member_row_fn)(const struct member_row *row, void *arg);
int store_member_list(struct store_tx *tx, const struct org_scope *scope, int64_t after_joined,
                      const char *after_user, int64_t limit, store_member_row_fn fn, void *arg);

#endif
