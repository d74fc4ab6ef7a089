/*
 * test_iam.c — sign-in rules over a real (temporary) SQLite store: address
 * normalisation, user creation, single-use tokens (once, expiry, purpose),
 * the lockout at N-1 and N failures and its window, the login verdicts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/xmalloc.h"
#include "domain/iam.h"
#include "domain/password.h"
#include "store/store.h"

static char dir[256];
static struct store *store;

static int setup(void **state) {
  (void)state;
  if (crypto_init() != 0 || password_init() != 0) return -1;
  json_set_alloc_funcs(xmalloc, xfree);
  snprintf(dir, sizeof(dir), "/tmp/keel-test-iam-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  char err[256];
  return store_open(&o, &store, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  store_close(store);
  char path[512];
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

struct email_case {
  const char *in;
  const char *norm; /* NULL: refused */
};

static void test_email_normalise(void **state) {
  (void)state;
  static const struct email_case cases[] = {
      {"Ada@Example.COM", "ada@example.com"},
      {"a.b+tag@sub.example.org", "a.b+tag@sub.example.org"},
      {"x@y.io", "x@y.io"},
      {"", NULL},
      {"plain", NULL},
      {"@example.com", NULL},
      {"a@", NULL},
      {"a@b", NULL},
      {"a@@b.com", NULL},
      {"a@b@c.com", NULL},
      {"a b@c.com", NULL},
      {"a@b .com", NULL},
      {".a@b.com", NULL},
      {"a.@b.com", NULL},
      {"a..b@c.com", NULL},
      {"a@-b.com", NULL},
      {"a@b-.com", NULL},
      {"a@b..com", NULL},
      {"a@b.com.", NULL},
      {"a\"b@c.com", NULL},
      {"a@b_c.com", NULL},
  };
  char out[256];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc = iam_email_normalise(cases[i].in, out, sizeof(out));
    if (cases[i].norm) {
      if (rc != 0 || strcmp(out, cases[i].norm) != 0) fail_msg("case %s", cases[i].in);
    } else if (rc != -1) {
      fail_msg("accepted %s", cases[i].in);
    }
  }
}

/* 254 bytes is the longest address; 255 is refused. */
static void test_email_length_bound(void **state) {
  (void)state;
  char email[300], out[256];
  memset(email, 'a', 64);
  email[64] = '@';
  size_t n = 65;
  while (n < IAM_EMAIL_MAX - 4) {
    size_t label = IAM_EMAIL_MAX - 4 - n < 60 ? IAM_EMAIL_MAX - 4 - n : 60;
    memset(email + n, 'b', label);
    n += label;
    if (n < IAM_EMAIL_MAX - 4) email[n++] = '.';
  }
  memcpy(email + n, ".com", 5);
  assert_int_equal(strlen(email), IAM_EMAIL_MAX);
  assert_int_equal(iam_email_normalise(email, out, sizeof(out)), 0);
  memmove(email + 1, email, strlen(email) + 1);
  assert_int_equal(strlen(email), IAM_EMAIL_MAX + 1);
  assert_int_equal(iam_email_normalise(email, out, sizeof(out)), -1);
  /* A local part of 65 bytes is refused. */
  assert_int_equal(
      iam_email_normalise("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.com",
                          out, sizeof(out)),
      -1);
}

static void test_name_valid(void **state) {
  (void)state;
  char name[IAM_NAME_MAX + 2];
  memset(name, 'n', IAM_NAME_MAX);
  name[IAM_NAME_MAX] = '\0';
  assert_true(iam_name_valid(name));
  name[IAM_NAME_MAX] = 'n';
  name[IAM_NAME_MAX + 1] = '\0';
  assert_false(iam_name_valid(name));
  assert_false(iam_name_valid(""));
  assert_false(iam_name_valid("a\nb"));
  assert_false(iam_name_valid("a\x7f"));
  assert_true(iam_name_valid("Zoë O'Brien"));
}

/* --- with the store ------------------------------------------------------ */

