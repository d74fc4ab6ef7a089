/*
 * apikeys.c — API keys: format, creation, and the verifier (cache + batched
 * last-use writes). The format and the verification flow are described in
 * apikeys.h.
 *
 * Cache keys. The cache is keyed by the key's fingerprint: SipHash-2-4 with
 * a 128-bit output (libsodium's crypto_shorthash_siphashx24) under a random
 * key drawn when the verifier is made and never leaving this process. The
 * HMAC (what the store holds) is computed only on a miss, to ask the store;
 * a hit costs one SipHash (tens of nanoseconds) instead of two SHA-256
 * blocks. Why a hit by fingerprint is as good as a hit by HMAC: SipHash is
 * a PRF, so under a secret uniformly random key the fingerprints of
 * distinct keys behave as independent uniform 128-bit values. Fingerprints
 * never leave the process (no response, header, log or metric holds one;
 * timing tells a client whether its key hit, and at most which bucket it
 * fell in, a dozen bits), so a colliding key cannot be searched for
 * offline: each guess sent matches a given cached entry with probability
 * 2^-128 (2^-114 against a full cache of 16384 entries). An accidental
 * collision among n keys has probability below n^2 / 2^129.
 * docs/api-keys.md says the same for operators. The plaintext key is never
 * kept: a slot holds the fingerprint and the HMAC.
 *
 * Cache layout. The cache is split in CACHE_SHARDS shards by the first byte
 * of the fingerprint; each shard has a mutex, a fixed array of slots, two
 * bucket indexes chained through slot indices (by fingerprint for lookups,
 * by HMAC for evictions, which come from the store's side and know only the
 * HMAC) and a CLOCK hand. A slot is free, positive (the key exists: valid,
 * revoked, org deleted, creator suspended — decided from the slot on every
 * use) or negative (no such key). Every slot expires (monotonic clock) after
 * its TTL. On insert into a full shard the hand sweeps: expired or
 * unreferenced slots are taken, referenced ones get a second chance. Memory
 * is fixed at creation.
 *
 * A store lookup races with a revocation: a reader may read a key just
 * before the revocation commits and insert it just after the revoker evicted
 * it. Each shard therefore counts evictions (gen); a lookup notes gen before
 * reading the store and caches its result only if gen has not moved. An
 * eviction by HMAC cannot tell which shard the key's fingerprint picks, so
 * it moves gen in every shard.
 *
 * The HMAC uses a precomputed libsodium state (the key's inner and outer
 * pads absorbed once), so hashing a key costs two SHA-256 blocks, not four.
 * That and SipHash need libsodium's own API, hence sodium.h here (as in
 * password.c); everything else goes through core/crypto.h.
 */
#include "domain/apikeys.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/plans.h"
#include "domain/rbac.h"

static const char base62_digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* --- CRC-32 ------------------------------------------------------------------ */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}

