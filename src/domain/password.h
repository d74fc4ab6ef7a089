/*
 * password.h — password policy and argon2id hashing (R-IAM-1).
 *
 * Hashing uses libsodium's crypto_pwhash_str_alg with ARGON2ID13 at
 * t = 2 passes and m = 19 MiB (OWASP's minimum for argon2id), p = 1. It takes
 * tens of milliseconds on purpose: call it only from worker threads, never
 * from an HTTP I/O thread.
 */
#ifndef KEEL_DOMAIN_PASSWORD_H
#define KEEL_DOMAIN_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_MIN       8
#define PASSWORD_MAX       128 /* bytes; longer is refused, not truncated */
#define PASSWORD_HASH_SIZE 128 /* crypto_pwhash_STRBYTES */

/*
 * Checks the policy: 8..128 bytes with at least one upper-case letter, one
 * lower-case letter and one digit. Returns 0, or -1 and sets *code
 * ("too_short" | "too_long" | "too_weak") and *message (static text).
 */
int password_policy(const char *pw, const char **code, const char **message);
/* Hashes pw into out (NUL-terminated). Returns 0 or -1 (out of memory). */
int password_hash(const char *pw, char out[PASSWORD_HASH_SIZE]);
/* Verifies pw against an encoded hash; false on mismatch or a bad hash. */
bool password_verify(const char *hash, const char *pw);
/* Spends the time of a verification against a fixed dummy hash, so unknown
 * emails answer as slowly as known ones. Call password_init first. */
void password_verify_dummy(const char *pw);
/* Prepares the dummy hash (once per process). Returns 0 or -1. */
int password_init(void);

#endif
