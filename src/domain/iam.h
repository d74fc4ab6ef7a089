/*
 * iam.h — users and sign-in: sign-up, email verification, login with
 * lockout, logout, password reset, session issue (R-IAM-1..4).
 *
 * The rules live here; SQL lives in store/users.c and HTTP in api/auth.c.
 * Functions taking a struct store_tx run inside the caller's transaction
 * (so the caller can write the audit entry in the same one).
 *
 * Functions that hash passwords (argon2id) are slow by design: call them on
 * worker threads only, and outside write transactions where possible (the
 * SQLite store has one writer: iam_user_prepare first, then iam_user_insert
 * in the write job).
 */
#ifndef KEEL_DOMAIN_IAM_H
#define KEEL_DOMAIN_IAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "core/time.h"
#include "domain/session.h"
#include "store/store.h"
#include "store/users.h"

#define IAM_EMAIL_MAX 254 /* RFC 5321 path limit */
#define IAM_NAME_MAX  100 /* bytes of a display name */

/* Single-use tokens: 32 random bytes as base64url (43 chars); the store
 * keeps only their SHA-256. */
#define IAM_TOKEN_BYTES    32
#define IAM_TOKEN_LEN      43
#define IAM_TOKEN_SIZE     48
#define IAM_VERIFY_TTL_US  (24 * US_PER_HOUR)
#define IAM_RESET_TTL_US   US_PER_HOUR
#define IAM_PURPOSE_VERIFY "verify"
#define IAM_PURPOSE_RESET  "reset"

/* Brute-force protection (R-IAM-3): this many failures for one address
 * within the window lock it for the duration. */
#define IAM_LOCK_FAILURES    10
#define IAM_LOCK_WINDOW_US   (15 * US_PER_MIN)
#define IAM_LOCK_DURATION_US (15 * US_PER_MIN)

/* Lower-cases an email into out (ASCII); returns -1 when it is not a
 * plausible address (local@domain.tld, ≤ 254 bytes, no spaces). */
int iam_email_normalise(const char *email, char *out, size_t outsize);
/* A display name: 1..IAM_NAME_MAX bytes, no control characters. */
bool iam_name_valid(const char *name);

/* A user ready to insert: validated, password hashed. */
struct iam_new_user {
  struct user user;
  char email_norm[256];
};

/*
 * Validates email, name and (when not NULL) the password policy, hashes the
 * password (slow: argon2id) and fills *out with a fresh id. password NULL:
 * no password (the user cannot log in until a reset). name NULL or empty:
 * the local part of the email. Returns 0 or KEEL_EINVAL (*why: static text).
 */
int iam_user_prepare(const char *email, const char *password, const char *name, bool verified,
                     struct iam_new_user *out, const char **why);
/* Inserts a prepared user inside tx and fills *out (may be NULL).
 * KEEL_ECONFLICT when the email is taken. */
int iam_user_insert(struct store_tx *tx, const struct iam_new_user *nu, struct user *out);
/*
 * iam_user_prepare + iam_user_insert in one call, inside tx. Returns 0,
 * KEEL_EINVAL (*why says which rule), or KEEL_ECONFLICT (email taken).
 * It hashes inside the transaction: fine for the CLI, not for the server.
 */
int iam_user_create(struct store_tx *tx, const char *email, const char *password, const char *name,
                    bool verified, struct user *out, const char **why);

/* --- single-use tokens -------------------------------------------------- */

/* Hashes a presented token; -1 when it cannot be one of ours (length or
 * alphabet), so callers answer invalid_token without a store lookup. */
int iam_token_hash(const char *token, uint8_t hash[SHA256_LEN]);
/* Issues a token of purpose for user_id valid for ttl_us from now_us:
 * stores its hash, writes the token (to be mailed) into token. */
int iam_token_issue(struct store_tx *tx, const char *user_id, const char *purpose, int64_t now_us,
                    int64_t ttl_us, char token[IAM_TOKEN_SIZE]);
/* Redeems (consume) or checks a token: fills user_id. KEEL_ENOTFOUND for an
 * unknown, used, expired or malformed token. */
int iam_token_redeem(struct store_tx *tx, const char *token, const char *purpose, int64_t now_us,
                     bool consume, char user_id[ID_STR_SIZE]);

/* --- login -------------------------------------------------------------- */

enum iam_login_verdict {
  IAM_LOGIN_OK = 0,
  IAM_LOGIN_BAD,       /* unknown email, wrong password, no password, suspended */
  IAM_LOGIN_UNVERIFIED /* right password, email not verified yet */
};

/*
 * Checks a password against u (NULL: unknown email — a dummy verification
 * spends the same time). *reason gets a static code for the audit entry:
 * "ok", "unknown_email", "wrong_password", "no_password", "suspended",
 * "email_not_verified". Slow (argon2id).
 */
enum iam_login_verdict iam_login_verify(const struct user *u, const char *password,
                                        const char **reason);
/* Seconds until email_norm unlocks (rounded up), 0 when not locked. */
int iam_lock_remaining(struct store_tx *tx, const char *email_norm, int64_t now_us,
                       int64_t *retry_after_s);
/* Records a failed login; when it is the IAM_LOCK_FAILURES-th within the
 * window, locks the address and sets *locked (else false). */
int iam_login_failed(struct store_tx *tx, const char *email_norm, int64_t now_us, bool *locked);
/* Forgets the address's failures and lock (successful login, reset). */
int iam_login_clear(struct store_tx *tx, const char *email_norm);

/* --- sessions ----------------------------------------------------------- */

/* Replaces the claims' orgs with the first SESSION_ORGS_MAX of
 * orgs[0..norgs) and sets orgs_truncated when there are more. */
void iam_session_set_orgs(struct session_claims *c, const struct user_org *orgs, size_t norgs);
/*
 * Fills fresh session claims for u: a new sid, sv, iat = auth_time = now_s,
 * the first SESSION_ORGS_MAX of orgs[0..norgs) (orgs_truncated beyond),
 * aorg = active_org_id when not NULL/empty, else the first org, and the
 * expiry.
 */
void iam_session_claims(const struct user *u, const struct user_org *orgs, size_t norgs,
                        const char *active_org_id, int64_t now_s, struct session_claims *c);

#endif
