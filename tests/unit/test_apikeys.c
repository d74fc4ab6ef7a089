/*
 * test_apikeys.c — API keys (domain/apikeys.c, store/keys.c): the key
 * format and checksum, the MAC, creation with the plan's key limit, and the
 * verifier: cache hits and misses, negative entries, revocation by
 * eviction, expiry on a cache hit, deleted orgs and suspended creators,
 * bounded memory, TTLs, batched last_used_at writes, concurrent use; the
 * cache keyed by fingerprint (hits never confuse two keys, the HMAC only on
 * a miss, eviction by HMAC from any shard).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/time.h"
#include "domain/apikeys.h"
#include "domain/plans.h"
#include "domain/rbac.h"
#include "store/db.h"
#include "store/keys.h"
#include "store/store.h"

static char dir[256];
static struct store *store;
static const uint8_t mac_key[APIKEY_MAC_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* --- fixtures -------------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  if (crypto_init() != 0) return -1;
  char err[256];
  if (plans_load(NULL, err, sizeof(err)) != 0) return -1;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-apikeys-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  if (store_open(&o, &store, err, sizeof(err)) != 0) {
    fprintf(stderr, "store_open: %s\n", err);
    return -1;
  }
  return 0;
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

struct sql_job {
  const char *sql;
  const char *a, *b, *c;
};

static int sql_tx(struct store_tx *tx, void *arg) {
  struct sql_job *j = arg;
  struct db_stmt *st = db_prepare(tx, j->sql);
  if (!st) return KEEL_ESTORE;
  if (j->a) db_bind_text(st, 1, j->a);
  if (j->b) db_bind_text(st, 2, j->b);
  if (j->c) db_bind_text(st, 3, j->c);
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

/* The SQL texts must have static storage (db_prepare caches by address). */
static const char sql_org[] =
    "INSERT INTO orgs(id, name, slug, plan, created_at, updated_at) VALUES($1, $2, $2, $3, 1, 1)";
static const char sql_user[] =
    "INSERT INTO users(id, email, email_norm, name, created_at, updated_at)"
    " VALUES($1, $2, $2, 'u', 1, 1)";
static const char sql_plan[] = "UPDATE orgs SET plan = $2 WHERE id = $1";
static const char sql_delete_org[] = "UPDATE orgs SET deleted_at = 5 WHERE id = $1";
static const char sql_suspend[] = "UPDATE users SET suspended = 1 WHERE id = $1";

static void run_sql(const char *sql, const char *a, const char *b, const char *c) {
  struct sql_job j = {sql, a, b, c};
  assert_int_equal(store_write(store, sql_tx, &j), 0);
}

/* A fresh org on plan; its id into scope. */
static void new_org(const char *plan, struct org_scope *scope) {
  id_new_str(scope->org_id);
  char slug[64];
  snprintf(slug, sizeof(slug), "org-%.8s-%.4s", scope->org_id + 28, scope->org_id + 9);
  run_sql(sql_org, scope->org_id, slug, plan);
}

struct create_job {
  const struct org_scope *scope;
  struct apikey_spec spec;
  int64_t now;
  struct apikey_created out;
  const char *why;
};

static int create_tx(struct store_tx *tx, void *arg) {
  struct create_job *j = arg;
  return apikeys_create(tx, j->scope, &j->spec, mac_key, j->now, &j->out, &j->why);
}

static int create_key(const struct org_scope *scope, const struct apikey_spec *spec,
                      struct apikey_created *out) {
  struct create_job j = {.scope = scope, .spec = *spec, .now = time_now_us()};
  int rc = store_write(store, create_tx, &j);
  *out = j.out;
  return rc;
}

static struct apikey_spec basic_spec(void) {
  return (struct apikey_spec){.name = "ci", .scopes = SCOPE_INGEST | SCOPE_READ, .live = true};
}

struct revoke_job {
  const struct org_scope *scope;
  const char *id;
  bool already;
};

static int revoke_tx(struct store_tx *tx, void *arg) {
  struct revoke_job *j = arg;
  return store_apikey_revoke(tx, j->scope, j->id, time_now_us(), &j->already);
}

struct get_job {
  const struct org_scope *scope;
  const char *id;
  struct apikey_row row;
};

static int get_tx(struct store_tx *tx, void *arg) {
  struct get_job *j = arg;
  return store_apikey_get(tx, j->scope, j->id, &j->row);
}

static struct apikeys_verifier *verifier(size_t capacity, int64_t neg_ttl_us) {
  struct apikeys_verifier_options o = {
      .mac_key = mac_key, .capacity = capacity, .negative_ttl_us = neg_ttl_us};
  return apikeys_verifier_new(&o);
}

static struct slice S(const char *s) {
  return slice_from_cstr(s);
}

/* --- format -------------------------------------------------------------------- */

static void
test_crc32_known_vector(void **state) {
  (void)state;
  assert_int_equal(apikeys_crc32("123456789", 9), 0xCBF43926u);
  assert_int_equal(apikeys_crc32("", 0), 0);
}