uint32_t apikeys_crc32(const void *data, size_t n) {
  pthread_once(&crc_once, crc_table_init);
  const uint8_t *p = data;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void apikeys_checksum(const char *text, size_t n, char out[APIKEY_CHECKSUM_LEN]) {
  uint32_t v = apikeys_crc32(text, n);
  for (int i = APIKEY_CHECKSUM_LEN - 1; i >= 0; i--) {
    out[i] = base62_digits[v % 62];
    v /= 62;
  }
}

/* --- format ------------------------------------------------------------------ */

static const char tag_live[] = "kl_live_";
static const char tag_test[] = "kl_test_";

void apikeys_generate(bool live, char out[APIKEY_MAX]) {
  memcpy(out, live ? tag_live : tag_test, APIKEY_TAG_LEN);
  for (size_t i = 0; i < APIKEY_RANDOM_LEN; i++) {
    out[APIKEY_TAG_LEN + i] = base62_digits[crypto_random_uniform(62)];
  }
  apikeys_checksum(out, APIKEY_TAG_LEN + APIKEY_RANDOM_LEN,
                   out + APIKEY_TAG_LEN + APIKEY_RANDOM_LEN);
  out[APIKEY_LEN] = '\0';
}

static bool is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The shape of a key: tag, length and characters (not the checksum). */
static enum apikey_format check_shape(struct slice key, bool *live) {
  bool is_live;
  if (key.len >= APIKEY_TAG_LEN && memcmp(key.p, tag_live, APIKEY_TAG_LEN) == 0) {
    is_live = true;
  } else if (key.len >= APIKEY_TAG_LEN && memcmp(key.p, tag_test, APIKEY_TAG_LEN) == 0) {
    is_live = false;
  } else {
    return APIKEY_FORMAT_BAD_TAG;
  }
  if (live) *live = is_live;
  if (key.len != APIKEY_LEN) return APIKEY_FORMAT_BAD_LENGTH;
  for (size_t i = APIKEY_TAG_LEN; i < APIKEY_LEN; i++) {
    if (!is_base62(key.p[i])) return APIKEY_FORMAT_BAD_CHARS;
  }
  return APIKEY_FORMAT_OK;
}

/* Whether a key of the right shape carries its checksum. */
static bool checksum_ok(struct slice key) {
  char sum[APIKEY_CHECKSUM_LEN];
  apikeys_checksum(key.p, APIKEY_TAG_LEN + APIKEY_RANDOM_LEN, sum);
  return crypto_equal(sum, key.p + APIKEY_TAG_LEN + APIKEY_RANDOM_LEN, APIKEY_CHECKSUM_LEN);
}

enum apikey_format apikeys_check_format(struct slice key, bool *live) {
  enum apikey_format f = check_shape(key, live);
  if (f != APIKEY_FORMAT_OK) return f;
  return checksum_ok(key) ? APIKEY_FORMAT_OK : APIKEY_FORMAT_BAD_CHECKSUM;
}

void apikeys_display_prefix(struct slice key, char out[16]) {
  size_t n = key.len < APIKEY_PREFIX_LEN ? key.len : APIKEY_PREFIX_LEN;
  /* Only printable ASCII: the prefix goes into problem details and logs. */
  for (size_t i = 0; i < n; i++) {
    char c = key.p[i];
    out[i] = (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
  }
  out[n] = '\0';
}

/* --- scopes and environments -------------------------------------------- */

const unsigned apikeys_scope_bits[3] = {SCOPE_INGEST, SCOPE_READ, SCOPE_ADMIN};

static const struct {
  unsigned bit;
  const char *name;
} scope_names[] = {{SCOPE_INGEST, "ingest"}, {SCOPE_READ, "read"}, {SCOPE_ADMIN, "admin"}};

const char *apikeys_scope_name(unsigned scope_bit) {
  for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++) {
    if (scope_names[i].bit == scope_bit) return scope_names[i].name;
  }
  return NULL;
}

unsigned apikeys_scope_parse(struct slice name) {
  for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++) {
    if (slice_eq_cstr(name, scope_names[i].name)) return scope_names[i].bit;
  }
  return 0;
}

static const char *const env_names[] = {"production", "staging", "development", "test"};

bool apikeys_env_valid(const char *env) {
  for (size_t i = 0; env && i < sizeof(env_names) / sizeof(env_names[0]); i++) {
    if (strcmp(env, env_names[i]) == 0) return true;
  }
  return false;
}

/* --- MAC ------------------------------------------------------------------- */

static const char mac_label[] = "keel api key mac v1";

void apikeys_mac_key_derive(const uint8_t *secret, size_t secret_len,
                            uint8_t out[APIKEY_MAC_KEY_LEN]) {
  crypto_hmac_sha256(secret, secret_len, mac_label, sizeof(mac_label) - 1, out);
}

void apikeys_hash(const uint8_t mac_key[APIKEY_MAC_KEY_LEN], struct slice key,
                  uint8_t out[APIKEY_HASH_LEN]) {
  crypto_hmac_sha256(mac_key, APIKEY_MAC_KEY_LEN, key.p, key.len, out);
}

/* --- creation -------------------------------------------------------------- */

static const char *spec_problem(const struct apikey_spec *spec, int64_t now_us) {
  size_t name_len = spec->name ? strlen(spec->name) : 0;
  if (name_len == 0 || name_len > APIKEY_NAME_MAX) return "the name must be 1 to 100 bytes";
  if (spec->scopes == 0 || (spec->scopes & ~(unsigned)(SCOPE_INGEST | SCOPE_READ | SCOPE_ADMIN))) {
    return "give at least one scope of ingest, read, admin";
  }
  if (spec->env && !apikeys_env_valid(spec->env)) {
    return "the environment must be production, staging, development or test";
  }
  if (spec->expires_at && spec->expires_at <= now_us) return "expires_at must be in the future";
  if (spec->rate_limit_per_min < 0 || spec->rate_limit_per_min > APIKEY_RATE_OVERRIDE_MAX) {
    return "rate_limit_per_min must be from 1 to 1000000000";
  }
  return NULL;
}

