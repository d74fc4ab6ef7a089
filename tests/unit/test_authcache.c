/*
 * test_authcache.c — the session-authentication cache (api/authcache.c):
 * hits copy everything back; session entries end with the token's expiry;
 * users and memberships end when the write generation moves and after the
 * age bound (time injected); rendered JSON follows its membership's stamp;
 * entries and bytes stay within their bounds, the least recently used going
 * first; concurrent use is safe (run under ASan/TSan).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/authcache.h"
#include "core/crypto.h"
#include "core/xmalloc.h"

#define SEC    INT64_C(1000000)
#define NOW_S  INT64_C(1800000000) /* wall clock, seconds */
#define MONO_0 (INT64_C(5000) * SEC)

static int setup(void **state) {
  (void)state;
  return crypto_init();
}

static struct authcache *small_cache(size_t max, size_t bytes) {
  struct authcache_options o;
  authcache_default_options(&o);
  o.sessions_max = o.users_max = o.memberships_max = max;
  o.sessions_bytes = o.users_bytes = o.memberships_bytes = bytes;
  return authcache_new(&o);
}

static void make_claims(struct session_claims *c, const char *sub, size_t norgs) {
  memset(c, 0, sizeof(*c));
  snprintf(c->sub, sizeof(c->sub), "%s", sub);
  snprintf(c->sid, sizeof(c->sid), "sid-%s", sub);
  snprintf(c->email, sizeof(c->email), "%s@example.com", sub);
  snprintf(c->name, sizeof(c->name), "Name of %s", sub);
  snprintf(c->aorg, sizeof(c->aorg), "0190aaaa-0000-7000-8000-000000000001");
  c->sv = 7;
  c->iat = NOW_S - 100;
  c->auth_time = NOW_S - 1000;
  session_set_expiry(c);
  c->norgs = norgs;
  for (size_t i = 0; i < norgs; i++) {
    snprintf(c->orgs[i].org_id, sizeof(c->orgs[i].org_id), "org-%zu", i);
    snprintf(c->orgs[i].role, sizeof(c->orgs[i].role), "%s", i % 2 ? "viewer" : "owner");
  }
  c->orgs_truncated = norgs == SESSION_ORGS_MAX;
}

static void make_user(struct user *u, const char *id) {
  memset(u, 0, sizeof(*u));
  snprintf(u->id, sizeof(u->id), "%s", id);
  snprintf(u->email, sizeof(u->email), "%s@example.com", id);
  snprintf(u->name, sizeof(u->name), "User %s", id);
  snprintf(u->password_hash, sizeof(u->password_hash), "$argon2id$v=19$secret");
  u->verified = true;
  u->platform_admin = false;
  u->suspended = true;
  u->session_version = 42;
  u->created_at = 1000;
  u->updated_at = 2000;
}

static struct org *make_org(const char *id, const char *slug, size_t settings_len) {
  struct org *o = xcalloc(1, sizeof(*o));
  snprintf(o->id, sizeof(o->id), "%s", id);
  snprintf(o->name, sizeof(o->name), "Org \xc3\xa9 %s", slug);
  snprintf(o->slug, sizeof(o->slug), "%s", slug);
  snprintf(o->plan, sizeof(o->plan), "team");
  snprintf(o->billing_status, sizeof(o->billing_status), "active");
  o->settings[0] = '{';
  for (size_t i = 1; i + 1 < settings_len; i++) o->settings[i] = 'x';
  if (settings_len >= 2) o->settings[settings_len - 1] = '}';
  o->settings[settings_len] = '\0';
  o->created_at = 111;
  o->updated_at = 222;
  return o;
}

static struct slice token_of(const char *s) {
  return slice_from_cstr(s);
}

/* --- sessions ---------------------------------------------------------------- */