static void test_generated_keys_have_the_format(void **state) {
  (void)state;
  enum { N = 2000 };
  static char keys[N][APIKEY_MAX];
  unsigned counts[128] = {0};
  for (int i = 0; i < N; i++) {
    bool live = i % 2 == 0;
    apikeys_generate(live, keys[i]);
    assert_int_equal(strlen(keys[i]), APIKEY_LEN);
    assert_memory_equal(keys[i], live ? "kl_live_" : "kl_test_", 8);
    bool got_live = !live;
    assert_int_equal(apikeys_check_format(S(keys[i]), &got_live), APIKEY_FORMAT_OK);
    assert_true(got_live == live);
    for (int c = APIKEY_TAG_LEN; c < APIKEY_TAG_LEN + APIKEY_RANDOM_LEN; c++) {
      counts[(unsigned char)keys[i][c]]++;
    }
    char prefix[16];
    apikeys_display_prefix(S(keys[i]), prefix);
    assert_int_equal(strlen(prefix), APIKEY_PREFIX_LEN);
    assert_memory_equal(prefix, keys[i], APIKEY_PREFIX_LEN);
  }
  /* No two alike (166 bits of randomness). */
  for (int i = 0; i < N; i++) {
    for (int j = i + 1; j < N; j++) assert_string_not_equal(keys[i], keys[j]);
  }
  /* All 62 digits are used, each near 1/62 of 56 000 draws (~903). */
  const char *digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  for (const char *d = digits; *d; d++) {
    unsigned n = counts[(unsigned char)*d];
    if (n < 700 || n > 1110) fail_msg("digit %c drawn %u times of %d", *d, n, N * 28);
  }
}

static void test_bad_shapes_are_refused(void **state) {
  (void)state;
  char key[APIKEY_MAX];
  apikeys_generate(true, key);
  char bad[APIKEY_MAX + 8];
  const char *tags[] = {"kl_prod_", "KL_LIVE_", "sk_live_", "kl_live", "kl-live_", ""};
  for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
    snprintf(bad, sizeof(bad), "%s%s", tags[i], key + 8);
    assert_int_equal(apikeys_check_format(S(bad), NULL), APIKEY_FORMAT_BAD_TAG);
  }
  /* Truncated and extended. */
  memcpy(bad, key, APIKEY_LEN - 1);
  bad[APIKEY_LEN - 1] = '\0';
  assert_int_equal(apikeys_check_format(S(bad), NULL), APIKEY_FORMAT_BAD_LENGTH);
  snprintf(bad, sizeof(bad), "%sA", key);
  assert_int_equal(apikeys_check_format(S(bad), NULL), APIKEY_FORMAT_BAD_LENGTH);
  /* A character outside base62. */
  memcpy(bad, key, APIKEY_LEN + 1);
  bad[20] = '-';
  assert_int_equal(apikeys_check_format(S(bad), NULL), APIKEY_FORMAT_BAD_CHARS);
  /* The checksum catches every single-character change of the random part
   * and of the checksum itself (CRC-32 detects all single-byte errors). */
  const char *digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  for (int pos = APIKEY_TAG_LEN; pos < APIKEY_LEN; pos++) {
    for (const char *d = digits; *d; d++) {
      if (*d == key[pos]) continue;
      memcpy(bad, key, APIKEY_LEN + 1);
      bad[pos] = *d;
      if (apikeys_check_format(S(bad), NULL) != APIKEY_FORMAT_BAD_CHECKSUM) {
        fail_msg("changing position %d to %c went unnoticed", pos, *d);
      }
    }
  }
  /* Swapping live for test invalidates the checksum too. */
  memcpy(bad, key, APIKEY_LEN + 1);
  memcpy(bad, "kl_test_", 8);
  assert_int_equal(apikeys_check_format(S(bad), NULL), APIKEY_FORMAT_BAD_CHECKSUM);
  /* A display prefix never carries control characters or quotes. */
  char prefix[16];
  apikeys_display_prefix(S("kl_\"\n\\abc"), prefix);
  assert_string_equal(prefix, "kl_???abc");
}

static void test_checksum_is_documented_crc(void **state) {
  (void)state;
  /* The documented construction: CRC-32 of the first 36 characters as 6
   * base62 digits, most significant first. */
  const char *body = "kl_live_000000000000000000000000000A";
  uint32_t v = apikeys_crc32(body, 36);
  const char *digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  char want[7] = {0};
  for (int i = 5; i >= 0; i--) {
    want[i] = digits[v % 62];
    v /= 62;
  }
  char got[6];
  apikeys_checksum(body, 36, got);
  assert_memory_equal(got, want, 6);
  char key[64];
  snprintf(key, sizeof(key), "%s%s", body, want);
  assert_int_equal(apikeys_check_format(S(key), NULL), APIKEY_FORMAT_OK);
}

