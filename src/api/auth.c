/*
 * auth.c — sign-up, email verification, login, logout, the current user,
 * password reset and the active-org switch (R-IAM-1..4, R-AUD-2).
 *
 * Invariants:
 *  - answers never reveal whether an address has an account: sign-up and
 *    forgot-password answer the same for every address (and do the same
 *    work: a password hash and one write); login answers 401
 *    invalid_credentials for unknown addresses, wrong passwords and
 *    suspended users alike, after the same argon2id work; a locked address
 *    answers 423 whether it has an account or not;
 *  - email_not_verified (403) is answered only after the right password;
 *  - every login outcome, lockout, sign-up, verification, reset and logout
 *    writes an audit entry on the platform chain; passwords and tokens never
 *    reach logs, answers or audit details (mail links are logged only with
 *    --dev, by mail_announce);
 *  - argon2id runs on worker threads only (no route here is ROUTE_INLINE)
 *    and never inside a write transaction.
 *
 * Login, sign-up, forgot and reset share one GCRA budget per client IP
 * (auth.login_per_ip_per_min). The limiter lives in process memory for the
 * life of the process (one per process; scaled mode will move it to Redis
 * with the other limits).
 */
#include <pthread.h>
#include <string.h>

#include "api/api.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "domain/iam.h"
#include "domain/mail.h"
#include "limits/ratelimit.h"
#include "store/orgs.h"
#include "store/users.h"

#define AUTH_LIMITER_KEYS    65536
#define AUTH_TOKEN_INPUT_MAX 256 /* longer "tokens" are not ours */

/* --- per-IP limit ------------------------------------------------------- */

static struct ratelimiter *auth_limiter;
static pthread_once_t auth_limiter_once = PTHREAD_ONCE_INIT;

static void auth_limiter_init(void) {
  auth_limiter = ratelimit_new(AUTH_LIMITER_KEYS);
}

/* Spends one request of the client's budget. Returns 0, or 1 after
 * answering 429 with Retry-After. Sets the RateLimit headers either way. */
static int auth_ip_limit(struct ctx *ctx) {
  pthread_once(&auth_limiter_once, auth_limiter_init);
  int64_t limit = api_config(ctx->api)->auth_login_per_ip_per_min;
  char *key = arena_printf(ctx->arena, "auth|%s", ctx_ip(ctx));
  struct ratelimit_decision d;
  ratelimit_check(auth_limiter, key, limit, US_PER_MIN, time_now_us(), &d);
  struct http_req *req = ctx->req;
  http_resp_header(req, "RateLimit-Policy",
                   arena_printf(ctx->arena, "\"auth\";q=%lld;w=60", (long long)limit));
  int64_t reset_s = (d.reset_us + US_PER_SEC - 1) / US_PER_SEC;
  http_resp_header(req, "RateLimit",
                   arena_printf(ctx->arena, "\"auth\";r=%lld;t=%lld", (long long)d.remaining,
                                (long long)reset_s));
  if (d.allowed) return 0;
  int64_t retry_s = (d.retry_after_us + US_PER_SEC - 1) / US_PER_SEC;
  http_resp_header(req, "Retry-After", arena_printf(ctx->arena, "%lld", (long long)retry_s));
  api_problem(ctx, "rate_limited", "too many sign-in attempts from this address; retry later");
  return 1;
}

/* --- the user's organisations ------------------------------------------ */

struct org_list {
  struct arena *arena;
  struct user_org *items;
  size_t count, cap;
};

static int org_list_add(void *arg, const struct user_org *o) {
  struct org_list *l = arg;
  if (l->count == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    struct user_org *items = arena_alloc(l->arena, cap * sizeof(*items));
    if (l->count) memcpy(items, l->items, l->count * sizeof(*items));
    l->items = items;
    l->cap = cap;
  }
  l->items[l->count++] = *o;
  return 0;
}

static int org_list_load(struct store_tx *tx, const char *user_id, struct org_list *l) {
  l->count = 0;
  return store_user_orgs(tx, user_id, 0, org_list_add, l);
}

/* --- JSON --------------------------------------------------------------- */