static void test_session_hit_copies_claims(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  struct session_claims *c = xmalloc(sizeof(*c)), *got = xmalloc(sizeof(*got));
  static const size_t norgs_cases[] = {0, 1, SESSION_ORGS_MAX};
  for (size_t k = 0; k < sizeof(norgs_cases) / sizeof(norgs_cases[0]); k++) {
    char tok[64];
    snprintf(tok, sizeof(tok), "header.payload-%zu.signature", k);
    make_claims(c, "u1", norgs_cases[k]);
    assert_false(authcache_session_get(ac, token_of(tok), NOW_S, got));
    authcache_session_put(ac, token_of(tok), c);
    assert_true(authcache_session_get(ac, token_of(tok), NOW_S, got));
    assert_string_equal(got->sub, c->sub);
    assert_string_equal(got->sid, c->sid);
    assert_string_equal(got->email, c->email);
    assert_string_equal(got->name, c->name);
    assert_string_equal(got->aorg, c->aorg);
    assert_int_equal(got->sv, c->sv);
    assert_int_equal(got->iat, c->iat);
    assert_int_equal(got->exp, c->exp);
    assert_int_equal(got->auth_time, c->auth_time);
    assert_int_equal(got->norgs, c->norgs);
    assert_int_equal(got->orgs_truncated, c->orgs_truncated);
    for (size_t i = 0; i < c->norgs; i++) {
      assert_string_equal(got->orgs[i].org_id, c->orgs[i].org_id);
      assert_string_equal(got->orgs[i].role, c->orgs[i].role);
    }
  }
  /* Another cookie value, even one byte off (in the signature, the signed
   * part, or a separator), is another entry. */
  static const char *const near_misses[] = {
      "header.payload-0.signaturX",
      "header.payloaX-0.signature",
      "header.payload-0signature",
      "header.payload-0.signature.",
      "Header.payload-0.signature",
      "header.payload-0.signatur",
      "",
      ".",
  };
  for (size_t i = 0; i < sizeof(near_misses) / sizeof(near_misses[0]); i++) {
    if (authcache_session_get(ac, token_of(near_misses[i]), NOW_S, got)) {
      fail_msg("'%s' found the entry of another token", near_misses[i]);
    }
  }
  assert_true(authcache_session_get(ac, token_of("header.payload-0.signature"), NOW_S, got));
  /* A token with no '.', and one longer than any session token. */
  authcache_session_put(ac, token_of("nodots"), c);
  assert_true(authcache_session_get(ac, token_of("nodots"), NOW_S, got));
  char *huge = xcalloc(1, SESSION_TOKEN_MAX + 2);
  memset(huge, 'a', SESSION_TOKEN_MAX + 1);
  authcache_session_put(ac, token_of(huge), c);
  assert_false(authcache_session_get(ac, token_of(huge), NOW_S, got));
  xfree(huge);
  xfree(c);
  xfree(got);
  authcache_free(ac);
}

static void test_session_expiry_rechecked_on_every_hit(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  struct session_claims c, got;
  make_claims(&c, "u2", 0);
  authcache_session_put(ac, token_of("t"), &c);
  assert_true(authcache_session_get(ac, token_of("t"), c.exp - 1, &got));
  assert_false(authcache_session_get(ac, token_of("t"), c.exp, &got));
  /* The expired entry was dropped, not just skipped. */
  struct authcache_stats st;
  authcache_stats(ac, &st);
  assert_int_equal(st.entries[AUTHCACHE_SESSIONS], 0);
  assert_false(authcache_session_get(ac, token_of("t"), c.exp - 1, &got));

  /* The absolute cap and a token from the future count as well. */
  make_claims(&c, "u3", 0);
  c.exp = c.auth_time + SESSION_ABSOLUTE_S + 1000; /* never issued so, but checked anyway */
  authcache_session_put(ac, token_of("cap"), &c);
  assert_false(authcache_session_get(ac, token_of("cap"), c.auth_time + SESSION_ABSOLUTE_S, &got));
  make_claims(&c, "u4", 0);
  authcache_session_put(ac, token_of("future"), &c);
  assert_false(authcache_session_get(ac, token_of("future"), c.iat - 301, &got));
  authcache_free(ac);
}

/* --- users ----------------------------------------------------------------------- */

static void test_user_hit_without_password_hash(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  struct user u, got;
  make_user(&u, "0190aaaa-0000-7000-8000-0000000000aa");
  assert_false(authcache_user_get(ac, u.id, 5, MONO_0, &got));
  authcache_user_put(ac, &u, 5, MONO_0);
  memset(&got, 'Z', sizeof(got));
  assert_true(authcache_user_get(ac, u.id, 5, MONO_0 + 10, &got));
  assert_string_equal(got.id, u.id);
  assert_string_equal(got.email, u.email);
  assert_string_equal(got.name, u.name);
  assert_string_equal(got.password_hash, "");
  assert_true(got.verified);
  assert_false(got.platform_admin);
  assert_true(got.suspended);
  assert_int_equal(got.session_version, 42);
  assert_int_equal(got.created_at, 1000);
  assert_int_equal(got.updated_at, 2000);
  assert_false(authcache_user_get(ac, "0190aaaa-0000-7000-8000-0000000000ab", 5, MONO_0, &got));
  authcache_free(ac);
}