static void test_scope_and_env_names(void **state) {
  (void)state;
  assert_int_equal(apikeys_scope_parse(S("ingest")), SCOPE_INGEST);
  assert_int_equal(apikeys_scope_parse(S("read")), SCOPE_READ);
  assert_int_equal(apikeys_scope_parse(S("admin")), SCOPE_ADMIN);
  assert_int_equal(apikeys_scope_parse(S("Admin")), 0);
  assert_int_equal(apikeys_scope_parse(S("")), 0);
  assert_string_equal(apikeys_scope_name(SCOPE_READ), "read");
  assert_null(apikeys_scope_name(SCOPE_READ | SCOPE_INGEST));
  assert_true(apikeys_env_valid("production"));
  assert_true(apikeys_env_valid("test"));
  assert_false(apikeys_env_valid("prod"));
  assert_false(apikeys_env_valid(NULL));
}

/* --- MAC --------------------------------------------------------------------- */

static void test_mac_derivation_and_precomputed_hash(void **state) {
  (void)state;
  uint8_t secret[32];
  memset(secret, 7, sizeof(secret));
  uint8_t derived[32], want[32];
  apikeys_mac_key_derive(secret, sizeof(secret), derived);
  crypto_hmac_sha256(secret, sizeof(secret), "keel api key mac v1", 19, want);
  assert_memory_equal(derived, want, 32);

  struct apikeys_verifier *v = verifier(64, 0);
  char key[APIKEY_MAX];
  for (int i = 0; i < 50; i++) {
    apikeys_generate(i % 2, key);
    uint8_t a[32], b[32], c[32];
    apikeys_hash(mac_key, S(key), a);
    apikeys_verifier_hash(v, S(key), b);
    crypto_hmac_sha256(mac_key, sizeof(mac_key), key, strlen(key), c);
    assert_memory_equal(a, b, 32);
    assert_memory_equal(a, c, 32);
  }
  apikeys_verifier_free(v);
}

/* --- creation and plan limits -------------------------------------------------- */

static void test_create_stores_hash_not_key(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("free", &scope);
  struct apikey_spec spec = basic_spec();
  spec.rate_limit_per_min = 42;
  struct apikey_created out;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  assert_int_equal(strlen(out.key), APIKEY_LEN);
  assert_memory_equal(out.prefix, out.key, APIKEY_PREFIX_LEN);
  struct get_job g = {.scope = &scope, .id = out.id};
  assert_int_equal(store_read(store, get_tx, &g), 0);
  uint8_t h[32];
  apikeys_hash(mac_key, S(out.key), h);
  assert_memory_equal(g.row.key_hash, h, 32);
  assert_string_equal(g.row.prefix, out.prefix);
  assert_string_equal(g.row.env, "production");
  assert_true(g.row.live);
  assert_int_equal(g.row.scopes, SCOPE_INGEST | SCOPE_READ);
  assert_int_equal(g.row.rate_limit_per_min, 42);
  assert_int_equal(g.row.revoked_at, 0);
  /* Another org cannot see it. */
  struct org_scope other;
  new_org("free", &other);
  struct get_job g2 = {.scope = &other, .id = out.id};
  assert_int_equal(store_read(store, get_tx, &g2), KEEL_ENOTFOUND);
  /* Test keys default to the test environment. */
  spec = basic_spec();
  spec.live = false;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  assert_memory_equal(out.key, "kl_test_", 8);
  assert_string_equal(out.row.env, "test");
}

static void test_create_validates(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("enterprise", &scope);
  struct apikey_created out;
  struct apikey_spec spec = basic_spec();
  spec.name = "";
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  spec = basic_spec();
  spec.scopes = 0;
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  spec.scopes = 8;
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  spec = basic_spec();
  spec.env = "prod";
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  spec = basic_spec();
  spec.expires_at = time_now_us() - 1;
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  spec = basic_spec();
  spec.rate_limit_per_min = APIKEY_RATE_OVERRIDE_MAX + 1;
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  char name[APIKEY_NAME_MAX + 2];
  memset(name, 'n', sizeof(name));
  name[APIKEY_NAME_MAX] = '\0'; /* N: accepted */
  spec = basic_spec();
  spec.name = name;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  name[APIKEY_NAME_MAX] = 'n'; /* N + 1: refused */
  name[APIKEY_NAME_MAX + 1] = '\0';
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EINVAL);
  struct org_scope missing;
  id_new_str(missing.org_id);
  spec = basic_spec();
  assert_int_equal(create_key(&missing, &spec, &out), KEEL_ENOTFOUND);
}

/* Free: 2 active keys, the 3rd refused; revoking one makes room; Pro: 10/11. */
static void test_plan_key_limits(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("free", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created out, first;
  assert_int_equal(create_key(&scope, &spec, &first), 0);
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EDENIED);
  assert_string_equal(out.plan, "free");
  assert_int_equal(out.plan_limit, 2);
  struct revoke_job r = {.scope = &scope, .id = first.id};
  assert_int_equal(store_write(store, revoke_tx, &r), 0);
  assert_false(r.already);
  assert_int_equal(store_write(store, revoke_tx, &r), 0);
  assert_true(r.already);
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EDENIED);

  run_sql(sql_plan, scope.org_id, "pro", NULL);
  for (int i = 2; i < 10; i++) assert_int_equal(create_key(&scope, &spec, &out), 0);
  assert_int_equal(create_key(&scope, &spec, &out), KEEL_EDENIED);
  assert_string_equal(out.plan, "pro");
  assert_int_equal(out.plan_limit, 10);
}