static json_t *user_json(const struct user *u) {
  char created[RFC3339_MAX];
  time_format_rfc3339(u->created_at, created);
  return json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "id", u->id, "email", u->email, "name",
                   u->name, "verified", u->verified, "platform_admin", u->platform_admin,
                   "created_at", created);
}

static json_t *orgs_json(const struct org_list *l) {
  json_t *arr = json_array();
  for (size_t i = 0; i < l->count; i++) {
    const struct user_org *o = &l->items[i];
    json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "id", o->id, "name", o->name,
                                         "slug", o->slug, "role", o->role));
  }
  return arr;
}

/* The session's active org when the user still belongs to it, else NULL. */
static const char *active_org(const struct org_list *orgs, const struct session_claims *c) {
  for (size_t i = 0; i < orgs->count; i++) {
    if (strcmp(orgs->items[i].id, c->aorg) == 0) return c->aorg;
  }
  return NULL;
}

/* {user, orgs, active_org_id, csrf_token} for a session. */
static json_t *session_json(struct ctx *ctx, const struct user *u, const struct org_list *orgs,
                            const struct session_claims *c) {
  char csrf[SESSION_CSRF_SIZE];
  session_csrf_token(api_session_keys(ctx->api), c->sid, csrf);
  const char *aorg = active_org(orgs, c);
  return json_pack("{s:o, s:o, s:o, s:s}", "user", user_json(u), "orgs", orgs_json(orgs),
                   "active_org_id", aorg ? json_string(aorg) : json_null(), "csrf_token", csrf);
}

/* --- request parsing ---------------------------------------------------- */

/* Adds the password-policy error for field, if any. */
static void check_password(const char *pw, const char *field, struct field_errors *fe) {
  const char *code, *message;
  if (password_policy(pw, &code, &message) != 0) field_errors_add(fe, field, code, message);
}

/* Reads "email" into norm (400 invalid_format when implausible). */
static void get_email(const json_t *body, const char **email, char norm[256],
                      struct field_errors *fe) {
  if (json_get_str(body, "email", NULL, JSON_REQUIRED, 1, IAM_EMAIL_MAX, email, fe) != 0) return;
  if (iam_email_normalise(*email, norm, 256) != 0) {
    field_errors_add(fe, "email", "invalid_format", "must be an email address");
  }
}

/* Parses the body, rejecting members not in allowed. NULL after answering. */
static json_t *body_with(struct ctx *ctx, const char *const *allowed, size_t nallowed,
                         struct field_errors *fe) {
  json_t *body = api_body_object(ctx);
  if (body) json_reject_unknown(body, NULL, allowed, nallowed, fe);
  return body;
}

#define ALLOWED(...)                  \
  (const char *const[]){__VA_ARGS__}, \
      sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)

/* --- login -------------------------------------------------------------- */

struct login {
  struct ctx *ctx;
  const char *email;
  const char *password;
  char email_norm[256];
  struct user user;
  bool known;
  int64_t retry_after_s; /* locked: seconds to the unlock */
  const char *reason;    /* audit reason code */
  bool locked_now;       /* this failure locked the address */
  struct org_list orgs;
};

static int login_read_tx(struct store_tx *tx, void *arg) {
  struct login *l = arg;
  int rc = iam_lock_remaining(tx, l->email_norm, time_now_us(), &l->retry_after_s);
  if (rc) return rc;
  rc = store_user_by_email(tx, l->email_norm, &l->user);
  l->known = rc == 0;
  return rc == KEEL_ENOTFOUND ? 0 : rc;
}

static json_t *login_details(const struct login *l) {
  return json_pack("{s:s, s:s}", "reason", l->reason, "email", l->email_norm);
}

static int login_audit(struct store_tx *tx, struct login *l, bool success) {
  json_t *d = login_details(l);
  int rc = ctx_audit(l->ctx, tx, "auth.login", "user", l->known ? l->user.id : NULL, success, d);
  json_decref(d);
  return rc;
}