static void test_user_generation_invalidates(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  struct user u, got;
  make_user(&u, "gen-user");
  authcache_user_put(ac, &u, 5, MONO_0);
  assert_true(authcache_user_get(ac, u.id, 5, MONO_0, &got));
  /* A write committed: the generation moved on. */
  assert_false(authcache_user_get(ac, u.id, 6, MONO_0, &got));
  /* The entry is gone: seeing the old generation again does not revive it. */
  assert_false(authcache_user_get(ac, u.id, 5, MONO_0, &got));
  /* A fill noted before a write that committed meanwhile is never used. */
  authcache_user_put(ac, &u, 6, MONO_0);
  assert_false(authcache_user_get(ac, u.id, 7, MONO_0, &got));
  authcache_free(ac);
}

static void test_age_bound(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  struct user u, got;
  make_user(&u, "aged-user");
  struct org *o = make_org("0190aaaa-0000-7000-8000-0000000000bb", "acme", 2);
  struct org *got_org = xmalloc(sizeof(*got_org));
  enum role role;
  uint64_t stamp;
  /* Table: age at lookup → hit? (the bound is AUTHCACHE_MAX_AGE_US, 1 s). */
  static const struct {
    int64_t age_us;
    bool hit;
  } cases[] = {{0, true}, {SEC / 2, true}, {SEC - 1, true}, {SEC, false}, {5 * SEC, false}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    authcache_user_put(ac, &u, 9, MONO_0);
    authcache_member_put(ac, u.id, "acme", o, ROLE_MEMBER, 9, MONO_0);
    bool hit = authcache_user_get(ac, u.id, 9, MONO_0 + cases[i].age_us, &got);
    if (hit != cases[i].hit)
      fail_msg("user at age %lld µs: hit %d", (long long)cases[i].age_us, hit);
    hit =
        authcache_member_get(ac, u.id, "acme", 9, MONO_0 + cases[i].age_us, got_org, &role, &stamp);
    if (hit != cases[i].hit) {
      fail_msg("membership at age %lld µs: hit %d", (long long)cases[i].age_us, hit);
    }
  }
  xfree(o);
  xfree(got_org);
  authcache_free(ac);
}

/* --- memberships ------------------------------------------------------------------- */

static void test_member_hit_rebuilds_org(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  const char *uid = "0190aaaa-0000-7000-8000-0000000000cc";
  static const size_t settings_cases[] = {0, 2, 100, LIMIT_ORG_SETTINGS_MAX};
  struct org *got = xmalloc(sizeof(*got));
  for (size_t k = 0; k < sizeof(settings_cases) / sizeof(settings_cases[0]); k++) {
    struct org *o = make_org("0190aaaa-0000-7000-8000-0000000000dd", "acme", settings_cases[k]);
    uint64_t stamp = authcache_member_put(ac, uid, o->id, o, ROLE_VIEWER, 3, MONO_0);
    assert_true(stamp != 0);
    enum role role = ROLE_NONE;
    uint64_t got_stamp = 0;
    assert_true(authcache_member_get(ac, uid, o->id, 3, MONO_0, got, &role, &got_stamp));
    assert_int_equal(got_stamp, stamp);
    assert_int_equal(role, ROLE_VIEWER);
    assert_string_equal(got->id, o->id);
    assert_string_equal(got->name, o->name);
    assert_string_equal(got->slug, o->slug);
    assert_string_equal(got->plan, o->plan);
    assert_string_equal(got->billing_status, o->billing_status);
    assert_string_equal(got->settings, o->settings);
    assert_int_equal(got->created_at, 111);
    assert_int_equal(got->updated_at, 222);
    /* Keyed by the reference as sent: the slug is another entry, and
     * another user is another entry. */
    assert_false(authcache_member_get(ac, uid, "acme", 3, MONO_0, got, &role, &got_stamp));
    assert_false(
        authcache_member_get(ac, "someone-else", o->id, 3, MONO_0, got, &role, &got_stamp));
    /* The generation rule of users holds here too. */
    assert_false(authcache_member_get(ac, uid, o->id, 4, MONO_0, got, &role, &got_stamp));
    xfree(o);
  }
  /* A reference that cannot be one is never cached. */
  char long_ref[200];
  memset(long_ref, 'a', sizeof(long_ref) - 1);
  long_ref[sizeof(long_ref) - 1] = '\0';
  struct org *o = make_org("x", "y", 2);
  assert_int_equal(authcache_member_put(ac, uid, long_ref, o, ROLE_OWNER, 3, MONO_0), 0);
  xfree(o);
  xfree(got);
  authcache_free(ac);
}

