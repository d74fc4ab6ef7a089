/*
 * mw.c — request middleware: authentication, CSRF, org scope, permissions,
 * and the helpers handlers use to act for the authenticated actor (audit
 * entries, session cookies).
 *
 * Order (each step may answer and stop):
 *   1. auth kind of the route: PUBLIC passes; SESSION/PLATFORM read the
 *      session cookie; KEY/ANY read a bearer key (key middleware, keys.c)
 *      or, for ANY, the session cookie;
 *   2. the user's session version and suspension: a bumped session version
 *      (logout everywhere, password change) or a suspension revokes the
 *      token at once;
 *   3. CSRF for cookie-authenticated state changes: X-CSRF-Token must match
 *      the session's token, and Origin, when sent, must be allowed;
 *   4. {org} in the path: resolved for this user (id or slug); not a member
 *      → 404 (existence is not revealed);
 *   5. the route's permission for the user's role: denied → 403 and an audit
 *      entry.
 * Sessions older than SESSION_RENEW_AFTER_S get a fresh cookie (sliding
 * expiry).
 *
 * The cookie's claims, the user (2) and the membership (4) come from the
 * session-authentication cache when it has them (api/authcache.h): for safe
 * methods only, and never to refuse — a refusal is decided again from the
 * store first. Any write committed by this process invalidates cached users
 * and memberships at once; writes by other processes are seen within
 * AUTHCACHE_MAX_AGE_US (docs/internals/authcache.md). Store reads fill the
 * cache. mw_session_preauthenticate is the same from the cache alone, for the
 * I/O thread.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/authcache.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "domain/audit.h"
#include "store/orgs.h"
#include "store/users.h"

int mw_keys_authenticate(struct ctx *ctx, bool required); /* keys.c */

const char *ctx_ip(struct ctx *ctx) {
  return ctx->req->remote_ip;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, size_t left) {
  unsigned char c = p[0];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || n > left || (n == 2 && c < 0xc2)) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
  }
  return n;
}

/*
 * The User-Agent as it is recorded in audit entries: at most 256 bytes, cut
 * at a character boundary, control characters and invalid UTF-8 replaced by
 * '?', so the value always encodes in the canonical JSON the chain hashes.
 */
const char *ctx_user_agent(struct ctx *ctx) {
  struct slice ua = http_req_header(ctx->req, "User-Agent");
  if (!ua.p) return NULL;
  size_t max = 256;
  char *out = arena_alloc(ctx->arena, max + 1);
  size_t n = 0;
  const unsigned char *p = (const unsigned char *)ua.p;
  for (size_t i = 0; i < ua.len;) {
    size_t k = utf8_seq(p + i, ua.len - i);
    if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
      if (n + 1 > max) break;
      out[n++] = '?';
      i++;
      continue;
    }
    if (n + k > max) break;
    memcpy(out + n, p + i, k);
    n += k;
    i += k;
  }
  out[n] = '\0';
  return out;
}

int ctx_audit(struct ctx *ctx, struct store_tx *tx, const char *action, const char *resource_type,
              const char *resource_id, bool success, json_t *details) {
  struct audit_entry e = {
      .org_id = ctx->has_org ? ctx->scope.org_id : NULL,
      .actor_type = ctx->actor == ACTOR_USER  ? "user"
                    : ctx->actor == ACTOR_KEY ? "api_key"
                                              : "system",
      .actor_id = ctx->actor == ACTOR_USER  ? ctx->user.id
                  : ctx->actor == ACTOR_KEY ? ctx->key.prefix
                                            : NULL,
      .action = action,
      .resource_type = resource_type,
      .resource_id = resource_id,
      .ip = ctx_ip(ctx),
      .user_agent = ctx_user_agent(ctx),
      .success = success,
      .details = details,
  };
  return audit_append(tx, &e, NULL);
}

struct audit_now {
  struct ctx *ctx;
  const char *action, *rtype, *rid;
  bool success;
  json_t *details;
};

static int audit_now_tx(struct store_tx *tx, void *arg) {
  struct audit_now *a = arg;
  return ctx_audit(a->ctx, tx, a->action, a->rtype, a->rid, a->success, a->details);
}