static int login_fail_tx(struct store_tx *tx, void *arg) {
  struct login *l = arg;
  int rc = iam_login_failed(tx, l->email_norm, time_now_us(), &l->locked_now);
  if (rc) return rc;
  rc = login_audit(tx, l, false);
  if (rc || !l->locked_now) return rc;
  json_t *d = json_pack("{s:s, s:i, s:I}", "email", l->email_norm, "failures", IAM_LOCK_FAILURES,
                        "locked_for_s", (json_int_t)(IAM_LOCK_DURATION_US / US_PER_SEC));
  rc = ctx_audit(l->ctx, tx, "auth.lockout", "user", l->known ? l->user.id : NULL, false, d);
  json_decref(d);
  return rc;
}

static int login_ok_tx(struct store_tx *tx, void *arg) {
  struct login *l = arg;
  int rc = iam_login_clear(tx, l->email_norm);
  if (rc) return rc;
  rc = store_user_get(tx, l->user.id, &l->user);
  if (rc) return rc;
  rc = org_list_load(tx, l->user.id, &l->orgs);
  if (rc) return rc;
  l->ctx->actor = ACTOR_USER;
  l->ctx->user = l->user;
  return login_audit(tx, l, true);
}

static int login_locked(struct ctx *ctx, struct login *l) {
  l->reason = "locked";
  json_t *d = login_details(l);
  ctx_audit_now(ctx, "auth.login", "user", l->known ? l->user.id : NULL, false, d);
  json_decref(d);
  http_resp_header(ctx->req, "Retry-After",
                   arena_printf(ctx->arena, "%lld", (long long)l->retry_after_s));
  return api_problem(ctx, "locked",
                     "too many failed sign-ins for this address; try again after Retry-After "
                     "seconds, or reset the password");
}

static int login_failed(struct ctx *ctx, struct login *l, enum iam_login_verdict v) {
  if (v == IAM_LOGIN_UNVERIFIED) {
    json_t *d = login_details(l);
    ctx_audit_now(ctx, "auth.login", "user", l->user.id, false, d);
    json_decref(d);
    return api_problem(ctx, "email_not_verified",
                       "confirm your email address first: follow the link in the mail we sent");
  }
  int rc = store_write(api_store(ctx->api), login_fail_tx, l);
  if (rc) return rc;
  return api_problem(ctx, "invalid_credentials", "the email or the password is wrong");
}

static int login_succeeded(struct ctx *ctx, struct login *l) {
  l->orgs.arena = ctx->arena;
  int rc = store_write(api_store(ctx->api), login_ok_tx, l);
  if (rc) return rc;
  struct session_claims *c = arena_alloc(ctx->arena, sizeof(*c));
  iam_session_claims(&l->user, l->orgs.items, l->orgs.count, NULL, time_now_us() / US_PER_SEC, c);
  ctx->session = c;
  api_set_session_cookie(ctx, c);
  return api_json(ctx, 200, session_json(ctx, &l->user, &l->orgs, c));
}

static int h_login(struct ctx *ctx) {
  if (auth_ip_limit(ctx)) return 0;
  struct field_errors fe = {0};
  json_t *body = body_with(ctx, ALLOWED("email", "password"), &fe);
  if (!body) return 0;
  struct login *l = arena_calloc(ctx->arena, 1, sizeof(*l));
  l->ctx = ctx;
  get_email(body, &l->email, l->email_norm, &fe);
  json_get_str(body, "password", NULL, JSON_REQUIRED, 1, PASSWORD_MAX, &l->password, &fe);
  if (fe.count) return api_validation(ctx, &fe);

  int rc = store_read(api_store(ctx->api), login_read_tx, l);
  if (rc) return rc;
  if (l->retry_after_s > 0) return login_locked(ctx, l);
  enum iam_login_verdict v = iam_login_verify(l->known ? &l->user : NULL, l->password, &l->reason);
  if (v != IAM_LOGIN_OK) return login_failed(ctx, l, v);
  return login_succeeded(ctx, l);
}

/* --- logout and me ------------------------------------------------------ */

static int logout_tx(struct store_tx *tx, void *arg) {
  struct ctx *ctx = arg;
  int rc = store_user_bump_session_version(tx, ctx->user.id);
  if (rc) return rc;
  return ctx_audit(ctx, tx, "auth.logout", "user", ctx->user.id, true, NULL);
}

/* Revokes every session of the user (the session version moves on), not
 * just this cookie: a copied cookie is as dead as the original. */
