/*
 * apikeys.h — API keys (R-KEY-1..6): format, checksum, creation and
 * verification with an in-process cache.
 *
 * Format: "kl_live_" or "kl_test_", then base62 random (>= 160 bits), then a
 * short base62 checksum of what precedes it, so a malformed or mistyped key
 * is refused without a store lookup. Stored: HMAC-SHA-256(server key, key),
 * never the key.
 */
#ifndef KEEL_DOMAIN_APIKEYS_H
#define KEEL_DOMAIN_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define APIKEY_MAX 80 /* bytes of a key, with NUL */

struct apikey_created {
  char id[ID_STR_SIZE];
  char key[APIKEY_MAX]; /* the full key: shown once, then wiped by the caller */
  char prefix[16];
};

/*
 * Creates a key in scope inside tx (plan key limit checked): name, scopes
 * (SCOPE_* bits), env label ("production" | "staging" | "development" |
 * "test"), live (kl_live_) or test (kl_test_), created_by (user id or NULL),
 * mac_key (32 bytes, from the server secret). Returns 0, KEEL_EINVAL (*why),
 * or KEEL_EDENIED (plan limit; *why).
 */
int apikeys_create(struct store_tx *tx, const struct org_scope *scope, const char *name,
                   unsigned scopes, const char *env, bool live, const char *created_by,
                   const uint8_t *mac_key, struct apikey_created *out, const char **why);

#endif
