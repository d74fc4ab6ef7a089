/*
 * authcache.c — the session-authentication cache (api/authcache.h).
 *
 * Layout. Each table has AUTHCACHE_SHARDS shards chosen by the top bits of
 * the entry's 64-bit hash. A shard holds a mutex, a power-of-two bucket
 * array (chains through the entries), a doubly linked recency list (newest
 * first) and its share of the table's bounds. Entries are one heap block:
 * a header, the key bytes, then the value packed by the table's packer
 * (strings at their length, so an org's 16 KiB settings cost what they
 * hold). A membership's rendered JSON is a second block, counted in the same
 * byte bound.
 *
 * Keys. A session entry's key is the BLAKE2b-128 of the token's signature
 * (the part after its last '.') under a random key drawn at start-up, then
 * the signed part (header.payload) as sent; its hash is the digest's first
 * 8 bytes. Finding an entry therefore proves the presented cookie is
 * byte-for-byte one whose signature was verified. The signature — the part
 * that makes the token a credential — is kept only as that digest; the
 * signed part is the claims, which the entry holds decoded anyway. Hashing
 * only the 43-byte signature (two BLAKE2b compressions with the key block)
 * instead of the whole ~0.5 KiB cookie (six) matters: on the cached path,
 * hashing the whole cookie took a tenth of a request's CPU time.
 *
 * Users and memberships are keyed by their text (user id; user id + NUL +
 * org reference), hashed with SipHash under another random key so clients
 * cannot aim at one bucket; lookups compare the text.
 *
 * Validity (users, memberships): entry.gen == the current write generation
 * and now_us - entry.filled_us < max_age_us. Invalid entries met by a lookup
 * are freed at once; others age out through the recency list.
 *
 * Invariant: a shard's mutex is held only inside this file, around a lookup,
 * a copy or an insert — never while calling out.
 */
#include "api/authcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/crypto.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define AUTHCACHE_SHARDS      16 /* power of two */
#define AUTHCACHE_SHARD_SHIFT 60 /* 64 - log2(AUTHCACHE_SHARDS) */
#define TOKEN_DIGEST_LEN      16 /* BLAKE2b-128 */
#define TOKEN_KEY_MAX         (TOKEN_DIGEST_LEN + SESSION_TOKEN_MAX)
#define MEMBER_KEY_MAX        (ID_STR_SIZE + 65) /* user id, NUL, a ref of <= 64 bytes */

struct entry {
  struct entry *chain;         /* next in the bucket */
  struct entry *newer, *older; /* recency list */
  uint64_t hash;
  uint64_t gen;      /* users, memberships: write generation before the read */
  int64_t filled_us; /* users, memberships: monotonic fill time */
  uint64_t stamp;    /* memberships: names this content */
  char *json;        /* memberships: rendered org JSON, or NULL */
  size_t json_len;
  size_t charge; /* bytes counted against the bound */
  uint32_t key_len, value_len;
  unsigned char data[]; /* key_len bytes of key, then value_len of value */
};

struct shard {
  pthread_mutex_t mu;
  struct entry **buckets;
  size_t bucket_mask;
  struct entry *newest, *oldest;
  size_t count, bytes;
  size_t max_count, max_bytes;
  uint64_t hits, misses, evictions;
};

struct table {
  struct shard shards[AUTHCACHE_SHARDS];
};

struct authcache {
  struct table tables[AUTHCACHE_TABLES];
  uint8_t token_key[32];                       /* BLAKE2b key for cookie values */
  uint8_t text_key[CRYPTO_SHORT_HASH_KEY_LEN]; /* SipHash key for ids and refs */
  int64_t max_age_us;
  atomic_uint_fast64_t next_stamp;
};

static const char *const table_names[AUTHCACHE_TABLES] = {"sessions", "users", "memberships"};

/* --- life cycle --------------------------------------------------------------- */

