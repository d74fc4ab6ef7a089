/*
 * store/users.h — users (platform-wide, not tenant data), their single-use
 * tokens, login throttling, their memberships as seen from the user, and
 * the one read of invitations sign-up needs.
 *
 * Users are not tenant data: none of these functions takes an org scope.
 * Times are µs since the epoch. Every function returns 0 or a KEEL_E*
 * status; strings passed in are borrowed.
 */
#ifndef KEEL_STORE_USERS_H
#define KEEL_STORE_USERS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/crypto.h"
#include "domain/password.h"
#include "store/store.h"

struct user {
  char id[ID_STR_SIZE];
  char email[256];
  char name[128];
  char password_hash[PASSWORD_HASH_SIZE];
  bool verified;
  bool platform_admin;
  bool suspended;
  int64_t session_version;
  int64_t created_at;
  int64_t updated_at;
};

/* By id / by normalised (lower-case) email. KEEL_ENOTFOUND when absent. */
int store_user_get(struct store_tx *tx, const char *user_id, struct user *out);
int store_user_by_email(struct store_tx *tx, const char *email_norm, struct user *out);
/* Inserts u (id, email, name, password_hash, verified, platform_admin set by
 * the caller; times stamped here). KEEL_ECONFLICT when the email exists. */
int store_user_insert(struct store_tx *tx, const struct user *u, const char *email_norm);

/* Marks the user verified. KEEL_ENOTFOUND when absent. */
int store_user_set_verified(struct store_tx *tx, const char *user_id);
/* Sets or clears the platform-administrator flag. KEEL_ENOTFOUND when absent. */
int store_user_set_platform_admin(struct store_tx *tx, const char *user_id, bool admin);
/* Replaces the password hash and bumps session_version (a password change
 * revokes every session). KEEL_ENOTFOUND when absent. */
int store_user_set_password(struct store_tx *tx, const char *user_id, const char *hash);
/* Bumps session_version: every session token issued before is refused. */
int store_user_bump_session_version(struct store_tx *tx, const char *user_id);

/* --- single-use tokens (user_tokens) ----------------------------------- */

/* Stores the SHA-256 of a token for purpose ("verify" | "reset"). */
int store_user_token_insert(struct store_tx *tx, const uint8_t hash[SHA256_LEN],
                            const char *user_id, const char *purpose, int64_t now_us,
                            int64_t expires_us);
/*
 * Finds the unused, unexpired token of purpose with this hash and fills
 * user_id. With consume, marks it used (in the same transaction, so it can
 * be used once). KEEL_ENOTFOUND for unknown, used or expired tokens.
 */
int store_user_token_find(struct store_tx *tx, const uint8_t hash[SHA256_LEN], const char *purpose,
                          int64_t now_us, bool consume, char user_id[ID_STR_SIZE]);
/* Marks every unused token of the user for purpose used (e.g. after a
 * reset, older reset links stop working). */
int store_user_tokens_retire(struct store_tx *tx, const char *user_id, const char *purpose,
                             int64_t now_us);

/* --- login throttling (login_failures, login_locks) --------------------- */

/* The lock's end for email_norm (0 when none is recorded). */
int store_login_lock_get(struct store_tx *tx, const char *email_norm, int64_t *locked_until_us);
/* Records a failure at now_us, forgets failures older than since_us, and
 * sets *count to the failures at or after since_us (this one included). */
int store_login_failure_add(struct store_tx *tx, const char *email_norm, int64_t now_us,
                            int64_t since_us, int64_t *count);
/* Locks email_norm until until_us and forgets its failures. */
int store_login_lock_set(struct store_tx *tx, const char *email_norm, int64_t until_us);
/* Forgets the failures and the lock of email_norm. */
int store_login_clear(struct store_tx *tx, const char *email_norm);

/* --- the user's organisations ------------------------------------------ */

struct user_org {
  char id[ID_STR_SIZE];
  char name[128];
  char slug[64];
  char role[8];
};

typedef int (*store_user_org_fn)(void *arg, const struct user_org *org);

/*
 * Calls fn for each org (not deleted) the user belongs to, oldest
 * membership first, at most limit of them (limit <= 0: all). A non-zero
 * return from fn stops the walk and is returned.
 */
int store_user_orgs(struct store_tx *tx, const char *user_id, int64_t limit, store_user_org_fn fn,
                    void *arg);

/* --- invitations, as sign-up sees them ---------------------------------- */

/*
 * The open invitation (unaccepted, unrevoked, unexpired at now_us, its org
 * not deleted) whose token hashes to hash: fills email_norm.
 * KEEL_ENOTFOUND otherwise.
 */
int store_user_invitation_email(struct store_tx *tx, const uint8_t hash[SHA256_LEN], int64_t now_us,
                                char email_norm[256]);

#endif
