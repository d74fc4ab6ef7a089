/*
 * test_session.c — session tokens (HS256 JWT) and CSRF tokens: round trip,
 * every kind of tampering refused (signature, payload, header, alg none,
 * another key), expiry with the sliding window and the 30-day cap, the
 * cookie size bound with the most orgs and the longest fields, and CSRF
 * tokens bound to their session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "core/xmalloc.h"
#include "domain/iam.h"
#include "domain/session.h"

#define NOW 1800000000LL /* a fixed "now" in seconds */

static struct session_keys keys, other_keys;

static int setup(void **state) {
  (void)state;
  if (crypto_init() != 0) return -1;
  json_set_alloc_funcs(xmalloc, xfree);
  uint8_t secret[32];
  memset(secret, 7, sizeof(secret));
  session_keys_derive(secret, sizeof(secret), &keys);
  secret[0] = 8;
  session_keys_derive(secret, sizeof(secret), &other_keys);
  return 0;
}

static void sample_claims(struct session_claims *c, size_t norgs) {
  memset(c, 0, sizeof(*c));
  snprintf(c->sub, sizeof(c->sub), "0190f5a2-0000-7000-8000-000000000001");
  session_new_sid(c->sid);
  snprintf(c->email, sizeof(c->email), "ada@example.com");
  snprintf(c->name, sizeof(c->name), "Ada \"the\" Lovelace");
  c->sv = 3;
  c->iat = c->auth_time = NOW;
  for (size_t i = 0; i < norgs; i++) {
    snprintf(c->orgs[i].org_id, sizeof(c->orgs[i].org_id), "0190f5a2-0000-7000-8000-%012zu",
             i + 100);
    snprintf(c->orgs[i].role, sizeof(c->orgs[i].role), "%s", i % 2 ? "member" : "owner");
  }
  c->norgs = norgs;
  if (norgs) memcpy(c->aorg, c->orgs[0].org_id, sizeof(c->aorg));
  session_set_expiry(c);
}

/* Encodes c into a NUL-terminated token (caller frees with buf_free). */
static void encode(const struct session_claims *c, const struct session_keys *k, struct buf *out) {
  buf_init(out, SESSION_TOKEN_MAX + 1024);
  assert_int_equal(session_encode(c, k, out), 0);
}

static int decode_at(const char *token, int64_t now, struct session_claims *out) {
  return session_decode(slice_from_cstr(token), &keys, now, out);
}

static void test_round_trip(void **state) {
  (void)state;
  struct session_claims c, d;
  sample_claims(&c, 2);
  struct buf t;
  encode(&c, &keys, &t);
  assert_int_equal(decode_at(t.data, NOW + 10, &d), 0);
  assert_string_equal(d.sub, c.sub);
  assert_string_equal(d.sid, c.sid);
  assert_string_equal(d.email, c.email);
  assert_string_equal(d.name, c.name);
  assert_string_equal(d.aorg, c.aorg);
  assert_int_equal(d.sv, 3);
  assert_int_equal(d.iat, NOW);
  assert_int_equal(d.auth_time, NOW);
  assert_int_equal(d.exp, NOW + SESSION_IDLE_S);
  assert_int_equal(d.norgs, 2);
  assert_string_equal(d.orgs[1].org_id, c.orgs[1].org_id);
  assert_string_equal(d.orgs[1].role, "member");
  assert_false(d.orgs_truncated);
  buf_free(&t);
}

static void test_tampered_signature(void **state) {
  (void)state;
  struct session_claims c, d;
  sample_claims(&c, 1);
  struct buf t;
  encode(&c, &keys, &t);
  char *last = t.data + t.len - 2; /* not the final char: its low bits may be padding */
  *last = *last == 'A' ? 'B' : 'A';
  assert_int_equal(decode_at(t.data, NOW, &d), -1);
  t.data[t.len - 1] = '\0'; /* truncated signature */
  assert_int_equal(decode_at(t.data, NOW, &d), -1);
  buf_free(&t);
}

/* Replaces the payload of a token with one for changed claims, keeping the
 * original header and signature. */
static void test_tampered_payload(void **state) {
  (void)state;
  struct session_claims c, forged, d;
  sample_claims(&c, 1);
  forged = c;
  snprintf(forged.sub, sizeof(forged.sub), "0190f5a2-0000-7000-8000-0000000000ff");
  struct buf t, f;
  encode(&c, &keys, &t);
  encode(&forged, &other_keys, &f);
  const char *sig = strrchr(t.data, '.');
  const char *fsig = strrchr(f.data, '.');
  char *mixed = xmalloc(f.len + t.len);
  snprintf(mixed, f.len + t.len, "%.*s%s", (int)(fsig - f.data), f.data, sig);
  assert_int_equal(decode_at(mixed, NOW, &d), -1);
  /* Signed with another server's key. */
  assert_int_equal(decode_at(f.data, NOW, &d), -1);
  xfree(mixed);
  buf_free(&t);
  buf_free(&f);
}