void authcache_default_options(struct authcache_options *opt) {
  *opt = (struct authcache_options){
      .sessions_max = AUTHCACHE_SESSIONS_MAX,
      .sessions_bytes = AUTHCACHE_SESSIONS_BYTES,
      .users_max = AUTHCACHE_USERS_MAX,
      .users_bytes = AUTHCACHE_USERS_BYTES,
      .memberships_max = AUTHCACHE_MEMBERSHIPS_MAX,
      .memberships_bytes = AUTHCACHE_MEMBERSHIPS_BYTES,
      .max_age_us = AUTHCACHE_MAX_AGE_US,
  };
}

static size_t pow2_at_least(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

static void table_init(struct table *t, size_t max_count, size_t max_bytes) {
  size_t per_count = (max_count + AUTHCACHE_SHARDS - 1) / AUTHCACHE_SHARDS;
  size_t per_bytes = (max_bytes + AUTHCACHE_SHARDS - 1) / AUTHCACHE_SHARDS;
  if (per_count == 0) per_count = 1;
  size_t nbuckets = pow2_at_least(per_count);
  for (size_t i = 0; i < AUTHCACHE_SHARDS; i++) {
    struct shard *sh = &t->shards[i];
    pthread_mutex_init(&sh->mu, NULL);
    sh->buckets = xcalloc(nbuckets, sizeof(*sh->buckets));
    sh->bucket_mask = nbuckets - 1;
    sh->max_count = per_count;
    sh->max_bytes = per_bytes;
  }
}

static void entry_free(struct entry *e) {
  xfree(e->json);
  xfree(e);
}

static void table_free(struct table *t) {
  for (size_t i = 0; i < AUTHCACHE_SHARDS; i++) {
    struct shard *sh = &t->shards[i];
    struct entry *e = sh->newest;
    while (e) {
      struct entry *next = e->older;
      entry_free(e);
      e = next;
    }
    xfree(sh->buckets);
    pthread_mutex_destroy(&sh->mu);
  }
}

struct authcache *authcache_new(const struct authcache_options *opt) {
  struct authcache_options defaults;
  if (!opt) {
    authcache_default_options(&defaults);
    opt = &defaults;
  }
  struct authcache *ac = xcalloc(1, sizeof(*ac));
  table_init(&ac->tables[AUTHCACHE_SESSIONS], opt->sessions_max, opt->sessions_bytes);
  table_init(&ac->tables[AUTHCACHE_USERS], opt->users_max, opt->users_bytes);
  table_init(&ac->tables[AUTHCACHE_MEMBERSHIPS], opt->memberships_max, opt->memberships_bytes);
  crypto_random(ac->token_key, sizeof(ac->token_key));
  crypto_random(ac->text_key, sizeof(ac->text_key));
  ac->max_age_us = opt->max_age_us;
  atomic_init(&ac->next_stamp, 1);
  return ac;
}

void authcache_free(struct authcache *ac) {
  if (!ac) return;
  for (size_t i = 0; i < AUTHCACHE_TABLES; i++) table_free(&ac->tables[i]);
  crypto_wipe(ac->token_key, sizeof(ac->token_key));
  crypto_wipe(ac->text_key, sizeof(ac->text_key));
  xfree(ac);
}

/* --- shards (locked by the caller) ------------------------------------------- */

static struct shard *shard_for(struct authcache *ac, enum authcache_table t, uint64_t hash) {
  return &ac->tables[t].shards[hash >> AUTHCACHE_SHARD_SHIFT];
}

static struct entry *shard_find(struct shard *sh, uint64_t hash, const void *key, size_t key_len) {
  for (struct entry *e = sh->buckets[hash & sh->bucket_mask]; e; e = e->chain) {
    if (e->hash == hash && e->key_len == key_len && memcmp(e->data, key, key_len) == 0) return e;
  }
  return NULL;
}

static void list_unlink(struct shard *sh, struct entry *e) {
  if (e->newer) {
    e->newer->older = e->older;
  } else {
    sh->newest = e->older;
  }
  if (e->older) {
    e->older->newer = e->newer;
  } else {
    sh->oldest = e->newer;
  }
  e->newer = e->older = NULL;
}

static void list_push_newest(struct shard *sh, struct entry *e) {
  e->newer = NULL;
  e->older = sh->newest;
  if (sh->newest) sh->newest->newer = e;
  sh->newest = e;
  if (!sh->oldest) sh->oldest = e;
}

static void shard_touch(struct shard *sh, struct entry *e) {
  if (sh->newest == e) return;
  list_unlink(sh, e);
  list_push_newest(sh, e);
}

/* Unlinks e from its bucket and the list and frees it. */
static void shard_remove(struct shard *sh, struct entry *e) {
  struct entry **pp = &sh->buckets[e->hash & sh->bucket_mask];
  while (*pp != e) pp = &(*pp)->chain;
  *pp = e->chain;
  list_unlink(sh, e);
  sh->count--;
  sh->bytes -= e->charge;
  entry_free(e);
}

/* Evicts the oldest entries other than keep until adding one entry of
 * extra_count and extra_bytes fits. Returns whether it fits. */
static bool shard_make_room(struct shard *sh, size_t extra_count, size_t extra_bytes,
                            const struct entry *keep) {
  if (extra_bytes > sh->max_bytes) return false;
  while (sh->count + extra_count > sh->max_count || sh->bytes + extra_bytes > sh->max_bytes) {
    struct entry *victim = sh->oldest;
    if (victim == keep) victim = victim->newer;
    if (!victim) return false;
    shard_remove(sh, victim);
    sh->evictions++;
  }
  return true;
}

/* Inserts e (hash, key and value set), replacing an entry with the same key.
 * Frees e instead when it cannot fit. Returns whether it was kept. */
static bool shard_insert(struct shard *sh, struct entry *e) {
  struct entry *old = shard_find(sh, e->hash, e->data, e->key_len);
  if (old) shard_remove(sh, old);
  if (!shard_make_room(sh, 1, e->charge, NULL)) {
    entry_free(e);
    return false;
  }
  struct entry **bucket = &sh->buckets[e->hash & sh->bucket_mask];
  e->chain = *bucket;
  *bucket = e;
  list_push_newest(sh, e);
  sh->count++;
  sh->bytes += e->charge;
  return true;
}

/* --- packing -------------------------------------------------------------------- */

/* Values are written twice: once with p == NULL to measure, once for real. */
struct packer {
  unsigned char *p;
  size_t len;
};

static void pack_bytes(struct packer *pk, const void *src, size_t n) {
  if (pk->p) memcpy(pk->p + pk->len, src, n);
  pk->len += n;
}

static void pack_u32(struct packer *pk, uint32_t v) {
  pack_bytes(pk, &v, sizeof v);
}

static void pack_i64(struct packer *pk, int64_t v) {
  pack_bytes(pk, &v, sizeof v);
}

static void pack_str(struct packer *pk, const char *s) {
  size_t n = strlen(s);
  pack_u32(pk, (uint32_t)n);
  pack_bytes(pk, s, n);
}

/* A cursor over a packed value; the value was packed here, so a short read
 * is a bug and aborts. */
struct unpacker {
  const unsigned char *p;
  size_t left;
};

static void unpack_bytes(struct unpacker *u, void *dst, size_t n) {
  KEEL_ASSERT(n <= u->left);
  memcpy(dst, u->p, n);
  u->p += n;
  u->left -= n;
}

static uint32_t unpack_u32(struct unpacker *u) {
  uint32_t v;
  unpack_bytes(u, &v, sizeof v);
  return v;
}

static int64_t unpack_i64(struct unpacker *u) {
  int64_t v;
  unpack_bytes(u, &v, sizeof v);
  return v;
}

/* A string into dst[dstsize] (it came from a field of that size). */
static void unpack_str(struct unpacker *u, char *dst, size_t dstsize) {
  uint32_t n = unpack_u32(u);
  KEEL_ASSERT(n < dstsize);
  unpack_bytes(u, dst, n);
  dst[n] = '\0';
}

/* An entry for key whose value pack() writes from arg. */
typedef void (*pack_fn)(struct packer *pk, const void *arg);

static struct entry *entry_new(uint64_t hash, const void *key, size_t key_len, pack_fn pack,
                               const void *arg) {
  struct packer measure = {NULL, 0};
  pack(&measure, arg);
  struct entry *e = xmalloc(sizeof(*e) + key_len + measure.len);
  memset(e, 0, sizeof(*e));
  e->hash = hash;
  e->key_len = (uint32_t)key_len;
  e->value_len = (uint32_t)measure.len;
  e->charge = sizeof(*e) + key_len + measure.len;
  memcpy(e->data, key, key_len);
  struct packer pk = {e->data + key_len, 0};
  pack(&pk, arg);
  return e;
}

static struct unpacker entry_value(const struct entry *e) {
  return (struct unpacker){e->data + e->key_len, e->value_len};
}

/* --- sessions -------------------------------------------------------------------- */

static void pack_claims(struct packer *pk, const void *arg) {
  const struct session_claims *c = arg;
  pack_str(pk, c->sub);
  pack_str(pk, c->sid);
  pack_str(pk, c->email);
  pack_str(pk, c->name);
  pack_str(pk, c->aorg);
  pack_i64(pk, c->sv);
  pack_i64(pk, c->iat);
  pack_i64(pk, c->exp);
  pack_i64(pk, c->auth_time);
  pack_u32(pk, c->orgs_truncated);
  pack_u32(pk, (uint32_t)c->norgs);
  for (size_t i = 0; i < c->norgs; i++) {
    pack_str(pk, c->orgs[i].org_id);
    pack_str(pk, c->orgs[i].role);
  }
}

static void unpack_claims(struct unpacker *u, struct session_claims *c) {
  unpack_str(u, c->sub, sizeof(c->sub));
  unpack_str(u, c->sid, sizeof(c->sid));
  unpack_str(u, c->email, sizeof(c->email));
  unpack_str(u, c->name, sizeof(c->name));
  unpack_str(u, c->aorg, sizeof(c->aorg));
  c->sv = unpack_i64(u);
  c->iat = unpack_i64(u);
  c->exp = unpack_i64(u);
  c->auth_time = unpack_i64(u);
  c->orgs_truncated = unpack_u32(u) != 0;
  c->norgs = unpack_u32(u);
  KEEL_ASSERT(c->norgs <= SESSION_ORGS_MAX);
  for (size_t i = 0; i < c->norgs; i++) {
    unpack_str(u, c->orgs[i].org_id, sizeof(c->orgs[i].org_id));
    unpack_str(u, c->orgs[i].role, sizeof(c->orgs[i].role));
  }
}

/* The entry key of a token (see Keys) into key[TOKEN_KEY_MAX]; its length,
 * or 0 when the token is too long to be one (session_decode refuses those). */
static size_t token_key(const struct authcache *ac, struct slice token,
                        unsigned char key[TOKEN_KEY_MAX], uint64_t *hash) {
  if (token.len > SESSION_TOKEN_MAX) return 0;
  const char *dot = token.len ? memrchr(token.p, '.', token.len) : NULL;
  size_t signed_len = dot ? (size_t)(dot - token.p) : 0;
  size_t sig_start = dot ? signed_len + 1 : 0;
  crypto_keyed_hash(key, TOKEN_DIGEST_LEN, token.p + sig_start, token.len - sig_start,
                    ac->token_key, sizeof(ac->token_key));
  memcpy(key + TOKEN_DIGEST_LEN, token.p, signed_len);
  memcpy(hash, key, sizeof(*hash));
  return TOKEN_DIGEST_LEN + signed_len;
}

bool authcache_session_get(struct authcache *ac, struct slice token, int64_t now_s,
                           struct session_claims *out) {
  unsigned char key[TOKEN_KEY_MAX];
  uint64_t hash;
  size_t key_len = token_key(ac, token, key, &hash);
  if (key_len == 0) return false;
  struct shard *sh = shard_for(ac, AUTHCACHE_SESSIONS, hash);
  bool hit = false;
  pthread_mutex_lock(&sh->mu);
  struct entry *e = shard_find(sh, hash, key, key_len);
  if (e) {
    struct unpacker u = entry_value(e);
    unpack_claims(&u, out);
    if (session_claims_current(out, now_s)) {
      shard_touch(sh, e);
      hit = true;
    } else {
      shard_remove(sh, e);
    }
  }
  if (hit) {
    sh->hits++;
  } else {
    sh->misses++;
  }
  pthread_mutex_unlock(&sh->mu);
  return hit;
}

void authcache_session_put(struct authcache *ac, struct slice token,
                           const struct session_claims *c) {
  unsigned char key[TOKEN_KEY_MAX];
  uint64_t hash;
  size_t key_len = token_key(ac, token, key, &hash);
  if (key_len == 0) return;
  struct entry *e = entry_new(hash, key, key_len, pack_claims, c);
  struct shard *sh = shard_for(ac, AUTHCACHE_SESSIONS, hash);
  pthread_mutex_lock(&sh->mu);
  shard_insert(sh, e);
  pthread_mutex_unlock(&sh->mu);
}

/* --- users and memberships: validity ---------------------------------------------- */

static uint64_t text_hash(const struct authcache *ac, const void *key, size_t n) {
  return crypto_short_hash(ac->text_key, key, n);
}

/* Whether e may stand in for the store at generation gen and time now_us. */
static bool entry_fresh(const struct authcache *ac, const struct entry *e, uint64_t gen,
                        int64_t now_us) {
  return e->gen == gen && now_us - e->filled_us < ac->max_age_us;
}

/* Finds the valid entry for key (locks its shard: the caller unlocks *shp
 * after copying out). A stale entry is dropped; hits and misses counted. */
static struct entry *fresh_find(struct authcache *ac, enum authcache_table t, const void *key,
                                size_t key_len, uint64_t gen, int64_t now_us, struct shard **shp) {
  uint64_t hash = text_hash(ac, key, key_len);
  struct shard *sh = shard_for(ac, t, hash);
  *shp = sh;
  pthread_mutex_lock(&sh->mu);
  struct entry *e = shard_find(sh, hash, key, key_len);
  if (e && !entry_fresh(ac, e, gen, now_us)) {
    shard_remove(sh, e);
    e = NULL;
  }
  if (e) {
    shard_touch(sh, e);
    sh->hits++;
  } else {
    sh->misses++;
  }
  return e;
}

static bool fresh_insert(struct authcache *ac, enum authcache_table t, struct entry *e) {
  struct shard *sh = shard_for(ac, t, e->hash);
  pthread_mutex_lock(&sh->mu);
  bool kept = shard_insert(sh, e);
  pthread_mutex_unlock(&sh->mu);
  return kept;
}

/* --- users ------------------------------------------------------------------------- */

static void pack_user(struct packer *pk, const void *arg) {
  const struct user *u = arg;
  pack_str(pk, u->id);
  pack_str(pk, u->email);
  pack_str(pk, u->name);
  pack_u32(pk,
           (uint32_t)u->verified | (uint32_t)u->platform_admin << 1 | (uint32_t)u->suspended << 2);
  pack_i64(pk, u->session_version);
  pack_i64(pk, u->created_at);
  pack_i64(pk, u->updated_at);
}

static void unpack_user(struct unpacker *un, struct user *u) {
  unpack_str(un, u->id, sizeof(u->id));
  unpack_str(un, u->email, sizeof(u->email));
  unpack_str(un, u->name, sizeof(u->name));
  uint32_t flags = unpack_u32(un);
  u->verified = flags & 1;
  u->platform_admin = flags & 2;
  u->suspended = flags & 4;
  u->session_version = unpack_i64(un);
  u->created_at = unpack_i64(un);
  u->updated_at = unpack_i64(un);
  u->password_hash[0] = '\0';
}

bool authcache_user_get(struct authcache *ac, const char *user_id, uint64_t gen, int64_t now_us,
                        struct user *out) {
  struct shard *sh;
  struct entry *e = fresh_find(ac, AUTHCACHE_USERS, user_id, strlen(user_id), gen, now_us, &sh);
  if (e) {
    struct unpacker u = entry_value(e);
    unpack_user(&u, out);
  }
  pthread_mutex_unlock(&sh->mu);
  return e != NULL;
}

void authcache_user_put(struct authcache *ac, const struct user *u, uint64_t gen, int64_t now_us) {
  size_t n = strlen(u->id);
  struct entry *e = entry_new(text_hash(ac, u->id, n), u->id, n, pack_user, u);
  e->gen = gen;
  e->filled_us = now_us;
  fresh_insert(ac, AUTHCACHE_USERS, e);
}

/* --- memberships --------------------------------------------------------------------- */

/* "user_id\0org_ref" into key; its length, or 0 when it cannot be a key. */
static size_t member_key(const char *user_id, const char *org_ref, char key[MEMBER_KEY_MAX]) {
  size_t a = strlen(user_id), b = strlen(org_ref);
  if (a + 1 + b > MEMBER_KEY_MAX) return 0;
  memcpy(key, user_id, a);
  key[a] = '\0';
  memcpy(key + a + 1, org_ref, b);
  return a + 1 + b;
}

struct member_value {
  const struct org *org;
  enum role role;
};

static void pack_member(struct packer *pk, const void *arg) {
  const struct member_value *m = arg;
  const struct org *o = m->org;
  pack_str(pk, o->id);
  pack_str(pk, o->name);
  pack_str(pk, o->slug);
  pack_str(pk, o->plan);
  pack_str(pk, o->billing_status);
  pack_i64(pk, o->created_at);
  pack_i64(pk, o->updated_at);
  pack_u32(pk, (uint32_t)m->role);
  pack_str(pk, o->settings);
}

static void unpack_member(struct unpacker *u, struct org *o, enum role *role) {
  unpack_str(u, o->id, sizeof(o->id));
  unpack_str(u, o->name, sizeof(o->name));
  unpack_str(u, o->slug, sizeof(o->slug));
  unpack_str(u, o->plan, sizeof(o->plan));
  unpack_str(u, o->billing_status, sizeof(o->billing_status));
  o->created_at = unpack_i64(u);
  o->updated_at = unpack_i64(u);
  *role = (enum role)unpack_u32(u);
  unpack_str(u, o->settings, sizeof(o->settings));
}

bool authcache_member_get(struct authcache *ac, const char *user_id, const char *org_ref,
                          uint64_t gen, int64_t now_us, struct org *org, enum role *role,
                          uint64_t *stamp) {
  char key[MEMBER_KEY_MAX];
  size_t n = member_key(user_id, org_ref, key);
  if (n == 0) return false;
  struct shard *sh;
  struct entry *e = fresh_find(ac, AUTHCACHE_MEMBERSHIPS, key, n, gen, now_us, &sh);
  if (e) {
    struct unpacker u = entry_value(e);
    unpack_member(&u, org, role);
    *stamp = e->stamp;
  }
  pthread_mutex_unlock(&sh->mu);
  return e != NULL;
}

uint64_t authcache_member_put(struct authcache *ac, const char *user_id, const char *org_ref,
                              const struct org *org, enum role role, uint64_t gen, int64_t now_us) {
  char key[MEMBER_KEY_MAX];
  size_t n = member_key(user_id, org_ref, key);
  if (n == 0) return 0;
  struct member_value m = {org, role};
  struct entry *e = entry_new(text_hash(ac, key, n), key, n, pack_member, &m);
  e->gen = gen;
  e->filled_us = now_us;
  uint64_t stamp = atomic_fetch_add(&ac->next_stamp, 1);
  e->stamp = stamp;
  return fresh_insert(ac, AUTHCACHE_MEMBERSHIPS, e) ? stamp : 0;
}

/* The membership entry with key[0..n) and stamp, its shard locked (the
 * caller unlocks *shp), or NULL. */
static struct entry *stamped_find(struct authcache *ac, const char *key, size_t n, uint64_t stamp,
                                  struct shard **shp) {
  uint64_t hash = text_hash(ac, key, n);
  struct shard *sh = shard_for(ac, AUTHCACHE_MEMBERSHIPS, hash);
  *shp = sh;
  pthread_mutex_lock(&sh->mu);
  struct entry *e = shard_find(sh, hash, key, n);
  return e && e->stamp == stamp ? e : NULL;
}

bool authcache_member_json_get(struct authcache *ac, const char *user_id, const char *org_ref,
                               uint64_t stamp, struct buf *out) {
  char key[MEMBER_KEY_MAX];
  size_t n = stamp ? member_key(user_id, org_ref, key) : 0;
  if (n == 0) return false;
  struct shard *sh;
  struct entry *e = stamped_find(ac, key, n, stamp, &sh);
  bool copied = e && e->json && buf_append(out, e->json, e->json_len) == 0;
  pthread_mutex_unlock(&sh->mu);
  return copied;
}

void authcache_member_json_put(struct authcache *ac, const char *user_id, const char *org_ref,
                               uint64_t stamp, const char *json, size_t len) {
  char key[MEMBER_KEY_MAX];
  size_t n = stamp ? member_key(user_id, org_ref, key) : 0;
  if (n == 0) return;
  char *copy = xmemdup(json, len); /* outside the lock */
  struct shard *sh;
  struct entry *e = stamped_find(ac, key, n, stamp, &sh);
  if (e && !e->json && shard_make_room(sh, 0, len, e)) {
    e->json = copy;
    e->json_len = len;
    e->charge += len;
    sh->bytes += len;
    copy = NULL;
  }
  pthread_mutex_unlock(&sh->mu);
  xfree(copy);
}

/* --- observability --------------------------------------------------------------------- */

void authcache_stats(struct authcache *ac, struct authcache_stats *out) {
  memset(out, 0, sizeof(*out));
  for (size_t t = 0; t < AUTHCACHE_TABLES; t++) {
    for (size_t i = 0; i < AUTHCACHE_SHARDS; i++) {
      struct shard *sh = &ac->tables[t].shards[i];
      pthread_mutex_lock(&sh->mu);
      out->entries[t] += sh->count;
      out->bytes[t] += sh->bytes;
      out->hits[t] += sh->hits;
      out->misses[t] += sh->misses;
      out->evictions[t] += sh->evictions;
      pthread_mutex_unlock(&sh->mu);
    }
  }
}

int authcache_render_metrics(struct authcache *ac, struct buf *out) {
  if (!ac) return 0;
  struct authcache_stats st;
  authcache_stats(ac, &st);
  int rc = buf_printf(out,
                      "# HELP keel_authcache_entries Session-authentication cache entries.\n"
                      "# TYPE keel_authcache_entries gauge\n");
  for (size_t t = 0; t < AUTHCACHE_TABLES; t++) {
    rc |= buf_printf(out, "keel_authcache_entries{table=\"%s\"} %zu\n", table_names[t],
                     st.entries[t]);
  }
  rc |= buf_printf(out,
                   "# HELP keel_authcache_bytes Bytes held by the session-authentication cache.\n"
                   "# TYPE keel_authcache_bytes gauge\n");
  for (size_t t = 0; t < AUTHCACHE_TABLES; t++) {
    rc |= buf_printf(out, "keel_authcache_bytes{table=\"%s\"} %zu\n", table_names[t], st.bytes[t]);
  }
  rc |= buf_printf(out,
                   "# HELP keel_authcache_lookups_total Session-authentication cache lookups.\n"
                   "# TYPE keel_authcache_lookups_total counter\n");
  for (size_t t = 0; t < AUTHCACHE_TABLES; t++) {
    rc |= buf_printf(out,
                     "keel_authcache_lookups_total{table=\"%s\",result=\"hit\"} %llu\n"
                     "keel_authcache_lookups_total{table=\"%s\",result=\"miss\"} %llu\n",
                     table_names[t], (unsigned long long)st.hits[t], table_names[t],
                     (unsigned long long)st.misses[t]);
  }
  rc |= buf_printf(out,
                   "# HELP keel_authcache_evictions_total Entries evicted for room.\n"
                   "# TYPE keel_authcache_evictions_total counter\n");
  for (size_t t = 0; t < AUTHCACHE_TABLES; t++) {
    rc |= buf_printf(out, "keel_authcache_evictions_total{table=\"%s\"} %llu\n", table_names[t],
                     (unsigned long long)st.evictions[t]);
  }
  return rc ? -1 : 0;
}