int apikeys_create(struct store_tx *tx, const struct org_scope *scope,
                   const struct apikey_spec *spec, const uint8_t *mac_key, int64_t now_us,
                   struct apikey_created *out, const char **why) {
  memset(out, 0, sizeof(*out));
  const char *problem = spec_problem(spec, now_us);
  if (problem) {
    if (why) *why = problem;
    return KEEL_EINVAL;
  }
  struct org org;
  int rc = store_org_get(tx, scope, &org);
  if (rc) return rc;
  const struct plan *plan = plans_get(org.plan);
  if (!plan) plan = plans_get(PLAN_DEFAULT);
  int64_t active = 0;
  if ((rc = store_apikey_count_active(tx, scope, now_us, &active)) != 0) return rc;
  if (plan && !plans_within(plan->api_keys_max, active + 1)) {
    snprintf(out->plan, sizeof(out->plan), "%s", plan->id);
    out->plan_limit = plan->api_keys_max;
    if (why) *why = "api_keys";
    return KEEL_EDENIED;
  }

  struct apikey_row *row = &out->row;
  id_new_str(row->id);
  memcpy(row->org_id, scope->org_id, sizeof(row->org_id));
  snprintf(row->name, sizeof(row->name), "%s", spec->name);
  snprintf(row->env, sizeof(row->env), "%s",
           spec->env ? spec->env : (spec->live ? "production" : "test"));
  row->live = spec->live;
  row->scopes = spec->scopes;
  snprintf(row->created_by, sizeof(row->created_by), "%s",
           spec->created_by ? spec->created_by : "");
  row->created_at = now_us;
  row->expires_at = spec->expires_at;
  row->rate_limit_per_min = spec->rate_limit_per_min;

  apikeys_generate(spec->live, out->key);
  struct slice k = slice_make(out->key, APIKEY_LEN);
  apikeys_display_prefix(k, row->prefix);
  apikeys_hash(mac_key, k, row->key_hash);
  rc = store_apikey_insert(tx, scope, row);
  if (rc) {
    crypto_wipe(out->key, sizeof(out->key));
    return rc;
  }
  memcpy(out->id, row->id, sizeof(out->id));
  memcpy(out->prefix, row->prefix, sizeof(out->prefix));
  return 0;
}

/* --- the verifier ------------------------------------------------------------ */

#define CACHE_SHARDS    16
#define NIL             (-1)
#define FINGERPRINT_LEN crypto_shorthash_siphashx24_BYTES /* 16 */

enum slot_state {
  SLOT_FREE = 0,
  SLOT_KEY,     /* the key exists; its status is in the slot */
  SLOT_UNKNOWN, /* negative entry */
};

/* What a positive slot holds of the key's org (the org's settings live in a
 * separately allocated string so a slot stays small). */
struct org_snap {
  char name[sizeof(((struct org *)0)->name)];
  char slug[sizeof(((struct org *)0)->slug)];
  char plan[sizeof(((struct org *)0)->plan)];
  char billing_status[sizeof(((struct org *)0)->billing_status)];
  int64_t created_at, updated_at;
  char *settings; /* xmalloc'd; NULL when empty */
};

struct slot {
  uint8_t fingerprint[FINGERPRINT_LEN]; /* the cache key */
  uint8_t hash[APIKEY_HASH_LEN];        /* the HMAC, for eviction by the store's hash */
  int32_t next;                         /* fingerprint bucket chain */
  int32_t hash_next;                    /* HMAC bucket chain */
  uint8_t state;
  bool referenced;
  uint8_t status;         /* SLOT_KEY: APIKEY_VALID, _REVOKED, _ORG_DELETED, _CREATOR_SUSPENDED */
  int64_t expires_mono;   /* the entry's own TTL */
  int64_t last_used_mark; /* wall µs of the last recorded use */
  struct apikey_identity id;
  struct org_snap org;
};