static int h_logout(struct ctx *ctx) {
  int rc = store_write(api_store(ctx->api), logout_tx, ctx);
  if (rc) return rc;
  api_clear_session_cookie(ctx);
  http_resp_set(ctx->req, 204, NULL, NULL, 0);
  return 0;
}

struct me {
  const char *user_id;
  struct org_list orgs;
};

static int me_tx(struct store_tx *tx, void *arg) {
  struct me *m = arg;
  return org_list_load(tx, m->user_id, &m->orgs);
}

static int h_me(struct ctx *ctx) {
  struct me m = {.user_id = ctx->user.id, .orgs = {.arena = ctx->arena}};
  int rc = store_read(api_store(ctx->api), me_tx, &m);
  if (rc) return rc;
  return api_json(ctx, 200, session_json(ctx, &ctx->user, &m.orgs, ctx->session));
}

/* --- context switch ----------------------------------------------------- */

struct org_switch {
  const char *user_id;
  const char *ref;
  struct org org;
  enum role role;
  struct org_list orgs;
};

static int switch_tx(struct store_tx *tx, void *arg) {
  struct org_switch *s = arg;
  int rc = store_org_for_member(tx, s->user_id, s->ref, &s->org, &s->role);
  if (rc) return rc;
  return org_list_load(tx, s->user_id, &s->orgs);
}

static int h_switch(struct ctx *ctx) {
  struct field_errors fe = {0};
  json_t *body = body_with(ctx, ALLOWED("org_id"), &fe);
  if (!body) return 0;
  struct org_switch *s = arena_calloc(ctx->arena, 1, sizeof(*s));
  s->user_id = ctx->user.id;
  s->orgs.arena = ctx->arena;
  json_get_str(body, "org_id", NULL, JSON_REQUIRED, 1, 64, &s->ref, &fe);
  if (fe.count) return api_validation(ctx, &fe);
  int rc = store_read(api_store(ctx->api), switch_tx, s);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such organisation");
  if (rc) return rc;
  struct session_claims *c = arena_alloc(ctx->arena, sizeof(*c));
  *c = *ctx->session;
  iam_session_set_orgs(c, s->orgs.items, s->orgs.count);
  memcpy(c->aorg, s->org.id, sizeof(c->aorg));
  c->iat = time_now_us() / US_PER_SEC;
  session_set_expiry(c);
  api_set_session_cookie(ctx, c);
  return api_json(ctx, 200, json_pack("{s:s}", "active_org_id", c->aorg));
}

/* --- sign-up ----------------------------------------------------------- */

struct signup {
  struct ctx *ctx;
  const char *public_url;
  struct iam_new_user nu;
  struct user existing;
  bool exists;
  struct mail mail;
  bool mailed;
};

/* Queues the verification mail for user_id with a fresh token. */
static int send_verify_mail(struct store_tx *tx, struct signup *s, const char *user_id,
                            const char *to) {
  char token[IAM_TOKEN_SIZE];
  int rc =
      iam_token_issue(tx, user_id, IAM_PURPOSE_VERIFY, time_now_us(), IAM_VERIFY_TTL_US, token);
  if (rc == 0) rc = mail_queue(tx, s->public_url, MAIL_VERIFY, to, token, &s->mail);
  crypto_wipe(token, sizeof(token));
  s->mailed = rc == 0;
  return rc;
}

/* The address has an account: a fresh verification mail when it is not
 * verified yet, else a note that it exists. The answer is the same. */
static int signup_existing_tx(struct store_tx *tx, struct signup *s) {
  const struct user *u = &s->existing;
  int rc = u->verified
               ? mail_queue(tx, s->public_url, MAIL_ACCOUNT_EXISTS, u->email, NULL, &s->mail)
               : send_verify_mail(tx, s, u->id, u->email);
  if (rc) return rc;
  s->mailed = true;
  json_t *d = json_pack("{s:s}", "reason", "email_exists");
  rc = ctx_audit(s->ctx, tx, "auth.signup", "user", u->id, false, d);
  json_decref(d);
  return rc;
}