int ctx_audit_now(struct ctx *ctx, const char *action, const char *resource_type,
                  const char *resource_id, bool success, json_t *details) {
  struct audit_now a = {ctx, action, resource_type, resource_id, success, details};
  int rc = store_write(api_store(ctx->api), audit_now_tx, &a);
  if (rc) log_error("audit.write_failed", LS("action", action), LS("status", keel_strerror(rc)));
  return rc;
}

/* --- cookies ------------------------------------------------------------ */

/* The value of cookie name in the Cookie header(s), or an empty slice. */
static struct slice cookie_value(struct http_req *req, const char *name) {
  size_t namelen = strlen(name);
  for (size_t i = 0; i < req->nheaders; i++) {
    if (!slice_eq_cstr_nocase(req->headers[i].name, "Cookie")) continue;
    struct slice rest = req->headers[i].value;
    while (rest.len) {
      struct slice pair, k, v;
      slice_cut(rest, ';', &pair, &rest);
      pair = slice_trim(pair);
      if (!slice_cut(pair, '=', &k, &v)) continue;
      if (k.len == namelen && memcmp(k.p, name, namelen) == 0) return v;
    }
  }
  return SLICE_NULL;
}

void api_set_session_cookie(struct ctx *ctx, const struct session_claims *claims) {
  struct buf token;
  buf_init(&token, SESSION_TOKEN_MAX);
  if (session_encode(claims, api_session_keys(ctx->api), &token) != 0) {
    buf_free(&token);
    log_error("session.encode_failed", LS("user_id", claims->sub));
    return;
  }
  int64_t max_age = claims->exp - time_now_us() / US_PER_SEC;
  if (max_age < 0) max_age = 0;
  char *cookie =
      arena_printf(ctx->arena, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s",
                   SESSION_COOKIE, token.data, (long long)max_age, ctx->req->tls ? "; Secure" : "");
  http_resp_header(ctx->req, "Set-Cookie", cookie);
  buf_free(&token);
}

void api_clear_session_cookie(struct ctx *ctx) {
  char *cookie = arena_printf(ctx->arena, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s",
                              SESSION_COOKIE, ctx->req->tls ? "; Secure" : "");
  http_resp_header(ctx->req, "Set-Cookie", cookie);
}

/* --- sessions ----------------------------------------------------------- */

/*
 * Where the session steps take the user and the membership from. Safe
 * methods (GET, HEAD, OPTIONS) may be authorised from the session-
 * authentication cache (api/authcache.h); requests that change state always
 * read the store. A refusal is never decided on cached data: a step that
 * would refuse while something came from the cache returns MW_RECHECK
 * before answering, and mw_run runs the steps again from the store.
 */
struct steps {
  bool use_cache;   /* users and memberships may come from the cache */
  bool user_cached; /* ctx->user came from it */
  bool org_cached;  /* ctx->org and ctx->role came from it */
};
#define MW_RECHECK 2

static bool from_cache(const struct steps *st) {
  return st->user_cached || st->org_cached;
}

struct load_user {
  const char *id;
  struct user *out;
};

static int load_user_tx(struct store_tx *tx, void *arg) {
  struct load_user *lu = arg;
  return store_user_get(tx, lu->id, lu->out);
}

/* The claims of a cookie value: a verified token from the cache, or decoded
 * now (then cached). NULL when the token is invalid or expired. */
static struct session_claims *claims_of(struct ctx *ctx, struct slice token, int64_t now_s) {
  struct authcache *ac = api_authcache(ctx->api);
  struct session_claims *c = arena_alloc(ctx->arena, sizeof(*c));
  if (ac && authcache_session_get(ac, token, now_s, c)) return c;
  if (session_decode(token, api_session_keys(ctx->api), now_s, c) != 0) return NULL;
  if (ac) authcache_session_put(ac, token, c);
  return c;
}

/* Fills ctx->user for user_id from the cache (when allowed) or the store
 * (then cached). The password hash is never kept in ctx. Returns 0 or a
 * store status. */
