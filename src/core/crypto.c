/*
 * crypto.c — libsodium behind keel's names.
 *
 * Other modules (ids.c's random bits included) reach libsodium's primitives
 * through here, so the choice of library stays in one file. The decoders
 * are strict: exact lengths, no skipped characters, canonical base64url,
 * because their inputs are tokens and signatures from clients, and a lenient
 * decoder makes two spellings of one secret.
 *
 * Output buffers that are too small are caller bugs, not input errors: they
 * abort with a message (as libsodium itself would, silently).
 */
#include "core/crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/xmalloc.h"

/* Written straight to fd 2: this layer sits below the logger. */
static _Noreturn void crypto_misuse(const char *what) {
  static const char prefix[] = "keel: crypto misuse: ";
  ssize_t ignored = write(2, prefix, sizeof prefix - 1);
  ignored = write(2, what, strlen(what));
  ignored = write(2, "\n", 1);
  (void)ignored;
  abort();
}

int crypto_init(void) {
  /* 1 means "already initialised", which is fine. */
  return sodium_init() < 0 ? -1 : 0;
}

void crypto_random(void *buf, size_t n) {
  if (n) randombytes_buf(buf, n);
}

uint64_t crypto_random_u64(void) {
  uint64_t v;
  randombytes_buf(&v, sizeof v);
  return v;
}

uint32_t crypto_random_uniform(uint32_t upper) {
  /* randombytes_uniform avoids modulo bias; it returns 0 for upper < 2. */
  return randombytes_uniform(upper);
}

void crypto_sha256(const void *data, size_t n, uint8_t out[SHA256_LEN]) {
  crypto_hash_sha256(out, data, n);
}

void crypto_hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t n,
                        uint8_t out[HMAC256_LEN]) {
  /* The streaming API takes keys of any length (longer ones are hashed, as
   * HMAC specifies); the one-shot API insists on exactly 32 bytes. */
  static const uint8_t empty_key[1];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, keylen ? key : empty_key, keylen);
  crypto_auth_hmacsha256_update(&state, data, n);
  crypto_auth_hmacsha256_final(&state, out);
  sodium_memzero(&state, sizeof state); /* holds key-derived pads */
}

void crypto_keyed_hash(uint8_t *out, size_t outlen, const void *data, size_t n, const uint8_t *key,
                       size_t keylen) {
  if (outlen < crypto_generichash_BYTES_MIN || outlen > crypto_generichash_BYTES_MAX ||
      keylen < crypto_generichash_KEYBYTES_MIN || keylen > crypto_generichash_KEYBYTES_MAX) {
    crypto_misuse("crypto_keyed_hash: output or key length out of range");
  }
  crypto_generichash(out, outlen, data, n, key, keylen);
}

uint64_t crypto_short_hash(const uint8_t key[CRYPTO_SHORT_HASH_KEY_LEN], const void *data,
                           size_t n) {
  _Static_assert(crypto_shorthash_KEYBYTES == CRYPTO_SHORT_HASH_KEY_LEN, "SipHash key size");
  _Static_assert(crypto_shorthash_BYTES == sizeof(uint64_t), "SipHash output size");
  uint8_t h[crypto_shorthash_BYTES];
  crypto_shorthash(h, data, n, key);
  uint64_t v;
  memcpy(&v, h, sizeof v);
  return v;
}

bool crypto_equal(const void *a, const void *b, size_t n) {
  return sodium_memcmp(a, b, n) == 0;
}

void crypto_wipe(void *p, size_t n) {
  if (n) sodium_memzero(p, n);
}

void crypto_hex(const uint8_t *in, size_t n, char *out) {
  sodium_bin2hex(out, 2 * n + 1, in, n);
}

int crypto_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t n) {
  if (hexlen / 2 != n || hexlen % 2 != 0) return -1;
  if (n == 0) return 0;
  size_t written = 0;
  const char *end = NULL;
  if (sodium_hex2bin(out, n, hex, hexlen, NULL, &written, &end) != 0) return -1;
  return (written == n && end == hex + hexlen) ? 0 : -1;
}

size_t crypto_b64url(const uint8_t *in, size_t n, char *out, size_t outsize) {
  size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  if (outsize < need) crypto_misuse("crypto_b64url: output buffer too small");
  sodium_bin2base64(out, outsize, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return need - 1;
}

long crypto_unb64url(const char *in, size_t inlen, uint8_t *out, size_t outsize) {
  if (inlen == 0) return 0;
  size_t written = 0;
  const char *end = NULL;
  if (sodium_base642bin(out, outsize, in, inlen, NULL, &written, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return -1;
  }
  return end == in + inlen ? (long)written : -1;
}

void crypto_token(size_t nbytes, char *out, size_t outsize) {
  /* Tokens are short; the stack buffer covers every real use and keeps the
   * raw bytes out of the heap. */
  uint8_t stack_bytes[64];
  uint8_t *bytes = nbytes <= sizeof stack_bytes ? stack_bytes : xmalloc(nbytes);
  crypto_random(bytes, nbytes);
  crypto_b64url(bytes, nbytes, out, outsize);
  if (bytes == stack_bytes) {
    sodium_memzero(stack_bytes, sizeof stack_bytes);
  } else {
    xfree_secret(bytes, nbytes);
  }
}
