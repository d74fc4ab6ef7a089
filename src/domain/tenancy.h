/*
 * tenancy.h — organisations and membership rules (R-TEN-1, R-IAM-6..8,
 * R-IAM-10): slugs, plan limits on members and orgs, the last-owner rules.
 */
#ifndef KEEL_DOMAIN_TENANCY_H
#define KEEL_DOMAIN_TENANCY_H

#include <stdbool.h>
#include <stddef.h>

#include "store/orgs.h"
#include "store/store.h"

/* Slug rules: 3..48 chars of [a-z0-9-], starting and ending alphanumeric,
 * not a reserved word. */
bool tenancy_slug_valid(const char *slug);
/* A slug from a name ("Acme Labs!" → "acme-labs"); empty input → "org". */
void tenancy_slug_from_name(const char *name, char *out, size_t outsize);

/*
 * Creates an org inside tx with owner_id as its owner: validates the name,
 * the slug (NULL: generated from the name, made unique with a suffix), the
 * plan (NULL: the default), and the creator's org limit. Fills *out.
 * Returns 0, KEEL_EINVAL (*why), KEEL_ECONFLICT (slug taken), or
 * KEEL_EDENIED (plan limit; *why names it).
 */
int tenancy_org_create(struct store_tx *tx, const char *owner_id, const char *name,
                       const char *slug, const char *plan, struct org *out, const char **why);

#endif