static int user_of(struct ctx *ctx, const char *user_id, struct steps *st) {
  struct authcache *ac = api_authcache(ctx->api);
  struct store *store = api_store(ctx->api);
  st->user_cached =
      ac && st->use_cache &&
      authcache_user_get(ac, user_id, store_write_generation(store), time_mono_us(), &ctx->user);
  if (st->user_cached) return 0;
  /* Generation and age are noted before the read: a write that commits
   * during it leaves the entry stale, never wrong. */
  uint64_t gen = ac ? store_write_generation(store) : 0;
  int64_t read_at = time_mono_us();
  struct load_user lu = {user_id, &ctx->user};
  int rc = store_read(store, load_user_tx, &lu);
  if (rc) return rc;
  crypto_wipe(ctx->user.password_hash, sizeof(ctx->user.password_hash));
  if (ac) authcache_user_put(ac, &ctx->user, gen, read_at);
  return 0;
}

/*
 * Authenticates the session cookie. Returns 0 (ctx->actor set), 1 after
 * answering 401, or MW_RECHECK when the user from the cache would be
 * refused.
 */
static int authenticate_session(struct ctx *ctx, struct steps *st) {
  struct slice token = cookie_value(ctx->req, SESSION_COOKIE);
  if (!token.p || token.len == 0) {
    api_problem(ctx, "unauthorized",
                ctx->route->auth == AUTH_ANY
                    ? "send an API key (Authorization: Bearer kl_...) or sign in first"
                    : "sign in first: no session cookie was sent");
    return 1;
  }
  struct session_claims *c = claims_of(ctx, token, time_now_us() / US_PER_SEC);
  if (!c) {
    api_clear_session_cookie(ctx);
    api_problem(ctx, "unauthorized", "the session is invalid or has expired; sign in again");
    return 1;
  }
  int rc = user_of(ctx, c->sub, st);
  if (rc == KEEL_ENOTFOUND ||
      (rc == 0 && (ctx->user.session_version != c->sv || ctx->user.suspended))) {
    if (from_cache(st)) return MW_RECHECK;
    api_clear_session_cookie(ctx);
    api_problem(ctx, "unauthorized", "the session has been revoked; sign in again");
    return 1;
  }
  if (rc) {
    api_status(ctx, rc);
    return 1;
  }
  ctx->actor = ACTOR_USER;
  ctx->session = c;
  return 0;
}

/* Sessions older than SESSION_RENEW_AFTER_S get a fresh cookie (sliding
 * expiry), whatever the answer: the user was authenticated. */
static void renew_if_due(struct ctx *ctx, int64_t now_s) {
  struct session_claims *c = ctx->session;
  if (now_s - c->iat < SESSION_RENEW_AFTER_S) return;
  c->iat = now_s;
  session_set_expiry(c);
  api_set_session_cookie(ctx, c);
}

static bool method_changes_state(enum http_method m) {
  return m != HTTP_GET && m != HTTP_HEAD && m != HTTP_OPTIONS;
}

/* scheme://host[:port] of a URL, into out. */
static void url_origin(const char *url, char *out, size_t n) {
  const char *p = strstr(url, "://");
  const char *end = p ? strchr(p + 3, '/') : NULL;
  size_t len = end ? (size_t)(end - url) : strlen(url);
  if (len >= n) len = n - 1;
  memcpy(out, url, len);
  out[len] = '\0';
}

static bool origin_allowed(struct ctx *ctx, struct slice origin) {
  const struct config *cfg = api_config(ctx->api);
  if (cfg->http_allowed_origins && cfg->http_allowed_origins[0]) {
    struct slice rest = slice_from_cstr(cfg->http_allowed_origins);
    while (rest.len) {
      struct slice one;
      slice_cut(rest, ',', &one, &rest);
      if (slice_eq(slice_trim(one), origin)) return true;
    }
    return false;
  }
  char own[256];
  url_origin(cfg->public_url, own, sizeof(own));
  return slice_eq_cstr(origin, own);
}

static int check_csrf(struct ctx *ctx) {
  struct slice origin = http_req_header(ctx->req, "Origin");
  const char *why = NULL;
  if (origin.p && !origin_allowed(ctx, origin)) {
    why = "the request's Origin is not allowed";
  } else {
    struct slice tok = http_req_header(ctx->req, "X-CSRF-Token");
    if (!tok.p || !session_csrf_ok(api_session_keys(ctx->api), ctx->session->sid, tok)) {
      why = "X-CSRF-Token is missing or does not match the session";
    }
  }
  if (!why) return 0;
  json_t *d = json_pack("{s:s, s:s}", "reason", why, "route", ctx->route->pattern);
  ctx_audit_now(ctx, "auth.csrf_failed", "route", ctx->route->pattern, false, d);
  json_decref(d);
  api_problem(ctx, "csrf_failed", why);
  return 1;
}