/* --- verification ----------------------------------------------------------------- */

static void test_verify_cache_hits_and_misses(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("pro", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created out;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  struct org org;
  int64_t now = time_now_us();

  /* Cache only: a miss. */
  assert_int_equal(apikeys_verify(v, NULL, S(out.key), now, &id, &org), APIKEY_MISS);
  /* With the store: valid, and then cached. */
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, &org), APIKEY_VALID);
  assert_string_equal(id.id, out.id);
  assert_string_equal(id.org_id, scope.org_id);
  assert_string_equal(id.prefix, out.prefix);
  assert_string_equal(id.env, "production");
  assert_int_equal(id.scopes, SCOPE_INGEST | SCOPE_READ);
  assert_string_equal(org.id, scope.org_id);
  assert_string_equal(org.plan, "pro");
  memset(&org, 0, sizeof(org));
  assert_int_equal(apikeys_verify(v, NULL, S(out.key), now, &id, &org), APIKEY_VALID);
  assert_string_equal(org.plan, "pro");
  assert_string_equal(org.settings, "{}");
  struct apikeys_cache_stats st;
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.entries, 1);
  assert_int_equal(st.hits, 1);
  assert_int_equal(st.misses, 1); /* a cache-only miss is not counted */

  /* Bad shapes never reach the cache or the store. */
  char bad[APIKEY_MAX];
  memcpy(bad, out.key, APIKEY_LEN + 1);
  bad[30] = bad[30] == 'a' ? 'b' : 'a';
  assert_int_equal(apikeys_verify(v, store, S(bad), now, &id, NULL), APIKEY_BAD_CHECKSUM);
  assert_string_equal(id.prefix, out.prefix);
  assert_int_equal(apikeys_verify(v, store, S("kl_live_short"), now, &id, NULL), APIKEY_MALFORMED);
  assert_int_equal(apikeys_verify(v, store, S("Bearer"), now, &id, NULL), APIKEY_MALFORMED);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hits + st.misses, 2);

  /* An unknown (well-formed) key: negative entry, then a hit. */
  char unknown[APIKEY_MAX];
  apikeys_generate(true, unknown);
  assert_int_equal(apikeys_verify(v, store, S(unknown), now, &id, NULL), APIKEY_UNKNOWN);
  assert_int_equal(apikeys_verify(v, NULL, S(unknown), now, &id, NULL), APIKEY_UNKNOWN);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.entries, 2);
  assert_int_equal(st.hits, 2);

  /* A key hashed under another MAC key is unknown here. */
  struct apikeys_verifier_options o = {.mac_key =
                                           (const uint8_t *)"another mac key of 32 bytes....."};
  struct apikeys_verifier *v2 = apikeys_verifier_new(&o);
  assert_int_equal(apikeys_verify(v2, store, S(out.key), now, &id, NULL), APIKEY_UNKNOWN);
  apikeys_verifier_free(v2);
  apikeys_verifier_free(v);
}

static void test_revocation_needs_eviction_then_applies(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("pro", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created out;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  int64_t now = time_now_us();
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
  struct revoke_job r = {.scope = &scope, .id = out.id};
  assert_int_equal(store_write(store, revoke_tx, &r), 0);
  /* Cached: still valid on this node until evicted (the TTL bounds it). */
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
  apikeys_verifier_evict(v, out.row.key_hash);
  assert_int_equal(apikeys_verify(v, NULL, S(out.key), now, &id, NULL), APIKEY_MISS);
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_REVOKED);
  /* The revoked state is cached too. */
  assert_int_equal(apikeys_verify(v, NULL, S(out.key), now, &id, NULL), APIKEY_REVOKED);
  apikeys_verifier_free(v);
}

/* --- the cache keyed by fingerprint ------------------------------------------ */

/* key with one random character changed and the checksum made right again:
 * a well-formed key as close to key as keys get. */
static void neighbour_key(const char *key, char out[APIKEY_MAX]) {
  memcpy(out, key, APIKEY_LEN + 1);
  char *c = &out[APIKEY_TAG_LEN + 5];
  *c = *c == 'a' ? 'b' : 'a';
  apikeys_checksum(out, APIKEY_TAG_LEN + APIKEY_RANDOM_LEN,
                   out + APIKEY_TAG_LEN + APIKEY_RANDOM_LEN);
}

#define MANY_KEYS 48
static struct apikey_created many_keys[MANY_KEYS];

/* MANY_KEYS keys, alternately in orgs a and b. */
static void create_many_keys(struct org_scope *a, struct org_scope *b) {
  new_org("enterprise", a);
  new_org("enterprise", b);
  struct apikey_spec spec = basic_spec();
  for (int i = 0; i < MANY_KEYS; i++) {
    assert_int_equal(create_key(i % 2 ? b : a, &spec, &many_keys[i]), 0);
  }
}

