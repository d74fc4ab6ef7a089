/*
 * password.c — argon2id via libsodium.
 */
#include "domain/password.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "core/crypto.h"

#define OPSLIMIT 2ULL
#define MEMLIMIT ((size_t)19 * 1024 * 1024)

static char dummy_hash[PASSWORD_HASH_SIZE];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static int dummy_rc = -1;

int password_policy(const char *pw, const char **code, const char **message) {
  size_t n = strlen(pw);
  if (n < PASSWORD_MIN) {
    *code = "too_short";
    *message = "the password must have at least 8 characters";
    return -1;
  }
  if (n > PASSWORD_MAX) {
    *code = "too_long";
    *message = "the password must have at most 128 bytes";
    return -1;
  }
  bool upper = false, lower = false, digit = false;
  for (size_t i = 0; i < n; i++) {
    char c = pw[i];
    upper |= c >= 'A' && c <= 'Z';
    lower |= c >= 'a' && c <= 'z';
    digit |= c >= '0' && c <= '9';
  }
  if (!upper || !lower || !digit) {
    *code = "too_weak";
    *message = "the password needs an upper-case letter, a lower-case letter and a digit";
    return -1;
  }
  return 0;
}

int password_hash(const char *pw, char out[PASSWORD_HASH_SIZE]) {
  return crypto_pwhash_str_alg(out, pw, strlen(pw), OPSLIMIT, MEMLIMIT,
                               crypto_pwhash_ALG_ARGON2ID13) == 0
             ? 0
             : -1;
}

bool password_verify(const char *hash, const char *pw) {
  if (!hash || !hash[0]) return false;
  return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
}

static void make_dummy(void) {
  uint8_t r[24];
  char pw[64];
  crypto_random(r, sizeof(r));
  crypto_hex(r, sizeof(r), pw);
  dummy_rc = password_hash(pw, dummy_hash);
  crypto_wipe(pw, sizeof(pw));
}

int password_init(void) {
  pthread_once(&dummy_once, make_dummy);
  return dummy_rc;
}

void password_verify_dummy(const char *pw) {
  password_init();
  (void)password_verify(dummy_hash, pw);
}