/* --- org scope and permissions ----------------------------------------- */

struct resolve_org {
  const char *user_id;
  const char *ref;
  struct org *org;
  enum role *role;
};

static int resolve_org_tx(struct store_tx *tx, void *arg) {
  struct resolve_org *r = arg;
  return store_org_for_member(tx, r->user_id, r->ref, r->org, r->role);
}

/* Whether ref can name an org at all (an id or a slug). */
static bool org_ref_plausible(const char *ref) {
  return ref && ref[0] && strlen(ref) <= 64;
}

/* Sets the org scope of ctx (ctx->org and ctx->role filled). */
static void enter_org(struct ctx *ctx, const char *ref, uint64_t stamp) {
  ctx->has_org = true;
  ctx->org_ref = ref;
  ctx->org_stamp = stamp;
  memcpy(ctx->scope.org_id, ctx->org.id, sizeof(ctx->scope.org_id));
}

/* Establishes ctx->scope from an org reference (id or slug) the user must be
 * a member of, from the cache (when allowed) or the store (then cached).
 * Returns 0, 1 after answering 404, or MW_RECHECK. */
static int scope_for_user(struct ctx *ctx, const char *ref, struct steps *st) {
  if (!org_ref_plausible(ref)) {
    if (from_cache(st)) return MW_RECHECK;
    api_problem(ctx, "not_found", "no such organisation");
    return 1;
  }
  struct authcache *ac = api_authcache(ctx->api);
  struct store *store = api_store(ctx->api);
  uint64_t stamp = 0;
  st->org_cached = ac && st->use_cache &&
                   authcache_member_get(ac, ctx->user.id, ref, store_write_generation(store),
                                        time_mono_us(), &ctx->org, &ctx->role, &stamp);
  if (!st->org_cached) {
    uint64_t gen = ac ? store_write_generation(store) : 0;
    int64_t read_at = time_mono_us();
    struct resolve_org r = {ctx->user.id, ref, &ctx->org, &ctx->role};
    int rc = store_read(store, resolve_org_tx, &r);
    if (rc && from_cache(st)) return MW_RECHECK;
    if (rc == KEEL_ENOTFOUND) {
      api_problem(ctx, "not_found", "no such organisation");
      return 1;
    }
    if (rc) {
      api_status(ctx, rc);
      return 1;
    }
    if (ac) stamp = authcache_member_put(ac, ctx->user.id, ref, &ctx->org, ctx->role, gen, read_at);
  }
  enter_org(ctx, ref, stamp);
  log_set_org_id(ctx->scope.org_id);
  return 0;
}

static int deny(struct ctx *ctx, const char *why) {
  json_t *d = json_pack("{s:s, s:s, s:s, s:s}", "route", ctx->route->pattern, "method",
                        http_method_name(ctx->route->method), "permission",
                        rbac_permission_name((enum permission)ctx->route->permission), "role",
                        rbac_role_name(ctx->role));
  ctx_audit_now(ctx, "permission.denied", "route", ctx->route->pattern, false, d);
  json_decref(d);
  api_problem(ctx, "forbidden", why);
  return 1;
}

static bool pattern_has_org(const char *pattern) {
  return strstr(pattern, "{org}") != NULL;
}

/* The session part of the middleware: steps 2–5 of the file comment.
 * Returns 0, 1 after answering, or MW_RECHECK (nothing answered). */
