/*
 * fuzz_session.c — libFuzzer driver for session token decoding (the cookie
 * is attacker-controlled). Also checks that a decoded token re-encodes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "domain/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct session_keys keys;
  static int ready;
  if (!ready) {
    crypto_init();
    uint8_t secret[32] = {1, 2, 3};
    session_keys_derive(secret, sizeof(secret), &keys);
    ready = 1;
  }
  struct session_claims c;
  if (session_decode(slice_make((const char *)data, size), &keys, 1700000000, &c) == 0) {
    struct buf b;
    buf_init(&b, SESSION_TOKEN_MAX);
    if (session_encode(&c, &keys, &b) != 0) abort();
    buf_free(&b);
  }
  /* The same bytes as a correctly signed payload, so the claim parsing
   * behind the signature check is reached too. */
  if (size <= 2048) {
    static const char hdr[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.";
    char tok[4096];
    size_t n = sizeof(hdr) - 1;
    memcpy(tok, hdr, n);
    n += crypto_b64url(data, size, tok + n, sizeof(tok) - n);
    uint8_t mac[32];
    crypto_hmac_sha256(keys.sign, sizeof(keys.sign), tok, n, mac);
    tok[n++] = '.';
    n += crypto_b64url(mac, sizeof(mac), tok + n, sizeof(tok) - n);
    if (session_decode(slice_make(tok, n), &keys, 1700000000, &c) == 0) {
      struct buf b;
      buf_init(&b, SESSION_TOKEN_MAX * 4);
      if (session_encode(&c, &keys, &b) != 0) abort();
      buf_free(&b);
    }
  }
  /* Also exercise the CSRF comparison with arbitrary input. */
  (void)session_csrf_ok(&keys, "sid", slice_make((const char *)data, size));
  return 0;
}