static int signup_tx(struct store_tx *tx, void *arg) {
  struct signup *s = arg;
  int rc = store_user_by_email(tx, s->nu.email_norm, &s->existing);
  s->exists = rc == 0;
  if (s->exists) return signup_existing_tx(tx, s);
  if (rc != KEEL_ENOTFOUND) return rc;
  struct user *u = &s->nu.user;
  rc = iam_user_insert(tx, &s->nu, NULL);
  if (rc == 0 && !u->verified) rc = send_verify_mail(tx, s, u->id, u->email);
  if (rc) return rc;
  json_t *d = json_pack("{s:b}", "invited", u->verified);
  rc = ctx_audit(s->ctx, tx, "auth.signup", "user", u->id, true, d);
  json_decref(d);
  return rc;
}

struct invitation_check {
  uint8_t hash[SHA256_LEN];
  char email_norm[256];
};

static int invitation_tx(struct store_tx *tx, void *arg) {
  struct invitation_check *ic = arg;
  return store_user_invitation_email(tx, ic->hash, time_now_us(), ic->email_norm);
}

/* An invitation to this address makes the new user verified (the mail was
 * received). Returns 0 (*verified set) or 1 after answering. */
static int signup_invitation(struct ctx *ctx, const char *token, const char *email_norm,
                             bool *verified) {
  struct invitation_check ic;
  crypto_sha256(token, strlen(token), ic.hash);
  int rc = store_read(api_store(ctx->api), invitation_tx, &ic);
  if (rc == KEEL_ENOTFOUND) {
    api_problem(ctx, "invalid_token", "the invitation is unknown, expired, revoked or used");
    return 1;
  }
  if (rc) {
    api_status(ctx, rc);
    return 1;
  }
  if (strcmp(ic.email_norm, email_norm) != 0) {
    api_problem(ctx, "invitation_email_mismatch",
                "sign up with the email address the invitation was sent to");
    return 1;
  }
  *verified = true;
  return 0;
}

static int signup_parse(struct ctx *ctx, const char **email, const char **password,
                        const char **name, const char **invitation, char norm[256]) {
  struct field_errors fe = {0};
  json_t *body = body_with(ctx, ALLOWED("email", "password", "name", "invitation_token"), &fe);
  if (!body) return 1;
  get_email(body, email, norm, &fe);
  if (json_get_str(body, "password", NULL, JSON_REQUIRED, 1, 4096, password, &fe) == 0) {
    check_password(*password, "password", &fe);
  }
  if (json_get_str(body, "name", NULL, JSON_REQUIRED, 1, IAM_NAME_MAX, name, &fe) == 0 &&
      !iam_name_valid(*name)) {
    field_errors_add(&fe, "name", "invalid_format", "must not contain control characters");
  }
  json_get_str(body, "invitation_token", NULL, JSON_OPTIONAL, 1, AUTH_TOKEN_INPUT_MAX, invitation,
               &fe);
  if (fe.count) {
    api_validation(ctx, &fe);
    return 1;
  }
  return 0;
}

static int auth_h_signup(struct ctx *ctx) {
  if (auth_ip_limit(ctx)) return 0;
  const char *email, *password, *name, *invitation = NULL;
  char norm[256];
  if (signup_parse(ctx, &email, &password, &name, &invitation, norm)) return 0;
  bool verified = false;
  if (invitation && signup_invitation(ctx, invitation, norm, &verified)) return 0;

  struct signup *s = arena_calloc(ctx->arena, 1, sizeof(*s));
  s->ctx = ctx;
  s->public_url = api_config(ctx->api)->public_url;
  const char *why = NULL;
  /* Hashed for every address, known or not: the same work either way. */
  int rc = iam_user_prepare(email, password, name, verified, &s->nu, &why);
  if (rc == KEEL_EINVAL) return api_problem(ctx, "validation_failed", why);
  if (rc == 0) rc = store_write(api_store(ctx->api), signup_tx, s);
  if (rc == 0 && s->mailed) mail_announce(&s->mail, api_config(ctx->api)->dev);
  mail_wipe(&s->mail);
  crypto_wipe(&s->nu, sizeof(s->nu));
  if (rc) return rc;
  bool active = !s->exists && verified;
  return api_json(ctx, 201, json_pack("{s:s}", "status", active ? "active" : "verification_sent"));
}

