/*
 * test_crypto.c — the libsodium wrappers against published vectors:
 * SHA-256 (FIPS 180-2 examples), HMAC-SHA-256 (RFC 4231), base64url
 * (RFC 4648 §10, re-alphabeted), plus strict decoding and random helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/crypto.h"

static int setup(void **state) {
  (void)state;
  return crypto_init();
}

static void hex_of(const uint8_t *bytes, size_t n, char *out) {
  crypto_hex(bytes, n, out);
}

struct sha_case {
  const char *input;
  const char *hex;
};

static void test_sha256(void **state) {
  (void)state;
  static const struct sha_case cases[] = {
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t digest[SHA256_LEN];
    char hex[SHA256_HEX_SIZE];
    crypto_sha256(cases[i].input, strlen(cases[i].input), digest);
    hex_of(digest, sizeof digest, hex);
    assert_string_equal(hex, cases[i].hex);
  }
}

static void test_hmac_sha256_rfc4231(void **state) {
  (void)state;
  uint8_t mac[HMAC256_LEN];
  char hex[SHA256_HEX_SIZE];

  /* Test case 1: 20-byte key of 0x0b. */
  uint8_t key1[20];
  memset(key1, 0x0b, sizeof key1);
  crypto_hmac_sha256(key1, sizeof key1, "Hi There", 8, mac);
  hex_of(mac, sizeof mac, hex);
  assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

  /* Test case 2: a key shorter than the block ("Jefe"). */
  const char *data2 = "what do ya want for nothing?";
  crypto_hmac_sha256((const uint8_t *)"Jefe", 4, data2, strlen(data2), mac);
  hex_of(mac, sizeof mac, hex);
  assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

  /* Test case 6: a 131-byte key, longer than the block, is hashed first. */
  uint8_t key6[131];
  memset(key6, 0xaa, sizeof key6);
  const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  crypto_hmac_sha256(key6, sizeof key6, data6, strlen(data6), mac);
  hex_of(mac, sizeof mac, hex);
  assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

  /* An empty key is legal HMAC and must not crash. */
  uint8_t empty_key_mac[HMAC256_LEN];
  crypto_hmac_sha256(NULL, 0, "x", 1, empty_key_mac);
  assert_false(crypto_equal(empty_key_mac, mac, HMAC256_LEN));
}

static void test_equal_and_wipe(void **state) {
  (void)state;
  uint8_t a[32], b[32];
  memset(a, 7, sizeof a);
  memset(b, 7, sizeof b);
  assert_true(crypto_equal(a, b, sizeof a));
  b[31] ^= 1;
  assert_false(crypto_equal(a, b, sizeof a));
  b[31] ^= 1;
  b[0] ^= 0x80;
  assert_false(crypto_equal(a, b, sizeof a));
  assert_true(crypto_equal(a, b, 0));
  crypto_wipe(a, sizeof a);
  for (size_t i = 0; i < sizeof a; i++) assert_int_equal(a[i], 0);
  crypto_wipe(NULL, 0);
}

static void test_hex(void **state) {
  (void)state;
  static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  char hex[2 * sizeof bytes + 1];
  crypto_hex(bytes, sizeof bytes, hex);
  assert_string_equal(hex, "00017f80abff");
  uint8_t back[sizeof bytes];
  assert_int_equal(crypto_unhex(hex, strlen(hex), back, sizeof back), 0);
  assert_memory_equal(back, bytes, sizeof bytes);
  assert_int_equal(crypto_unhex("00017F80ABFF", 12, back, sizeof back), 0);
  assert_memory_equal(back, bytes, sizeof bytes);
}

struct unhex_case {
  const char *hex;
  size_t n;
};

static void test_unhex_strict(void **state) {
  (void)state;
  static const struct unhex_case cases[] = {
      {"abc", 2},      /* odd length */
      {"abcd", 1},     /* too long for n */
      {"ab", 2},       /* too short for n */
      {"abzz", 2},     /* not hex */
      {"ab:cd", 2},    /* separators are not skipped */
      {"ab c", 2},     /* nor spaces */
      {" abc", 2},     /* leading space */
      {"0x12", 2},     /* prefix */
      {"\0\0\0\0", 2}, /* NULs are not hex */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t out[8];
    size_t len = cases[i].hex[0] ? strlen(cases[i].hex) : 4;
    if (crypto_unhex(cases[i].hex, len, out, cases[i].n) != -1) fail_msg("case %zu accepted", i);
  }
  uint8_t none[1];
  assert_int_equal(crypto_unhex("", 0, none, 0), 0);
}