struct shard {
  pthread_mutex_t mu;
  struct slot *slots;
  int32_t *buckets;        /* by fingerprint */
  int32_t *hash_buckets;   /* by HMAC */
  size_t nslots, nbuckets; /* nbuckets (of each index): a power of two */
  size_t used;
  size_t hand;
  uint64_t gen; /* evictions by request (revocation) */
};

struct touch {
  char org_id[ID_STR_SIZE];
  char key_id[ID_STR_SIZE];
  int64_t at;
};

struct apikeys_verifier {
  crypto_auth_hmacsha256_state mac_base;
  uint8_t fingerprint_key[crypto_shorthash_siphashx24_KEYBYTES]; /* random, this process only */
  int64_t ttl_us, negative_ttl_us, touch_interval_us;
  struct shard shards[CACHE_SHARDS];
  size_t capacity;
  atomic_uint_fast64_t hits, misses, evictions, touches_dropped, hmacs;

  pthread_mutex_t touch_mu;
  struct touch *touches;
  size_t ntouches, touches_max;
  pthread_mutex_t flush_mu; /* one flusher at a time */
};

struct apikeys_verifier *apikeys_verifier_new(const struct apikeys_verifier_options *opt) {
  struct apikeys_verifier *v = xcalloc(1, sizeof(*v));
  crypto_auth_hmacsha256_init(&v->mac_base, opt->mac_key, APIKEY_MAC_KEY_LEN);
  crypto_random(v->fingerprint_key, sizeof(v->fingerprint_key));
  v->ttl_us = opt->ttl_us > 0 ? opt->ttl_us : 60 * US_PER_SEC;
  v->negative_ttl_us = opt->negative_ttl_us > 0 ? opt->negative_ttl_us : 5 * US_PER_SEC;
  v->touch_interval_us = opt->touch_interval_us > 0 ? opt->touch_interval_us : US_PER_MIN;
  size_t cap = opt->capacity ? opt->capacity : APIKEY_CACHE_MAX;
  if (cap < CACHE_SHARDS) cap = CACHE_SHARDS;
  size_t per = cap / CACHE_SHARDS;
  v->capacity = per * CACHE_SHARDS;
  for (size_t i = 0; i < CACHE_SHARDS; i++) {
    struct shard *sh = &v->shards[i];
    pthread_mutex_init(&sh->mu, NULL);
    sh->nslots = per;
    sh->slots = xcalloc(per, sizeof(*sh->slots));
    sh->nbuckets = 1;
    while (sh->nbuckets < 2 * per) sh->nbuckets <<= 1;
    sh->buckets = xcalloc(sh->nbuckets, sizeof(*sh->buckets));
    sh->hash_buckets = xcalloc(sh->nbuckets, sizeof(*sh->hash_buckets));
    for (size_t b = 0; b < sh->nbuckets; b++) sh->buckets[b] = sh->hash_buckets[b] = NIL;
  }
  v->touches_max = opt->touches_max ? opt->touches_max : APIKEY_TOUCHES_MAX;
  v->touches = xcalloc(v->touches_max, sizeof(*v->touches));
  pthread_mutex_init(&v->touch_mu, NULL);
  pthread_mutex_init(&v->flush_mu, NULL);
  return v;
}

static void slot_clear(struct slot *s) {
  xfree(s->org.settings);
  memset(s, 0, sizeof(*s));
  s->next = s->hash_next = NIL;
}

void apikeys_verifier_free(struct apikeys_verifier *v) {
  if (!v) return;
  for (size_t i = 0; i < CACHE_SHARDS; i++) {
    struct shard *sh = &v->shards[i];
    for (size_t j = 0; j < sh->nslots; j++) slot_clear(&sh->slots[j]);
    xfree(sh->slots);
    xfree(sh->buckets);
    xfree(sh->hash_buckets);
    pthread_mutex_destroy(&sh->mu);
  }
  xfree(v->touches);
  pthread_mutex_destroy(&v->touch_mu);
  pthread_mutex_destroy(&v->flush_mu);
  crypto_wipe(&v->mac_base, sizeof(v->mac_base));
  crypto_wipe(v->fingerprint_key, sizeof(v->fingerprint_key));
  xfree(v);
}