/* --- verification ------------------------------------------------------- */

struct verify {
  struct ctx *ctx;
  const char *token;
  char user_id[ID_STR_SIZE];
};

static int verify_tx(struct store_tx *tx, void *arg) {
  struct verify *v = arg;
  int rc = iam_token_redeem(tx, v->token, IAM_PURPOSE_VERIFY, time_now_us(), true, v->user_id);
  if (rc) return rc;
  rc = store_user_set_verified(tx, v->user_id);
  if (rc == 0) rc = store_user_get(tx, v->user_id, &v->ctx->user);
  if (rc) return rc;
  v->ctx->actor = ACTOR_USER; /* the token proves the mailbox is theirs */
  return ctx_audit(v->ctx, tx, "user.verified", "user", v->user_id, true, NULL);
}

static int auth_h_verify(struct ctx *ctx) {
  struct field_errors fe = {0};
  json_t *body = body_with(ctx, ALLOWED("token"), &fe);
  if (!body) return 0;
  struct verify v = {.ctx = ctx};
  json_get_str(body, "token", NULL, JSON_REQUIRED, 1, AUTH_TOKEN_INPUT_MAX, &v.token, &fe);
  if (fe.count) return api_validation(ctx, &fe);
  int rc = store_write(api_store(ctx->api), verify_tx, &v);
  if (rc == KEEL_ENOTFOUND) {
    ctx->actor = ACTOR_NONE;
    return api_problem(ctx, "invalid_token", "the link is unknown, expired or already used");
  }
  if (rc) return rc;
  return api_json(ctx, 200, json_pack("{s:s}", "status", "verified"));
}

/* --- password reset ----------------------------------------------------- */

struct forgot {
  struct ctx *ctx;
  const char *public_url;
  char email_norm[256];
  struct user user;
  struct mail mail;
  bool mailed;
};

static int forgot_tx(struct store_tx *tx, void *arg) {
  struct forgot *f = arg;
  int rc = store_user_by_email(tx, f->email_norm, &f->user);
  if (rc && rc != KEEL_ENOTFOUND) return rc;
  bool known = rc == 0;
  const char *reason = !known              ? "unknown_email"
                       : !f->user.verified ? "email_not_verified"
                       : f->user.suspended ? "suspended"
                                           : NULL;
  if (!reason) {
    char token[IAM_TOKEN_SIZE];
    rc = iam_token_issue(tx, f->user.id, IAM_PURPOSE_RESET, time_now_us(), IAM_RESET_TTL_US, token);
    if (rc == 0) rc = mail_queue(tx, f->public_url, MAIL_RESET, f->user.email, token, &f->mail);
    crypto_wipe(token, sizeof(token));
    if (rc) return rc;
    f->mailed = true;
  }
  /* Written for every request, so every address costs the same write. */
  json_t *d = json_pack("{s:s, s:s}", "email", f->email_norm, "reason", reason ? reason : "sent");
  rc = ctx_audit(f->ctx, tx, "auth.password_reset_requested", "user", known ? f->user.id : NULL,
                 !reason, d);
  json_decref(d);
  return rc;
}

static int auth_h_forgot(struct ctx *ctx) {
  if (auth_ip_limit(ctx)) return 0;
  struct field_errors fe = {0};
  json_t *body = body_with(ctx, ALLOWED("email"), &fe);
  if (!body) return 0;
  struct forgot *f = arena_calloc(ctx->arena, 1, sizeof(*f));
  f->ctx = ctx;
  f->public_url = api_config(ctx->api)->public_url;
  const char *email;
  get_email(body, &email, f->email_norm, &fe);
  if (fe.count) return api_validation(ctx, &fe);
  int rc = store_write(api_store(ctx->api), forgot_tx, f);
  if (rc == 0 && f->mailed) mail_announce(&f->mail, api_config(ctx->api)->dev);
  mail_wipe(&f->mail);
  if (rc) return rc;
  return api_json(ctx, 202, json_pack("{s:s}", "status", "reset_sent_if_account_exists"));
}

struct reset {
  struct ctx *ctx;
  const char *token;
  char user_id[ID_STR_SIZE];
  char hash[PASSWORD_HASH_SIZE];
};

