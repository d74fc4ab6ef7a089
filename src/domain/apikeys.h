/*
 * apikeys.h — API keys (R-KEY-1..6): format, checksum, creation and
 * verification with an in-process cache.
 *
 * Format (42 characters):
 *     kl_live_ | kl_test_        8   the environment tag
 *     28 base62 characters           random: 28 * log2(62) ≈ 166.7 bits,
 *                                    each drawn uniformly (libsodium's
 *                                    randombytes_uniform, rejection sampling)
 *     6 base62 characters            checksum: CRC-32 (IEEE 802.3, as in zlib)
 *                                    of the 36 characters before it, written
 *                                    as a 6-digit base62 number, most
 *                                    significant digit first, '0'-padded
 * base62 digits are 0-9, A-Z, a-z (values 0..61 in that order). The checksum
 * lets keel (and secret scanners) refuse a mistyped or truncated key without
 * a store lookup; it is not a security measure. The display prefix is the
 * first 12 characters ("kl_live_" and 4 random characters).
 *
 * Stored: HMAC-SHA-256(mac_key, key), with mac_key = HMAC-SHA-256(server
 * secret, "keel api key mac v1"), never the key.
 *
 * Verification (struct apikeys_verifier): the key's shape → its
 * fingerprint (SipHash-2-4-128 under a random per-process key) → a bounded
 * cache keyed by the fingerprint (positive entries live 60 s, negative ones
 * 5 s; CLOCK eviction; 16 shards, one mutex each) → on a miss only, the
 * checksum (every cached key passed it), the HMAC and the store. Cached
 * entries compare the whole fingerprint in constant time; why a
 * fingerprint hit is as safe as an HMAC hit is argued in apikeys.c. Expiry is checked on every use
 * against the caller's clock, so a cached key expires on time. Revocation on this node evicts at
 * once (apikeys_verifier_evict, by the HMAC the store holds); other nodes within the TTL.
 *
 * A key stops working when it is revoked, expired, its org is deleted, or
 * the user who created it is suspended (R-IAM-11: suspended users cannot use
 * keys; keys created by the CLI have no creator and are not affected).
 *
 * last_used_at: a verification that finds a key valid records the use in
 * memory when the key's last recorded use is a minute old or more;
 * apikeys_verifier_flush writes the recorded uses in one store write (the
 * api layer calls it from a background thread every few seconds).
 */
#ifndef KEEL_DOMAIN_APIKEYS_H
#define KEEL_DOMAIN_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"
#include "store/keys.h"
#include "store/orgs.h"
#include "store/store.h"

#define APIKEY_MAX          80 /* bytes of a key buffer, with NUL */
#define APIKEY_LEN          42 /* characters of a key */
#define APIKEY_TAG_LEN      8  /* "kl_live_" / "kl_test_" */
#define APIKEY_RANDOM_LEN   28
#define APIKEY_CHECKSUM_LEN 6
#define APIKEY_MAC_KEY_LEN  32

/* --- format ------------------------------------------------------------- */

enum apikey_format {
  APIKEY_FORMAT_OK = 0,
  APIKEY_FORMAT_BAD_TAG,      /* not kl_live_ / kl_test_ */
  APIKEY_FORMAT_BAD_LENGTH,   /* not 42 characters */
  APIKEY_FORMAT_BAD_CHARS,    /* a character outside base62 after the tag */
  APIKEY_FORMAT_BAD_CHECKSUM, /* well-formed, but the checksum does not match */
};

/* A fresh key (NUL-terminated) for live (kl_live_) or test (kl_test_). */
void apikeys_generate(bool live, char out[APIKEY_MAX]);
/* Checks shape and checksum; *live (may be NULL) gets the tag's kind. */
enum apikey_format apikeys_check_format(struct slice key, bool *live);
/* The display prefix (first APIKEY_PREFIX_LEN characters, fewer when the
 * key is shorter), NUL-terminated. */
void apikeys_display_prefix(struct slice key, char out[16]);
/* CRC-32 (IEEE 802.3 polynomial, reflected, init and final xor ~0). */
uint32_t apikeys_crc32(const void *data, size_t n);
/* The checksum characters for the first n characters of a key. */
void apikeys_checksum(const char *text, size_t n, char out[APIKEY_CHECKSUM_LEN]);

/* --- scopes and environments ------------------------------------------- */

/* "ingest" | "read" | "admin" for one SCOPE_* bit; NULL otherwise. */
const char *apikeys_scope_name(unsigned scope_bit);
/* The bit of a scope name, or 0 when unknown. */
unsigned apikeys_scope_parse(struct slice name);
/* Every scope bit, in display order (for loops). */
extern const unsigned apikeys_scope_bits[3];
/* True for production | staging | development | test. */
bool apikeys_env_valid(const char *env);

/* --- MAC ----------------------------------------------------------------- */

/* The key-hashing key from the server secret (dispatch.c and the CLI use it,
 * so both hash alike). */
void apikeys_mac_key_derive(const uint8_t *secret, size_t secret_len,
                            uint8_t out[APIKEY_MAC_KEY_LEN]);
/* HMAC-SHA-256(mac_key, key). */
void apikeys_hash(const uint8_t mac_key[APIKEY_MAC_KEY_LEN], struct slice key,
                  uint8_t out[APIKEY_HASH_LEN]);

/* --- creation ------------------------------------------------------------ */

#define APIKEY_RATE_OVERRIDE_MAX INT64_C(1000000000) /* per minute */

