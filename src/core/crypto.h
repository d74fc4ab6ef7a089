/*
 * crypto.h — thin wrappers over libsodium: random bytes and tokens, hashes,
 * MACs, constant-time comparison and wiping.
 *
 * crypto_init() must run once before anything else (it calls sodium_init).
 * Thread-safety: all functions are thread-safe after crypto_init().
 */
#ifndef KEEL_CORE_CRYPTO_H
#define KEEL_CORE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN      32
#define HMAC256_LEN     32
#define SHA256_HEX_SIZE 65 /* 64 hex chars + NUL */

int crypto_init(void); /* 0 or -1 */

void crypto_random(void *buf, size_t n);
uint64_t crypto_random_u64(void);
/* Uniform in [0, upper) (upper > 0). */
uint32_t crypto_random_uniform(uint32_t upper);

void crypto_sha256(const void *data, size_t n, uint8_t out[SHA256_LEN]);
void crypto_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t n,
                        uint8_t out[HMAC256_LEN]);
/* BLAKE2b of data keyed with key (keylen 16..64 bytes), outlen 16..64
 * bytes. A keyed hash of a secret (a session cookie) gives a lookup key
 * that reveals nothing of it and cannot be steered by whoever chose data. */
void crypto_keyed_hash(uint8_t *out, size_t outlen, const void *data, size_t n, const uint8_t *key,
                       size_t keylen);
#define CRYPTO_SHORT_HASH_KEY_LEN 16
/* SipHash-2-4 of data under a 16-byte key: a fast keyed hash for hash
 * tables whose keys clients choose (no flooding a bucket). */
uint64_t crypto_short_hash(const uint8_t key[CRYPTO_SHORT_HASH_KEY_LEN], const void *data,
                           size_t n);
/* Constant-time equality of two n-byte buffers. */
bool crypto_equal(const void *a, const void *b, size_t n);
/* Wipes n bytes (not optimised away). */
void crypto_wipe(void *p, size_t n);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void crypto_hex(const uint8_t *in, size_t n, char *out);
/* Parses 2n hex chars into out[n]. Returns 0 or -1. */
int crypto_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t n);
/* base64url without padding (out: 4*ceil(n/3)+1 bytes suffice). */
size_t crypto_b64url(const uint8_t *in, size_t n, char *out, size_t outsize);
/* Decodes base64url without padding; returns bytes written or -1. */
long crypto_unb64url(const char *in, size_t inlen, uint8_t *out, size_t outsize);

/* A random token of nbytes of entropy as base64url (for single-use tokens). */
void crypto_token(size_t nbytes, char *out, size_t outsize);

#endif