void apikeys_verifier_hash(const struct apikeys_verifier *v, struct slice key,
                           uint8_t out[APIKEY_HASH_LEN]) {
  crypto_auth_hmacsha256_state st = v->mac_base;
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)key.p, key.len);
  crypto_auth_hmacsha256_final(&st, out);
  crypto_wipe(&st, sizeof(st));
}

/* The key's fingerprint: the cache key (see the top of the file). */
static void fingerprint_of(const struct apikeys_verifier *v, struct slice key,
                           uint8_t out[FINGERPRINT_LEN]) {
  crypto_shorthash_siphashx24(out, (const unsigned char *)key.p, key.len, v->fingerprint_key);
}

static struct shard *shard_of(struct apikeys_verifier *v, const uint8_t *fingerprint) {
  return &v->shards[fingerprint[0] % CACHE_SHARDS];
}

/* The bucket of a fingerprint or an HMAC: both are uniformly distributed,
 * so any four bytes do (not the first, which picked the shard). */
static size_t bucket_of(const struct shard *sh, const uint8_t *digest) {
  uint32_t h;
  memcpy(&h, digest + 4, sizeof(h));
  return (size_t)h & (sh->nbuckets - 1);
}

/* The slot holding fingerprint (constant-time comparison of each
 * candidate), or NIL. Shard locked. */
static int32_t shard_find(const struct shard *sh, const uint8_t *fingerprint) {
  for (int32_t i = sh->buckets[bucket_of(sh, fingerprint)]; i != NIL; i = sh->slots[i].next) {
    if (crypto_equal(sh->slots[i].fingerprint, fingerprint, FINGERPRINT_LEN)) return i;
  }
  return NIL;
}

/* The slot holding the key whose HMAC is hash, or NIL. Shard locked. */
static int32_t shard_find_hash(const struct shard *sh, const uint8_t *hash) {
  for (int32_t i = sh->hash_buckets[bucket_of(sh, hash)]; i != NIL; i = sh->slots[i].hash_next) {
    if (crypto_equal(sh->slots[i].hash, hash, APIKEY_HASH_LEN)) return i;
  }
  return NIL;
}

/* Unlinks slot i from both its chains and frees it. Shard locked. */
static void shard_remove(struct shard *sh, int32_t i) {
  struct slot *s = &sh->slots[i];
  int32_t *link = &sh->buckets[bucket_of(sh, s->fingerprint)];
  while (*link != NIL && *link != i) link = &sh->slots[*link].next;
  if (*link == i) *link = s->next;
  link = &sh->hash_buckets[bucket_of(sh, s->hash)];
  while (*link != NIL && *link != i) link = &sh->slots[*link].hash_next;
  if (*link == i) *link = s->hash_next;
  slot_clear(s);
  sh->used--;
}

/* A free slot, evicting by CLOCK when the shard is full. Shard locked. */
static int32_t shard_take(struct apikeys_verifier *v, struct shard *sh, int64_t now_mono) {
  if (sh->used < sh->nslots) {
    /* Free slots exist: the hand finds one within one sweep. */
    for (size_t n = 0; n < sh->nslots; n++) {
      size_t i = sh->hand;
      sh->hand = (sh->hand + 1) % sh->nslots;
      if (sh->slots[i].state == SLOT_FREE) return (int32_t)i;
    }
  }
  for (size_t n = 0; n < 2 * sh->nslots + 1; n++) {
    size_t i = sh->hand;
    sh->hand = (sh->hand + 1) % sh->nslots;
    struct slot *s = &sh->slots[i];
    if (s->expires_mono > now_mono && s->referenced) {
      s->referenced = false; /* second chance */
      continue;
    }
    shard_remove(sh, (int32_t)i);
    atomic_fetch_add(&v->evictions, 1);
    return (int32_t)i;
  }
  KEEL_PANIC("apikeys: CLOCK sweep found no slot");
}

static void snap_org(struct org_snap *dst, const struct org *o) {
  memcpy(dst->name, o->name, sizeof(dst->name));
  memcpy(dst->slug, o->slug, sizeof(dst->slug));
  memcpy(dst->plan, o->plan, sizeof(dst->plan));
  memcpy(dst->billing_status, o->billing_status, sizeof(dst->billing_status));
  dst->created_at = o->created_at;
  dst->updated_at = o->updated_at;
  dst->settings = o->settings[0] ? xstrdup(o->settings) : NULL;
}

