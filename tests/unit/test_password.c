/*
 * test_password.c — the password policy (a table at N and N+1 of each
 * bound, and each character class missing) and argon2id hashing: hash and
 * verify, wrong passwords, salts, broken hashes, the dummy verification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/crypto.h"
#include "domain/password.h"

static int setup(void **state) {
  (void)state;
  return crypto_init();
}

struct policy_case {
  const char *pw;   /* NULL: built from fill below */
  size_t fill;      /* "Aa1" followed by 'x' up to this many bytes */
  const char *code; /* NULL: accepted */
};

static void test_policy_table(void **state) {
  (void)state;
  static const struct policy_case cases[] = {
      {"", 0, "too_short"},
      {"Passw0r", 0, "too_short"}, /* 7: PASSWORD_MIN - 1 */
      {"Passw0rd", 0, NULL},       /* 8: PASSWORD_MIN */
      {NULL, PASSWORD_MAX, NULL},
      {NULL, PASSWORD_MAX + 1, "too_long"},
      {"password1", 0, "too_weak"}, /* no upper-case letter */
      {"PASSWORD1", 0, "too_weak"}, /* no lower-case letter */
      {"Passwordx", 0, "too_weak"}, /* no digit */
      {"12345678", 0, "too_weak"},
      {"\xc3\x84\xc3\xa4"
       "1xxxxx",
       0, "too_weak"}, /* non-ASCII letters do not count */
      {"Pass w0rd with spaces", 0, NULL},
      {"\xc3\x84Passw0rd", 0, NULL},
  };
  char buf[PASSWORD_MAX + 2];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *pw = cases[i].pw;
    if (!pw) {
      memset(buf, 'x', cases[i].fill);
      memcpy(buf, "Aa1", 3);
      buf[cases[i].fill] = '\0';
      pw = buf;
    }
    const char *code = NULL, *message = NULL;
    int rc = password_policy(pw, &code, &message);
    if (cases[i].code) {
      if (rc != -1 || !code || strcmp(code, cases[i].code) != 0) {
        fail_msg("case %zu: expected %s, got rc %d code %s", i, cases[i].code, rc,
                 code ? code : "(none)");
      }
      assert_non_null(message);
    } else if (rc != 0) {
      fail_msg("case %zu: expected acceptance, got %s", i, code);
    }
  }
}

static void test_hash_and_verify(void **state) {
  (void)state;
  char h1[PASSWORD_HASH_SIZE], h2[PASSWORD_HASH_SIZE];
  assert_int_equal(password_hash("Corr3ct horse", h1), 0);
  assert_int_equal(password_hash("Corr3ct horse", h2), 0);
  assert_non_null(strstr(h1, "$argon2id$"));
  assert_string_not_equal(h1, h2); /* salted */
  assert_true(password_verify(h1, "Corr3ct horse"));
  assert_true(password_verify(h2, "Corr3ct horse"));
  assert_false(password_verify(h1, "Corr3ct horsE"));
  assert_false(password_verify(h1, "Corr3ct horse "));
  assert_false(password_verify(h1, ""));
}

static void test_bad_hashes(void **state) {
  (void)state;
  char h[PASSWORD_HASH_SIZE];
  assert_int_equal(password_hash("Passw0rd", h), 0);
  assert_false(password_verify(NULL, "Passw0rd"));
  assert_false(password_verify("", "Passw0rd"));
  assert_false(password_verify("$argon2id$v=19$m=1,t=1,p=1$garbage", "Passw0rd"));
  h[strlen(h) - 3] = h[strlen(h) - 3] == 'A' ? 'B' : 'A'; /* a changed digest */
  assert_false(password_verify(h, "Passw0rd"));
}

static void test_dummy_verification(void **state) {
  (void)state;
  assert_int_equal(password_init(), 0);
  assert_int_equal(password_init(), 0); /* idempotent */
  password_verify_dummy("anything");    /* spends the time, decides nothing */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_policy_table),
      cmocka_unit_test(test_hash_and_verify),
      cmocka_unit_test(test_bad_hashes),
      cmocka_unit_test(test_dummy_verification),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