static void test_member_json_follows_stamp(void **state) {
  (void)state;
  struct authcache *ac = authcache_new(NULL);
  struct org *o = make_org("0190aaaa-0000-7000-8000-0000000000ee", "json-org", 2);
  struct buf b;
  buf_init(&b, 1 << 20);
  uint64_t s1 = authcache_member_put(ac, "u", "json-org", o, ROLE_ADMIN, 1, MONO_0);
  assert_false(authcache_member_json_get(ac, "u", "json-org", s1, &b));
  authcache_member_json_put(ac, "u", "json-org", s1, "{\"a\":1}", 7);
  assert_true(authcache_member_json_get(ac, "u", "json-org", s1, &b));
  assert_int_equal(b.len, 7);
  assert_memory_equal(b.data, "{\"a\":1}", 7);
  /* Refilled (e.g. the role changed): the old rendering is not served for
   * the new content, and a late attach for the old stamp is ignored. */
  uint64_t s2 = authcache_member_put(ac, "u", "json-org", o, ROLE_VIEWER, 2, MONO_0);
  assert_true(s2 != s1);
  buf_reset(&b);
  assert_false(authcache_member_json_get(ac, "u", "json-org", s1, &b));
  assert_false(authcache_member_json_get(ac, "u", "json-org", s2, &b));
  authcache_member_json_put(ac, "u", "json-org", s1, "{\"old\":1}", 9);
  assert_false(authcache_member_json_get(ac, "u", "json-org", s2, &b));
  authcache_member_json_put(ac, "u", "json-org", s2, "{\"b\":2}", 7);
  assert_true(authcache_member_json_get(ac, "u", "json-org", s2, &b));
  assert_memory_equal(b.data, "{\"b\":2}", 7);
  assert_false(authcache_member_json_get(ac, "u", "json-org", 0, &b));
  buf_free(&b);
  xfree(o);
  authcache_free(ac);
}

/* --- bounds --------------------------------------------------------------------------- */

static void test_eviction_keeps_entries_bounded(void **state) {
  (void)state;
  enum { MAX = 64, PUTS = 5000 };
  struct authcache *ac = small_cache(MAX, 64 * 1024 * 1024);
  struct user u, got;
  struct session_claims c, gotc;
  make_claims(&c, "bounded", 3);
  struct org *o = make_org("bounded-org", "bounded", 10);
  char id[64];
  for (int i = 0; i < PUTS; i++) {
    snprintf(id, sizeof(id), "user-%d", i);
    make_user(&u, id);
    authcache_user_put(ac, &u, 1, MONO_0);
    authcache_session_put(ac, token_of(id), &c);
    authcache_member_put(ac, id, "bounded", o, ROLE_MEMBER, 1, MONO_0);
  }
  struct authcache_stats st;
  authcache_stats(ac, &st);
  for (int t = 0; t < AUTHCACHE_TABLES; t++) {
    /* Shards get an equal share each, rounded up. */
    if (st.entries[t] > MAX) fail_msg("table %d holds %zu entries", t, st.entries[t]);
    if (st.evictions[t] < PUTS - MAX)
      fail_msg("table %d evicted %llu", t, (unsigned long long)st.evictions[t]);
  }
  /* The newest entries are there. */
  snprintf(id, sizeof(id), "user-%d", PUTS - 1);
  assert_true(authcache_user_get(ac, id, 1, MONO_0, &got));
  assert_true(authcache_session_get(ac, token_of(id), NOW_S, &gotc));
  xfree(o);
  authcache_free(ac);
}

static void test_least_recently_used_goes_first(void **state) {
  (void)state;
  /* 4 entries per shard: an entry used after every insert is never the
   * oldest of its shard, so it survives any number of inserts (a FIFO would
   * drop it after four more in its shard). */
  struct authcache *ac = small_cache(64, 64 * 1024 * 1024);
  struct user u, got;
  make_user(&u, "hot");
  authcache_user_put(ac, &u, 1, MONO_0);
  char id[64];
  for (int i = 0; i < 2000; i++) {
    snprintf(id, sizeof(id), "cold-%d", i);
    make_user(&u, id);
    authcache_user_put(ac, &u, 1, MONO_0);
    if (!authcache_user_get(ac, "hot", 1, MONO_0, &got)) fail_msg("hot evicted after %d", i);
  }
  authcache_free(ac);
}