static void org_from_snap(struct org *o, const char *org_id, const struct org_snap *s) {
  memcpy(o->id, org_id, sizeof(o->id));
  memcpy(o->name, s->name, sizeof(s->name));
  memcpy(o->slug, s->slug, sizeof(s->slug));
  memcpy(o->plan, s->plan, sizeof(s->plan));
  memcpy(o->billing_status, s->billing_status, sizeof(s->billing_status));
  o->created_at = s->created_at;
  o->updated_at = s->updated_at;
  const char *settings = s->settings ? s->settings : "{}";
  size_t n = strlen(settings);
  if (n >= sizeof(o->settings)) n = sizeof(o->settings) - 1;
  memcpy(o->settings, settings, n);
  o->settings[n] = '\0';
}

/* Records a use of a valid key (slot locked) when the last one recorded is
 * touch_interval old. */
static void maybe_touch(struct apikeys_verifier *v, struct slot *s, int64_t now_us) {
  if (now_us - s->last_used_mark < v->touch_interval_us) return;
  pthread_mutex_lock(&v->touch_mu);
  if (v->ntouches < v->touches_max) {
    struct touch *t = &v->touches[v->ntouches++];
    memcpy(t->org_id, s->id.org_id, sizeof(t->org_id));
    memcpy(t->key_id, s->id.id, sizeof(t->key_id));
    t->at = now_us;
    s->last_used_mark = now_us;
  } else {
    atomic_fetch_add(&v->touches_dropped, 1);
  }
  pthread_mutex_unlock(&v->touch_mu);
}

/* The verdict a positive slot gives at now_us. */
static enum apikey_verdict slot_verdict(const struct slot *s, int64_t now_us) {
  if (s->status != APIKEY_VALID) return (enum apikey_verdict)s->status;
  if (s->id.expires_at && s->id.expires_at <= now_us) return APIKEY_EXPIRED;
  return APIKEY_VALID;
}

/*
 * Looks fingerprint up (shard locked by the caller). Returns true with
 * *verdict set on a fresh hit (copying id/org out for positive entries).
 */
static bool cache_hit(struct apikeys_verifier *v, struct shard *sh, const uint8_t *fingerprint,
                      int64_t now_us, int64_t now_mono, struct apikey_identity *id, struct org *org,
                      enum apikey_verdict *verdict) {
  int32_t i = shard_find(sh, fingerprint);
  if (i == NIL) return false;
  struct slot *s = &sh->slots[i];
  if (s->expires_mono <= now_mono) {
    shard_remove(sh, i);
    return false;
  }
  s->referenced = true;
  if (s->state == SLOT_UNKNOWN) {
    *verdict = APIKEY_UNKNOWN;
    return true;
  }
  *verdict = slot_verdict(s, now_us);
  if (*verdict == APIKEY_VALID) {
    *id = s->id;
    if (org) org_from_snap(org, s->id.org_id, &s->org);
    maybe_touch(v, s, now_us);
  }
  return true;
}

struct lookup_job {
  const uint8_t *hash;
  struct apikey_lookup *out;
};

static int lookup_tx(struct store_tx *tx, void *arg) {
  struct lookup_job *j = arg;
  return store_apikey_by_hash(tx, j->hash, j->out);
}

static void identity_from_row(struct apikey_identity *id, const struct apikey_row *k) {
  memset(id, 0, sizeof(*id));
  memcpy(id->id, k->id, sizeof(id->id));
  memcpy(id->org_id, k->org_id, sizeof(id->org_id));
  memcpy(id->prefix, k->prefix, sizeof(id->prefix));
  memcpy(id->env, k->env, sizeof(id->env));
  id->live = k->live;
  id->scopes = k->scopes;
  id->rate_limit_per_min = k->rate_limit_per_min;
  id->expires_at = k->expires_at;
}

/* Caches a store result under fingerprint (the key's HMAC is hash) unless
 * an eviction ran in the shard since gen0. */
