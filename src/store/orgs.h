/*
 * store/orgs.h — organisations and memberships.
 *
 * Organisations are the tenants themselves: looking one up by id or slug is
 * the step that establishes an org scope, so those lookups take the
 * requesting user instead of a scope, and find nothing unless the user is a
 * member (a foreign org is indistinguishable from a missing one).
 */
#ifndef KEEL_STORE_ORGS_H
#define KEEL_STORE_ORGS_H

#include <stdbool.h>
#include <stdint.h>

#include "domain/rbac.h"
#include "store/store.h"

struct org {
  char id[ID_STR_SIZE];
  char name[128];
  char slug[64];
  char plan[16];
  char billing_status[16];
  char settings[4096]; /* JSON text */
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

#endif