static int reset_check_tx(struct store_tx *tx, void *arg) {
  struct reset *r = arg;
  return iam_token_redeem(tx, r->token, IAM_PURPOSE_RESET, time_now_us(), false, r->user_id);
}

static int reset_tx(struct store_tx *tx, void *arg) {
  struct reset *r = arg;
  int64_t now = time_now_us();
  int rc = iam_token_redeem(tx, r->token, IAM_PURPOSE_RESET, now, true, r->user_id);
  if (rc) return rc;
  struct user *u = &r->ctx->user;
  rc = store_user_set_password(tx, r->user_id, r->hash); /* revokes every session */
  if (rc == 0) rc = store_user_get(tx, r->user_id, u);
  if (rc == 0) rc = store_user_tokens_retire(tx, r->user_id, IAM_PURPOSE_RESET, now);
  char norm[256];
  if (rc == 0 && iam_email_normalise(u->email, norm, sizeof(norm)) == 0) {
    rc = iam_login_clear(tx, norm);
  }
  if (rc) return rc;
  r->ctx->actor = ACTOR_USER; /* the token proves the mailbox is theirs */
  return ctx_audit(r->ctx, tx, "auth.password_reset", "user", r->user_id, true, NULL);
}

static int auth_h_reset(struct ctx *ctx) {
  if (auth_ip_limit(ctx)) return 0;
  struct field_errors fe = {0};
  json_t *body = body_with(ctx, ALLOWED("token", "password"), &fe);
  if (!body) return 0;
  struct reset *r = arena_calloc(ctx->arena, 1, sizeof(*r));
  r->ctx = ctx;
  const char *password;
  json_get_str(body, "token", NULL, JSON_REQUIRED, 1, AUTH_TOKEN_INPUT_MAX, &r->token, &fe);
  if (json_get_str(body, "password", NULL, JSON_REQUIRED, 1, 4096, &password, &fe) == 0) {
    check_password(password, "password", &fe);
  }
  if (fe.count) return api_validation(ctx, &fe);
  /* Check the token before spending an argon2id hash on it. */
  int rc = store_read(api_store(ctx->api), reset_check_tx, r);
  if (rc == 0) rc = password_hash(password, r->hash) == 0 ? 0 : KEEL_ENOMEM;
  if (rc == 0) rc = store_write(api_store(ctx->api), reset_tx, r);
  crypto_wipe(r->hash, sizeof(r->hash));
  if (rc == KEEL_ENOTFOUND) {
    ctx->actor = ACTOR_NONE;
    return api_problem(ctx, "invalid_token", "the link is unknown, expired or already used");
  }
  if (rc) return rc;
  api_clear_session_cookie(ctx);
  return api_json(ctx, 200, json_pack("{s:s}", "status", "password_reset"));
}

/* --- routes ------------------------------------------------------------- */

static const struct route auth_routes[] = {
    {.method = HTTP_POST,
     .pattern = "/v1/auth/signup",
     .handler = auth_h_signup,
     .auth = AUTH_PUBLIC,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_POST,
     .pattern = "/v1/auth/verify",
     .handler = auth_h_verify,
     .auth = AUTH_PUBLIC,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_POST,
     .pattern = "/v1/auth/login",
     .handler = h_login,
     .auth = AUTH_PUBLIC,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_POST,
     .pattern = "/v1/auth/logout",
     .handler = h_logout,
     .auth = AUTH_SESSION,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_GET, .pattern = "/v1/auth/me", .handler = h_me, .auth = AUTH_SESSION},
    {.method = HTTP_POST,
     .pattern = "/v1/auth/password/forgot",
     .handler = auth_h_forgot,
     .auth = AUTH_PUBLIC,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_POST,
     .pattern = "/v1/auth/password/reset",
     .handler = auth_h_reset,
     .auth = AUTH_PUBLIC,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_POST,
     .pattern = "/v1/auth/context/switch",
     .handler = h_switch,
     .auth = AUTH_SESSION,
     .body = ROUTE_BODY_DEFAULT},
};

const struct route *routes_auth(size_t *count) {
  *count = sizeof(auth_routes) / sizeof(auth_routes[0]);
  return auth_routes;
}