struct apikey_spec {
  const char *name;           /* 1..APIKEY_NAME_MAX bytes */
  unsigned scopes;            /* SCOPE_* bits, at least one */
  const char *env;            /* NULL: "production" for live keys, "test" otherwise */
  bool live;                  /* kl_live_ (true) or kl_test_ */
  const char *created_by;     /* user id, or NULL (CLI) */
  int64_t expires_at;         /* µs; 0: never; must be after now */
  int64_t rate_limit_per_min; /* 0: the plan's; else 1..APIKEY_RATE_OVERRIDE_MAX */
};

struct apikey_created {
  char id[ID_STR_SIZE];
  char key[APIKEY_MAX]; /* the full key: shown once, then wiped by the caller */
  char prefix[16];
  struct apikey_row row; /* what was stored */
  /* When the plan's key limit refused the key (KEEL_EDENIED): */
  char plan[16];
  int64_t plan_limit;
};

/*
 * Creates a key in scope inside tx (a store_write job): validates spec,
 * checks the org's plan key limit (active keys, counted in tx), generates
 * the key and stores its HMAC under mac_key (APIKEY_MAC_KEY_LEN bytes).
 * now_us stamps created_at and judges expires_at. Returns 0, KEEL_EINVAL
 * (*why: a message), KEEL_ENOTFOUND (no such org), or KEEL_EDENIED (plan
 * limit; out->plan and out->plan_limit set, *why names it).
 */
int apikeys_create(struct store_tx *tx, const struct org_scope *scope,
                   const struct apikey_spec *spec, const uint8_t *mac_key, int64_t now_us,
                   struct apikey_created *out, const char **why);

/* --- verification ---------------------------------------------------------- */

enum apikey_verdict {
  APIKEY_VALID = 0,
  APIKEY_MALFORMED,    /* shape (tag, length, characters) */
  APIKEY_BAD_CHECKSUM, /* well-formed, checksum wrong: a typo */
  APIKEY_UNKNOWN,      /* no such key */
  APIKEY_REVOKED,
  APIKEY_EXPIRED,
  APIKEY_ORG_DELETED,
  APIKEY_CREATOR_SUSPENDED, /* the user who created it is suspended */
  APIKEY_MISS,              /* not cached, and the store may not be used */
  APIKEY_STORE_ERROR,
};

/* A valid key as the request sees it (copied out of the cache). */
struct apikey_identity {
  char id[ID_STR_SIZE];
  char org_id[ID_STR_SIZE];
  char prefix[16];
  char env[16];
  bool live;
  unsigned scopes;
  int64_t rate_limit_per_min; /* 0: the plan's */
  int64_t expires_at;         /* 0: never */
};

struct apikeys_verifier_options {
  const uint8_t *mac_key;    /* APIKEY_MAC_KEY_LEN bytes (copied) */
  size_t capacity;           /* cache entries (>= 16); 0: APIKEY_CACHE_MAX */
  int64_t ttl_us;            /* positive entries; 0: 60 s */
  int64_t negative_ttl_us;   /* unknown keys; 0: 5 s */
  int64_t touch_interval_us; /* last_used_at granularity; 0: 60 s */
  size_t touches_max;        /* pending last-use records; 0: APIKEY_TOUCHES_MAX */
};

struct apikeys_verifier;

struct apikeys_verifier *apikeys_verifier_new(const struct apikeys_verifier_options *opt);
/* Frees everything (pending last-use records are dropped: flush first). */
void apikeys_verifier_free(struct apikeys_verifier *v);

/*
 * Verifies key at now_us (the wall clock, for expiry). store: where to look
 * on a cache miss, or NULL to use the cache only (then a miss is
 * APIKEY_MISS: the I/O-thread fast path). On APIKEY_VALID, *id is filled and,
 * when org is not NULL, *org too (id, name, slug, plan, billing status,
 * settings, times). For other verdicts *id holds at least the display
 * prefix. Thread-safe.
 */
enum apikey_verdict apikeys_verify(struct apikeys_verifier *v, struct store *store,
                                   struct slice key, int64_t now_us, struct apikey_identity *id,
                                   struct org *org);
/* Forgets a key by its HMAC (revocation, changes): visits every shard (the
 * HMAC does not tell which one holds the key), for rare events.
 * Thread-safe. */
void apikeys_verifier_evict(struct apikeys_verifier *v, const uint8_t hash[APIKEY_HASH_LEN]);
/* Forgets every cached key of an org (deleted, plan changed, a creator
 * suspended): a scan of the whole cache, for rare events. Returns how many
 * entries went. Thread-safe. */
/* Evicts every cached key of org_id (NULL: of every org). */
size_t apikeys_verifier_evict_org(struct apikeys_verifier *v, const char *org_id);
/* The HMAC under the verifier's key (precomputed pads; thread-safe).
 * apikeys_verify computes it only on a cache miss, to ask the store. */
void apikeys_verifier_hash(const struct apikeys_verifier *v, struct slice key,
                           uint8_t out[APIKEY_HASH_LEN]);

struct apikeys_cache_stats {
  size_t entries, capacity;
  uint64_t hits, misses, evictions;
  uint64_t touches_dropped; /* last-use records lost to a full buffer or a failed write */
  uint64_t hmacs;           /* HMACs computed by apikeys_verify: one per store lookup */
};
void apikeys_verifier_stats(struct apikeys_verifier *v, struct apikeys_cache_stats *out);

/*
 * Writes the recorded last uses in one store_write job. Returns 0 (also when
 * there was nothing to write) or the store's status (the records are then
 * dropped and counted). Thread-safe; called by one flusher at a time.
 */
int apikeys_verifier_flush(struct apikeys_verifier *v, struct store *store);
/* Records waiting for the next flush. */
size_t apikeys_verifier_pending(struct apikeys_verifier *v);

#endif