/* A cache hit (cache only) for key i: its own identity and org. */
static void assert_hit_is_own(struct apikeys_verifier *v, int i, const struct org_scope *a,
                              const struct org_scope *b) {
  struct apikey_identity id;
  struct org org;
  assert_int_equal(apikeys_verify(v, NULL, S(many_keys[i].key), time_now_us(), &id, &org),
                   APIKEY_VALID);
  assert_string_equal(id.id, many_keys[i].id);
  assert_string_equal(id.prefix, many_keys[i].prefix);
  assert_string_equal(id.org_id, (i % 2 ? b : a)->org_id);
  assert_string_equal(org.id, id.org_id);
}

/* Hits by fingerprint never confuse two keys: keys sharing shards, buckets
 * and chains each find their own identity; a key one character away from a
 * cached one, or never seen, misses, and its negative entry shadows nothing. */
static void test_fingerprint_hits_never_confuse_keys(void **state) {
  (void)state;
  struct org_scope a, b;
  create_many_keys(&a, &b);
  struct apikey_identity id;
  int64_t now = time_now_us();

  /* 64 entries: four slots and eight buckets a shard, so keys share chains
   * and some are evicted; whatever hits is the right key. */
  struct apikeys_verifier *v = verifier(64, 0);
  for (int i = 0; i < MANY_KEYS; i++) {
    assert_int_equal(apikeys_verify(v, store, S(many_keys[i].key), now, &id, NULL), APIKEY_VALID);
    assert_string_equal(id.id, many_keys[i].id);
  }
  int hits = 0;
  for (int i = 0; i < MANY_KEYS; i++) {
    enum apikey_verdict r = apikeys_verify(v, NULL, S(many_keys[i].key), now, &id, NULL);
    assert_true(r == APIKEY_VALID || r == APIKEY_MISS);
    if (r == APIKEY_VALID) {
      assert_hit_is_own(v, i, &a, &b);
      hits++;
    }
  }
  assert_true(hits > 0);
  apikeys_verifier_free(v);

  /* Room for all: every key hits, as itself. */
  v = verifier(1024, 0);
  for (int i = 0; i < MANY_KEYS; i++) {
    assert_int_equal(apikeys_verify(v, store, S(many_keys[i].key), now, &id, NULL), APIKEY_VALID);
  }
  for (int i = 0; i < MANY_KEYS; i++) assert_hit_is_own(v, i, &a, &b);
  char near[APIKEY_MAX];
  for (int i = 0; i < MANY_KEYS; i++) {
    neighbour_key(many_keys[i].key, near);
    assert_int_equal(apikeys_check_format(S(near), NULL), APIKEY_FORMAT_OK);
    assert_int_equal(apikeys_verify(v, NULL, S(near), now, &id, NULL), APIKEY_MISS);
    assert_int_equal(apikeys_verify(v, store, S(near), now, &id, NULL), APIKEY_UNKNOWN);
    assert_int_equal(apikeys_verify(v, NULL, S(near), now, &id, NULL), APIKEY_UNKNOWN);
    assert_hit_is_own(v, i, &a, &b);
  }
  /* A wrong checksum is refused even though the rest of the key is cached. */
  memcpy(near, many_keys[0].key, APIKEY_LEN + 1);
  near[APIKEY_LEN - 1] = near[APIKEY_LEN - 1] == '0' ? '1' : '0';
  assert_int_equal(apikeys_verify(v, NULL, S(near), now, &id, NULL), APIKEY_BAD_CHECKSUM);
  assert_int_equal(apikeys_verify(v, store, S(near), now, &id, NULL), APIKEY_BAD_CHECKSUM);
  struct apikeys_cache_stats st;
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.entries, 2 * MANY_KEYS);
  apikeys_verifier_free(v);
}

/* The HMAC is computed only when the store is asked, once per miss; the
 * cache it fills answers every later use without it. */
static void test_hmac_only_on_a_miss(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("pro", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created out;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  struct apikeys_cache_stats st;
  int64_t now = time_now_us();

  assert_int_equal(apikeys_verify(v, NULL, S(out.key), now, &id, NULL), APIKEY_MISS);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hmacs, 0); /* cache only: no HMAC */
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hmacs, 1);
  assert_int_equal(st.misses, 1);
  assert_int_equal(st.entries, 1);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
    assert_string_equal(id.id, out.id);
  }
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hmacs, 1);
  assert_int_equal(st.hits, 100);

  /* An unknown key: one HMAC for the store, then the negative entry. */
  char unknown[APIKEY_MAX];
  apikeys_generate(true, unknown);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(apikeys_verify(v, store, S(unknown), now, &id, NULL), APIKEY_UNKNOWN);
  }
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hmacs, 2);
  assert_int_equal(st.entries, 2);
  /* Refused by shape or checksum: no HMAC. */
  char bad[APIKEY_MAX];
  memcpy(bad, out.key, APIKEY_LEN + 1);
  bad[APIKEY_LEN - 1] = bad[APIKEY_LEN - 1] == '0' ? '1' : '0';
  assert_int_equal(apikeys_verify(v, store, S(bad), now, &id, NULL), APIKEY_BAD_CHECKSUM);
  assert_int_equal(apikeys_verify(v, store, S("kl_live_short"), now, &id, NULL), APIKEY_MALFORMED);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hmacs, 2);

  /* Evicted by its HMAC (as a revocation does): the next use pays one more. */
  apikeys_verifier_evict(v, out.row.key_hash);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.entries, 1);
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.hmacs, 3);
  apikeys_verifier_free(v);
}