struct create {
  const char *email, *password;
  bool verified;
  struct user user;
  const char *why;
};

static int create_tx(struct store_tx *tx, void *arg) {
  struct create *c = arg;
  return iam_user_create(tx, c->email, c->password, NULL, c->verified, &c->user, &c->why);
}

static struct user make_user(const char *email, bool verified) {
  struct create c = {.email = email, .password = "Passw0rdX", .verified = verified};
  assert_int_equal(store_write(store, create_tx, &c), 0);
  return c.user;
}

static void test_user_create(void **state) {
  (void)state;
  struct user u = make_user("Grace@Example.com", true);
  assert_string_equal(u.email, "Grace@Example.com");
  assert_string_equal(u.name, "Grace"); /* default: the local part */
  assert_true(u.verified);
  assert_int_equal(u.session_version, 1);
  const char *reason;
  assert_int_equal(iam_login_verify(&u, "Passw0rdX", &reason), IAM_LOGIN_OK);
  struct create dup = {.email = "GRACE@example.COM", .password = "Passw0rdX"};
  assert_int_equal(store_write(store, create_tx, &dup), KEEL_ECONFLICT);
  struct create weak = {.email = "weak@example.com", .password = "weak"};
  assert_int_equal(store_write(store, create_tx, &weak), KEEL_EINVAL);
  assert_non_null(weak.why);
}

static void test_login_verdicts(void **state) {
  (void)state;
  struct user u = make_user("verdict@example.com", false);
  const char *reason;
  assert_int_equal(iam_login_verify(&u, "Wrong0neX", &reason), IAM_LOGIN_BAD);
  assert_string_equal(reason, "wrong_password");
  assert_int_equal(iam_login_verify(&u, "Passw0rdX", &reason), IAM_LOGIN_UNVERIFIED);
  u.verified = true;
  u.suspended = true;
  assert_int_equal(iam_login_verify(&u, "Passw0rdX", &reason), IAM_LOGIN_BAD);
  assert_string_equal(reason, "suspended");
  assert_int_equal(iam_login_verify(NULL, "Passw0rdX", &reason), IAM_LOGIN_BAD);
  assert_string_equal(reason, "unknown_email");
  u.suspended = false;
  u.password_hash[0] = '\0';
  assert_int_equal(iam_login_verify(&u, "Passw0rdX", &reason), IAM_LOGIN_BAD);
  assert_string_equal(reason, "no_password");
}

struct token_job {
  const char *user_id, *purpose, *token;
  int64_t now, ttl;
  bool consume;
  char out_token[IAM_TOKEN_SIZE];
  char out_user[ID_STR_SIZE];
};

static int issue_tx(struct store_tx *tx, void *arg) {
  struct token_job *j = arg;
  return iam_token_issue(tx, j->user_id, j->purpose, j->now, j->ttl, j->out_token);
}

static int redeem_tx(struct store_tx *tx, void *arg) {
  struct token_job *j = arg;
  return iam_token_redeem(tx, j->token, j->purpose, j->now, j->consume, j->out_user);
}

static int redeem(const char *token, const char *purpose, int64_t now, bool consume) {
  struct token_job j = {.token = token, .purpose = purpose, .now = now, .consume = consume};
  return store_write(store, redeem_tx, &j);
}