static void cache_put(struct apikeys_verifier *v, const uint8_t *fingerprint, const uint8_t *hash,
                      uint64_t gen0, const struct apikey_lookup *found, enum apikey_verdict status,
                      int64_t now_us) {
  struct shard *sh = shard_of(v, fingerprint);
  int64_t now_mono = time_mono_us();
  pthread_mutex_lock(&sh->mu);
  if (sh->gen != gen0) {
    pthread_mutex_unlock(&sh->mu);
    return;
  }
  int32_t i = shard_find(sh, fingerprint);
  if (i != NIL) shard_remove(sh, i); /* a concurrent miss got there first */
  i = shard_take(v, sh, now_mono);
  struct slot *s = &sh->slots[i];
  memcpy(s->fingerprint, fingerprint, FINGERPRINT_LEN);
  memcpy(s->hash, hash, APIKEY_HASH_LEN);
  s->referenced = false;
  if (!found) {
    s->state = SLOT_UNKNOWN;
    s->expires_mono = now_mono + v->negative_ttl_us;
  } else {
    s->state = SLOT_KEY;
    s->status = (uint8_t)status;
    s->expires_mono = now_mono + v->ttl_us;
    identity_from_row(&s->id, &found->key);
    snap_org(&s->org, &found->org);
    s->last_used_mark = found->key.last_used_at;
    if (status == APIKEY_VALID) maybe_touch(v, s, now_us);
  }
  size_t b = bucket_of(sh, fingerprint);
  s->next = sh->buckets[b];
  sh->buckets[b] = i;
  b = bucket_of(sh, hash);
  s->hash_next = sh->hash_buckets[b];
  sh->hash_buckets[b] = i;
  sh->used++;
  pthread_mutex_unlock(&sh->mu);
}

enum apikey_verdict apikeys_verify(struct apikeys_verifier *v, struct store *store,
                                   struct slice key, int64_t now_us, struct apikey_identity *id,
                                   struct org *org) {
  memset(id->prefix, 0, sizeof(id->prefix));
  apikeys_display_prefix(key, id->prefix);
  if (check_shape(key, NULL) != APIKEY_FORMAT_OK) return APIKEY_MALFORMED;
  uint8_t fingerprint[FINGERPRINT_LEN];
  fingerprint_of(v, key, fingerprint);

  struct shard *sh = shard_of(v, fingerprint);
  enum apikey_verdict verdict;
  pthread_mutex_lock(&sh->mu);
  bool hit = cache_hit(v, sh, fingerprint, now_us, time_mono_us(), id, org, &verdict);
  uint64_t gen0 = sh->gen;
  pthread_mutex_unlock(&sh->mu);
  if (hit) {
    atomic_fetch_add(&v->hits, 1);
    return verdict;
  }
  /* The checksum only on a miss: every cached entry, positive or negative,
   * was put there after its key passed it, and a hit means the same key
   * (fingerprints of distinct keys do not collide, see the top). */
  if (!checksum_ok(key)) return APIKEY_BAD_CHECKSUM;
  if (!store) return APIKEY_MISS; /* counted when the store is asked */
  atomic_fetch_add(&v->misses, 1);

  /* Only now the HMAC: the store is looked up by it. */
  uint8_t hash[APIKEY_HASH_LEN];
  apikeys_verifier_hash(v, key, hash);
  atomic_fetch_add(&v->hmacs, 1);

  struct apikey_lookup *found = xmalloc(sizeof(*found));
  struct lookup_job job = {hash, found};
  int rc = store_read(store, lookup_tx, &job);
  if (rc == KEEL_ENOTFOUND) {
    cache_put(v, fingerprint, hash, gen0, NULL, APIKEY_UNKNOWN, now_us);
    xfree(found);
    return APIKEY_UNKNOWN;
  }
  if (rc || !crypto_equal(found->key.key_hash, hash, APIKEY_HASH_LEN)) {
    if (rc == 0) log_error("apikeys.hash_mismatch", LS("key_id", found->key.id));
    xfree(found);
    return APIKEY_STORE_ERROR;
  }
  enum apikey_verdict status = APIKEY_VALID;
  if (found->key.revoked_at) {
    status = APIKEY_REVOKED;
  } else if (found->org_deleted) {
    status = APIKEY_ORG_DELETED;
  } else if (found->creator_suspended) {
    status = APIKEY_CREATOR_SUSPENDED;
  }
  cache_put(v, fingerprint, hash, gen0, found, status, now_us);
  identity_from_row(id, &found->key);
  verdict = status;
  if (status == APIKEY_VALID && found->key.expires_at && found->key.expires_at <= now_us) {
    verdict = APIKEY_EXPIRED;
  }
  if (verdict == APIKEY_VALID && org) *org = found->org;
  xfree(found);
  return verdict;
}

