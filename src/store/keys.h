/*
 * store/keys.h — API keys (table api_keys, migration 0003).
 *
 * Keys are tenant data: every function takes the org scope, except
 * store_apikey_by_hash, the lookup that establishes the scope of a request
 * authenticated by a key (as store_org_for_member does for a user): it finds
 * the key by its HMAC, whichever org it belongs to, and returns that org.
 *
 * The full key is never stored or passed here; only key_hash
 * (HMAC-SHA-256, domain/apikeys.h). Times are µs since the epoch; 0 stands
 * for SQL NULL in the optional times and the rate override. Every function
 * returns 0 or a KEEL_E* status; strings passed in are borrowed.
 */
#ifndef KEEL_STORE_KEYS_H
#define KEEL_STORE_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/crypto.h"
#include "store/orgs.h"
#include "store/store.h"

#define APIKEY_NAME_MAX   100 /* bytes of a key's name */
#define APIKEY_PREFIX_LEN 12  /* display prefix: the key's first 12 characters */
#define APIKEY_HASH_LEN   HMAC256_LEN

struct apikey_row {
  char org_id[ID_STR_SIZE];
  char id[ID_STR_SIZE];
  char name[APIKEY_NAME_MAX + 1];
  char env[16];                 /* production | staging | development | test */
  bool live;                    /* kl_live_ or kl_test_ */
  unsigned scopes;              /* SCOPE_* bits */
  char prefix[16];              /* APIKEY_PREFIX_LEN characters */
  char created_by[ID_STR_SIZE]; /* "" when created by the CLI */
  uint8_t key_hash[APIKEY_HASH_LEN];
  int64_t created_at;
  int64_t last_used_at;       /* 0: never */
  int64_t expires_at;         /* 0: never */
  int64_t revoked_at;         /* 0: active */
  int64_t rate_limit_per_min; /* 0: the plan's */
};

/* Inserts row (every field set by the caller). KEEL_ECONFLICT when the id or
 * the hash exists. */
int store_apikey_insert(struct store_tx *tx, const struct org_scope *scope,
                        const struct apikey_row *row);
/* Keys of the org that are neither revoked nor expired at now_us. */
int store_apikey_count_active(struct store_tx *tx, const struct org_scope *scope, int64_t now_us,
                              int64_t *count);
/* One key by id (revoked ones too). KEEL_ENOTFOUND when absent here. */
int store_apikey_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                     struct apikey_row *out);

/* Called for each listed key; a non-zero return stops the listing and is
 * returned. */
typedef int (*apikey_row_fn)(const struct apikey_row *row, void *arg);
/*
 * Keys newest first (ids are UUIDv7), those with id < before_id when
 * before_id is not NULL, at most limit, revoked ones only when
 * include_revoked.
 */
int store_apikey_list(struct store_tx *tx, const struct org_scope *scope, const char *before_id,
                      bool include_revoked, int64_t limit, apikey_row_fn fn, void *arg);
/*
 * Updates the name (NULL: unchanged) and, when set_rate, the override
 * (rate_per_min 0: cleared) of an active key. KEEL_ENOTFOUND when absent,
 * KEEL_ECONFLICT when revoked.
 */
int store_apikey_update(struct store_tx *tx, const struct org_scope *scope, const char *id,
                        const char *name, bool set_rate, int64_t rate_per_min);
/*
 * Revokes a key at now_us. KEEL_ENOTFOUND when absent; *already is set when
 * it was revoked before (nothing changes then).
 */
int store_apikey_revoke(struct store_tx *tx, const struct org_scope *scope, const char *id,
                        int64_t now_us, bool *already);
/* Raises last_used_at to at (never lowers it). A missing key is not an
 * error (it may have gone since). */
int store_apikey_touch(struct store_tx *tx, const struct org_scope *scope, const char *id,
                       int64_t at);

/* The org named by ref (an id or a slug, not deleted), for commands that
 * act on an org by name without a user (keel key create, bootstrap).
 * KEEL_ENOTFOUND when none. */
int store_apikey_org_resolve(struct store_tx *tx, const char *ref, struct org_scope *out);

/* What a request authenticated by a key needs: the key, its org, and
 * whether either stopped being usable. */
struct apikey_lookup {
  struct apikey_row key;
  struct org org;
  bool org_deleted;       /* the org is (soft-)deleted */
  bool creator_suspended; /* the user who created the key is suspended */
};

/* The key with this hash, in any org (see the file comment).
 * KEEL_ENOTFOUND when none. */
int store_apikey_by_hash(struct store_tx *tx, const uint8_t hash[APIKEY_HASH_LEN],
                         struct apikey_lookup *out);

#endif