static void test_bytes_bounded(void **state) {
  (void)state;
  /* 16 shards of 64 KiB: an org with 16 KiB of settings (and its JSON)
   * takes a quarter of one. */
  enum { BYTES = 16 * 64 * 1024 };
  struct authcache *ac = small_cache(100000, BYTES);
  struct org *o = make_org("big-org", "big", LIMIT_ORG_SETTINGS_MAX);
  char user[64];
  size_t json_len = LIMIT_ORG_SETTINGS_MAX + 200;
  char *json = xcalloc(1, json_len);
  for (int i = 0; i < 500; i++) {
    snprintf(user, sizeof(user), "big-user-%d", i);
    uint64_t stamp = authcache_member_put(ac, user, "big", o, ROLE_OWNER, 1, MONO_0);
    assert_true(stamp != 0);
    authcache_member_json_put(ac, user, "big", stamp, json, json_len);
  }
  struct authcache_stats st;
  authcache_stats(ac, &st);
  if (st.bytes[AUTHCACHE_MEMBERSHIPS] > BYTES) {
    fail_msg("memberships hold %zu bytes", st.bytes[AUTHCACHE_MEMBERSHIPS]);
  }
  assert_true(st.entries[AUTHCACHE_MEMBERSHIPS] > 0);
  assert_true(st.evictions[AUTHCACHE_MEMBERSHIPS] > 0);
  /* An entry bigger than a shard's share is not kept at all. */
  struct authcache *tiny = small_cache(100, 16 * 1024);
  assert_int_equal(authcache_member_put(tiny, "u", "big", o, ROLE_OWNER, 1, MONO_0), 0);
  authcache_stats(tiny, &st);
  assert_int_equal(st.entries[AUTHCACHE_MEMBERSHIPS], 0);
  authcache_free(tiny);
  xfree(json);
  xfree(o);
  authcache_free(ac);
}

/* --- concurrency ------------------------------------------------------------------------- */

struct worker {
  struct authcache *ac;
  int seed;
  int hits;
};

static void *hammer(void *arg) {
  struct worker *w = arg;
  struct user u, got;
  struct org *o = make_org("conc-org", "conc", 50);
  struct org *got_org = xmalloc(sizeof(*got_org));
  struct session_claims c, gotc;
  make_claims(&c, "conc", 2);
  char id[64];
  for (int i = 0; i < 20000; i++) {
    snprintf(id, sizeof(id), "c-%d", (i * 7 + w->seed) % 300);
    make_user(&u, id);
    uint64_t gen = (uint64_t)(i / 1000);
    if (authcache_user_get(w->ac, id, gen, MONO_0, &got)) {
      w->hits++;
      if (strcmp(got.id, id) != 0) fail_msg("wrong user %s for %s", got.id, id);
    } else {
      authcache_user_put(w->ac, &u, gen, MONO_0);
    }
    enum role role;
    uint64_t stamp;
    if (authcache_member_get(w->ac, id, "conc", gen, MONO_0, got_org, &role, &stamp)) {
      struct buf b;
      buf_init(&b, 4096);
      authcache_member_json_get(w->ac, id, "conc", stamp, &b);
      buf_free(&b);
    } else {
      stamp = authcache_member_put(w->ac, id, "conc", o, ROLE_ADMIN, gen, MONO_0);
      authcache_member_json_put(w->ac, id, "conc", stamp, "{}", 2);
    }
    if (!authcache_session_get(w->ac, token_of(id), NOW_S, &gotc)) {
      authcache_session_put(w->ac, token_of(id), &c);
    }
  }
  xfree(got_org);
  xfree(o);
  return NULL;
}

static void test_concurrent_use(void **state) {
  (void)state;
  enum { THREADS = 4 };
  struct authcache *ac = small_cache(128, 1 << 20);
  pthread_t th[THREADS];
  struct worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (struct worker){.ac = ac, .seed = i * 13};
    pthread_create(&th[i], NULL, hammer, &w[i]);
  }
  int hits = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    hits += w[i].hits;
  }
  assert_true(hits > 0);
  authcache_free(ac);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_session_hit_copies_claims),
      cmocka_unit_test(test_session_expiry_rechecked_on_every_hit),
      cmocka_unit_test(test_user_hit_without_password_hash),
      cmocka_unit_test(test_user_generation_invalidates),
      cmocka_unit_test(test_age_bound),
      cmocka_unit_test(test_member_hit_rebuilds_org),
      cmocka_unit_test(test_member_json_follows_stamp),
      cmocka_unit_test(test_eviction_keeps_entries_bounded),
      cmocka_unit_test(test_least_recently_used_goes_first),
      cmocka_unit_test(test_bytes_bounded),
      cmocka_unit_test(test_concurrent_use),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