void apikeys_verifier_evict(struct apikeys_verifier *v, const uint8_t hash[APIKEY_HASH_LEN]) {
  /* The fingerprint (hence the shard) cannot be derived from the HMAC: every
   * shard is searched, and every shard's gen moves, since a lookup in flight
   * for this key may be in any of them. Revocations and changes are rare. */
  for (size_t s = 0; s < CACHE_SHARDS; s++) {
    struct shard *sh = &v->shards[s];
    pthread_mutex_lock(&sh->mu);
    sh->gen++;
    int32_t i = shard_find_hash(sh, hash);
    if (i != NIL) shard_remove(sh, i);
    pthread_mutex_unlock(&sh->mu);
  }
}

size_t apikeys_verifier_evict_org(struct apikeys_verifier *v, const char *org_id) {
  size_t n = 0;
  for (size_t i = 0; i < CACHE_SHARDS; i++) {
    struct shard *sh = &v->shards[i];
    pthread_mutex_lock(&sh->mu);
    sh->gen++; /* a lookup in flight must not cache what it read before */
    for (size_t j = 0; j < sh->nslots; j++) {
      struct slot *s = &sh->slots[j];
      if (s->state == SLOT_KEY && (!org_id || strcmp(s->id.org_id, org_id) == 0)) {
        shard_remove(sh, (int32_t)j);
        n++;
      }
    }
    pthread_mutex_unlock(&sh->mu);
  }
  return n;
}

void apikeys_verifier_stats(struct apikeys_verifier *v, struct apikeys_cache_stats *out) {
  memset(out, 0, sizeof(*out));
  for (size_t i = 0; i < CACHE_SHARDS; i++) {
    pthread_mutex_lock(&v->shards[i].mu);
    out->entries += v->shards[i].used;
    pthread_mutex_unlock(&v->shards[i].mu);
  }
  out->capacity = v->capacity;
  out->hits = atomic_load(&v->hits);
  out->misses = atomic_load(&v->misses);
  out->evictions = atomic_load(&v->evictions);
  out->touches_dropped = atomic_load(&v->touches_dropped);
  out->hmacs = atomic_load(&v->hmacs);
}

/* --- last use -------------------------------------------------------------- */

struct flush_job {
  const struct touch *touches;
  size_t n;
};

static int flush_tx(struct store_tx *tx, void *arg) {
  struct flush_job *j = arg;
  for (size_t i = 0; i < j->n; i++) {
    struct org_scope scope;
    memcpy(scope.org_id, j->touches[i].org_id, sizeof(scope.org_id));
    int rc = store_apikey_touch(tx, &scope, j->touches[i].key_id, j->touches[i].at);
    if (rc) return rc;
  }
  return 0;
}

int apikeys_verifier_flush(struct apikeys_verifier *v, struct store *store) {
  pthread_mutex_lock(&v->flush_mu);
  pthread_mutex_lock(&v->touch_mu);
  size_t n = v->ntouches;
  struct touch *batch = n ? xmemdup(v->touches, n * sizeof(*batch)) : NULL;
  v->ntouches = 0;
  pthread_mutex_unlock(&v->touch_mu);
  int rc = 0;
  if (n) {
    struct flush_job job = {batch, n};
    rc = store ? store_write(store, flush_tx, &job) : KEEL_ESTORE;
    if (rc) {
      atomic_fetch_add(&v->touches_dropped, n);
      log_warn("apikeys.last_used_write_failed", LI("records", (int64_t)n),
               LS("status", keel_strerror(rc)));
    }
    xfree(batch);
  }
  pthread_mutex_unlock(&v->flush_mu);
  return rc;
}

size_t apikeys_verifier_pending(struct apikeys_verifier *v) {
  pthread_mutex_lock(&v->touch_mu);
  size_t n = v->ntouches;
  pthread_mutex_unlock(&v->touch_mu);
  return n;
}
