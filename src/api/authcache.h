/*
 * api/authcache.h — the in-process cache of what session authentication
 * reads, so that a session-authenticated read needs neither the JWT decode
 * nor the store (and can be answered on the I/O thread: dispatch.c,
 * ROUTE_INLINE_SESSION; docs/internals/authcache.md).
 *
 * Three tables, each split in shards (a mutex each) and bounded by entries
 * and by bytes (core/limits.h AUTHCACHE_*; the least recently used entries
 * go first):
 *
 *  - sessions: a cookie value → its verified claims, keyed by the
 *    BLAKE2b-128 of the token's signature (under a random per-process key:
 *    the signature is never kept) and the signed part as sent. Valid
 *    while session_claims_current(): a token's validity depends on nothing
 *    else (revocation goes through the user's session version, below).
 *  - users: user id → the user, without the password hash.
 *  - memberships: (user id, org reference as sent — id or slug) → the org
 *    and the user's role in it; plus, once a handler attached it, the org's
 *    rendered JSON for that role.
 *
 * Users and memberships are valid only while the store's write generation
 * is the one the filler noted BEFORE its store read (store.h
 * store_write_generation), and for max_age_us after the fill. So any write
 * committed by this process invalidates every one of them at once, and a
 * write by another process (the CLI, another node) is seen within max_age_us.
 * A stale entry found by a lookup is dropped.
 *
 * Values are copied in and out; nothing returned points into the cache.
 * Times are passed in (tests inject them): now_s is wall-clock seconds
 * (time_now_us, with the --dev test offset) for session expiry, now_us a
 * monotonic time (time_mono_us) for the age bound.
 *
 * Thread-safety: every function may be called from any thread. None blocks
 * on anything but a shard mutex, which is held only for a lookup and a copy
 * (never across a store call): callable on HTTP I/O threads.
 */
#ifndef KEEL_API_AUTHCACHE_H
#define KEEL_API_AUTHCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/slice.h"
#include "domain/rbac.h"
#include "domain/session.h"
#include "store/orgs.h"
#include "store/users.h"

struct api;
struct authcache;

struct authcache_options {
  size_t sessions_max, sessions_bytes;       /* entries, bytes */
  size_t users_max, users_bytes;             /* entries, bytes */
  size_t memberships_max, memberships_bytes; /* entries, bytes */
  int64_t max_age_us;                        /* users and memberships */
};

/* The bounds of core/limits.h. */
void authcache_default_options(struct authcache_options *opt);
/* opt NULL: the defaults. Never NULL. */
struct authcache *authcache_new(const struct authcache_options *opt);
/* Frees every entry. NULL is fine. */
void authcache_free(struct authcache *ac);

/* The api's cache (dispatch.c); NULL when the api has no store. */
struct authcache *api_authcache(const struct api *api);

/* --- sessions -------------------------------------------------------------- */

/* The claims of a cookie value verified before, still current at now_s:
 * copied to *out, true. false on a miss (an expired entry is dropped). */
bool authcache_session_get(struct authcache *ac, struct slice token, int64_t now_s,
                           struct session_claims *out);
/* Remembers that token decoded (signature verified) to *c. */
void authcache_session_put(struct authcache *ac, struct slice token,
                           const struct session_claims *c);

/* --- users ----------------------------------------------------------------- */

/* The user filled at generation gen, younger than max_age at now_us: copied
 * to *out (password_hash empty), true. */
bool authcache_user_get(struct authcache *ac, const char *user_id, uint64_t gen, int64_t now_us,
                        struct user *out);
/* Remembers *u as read from the store after the write generation was gen
 * (noted before the read), at now_us. The password hash is not kept. */
void authcache_user_put(struct authcache *ac, const struct user *u, uint64_t gen, int64_t now_us);

/* --- memberships ----------------------------------------------------------- */

/*
 * The org user_id reached as org_ref, and the role, filled at generation gen
 * and younger than max_age at now_us: *org (only the fields of struct org,
 * settings at its length), *role and *stamp set, true. stamp names this
 * entry's content, for the rendered-JSON functions below.
 */
bool authcache_member_get(struct authcache *ac, const char *user_id, const char *org_ref,
                          uint64_t gen, int64_t now_us, struct org *org, enum role *role,
                          uint64_t *stamp);
/* Remembers a membership read from the store after the generation was gen.
 * Returns its stamp (never 0), or 0 when it could not be kept (too big). */
uint64_t authcache_member_put(struct authcache *ac, const char *user_id, const char *org_ref,
                              const struct org *org, enum role role, uint64_t gen, int64_t now_us);
/*
 * The org's JSON for this member, rendered by a handler from the entry with
 * stamp (so from the very org and role the request was authorised with):
 * appended to out, true. false when none is attached, or the entry is gone
 * or was refilled since.
 */
bool authcache_member_json_get(struct authcache *ac, const char *user_id, const char *org_ref,
                               uint64_t stamp, struct buf *out);
/* Attaches json (copied) to the entry with stamp, if it is still there. */
void authcache_member_json_put(struct authcache *ac, const char *user_id, const char *org_ref,
                               uint64_t stamp, const char *json, size_t len);

/* --- observability --------------------------------------------------------- */

enum authcache_table {
  AUTHCACHE_SESSIONS = 0,
  AUTHCACHE_USERS,
  AUTHCACHE_MEMBERSHIPS,
  AUTHCACHE_TABLES
};

struct authcache_stats {
  size_t entries[AUTHCACHE_TABLES];
  size_t bytes[AUTHCACHE_TABLES];
  uint64_t hits[AUTHCACHE_TABLES];
  uint64_t misses[AUTHCACHE_TABLES];    /* stale entries found count as misses */
  uint64_t evictions[AUTHCACHE_TABLES]; /* for room */
};
void authcache_stats(struct authcache *ac, struct authcache_stats *out);
/* Prometheus text (keel_authcache_*). Returns 0, or -1 when out is full. */
int authcache_render_metrics(struct authcache *ac, struct buf *out);

#endif