/* Eviction comes with the HMAC the store holds, which does not tell the
 * fingerprint's shard: it finds the entry wherever it is, positive or
 * negative, and leaves the others alone. */
static void test_evict_by_hmac_from_any_shard(void **state) {
  (void)state;
  struct org_scope a, b;
  create_many_keys(&a, &b);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  int64_t now = time_now_us();
  for (int i = 0; i < MANY_KEYS; i++) {
    assert_int_equal(apikeys_verify(v, store, S(many_keys[i].key), now, &id, NULL), APIKEY_VALID);
  }
  for (int i = 0; i < MANY_KEYS; i++) {
    apikeys_verifier_evict(v, many_keys[i].row.key_hash);
    assert_int_equal(apikeys_verify(v, NULL, S(many_keys[i].key), now, &id, NULL), APIKEY_MISS);
    if (i + 1 < MANY_KEYS) assert_hit_is_own(v, i + 1, &a, &b);
    struct apikeys_cache_stats st;
    apikeys_verifier_stats(v, &st);
    assert_int_equal(st.entries, (size_t)(MANY_KEYS - 1 - i));
  }
  /* A negative entry goes by the HMAC of its key (a key created with that
   * text would be evicted so). */
  char unknown[APIKEY_MAX];
  apikeys_generate(false, unknown);
  assert_int_equal(apikeys_verify(v, store, S(unknown), now, &id, NULL), APIKEY_UNKNOWN);
  assert_int_equal(apikeys_verify(v, NULL, S(unknown), now, &id, NULL), APIKEY_UNKNOWN);
  uint8_t h[APIKEY_HASH_LEN];
  apikeys_hash(mac_key, S(unknown), h);
  apikeys_verifier_evict(v, h);
  assert_int_equal(apikeys_verify(v, NULL, S(unknown), now, &id, NULL), APIKEY_MISS);
  apikeys_verifier_free(v);
}