static int session_steps(struct ctx *ctx, bool use_cache) {
  const struct route *r = ctx->route;
  struct steps st = {.use_cache = use_cache};
  int rc = authenticate_session(ctx, &st);
  if (rc) return rc;
  if (method_changes_state(ctx->req->method) && check_csrf(ctx)) return 1;
  if (r->auth == AUTH_PLATFORM && !ctx->user.platform_admin) {
    if (from_cache(&st)) return MW_RECHECK;
    return deny(ctx, "this route is for platform administrators");
  }
  if (pattern_has_org(r->pattern)) {
    if ((rc = scope_for_user(ctx, ctx_param(ctx, "org"), &st)) != 0) return rc;
  } else if (r->auth == AUTH_ANY) {
    /* Data-plane routes with a session: the org is X-Keel-Org, or the
     * session's active org. */
    struct slice h = http_req_header(ctx->req, "X-Keel-Org");
    const char *ref = h.p ? arena_slice_dup(ctx->arena, h) : ctx->session->aorg;
    if (!ref || !ref[0]) {
      if (from_cache(&st)) return MW_RECHECK;
      api_problem(ctx, "bad_request",
                  "no organisation selected: send X-Keel-Org or switch the active org");
      return 1;
    }
    if ((rc = scope_for_user(ctx, ref, &st)) != 0) return rc;
  }
  if (r->permission && ctx->has_org && !rbac_allows(ctx->role, (enum permission)r->permission)) {
    if (from_cache(&st)) return MW_RECHECK;
    return deny(ctx, "your role in this organisation does not allow this");
  }
  return 0;
}

int mw_run(struct ctx *ctx) {
  const struct route *r = ctx->route;
  if (r->auth == AUTH_PUBLIC) return 0;
  if (ctx->preauthenticated) {
    /* mw_session_preauthenticate did it all, on this thread. */
    if (ctx->has_org) log_set_org_id(ctx->scope.org_id);
    return 0;
  }
  if (r->auth == AUTH_KEY || r->auth == AUTH_ANY) {
    int rc = mw_keys_authenticate(ctx, r->auth == AUTH_KEY);
    if (rc) return rc;
    if (ctx->actor == ACTOR_KEY) return 0; /* scope and scopes checked there */
  }
  int rc = session_steps(ctx, !method_changes_state(ctx->req->method));
  if (rc == MW_RECHECK) {
    ctx->actor = ACTOR_NONE;
    ctx->has_org = false;
    ctx->org_ref = NULL;
    ctx->org_stamp = 0;
    rc = session_steps(ctx, false);
    KEEL_ASSERT(rc != MW_RECHECK);
  }
  if (ctx->actor == ACTOR_USER) renew_if_due(ctx, time_now_us() / US_PER_SEC);
  return rc;
}

bool mw_session_preauthenticate(struct ctx *ctx) {
  const struct route *r = ctx->route;
  struct authcache *ac = api_authcache(ctx->api);
  if (!ac || (r->auth != AUTH_SESSION && r->auth != AUTH_PLATFORM)) return false;
  if (ctx->req->method != HTTP_GET && ctx->req->method != HTTP_HEAD) return false;
  struct slice token = cookie_value(ctx->req, SESSION_COOKIE);
  if (!token.p || token.len == 0) return false;
  struct session_claims *c = arena_alloc(ctx->arena, sizeof(*c));
  int64_t now_s = time_now_us() / US_PER_SEC;
  if (!authcache_session_get(ac, token, now_s, c)) return false;
  uint64_t gen = store_write_generation(api_store(ctx->api));
  int64_t now_us = time_mono_us(); /* not the request's start: headers may trickle in */
  if (!authcache_user_get(ac, c->sub, gen, now_us, &ctx->user)) return false;
  if (ctx->user.session_version != c->sv || ctx->user.suspended) return false;
  if (r->auth == AUTH_PLATFORM && !ctx->user.platform_admin) return false;
  const char *ref = NULL;
  uint64_t stamp = 0;
  if (pattern_has_org(r->pattern)) {
    ref = ctx_param(ctx, "org");
    if (!org_ref_plausible(ref) ||
        !authcache_member_get(ac, ctx->user.id, ref, gen, now_us, &ctx->org, &ctx->role, &stamp)) {
      return false;
    }
    /* A denial writes an audit entry: that is the worker's job. */
    if (r->permission && !rbac_allows(ctx->role, (enum permission)r->permission)) return false;
  }
  if (ref) enter_org(ctx, ref, stamp);
  ctx->actor = ACTOR_USER;
  ctx->session = c;
  ctx->preauthenticated = true;
  renew_if_due(ctx, now_s);
  return true;
}