/* A token with the given header JSON over c's payload, HMAC'd with our key
 * (so only the header check can refuse it). */
static char *with_header(const struct session_claims *c, const char *header, bool sign) {
  struct buf t;
  encode(c, &keys, &t);
  const char *payload = strchr(t.data, '.') + 1;
  const char *sig = strrchr(t.data, '.');
  char h64[256], mac64[64];
  crypto_b64url((const uint8_t *)header, strlen(header), h64, sizeof(h64));
  size_t n = strlen(h64) + (size_t)(sig - payload) + 128;
  char *out = xmalloc(n);
  snprintf(out, n, "%s.%.*s", h64, (int)(sig - payload), payload);
  uint8_t mac[32];
  crypto_hmac_sha256(keys.sign, sizeof(keys.sign), out, strlen(out), mac);
  crypto_b64url(mac, sizeof(mac), mac64, sizeof(mac64));
  size_t len = strlen(out);
  snprintf(out + len, n - len, ".%s", sign ? mac64 : "");
  buf_free(&t);
  return out;
}

static void test_header_alg_refused(void **state) {
  (void)state;
  struct session_claims c, d;
  sample_claims(&c, 0);
  static const char *const headers[] = {
      "{\"alg\":\"none\",\"typ\":\"JWT\"}",
      "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
      "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
      "{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
      "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"x\"}",
  };
  for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
    char *unsigned_tok = with_header(&c, headers[i], false);
    char *signed_tok = with_header(&c, headers[i], true);
    assert_int_equal(decode_at(unsigned_tok, NOW, &d), -1);
    assert_int_equal(decode_at(signed_tok, NOW, &d), -1);
    xfree(unsigned_tok);
    xfree(signed_tok);
  }
  /* The control: our own header through the same path is accepted. */
  char *ok = with_header(&c, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", true);
  assert_int_equal(decode_at(ok, NOW, &d), 0);
  xfree(ok);
}

static void test_malformed_tokens(void **state) {
  (void)state;
  struct session_claims d;
  static const char *const bad[] = {"", "a", "a.b", "a.b.c", "..", "a.b.c.d", "x.y.z!"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(decode_at(bad[i], NOW, &d), -1);
  }
  char *huge = xmalloc(SESSION_TOKEN_MAX + 2);
  memset(huge, 'a', SESSION_TOKEN_MAX + 1);
  huge[SESSION_TOKEN_MAX + 1] = '\0';
  huge[10] = '.';
  huge[20] = '.';
  assert_int_equal(decode_at(huge, NOW, &d), -1);
  xfree(huge);
}

static void test_expiry(void **state) {
  (void)state;
  struct session_claims c, d;
  sample_claims(&c, 0);
  struct buf t;
  encode(&c, &keys, &t);
  assert_int_equal(decode_at(t.data, NOW + SESSION_IDLE_S - 1, &d), 0);
  assert_int_equal(decode_at(t.data, NOW + SESSION_IDLE_S, &d), -1);
  /* Issued in the future (beyond 5 minutes of skew): refused. */
  assert_int_equal(decode_at(t.data, NOW - 301, &d), -1);
  assert_int_equal(decode_at(t.data, NOW - 299, &d), 0);
  buf_free(&t);
}

static void test_sliding_and_absolute_cap(void **state) {
  (void)state;
  struct session_claims c, d;
  sample_claims(&c, 0);
  /* Renewed 20 days after login: the idle window would reach day 27. */
  c.iat = NOW + 20 * 86400;
  session_set_expiry(&c);
  assert_int_equal(c.exp, NOW + 27 * 86400);
  /* Renewed on day 28: capped at day 30 from the login, not day 35. */
  c.iat = NOW + 28 * 86400;
  session_set_expiry(&c);
  assert_int_equal(c.exp, NOW + SESSION_ABSOLUTE_S);
  /* A token whose exp claims more than the cap is still refused at the cap
   * (auth_time is checked on its own). */
  c.exp = NOW + 40 * 86400;
  struct buf t;
  encode(&c, &keys, &t);
  assert_int_equal(decode_at(t.data, NOW + SESSION_ABSOLUTE_S - 1, &d), 0);
  assert_int_equal(decode_at(t.data, NOW + SESSION_ABSOLUTE_S, &d), -1);
  buf_free(&t);
}

