/*
 * mw.c — request middleware: authentication, CSRF, org scope, permissions,
 * and the helpers handlers use to act for the authenticated actor (audit
 * entries, session cookies).
 *
 * Order (each step may answer and stop):
 *   1. auth kind of the route: PUBLIC passes; SESSION/PLATFORM read the
 *      session cookie; KEY/ANY read a bearer key (key middleware, keys.c)
 *      or, for ANY, the session cookie;
 *   2. the user is re-read from the store on every request: a bumped session
 *      version (logout everywhere, password change) or a suspension revokes
 *      the token at once;
 *   3. CSRF for cookie-authenticated state changes: X-CSRF-Token must match
 *      the session's token, and Origin, when sent, must be allowed;
 *   4. {org} in the path: resolved for this user (id or slug); not a member
 *      → 404 (existence is not revealed);
 *   5. the route's permission for the user's role: denied → 403 and an audit
 *      entry.
 * Sessions older than SESSION_RENEW_AFTER_S get a fresh cookie (sliding
 * expiry).
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
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

struct load_user {
  const char *id;
  struct user *out;
};

static int load_user_tx(struct store_tx *tx, void *arg) {
  struct load_user *lu = arg;
  return store_user_get(tx, lu->id, lu->out);
}

/*
 * Authenticates the session cookie. Returns 0 (ctx->actor set), or 1 after
 * answering 401 when required, or 0 with no actor when not required and no
 * cookie was sent.
 */
static int authenticate_session(struct ctx *ctx, bool required) {
  struct slice token = cookie_value(ctx->req, SESSION_COOKIE);
  if (!token.p || token.len == 0) {
    if (!required) return 0;
    api_problem(ctx, "unauthorized", "sign in first: no session cookie was sent");
    return 1;
  }
  int64_t now_s = time_now_us() / US_PER_SEC;
  struct session_claims *c = arena_alloc(ctx->arena, sizeof(*c));
  if (session_decode(token, api_session_keys(ctx->api), now_s, c) != 0) {
    api_clear_session_cookie(ctx);
    api_problem(ctx, "unauthorized", "the session is invalid or has expired; sign in again");
    return 1;
  }
  struct load_user lu = {c->sub, &ctx->user};
  int rc = store_read(api_store(ctx->api), load_user_tx, &lu);
  if (rc == KEEL_ENOTFOUND ||
      (rc == 0 && (ctx->user.session_version != c->sv || ctx->user.suspended))) {
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
  if (now_s - c->iat >= SESSION_RENEW_AFTER_S) {
    c->iat = now_s;
    session_set_expiry(c);
    api_set_session_cookie(ctx, c);
  }
  return 0;
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

/* Establishes ctx->scope from an org reference (id or slug) the user must be
 * a member of. Returns 0, or 1 after answering 404. */
static int scope_for_user(struct ctx *ctx, const char *ref) {
  if (!ref || !ref[0] || strlen(ref) > 64) {
    api_problem(ctx, "not_found", "no such organisation");
    return 1;
  }
  struct resolve_org r = {ctx->user.id, ref, &ctx->org, &ctx->role};
  int rc = store_read(api_store(ctx->api), resolve_org_tx, &r);
  if (rc == KEEL_ENOTFOUND) {
    api_problem(ctx, "not_found", "no such organisation");
    return 1;
  }
  if (rc) {
    api_status(ctx, rc);
    return 1;
  }
  ctx->has_org = true;
  memcpy(ctx->scope.org_id, ctx->org.id, sizeof(ctx->scope.org_id));
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

int mw_run(struct ctx *ctx) {
  const struct route *r = ctx->route;
  if (r->auth == AUTH_PUBLIC) return 0;

  if (r->auth == AUTH_KEY || r->auth == AUTH_ANY) {
    int rc = mw_keys_authenticate(ctx, r->auth == AUTH_KEY);
    if (rc) return rc;
    if (ctx->actor == ACTOR_KEY) return 0; /* scope and scopes checked there */
  }
  if (authenticate_session(ctx, true)) return 1;
  if (method_changes_state(ctx->req->method) && check_csrf(ctx)) return 1;
  if (r->auth == AUTH_PLATFORM && !ctx->user.platform_admin) {
    return deny(ctx, "this route is for platform administrators");
  }
  if (pattern_has_org(r->pattern)) {
    if (scope_for_user(ctx, ctx_param(ctx, "org"))) return 1;
  } else if (r->auth == AUTH_ANY) {
    /* Data-plane routes with a session: the org is X-Keel-Org, or the
     * session's active org. */
    struct slice h = http_req_header(ctx->req, "X-Keel-Org");
    const char *ref = h.p ? arena_slice_dup(ctx->arena, h) : ctx->session->aorg;
    if (!ref || !ref[0]) {
      api_problem(ctx, "bad_request",
                  "no organisation selected: send X-Keel-Org or switch the active org");
      return 1;
    }
    if (scope_for_user(ctx, ref)) return 1;
  }
  if (r->permission && ctx->has_org && !rbac_allows(ctx->role, (enum permission)r->permission)) {
    return deny(ctx, "your role in this organisation does not allow this");
  }
  return 0;
}
