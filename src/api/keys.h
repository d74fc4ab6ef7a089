/*
 * api/keys.h — the API-keys area's server-wide state and its hooks into the
 * request pipeline (keys.c).
 *
 *  - keys_start/keys_stop: the key verifier (cache), the rate limiter and the
 *    last_used_at flusher thread, created by api_new and stopped (flushing)
 *    by api_free, which must run while the store is still open.
 *  - mw_keys_authenticate: the key step of the middleware (mw.c).
 *  - keys_preauthenticate: the I/O-thread fast path for ROUTE_INLINE_KEY
 *    routes (dispatch.c): everything the key step does, from the cache only.
 */
#ifndef KEEL_API_KEYS_H
#define KEEL_API_KEYS_H

#include <stdbool.h>

#include "core/buf.h"

struct api;
struct ctx;
struct keys;

/* Starts the area for api (api_key_mac_key and api_store must already
 * answer). Never NULL. */
struct keys *keys_start(struct api *api);
/* Stops the flusher after a last flush of last_used_at; frees. NULL is fine. */
void keys_stop(struct keys *k);
/* The area's state of an api (dispatch.c). */
struct keys *api_keys(const struct api *api);

/*
 * Authenticates a bearer API key for an AUTH_KEY / AUTH_ANY route. Without
 * an Authorization header: 401 when required, else 0 with no actor (the
 * session path runs). With one: the key is verified; on success ctx->actor is
 * ACTOR_KEY with ctx->key, ctx->scope, ctx->org set, the {org} parameter and
 * the route's scopes checked, and the rate limits applied (RateLimit headers
 * set). Returns 0 to go on, or 1 after answering (401, 403, 404, 429, 503).
 * May block (store, audit): worker threads only — unless the request was
 * pre-authenticated, which makes this return 0 at once.
 */
int mw_keys_authenticate(struct ctx *ctx, bool required);

enum keys_preauth {
  KEYS_PREAUTH_DEFER = 0, /* needs the store or an audit write: use the worker pool */
  KEYS_PREAUTH_READY,     /* authenticated (ctx filled): run the request here */
  KEYS_PREAUTH_ANSWERED   /* the response is set (401, 404, 429) */
};
/* Never blocks. For routes flagged ROUTE_INLINE_KEY, on an I/O thread. */
enum keys_preauth keys_preauthenticate(struct ctx *ctx);

/*
 * Call after a change to an org that its keys' cached state depends on (the
 * org deleted, its plan changed, a user suspended — pass each org the user
 * created keys in): this process forgets the org's cached keys, so the
 * change applies to them at once instead of within the cache TTL (60 s).
 * org_id NULL: every org (a user suspended, whose keys may be anywhere).
 * Thread-safe; never blocks on the store.
 */
void keys_org_changed(struct api *api, const char *org_id);

/* Prometheus text for the area (rate-limit decisions, key cache). Returns 0
 * or -1 when out is full. */
int keys_render_metrics(struct keys *k, struct buf *out);

#endif