/* The most orgs a cookie carries with the longest email and name: the
 * token stays under SESSION_TOKEN_MAX and the whole Set-Cookie under 4096. */
static void test_cookie_size_bound(void **state) {
  (void)state;
  struct user u = {0};
  snprintf(u.id, sizeof(u.id), "0190f5a2-0000-7000-8000-000000000001");
  memset(u.email, 'e', IAM_EMAIL_MAX - 12);
  memcpy(u.email + IAM_EMAIL_MAX - 12, "@example.com", 13);
  memset(u.name, '"', IAM_NAME_MAX); /* escaped: the JSON doubles it */
  u.session_version = 1;
  struct user_org orgs[50];
  for (size_t i = 0; i < 50; i++) {
    snprintf(orgs[i].id, sizeof(orgs[i].id), "0190f5a2-0000-7000-8000-%012zu", i);
    snprintf(orgs[i].role, sizeof(orgs[i].role), "viewer");
  }
  struct session_claims c, d;
  iam_session_claims(&u, orgs, 50, NULL, NOW, &c);
  assert_int_equal(c.norgs, SESSION_ORGS_MAX);
  assert_true(c.orgs_truncated);
  assert_string_equal(c.aorg, orgs[0].id);
  struct buf t;
  encode(&c, &keys, &t);
  assert_true(t.len < SESSION_TOKEN_MAX);
  /* "__Host-keel_session=" + token + the attributes api_set_session_cookie adds */
  size_t header = strlen(SESSION_COOKIE) + 1 + t.len +
                  strlen("; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800; Secure");
  assert_true(header < 4096);
  assert_int_equal(decode_at(t.data, NOW, &d), 0);
  assert_int_equal(d.norgs, SESSION_ORGS_MAX);
  assert_true(d.orgs_truncated);
  assert_string_equal(d.name, u.name);
  buf_free(&t);
}

static void test_claims_from_user(void **state) {
  (void)state;
  struct user u = {.session_version = 9};
  snprintf(u.id, sizeof(u.id), "0190f5a2-0000-7000-8000-000000000001");
  snprintf(u.email, sizeof(u.email), "a@example.com");
  struct user_org orgs[2] = {{.id = "org-a", .role = "owner"}, {.id = "org-b", .role = "viewer"}};
  struct session_claims c, c2;
  iam_session_claims(&u, orgs, 2, "org-b", NOW, &c);
  assert_string_equal(c.aorg, "org-b");
  assert_int_equal(c.sv, 9);
  assert_int_equal(c.exp, NOW + SESSION_IDLE_S);
  assert_false(c.orgs_truncated);
  iam_session_claims(&u, NULL, 0, NULL, NOW, &c2);
  assert_string_equal(c2.aorg, "");
  assert_string_not_equal(c.sid, c2.sid); /* a fresh sid each time */
}

static void test_csrf_bound_to_sid(void **state) {
  (void)state;
  char a[SESSION_SID_SIZE], b[SESSION_SID_SIZE], ta[SESSION_CSRF_SIZE], tb[SESSION_CSRF_SIZE];
  session_new_sid(a);
  session_new_sid(b);
  session_csrf_token(&keys, a, ta);
  session_csrf_token(&keys, b, tb);
  assert_int_equal(strlen(ta), 43);
  assert_true(session_csrf_ok(&keys, a, slice_from_cstr(ta)));
  assert_false(session_csrf_ok(&keys, b, slice_from_cstr(ta)));
  assert_false(session_csrf_ok(&keys, a, slice_from_cstr(tb)));
  assert_false(session_csrf_ok(&other_keys, a, slice_from_cstr(ta)));
  assert_false(session_csrf_ok(&keys, a, slice_make(ta, 42)));
  assert_false(session_csrf_ok(&keys, a, SLICE_NULL));
  ta[5] = ta[5] == 'x' ? 'y' : 'x';
  assert_false(session_csrf_ok(&keys, a, slice_from_cstr(ta)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_tampered_signature),
      cmocka_unit_test(test_tampered_payload),
      cmocka_unit_test(test_header_alg_refused),
      cmocka_unit_test(test_malformed_tokens),
      cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_sliding_and_absolute_cap),
      cmocka_unit_test(test_cookie_size_bound),
      cmocka_unit_test(test_claims_from_user),
      cmocka_unit_test(test_csrf_bound_to_sid),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