struct b64_case {
  const char *raw;
  const char *encoded;
};

static void test_b64url_vectors(void **state) {
  (void)state;
  static const struct b64_case cases[] = {
      {"", ""},
      {"f", "Zg"},
      {"fo", "Zm8"},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg"},
      {"fooba", "Zm9vYmE"},
      {"foobar", "Zm9vYmFy"},
      /* The URL-safe alphabet: '-' and '_' instead of '+' and '/'. */
      {"\xfb\xff\xbf", "-_-_"},
      {"\xfb\xef", "--8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = strlen(cases[i].raw);
    char out[32];
    size_t written = crypto_b64url((const uint8_t *)cases[i].raw, n, out, sizeof out);
    assert_string_equal(out, cases[i].encoded);
    assert_int_equal(written, strlen(cases[i].encoded));

    uint8_t back[32];
    long got = crypto_unb64url(cases[i].encoded, strlen(cases[i].encoded), back, sizeof back);
    assert_int_equal(got, (long)n);
    assert_memory_equal(back, cases[i].raw, n);
  }
  /* The documented output size 4*ceil(n/3)+1 suffices exactly at the edge. */
  char exact[5];
  assert_int_equal(crypto_b64url((const uint8_t *)"foo", 3, exact, sizeof exact), 4);
  assert_string_equal(exact, "Zm9v");
}

static void test_unb64url_strict(void **state) {
  (void)state;
  static const char *const bad[] = {
      "Zg==",           /* padding */
      "Zm9v+",          /* standard alphabet */
      "Zm9v/", "Zm 9v", /* whitespace not ignored */
      "Z",              /* impossible length */
      "Zm9vY", "Zh",    /* non-zero trailing bits: a second spelling of "f" */
      "Zm9=",  "Zm9v\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t out[16];
    if (crypto_unb64url(bad[i], strlen(bad[i]), out, sizeof out) != -1) {
      fail_msg("\"%s\" accepted", bad[i]);
    }
  }
  /* Output too small is a refusal, not an overflow. */
  uint8_t small[5];
  assert_int_equal(crypto_unb64url("Zm9vYmFy", 8, small, sizeof small), -1);
  uint8_t exact[6];
  assert_int_equal(crypto_unb64url("Zm9vYmFy", 8, exact, sizeof exact), 6);
}

static bool is_b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

static void test_token(void **state) {
  (void)state;
  char t1[64], t2[64];
  crypto_token(32, t1, sizeof t1);
  crypto_token(32, t2, sizeof t2);
  assert_int_equal(strlen(t1), 43); /* 32 bytes → ceil(256 / 6) chars */
  for (size_t i = 0; i < 43; i++) assert_true(is_b64url_char(t1[i]));
  assert_string_not_equal(t1, t2);
  uint8_t raw[32];
  assert_int_equal(crypto_unb64url(t1, strlen(t1), raw, sizeof raw), 32);
  /* Larger than the internal stack buffer. */
  char big[200];
  crypto_token(100, big, sizeof big);
  assert_int_equal(strlen(big), 134);
  char empty[1];
  crypto_token(0, empty, sizeof empty);
  assert_string_equal(empty, "");
}

static void test_random(void **state) {
  (void)state;
  uint8_t a[32] = {0}, b[32] = {0};
  crypto_random(a, sizeof a);
  crypto_random(b, sizeof b);
  assert_false(crypto_equal(a, b, sizeof a));
  crypto_random(NULL, 0);
  /* Equal draws have probability 2^-64. */
  assert_true(crypto_random_u64() != crypto_random_u64());

  /* uniform: always in range, and every value of a small range shows up. */
  int seen[6] = {0};
  for (int i = 0; i < 6000; i++) {
    uint32_t v = crypto_random_uniform(6);
    assert_true(v < 6);
    seen[v]++;
  }
  for (int i = 0; i < 6; i++) assert_true(seen[i] > 500);
  for (int i = 0; i < 100; i++) assert_int_equal(crypto_random_uniform(1), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha256),          cmocka_unit_test(test_hmac_sha256_rfc4231),
      cmocka_unit_test(test_equal_and_wipe),  cmocka_unit_test(test_hex),
      cmocka_unit_test(test_unhex_strict),    cmocka_unit_test(test_b64url_vectors),
      cmocka_unit_test(test_unb64url_strict), cmocka_unit_test(test_token),
      cmocka_unit_test(test_random),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