static void test_tokens(void **state) {
  (void)state;
  struct user u = make_user("tokens@example.com", false);
  const int64_t t0 = INT64_C(1800000000000000);
  struct token_job j = {
      .user_id = u.id, .purpose = IAM_PURPOSE_RESET, .now = t0, .ttl = IAM_RESET_TTL_US};
  assert_int_equal(store_write(store, issue_tx, &j), 0);
  assert_int_equal(strlen(j.out_token), IAM_TOKEN_LEN);
  /* Another purpose does not accept it. */
  assert_int_equal(redeem(j.out_token, IAM_PURPOSE_VERIFY, t0, true), KEEL_ENOTFOUND);
  /* Checking does not use it; redeeming does, once. */
  assert_int_equal(redeem(j.out_token, IAM_PURPOSE_RESET, t0 + 1, false), 0);
  assert_int_equal(redeem(j.out_token, IAM_PURPOSE_RESET, t0 + IAM_RESET_TTL_US - 1, true), 0);
  assert_int_equal(redeem(j.out_token, IAM_PURPOSE_RESET, t0 + 2, true), KEEL_ENOTFOUND);

  /* Expiry: valid until ttl, not at it. */
  assert_int_equal(store_write(store, issue_tx, &j), 0);
  assert_int_equal(redeem(j.out_token, IAM_PURPOSE_RESET, t0 + IAM_RESET_TTL_US, true),
                   KEEL_ENOTFOUND);
  /* Not our format at all. */
  assert_int_equal(redeem("short", IAM_PURPOSE_RESET, t0, true), KEEL_ENOTFOUND);
  uint8_t h[SHA256_LEN];
  assert_int_equal(iam_token_hash("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", h), -1);
}

struct fail_job {
  const char *email_norm;
  int64_t now;
  bool locked;
  int64_t retry_s;
};

static int fail_tx(struct store_tx *tx, void *arg) {
  struct fail_job *f = arg;
  return iam_login_failed(tx, f->email_norm, f->now, &f->locked);
}

static int remaining_tx(struct store_tx *tx, void *arg) {
  struct fail_job *f = arg;
  return iam_lock_remaining(tx, f->email_norm, f->now, &f->retry_s);
}

static int clear_tx(struct store_tx *tx, void *arg) {
  struct fail_job *f = arg;
  return iam_login_clear(tx, f->email_norm);
}

static bool fail_at(const char *email, int64_t now) {
  struct fail_job f = {.email_norm = email, .now = now};
  assert_int_equal(store_write(store, fail_tx, &f), 0);
  return f.locked;
}

static int64_t remaining_at(const char *email, int64_t now) {
  struct fail_job f = {.email_norm = email, .now = now};
  assert_int_equal(store_read(store, remaining_tx, &f), 0);
  return f.retry_s;
}

static void test_lockout(void **state) {
  (void)state;
  const char *email = "lock@example.com";
  const int64_t t0 = INT64_C(1800000000000000);
  for (int i = 0; i < IAM_LOCK_FAILURES - 1; i++) assert_false(fail_at(email, t0 + i));
  assert_int_equal(remaining_at(email, t0 + 100), 0);
  assert_true(fail_at(email, t0 + 100)); /* the 10th */
  assert_int_equal(remaining_at(email, t0 + 100), IAM_LOCK_DURATION_US / US_PER_SEC);
  assert_int_equal(remaining_at(email, t0 + 100 + IAM_LOCK_DURATION_US - 1), 1);
  assert_int_equal(remaining_at(email, t0 + 100 + IAM_LOCK_DURATION_US), 0);
  /* The lock forgot the failures: the next one starts a new count. */
  assert_false(fail_at(email, t0 + 100 + IAM_LOCK_DURATION_US));

  /* Failures older than the window do not count. */
  const char *other = "window@example.com";
  for (int i = 0; i < IAM_LOCK_FAILURES - 1; i++) assert_false(fail_at(other, t0));
  assert_false(fail_at(other, t0 + IAM_LOCK_WINDOW_US + 1));
  /* Clearing forgets everything. */
  const char *third = "clear@example.com";
  for (int i = 0; i < IAM_LOCK_FAILURES - 1; i++) assert_false(fail_at(third, t0));
  struct fail_job f = {.email_norm = third};
  assert_int_equal(store_write(store, clear_tx, &f), 0);
  assert_false(fail_at(third, t0 + 1));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_email_normalise), cmocka_unit_test(test_email_length_bound),
      cmocka_unit_test(test_name_valid),      cmocka_unit_test(test_user_create),
      cmocka_unit_test(test_login_verdicts),  cmocka_unit_test(test_tokens),
      cmocka_unit_test(test_lockout),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
