/*
 * iam.h — users and sign-in: sign-up, email verification, login with
 * lockout, logout, password reset, session issue (R-IAM-1..4).
 *
 * Functions that hash passwords (argon2id) are slow by design: call them on
 * worker threads only.
 */
#ifndef KEEL_DOMAIN_IAM_H
#define KEEL_DOMAIN_IAM_H

#include <stdbool.h>

#include "store/store.h"
#include "store/users.h"

/* Lower-cases an email into out (ASCII); returns -1 when it is not a
 * plausible address (local@domain.tld, ≤ 254 bytes, no spaces). */
int iam_email_normalise(const char *email, char *out, size_t outsize);

/*
 * Creates a user inside tx: validates the email and (when not NULL) the
 * password policy, hashes the password (NULL: no password, the user cannot
 * log in until a reset), stores the user. *out is filled. Returns 0,
 * KEEL_EINVAL (*why says which rule), or KEEL_ECONFLICT (email taken).
 * Hashing happens before the transaction work, so call it from a worker.
 */
int iam_user_create(struct store_tx *tx, const char *email, const char *password, const char *name,
                    bool verified, struct user *out, const char **why);

#endif