/* Expiry is judged on every use, cache hit or not. */
static void test_expiry_on_a_cache_hit(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("pro", &scope);
  struct apikey_spec spec = basic_spec();
  int64_t now = time_now_us();
  spec.expires_at = now + 10 * US_PER_SEC;
  struct apikey_created out;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  assert_int_equal(apikeys_verify(v, store, S(out.key), now, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verify(v, NULL, S(out.key), spec.expires_at - 1, &id, NULL),
                   APIKEY_VALID);
  assert_int_equal(apikeys_verify(v, NULL, S(out.key), spec.expires_at, &id, NULL), APIKEY_EXPIRED);
  apikeys_verifier_free(v);
  /* And from the store, uncached. */
  v = verifier(1024, 0);
  assert_int_equal(apikeys_verify(v, store, S(out.key), spec.expires_at + 1, &id, NULL),
                   APIKEY_EXPIRED);
  apikeys_verifier_free(v);
  /* An expired key does not count against the plan limit. */
  struct org_scope free_org;
  new_org("free", &free_org);
  spec.expires_at = now + 1000;
  struct create_job j = {.scope = &free_org, .spec = spec, .now = now};
  assert_int_equal(store_write(store, create_tx, &j), 0);
  assert_int_equal(store_write(store, create_tx, &j), 0);
  j.now = now + 2000;
  j.spec.expires_at = 0;
  assert_int_equal(store_write(store, create_tx, &j), 0);
}

static void test_deleted_org_and_suspended_creator(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("pro", &scope);
  char user_id[ID_STR_SIZE];
  id_new_str(user_id);
  char email[80];
  snprintf(email, sizeof(email), "%s@example.com", user_id);
  run_sql(sql_user, user_id, email, NULL);
  struct apikey_spec spec = basic_spec();
  spec.created_by = user_id;
  struct apikey_created by_user, by_cli;
  assert_int_equal(create_key(&scope, &spec, &by_user), 0);
  spec.created_by = NULL;
  assert_int_equal(create_key(&scope, &spec, &by_cli), 0);
  struct apikey_identity id;
  int64_t now = time_now_us();
  struct apikeys_verifier *v = verifier(1024, 0);
  run_sql(sql_suspend, user_id, NULL, NULL);
  assert_int_equal(apikeys_verify(v, store, S(by_user.key), now, &id, NULL),
                   APIKEY_CREATOR_SUSPENDED);
  assert_int_equal(apikeys_verify(v, store, S(by_cli.key), now, &id, NULL), APIKEY_VALID);
  apikeys_verifier_free(v);
  v = verifier(1024, 0);
  run_sql(sql_delete_org, scope.org_id, NULL, NULL);
  assert_int_equal(apikeys_verify(v, store, S(by_cli.key), now, &id, NULL), APIKEY_ORG_DELETED);
  apikeys_verifier_free(v);
}

/* evict_org forgets exactly one org's cached keys. */
static void test_evict_org(void **state) {
  (void)state;
  struct org_scope a, b;
  new_org("pro", &a);
  new_org("pro", &b);
  struct apikey_spec spec = basic_spec();
  struct apikey_created a1, a2, b1;
  assert_int_equal(create_key(&a, &spec, &a1), 0);
  assert_int_equal(create_key(&a, &spec, &a2), 0);
  assert_int_equal(create_key(&b, &spec, &b1), 0);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  int64_t now = time_now_us();
  assert_int_equal(apikeys_verify(v, store, S(a1.key), now, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verify(v, store, S(a2.key), now, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verify(v, store, S(b1.key), now, &id, NULL), APIKEY_VALID);
  run_sql(sql_plan, a.org_id, "team", NULL);
  assert_int_equal(apikeys_verifier_evict_org(v, a.org_id), 2);
  struct org org;
  assert_int_equal(apikeys_verify(v, NULL, S(a1.key), now, &id, &org), APIKEY_MISS);
  assert_int_equal(apikeys_verify(v, store, S(a1.key), now, &id, &org), APIKEY_VALID);
  assert_string_equal(org.plan, "team");
  assert_int_equal(apikeys_verify(v, NULL, S(b1.key), now, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verifier_evict_org(v, "no-such-org"), 0);
  apikeys_verifier_free(v);
}

/* Memory is fixed: with room for 64 entries, 1 000 different keys leave at
 * most 64 cached, the rest evicted by CLOCK. */
static void test_cache_is_bounded(void **state) {
  (void)state;
  struct apikeys_verifier *v = verifier(64, 0);
  struct apikey_identity id;
  char key[APIKEY_MAX];
  int64_t now = time_now_us();
  for (int i = 0; i < 1000; i++) {
    apikeys_generate(true, key);
    assert_int_equal(apikeys_verify(v, store, S(key), now, &id, NULL), APIKEY_UNKNOWN);
    struct apikeys_cache_stats st;
    apikeys_verifier_stats(v, &st);
    assert_true(st.entries <= 64);
  }
  struct apikeys_cache_stats st;
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.capacity, 64);
  assert_true(st.evictions >= 1000 - 64);
  apikeys_verifier_free(v);

  /* A key in constant use survives a flood of one-off keys (second chance). */
  struct org_scope scope;
  new_org("pro", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created hot;
  assert_int_equal(create_key(&scope, &spec, &hot), 0);
  v = verifier(64, 0);
  assert_int_equal(apikeys_verify(v, store, S(hot.key), now, &id, NULL), APIKEY_VALID);
  for (int i = 0; i < 2000; i++) {
    apikeys_generate(true, key);
    apikeys_verify(v, store, S(key), now, &id, NULL);
    assert_int_equal(apikeys_verify(v, NULL, S(hot.key), now, &id, NULL), APIKEY_VALID);
  }
  apikeys_verifier_free(v);
}

static void test_negative_entries_expire(void **state) {
  (void)state;
  struct apikeys_verifier *v = verifier(1024, 20000); /* 20 ms */
  struct apikey_identity id;
  char key[APIKEY_MAX];
  apikeys_generate(true, key);
  int64_t now = time_now_us();
  assert_int_equal(apikeys_verify(v, store, S(key), now, &id, NULL), APIKEY_UNKNOWN);
  assert_int_equal(apikeys_verify(v, NULL, S(key), now, &id, NULL), APIKEY_UNKNOWN);
  usleep(40000);
  assert_int_equal(apikeys_verify(v, NULL, S(key), now, &id, NULL), APIKEY_MISS);
  apikeys_verifier_free(v);
}

/* last_used_at: one record per key per minute, written by a flush. */
static void test_last_used_is_batched(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("pro", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created a, b;
  assert_int_equal(create_key(&scope, &spec, &a), 0);
  assert_int_equal(create_key(&scope, &spec, &b), 0);
  struct apikeys_verifier *v = verifier(1024, 0);
  struct apikey_identity id;
  int64_t now = time_now_us();
  for (int i = 0; i < 100; i++) {
    assert_int_equal(apikeys_verify(v, store, S(a.key), now + i, &id, NULL), APIKEY_VALID);
  }
  assert_int_equal(apikeys_verifier_pending(v), 1);
  assert_int_equal(apikeys_verify(v, store, S(b.key), now, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verifier_pending(v), 2);
  /* Not in the store before the flush. */
  struct get_job g = {.scope = &scope, .id = a.id};
  assert_int_equal(store_read(store, get_tx, &g), 0);
  assert_int_equal(g.row.last_used_at, 0);
  assert_int_equal(apikeys_verifier_flush(v, store), 0);
  assert_int_equal(apikeys_verifier_pending(v), 0);
  assert_int_equal(store_read(store, get_tx, &g), 0);
  assert_int_equal(g.row.last_used_at, now);
  /* Within the minute: nothing new; a minute later: one more record. */
  assert_int_equal(apikeys_verify(v, NULL, S(a.key), now + US_PER_MIN - 1, &id, NULL),
                   APIKEY_VALID);
  assert_int_equal(apikeys_verifier_pending(v), 0);
  assert_int_equal(apikeys_verify(v, NULL, S(a.key), now + US_PER_MIN, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verifier_pending(v), 1);
  assert_int_equal(apikeys_verifier_flush(v, store), 0);
  assert_int_equal(store_read(store, get_tx, &g), 0);
  assert_int_equal(g.row.last_used_at, now + US_PER_MIN);
  /* A fresh cache starts from the stored time: no new record inside that
   * minute. */
  apikeys_verifier_free(v);
  v = verifier(1024, 0);
  assert_int_equal(apikeys_verify(v, store, S(a.key), now + US_PER_MIN + 5, &id, NULL),
                   APIKEY_VALID);
  assert_int_equal(apikeys_verifier_pending(v), 0);
  assert_int_equal(apikeys_verifier_flush(v, store), 0); /* nothing to write */
  apikeys_verifier_free(v);
}

static void test_last_used_buffer_is_bounded(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("enterprise", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created keys[5];
  for (int i = 0; i < 5; i++) assert_int_equal(create_key(&scope, &spec, &keys[i]), 0);
  struct apikeys_verifier_options o = {.mac_key = mac_key, .touches_max = 3};
  struct apikeys_verifier *v = apikeys_verifier_new(&o);
  struct apikey_identity id;
  int64_t now = time_now_us();
  for (int i = 0; i < 5; i++) {
    assert_int_equal(apikeys_verify(v, store, S(keys[i].key), now, &id, NULL), APIKEY_VALID);
  }
  assert_int_equal(apikeys_verifier_pending(v), 3);
  struct apikeys_cache_stats st;
  apikeys_verifier_stats(v, &st);
  assert_int_equal(st.touches_dropped, 2);
  /* A dropped record is retried on the key's next use. */
  assert_int_equal(apikeys_verifier_flush(v, store), 0);
  assert_int_equal(apikeys_verify(v, NULL, S(keys[4].key), now + 1, &id, NULL), APIKEY_VALID);
  assert_int_equal(apikeys_verifier_pending(v), 1);
  apikeys_verifier_free(v);
}

/* --- concurrency -------------------------------------------------------------------- */

struct hammer {
  struct apikeys_verifier *v;
  const char *key;
  const uint8_t *hash;
  int valid, other;
};

static void *hammer_main(void *arg) {
  struct hammer *h = arg;
  struct apikey_identity id;
  char junk[APIKEY_MAX];
  for (int i = 0; i < 2000; i++) {
    enum apikey_verdict r = apikeys_verify(h->v, store, S(h->key), time_now_us(), &id, NULL);
    if (r == APIKEY_VALID) {
      h->valid++;
    } else {
      h->other++;
    }
    if (i % 50 == 0) apikeys_verifier_evict(h->v, h->hash);
    if (i % 7 == 0) {
      apikeys_generate(true, junk);
      apikeys_verify(h->v, NULL, S(junk), time_now_us(), &id, NULL);
    }
  }
  return NULL;
}

/* Threads verifying, evicting and missing at once: every verdict is valid,
 * nothing is corrupted (run under ASan/TSan for the full value). */
static void test_concurrent_verification(void **state) {
  (void)state;
  struct org_scope scope;
  new_org("enterprise", &scope);
  struct apikey_spec spec = basic_spec();
  struct apikey_created out;
  assert_int_equal(create_key(&scope, &spec, &out), 0);
  struct apikeys_verifier *v = verifier(64, 0);
  enum { N = 8 };
  pthread_t th[N];
  struct hammer h[N];
  for (int i = 0; i < N; i++) {
    h[i] = (struct hammer){.v = v, .key = out.key, .hash = out.row.key_hash};
    pthread_create(&th[i], NULL, hammer_main, &h[i]);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(h[i].valid, 2000);
    assert_int_equal(h[i].other, 0);
  }
  struct apikeys_cache_stats st;
  apikeys_verifier_stats(v, &st);
  assert_true(st.entries <= 64);
  apikeys_verifier_flush(v, store);
  apikeys_verifier_free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32_known_vector),
      cmocka_unit_test(test_generated_keys_have_the_format),
      cmocka_unit_test(test_bad_shapes_are_refused),
      cmocka_unit_test(test_checksum_is_documented_crc),
      cmocka_unit_test(test_scope_and_env_names),
      cmocka_unit_test(test_mac_derivation_and_precomputed_hash),
      cmocka_unit_test(test_create_stores_hash_not_key),
      cmocka_unit_test(test_create_validates),
      cmocka_unit_test(test_plan_key_limits),
      cmocka_unit_test(test_verify_cache_hits_and_misses),
      cmocka_unit_test(test_revocation_needs_eviction_then_applies),
      cmocka_unit_test(test_fingerprint_hits_never_confuse_keys),
      cmocka_unit_test(test_hmac_only_on_a_miss),
      cmocka_unit_test(test_evict_by_hmac_from_any_shard),
      cmocka_unit_test(test_expiry_on_a_cache_hit),
      cmocka_unit_test(test_deleted_org_and_suspended_creator),
      cmocka_unit_test(test_evict_org),
      cmocka_unit_test(test_cache_is_bounded),
      cmocka_unit_test(test_negative_entries_expire),
      cmocka_unit_test(test_last_used_is_batched),
      cmocka_unit_test(test_last_used_buffer_is_bounded),
      cmocka_unit_test(test_concurrent_verification),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
