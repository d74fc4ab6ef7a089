/*
 * iam.c — users and sign-in rules: address and name checks, user creation,
 * single-use tokens, the login verdict and lockout, session claims.
 *
 * Invariants:
 *  - tokens are stored only as SHA-256 hashes; the token itself leaves this
 *    file only to be mailed;
 *  - an unknown address spends the time of a password verification and is
 *    throttled like a known one, so neither answers nor timing reveal which
 *    addresses have accounts.
 */
#include "domain/iam.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"
#include "core/ids.h"
#include "domain/password.h"

/* --- addresses and names ------------------------------------------------ */

static bool email_char_ok(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '<' && c != '>' && c != ',' &&
         c != ';' && c != ':' && c != '\\' && c != '"' && c != '[' && c != ']';
}

/* The domain part: labels of [A-Za-z0-9-] (no leading/trailing '-'),
 * at least two of them, each 1..63 bytes. */
static bool domain_ok(const char *d) {
  size_t label = 0, labels = 0;
  for (const char *p = d;; p++) {
    char c = *p;
    if (c == '.' || c == '\0') {
      if (label == 0 || label > 63 || p[-1] == '-') return false;
      labels++;
      label = 0;
      if (c == '\0') break;
      continue;
    }
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && label > 0)) return false;
    label++;
  }
  return labels >= 2;
}

int iam_email_normalise(const char *email, char *out, size_t outsize) {
  size_t n = strlen(email);
  if (n < 3 || n > IAM_EMAIL_MAX || n >= outsize) return -1;
  const char *at = strchr(email, '@');
  if (!at || at == email || strchr(at + 1, '@') || at - email > 64) return -1;
  for (const char *p = email; p < at; p++) {
    if (!email_char_ok((unsigned char)*p)) return -1;
  }
  if (email[0] == '.' || at[-1] == '.' || strstr(email, "..")) return -1;
  if (!domain_ok(at + 1)) return -1;
  for (size_t i = 0; i <= n; i++) {
    char c = email[i];
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  return 0;
}

bool iam_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > IAM_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

/* --- users -------------------------------------------------------------- */

/* The local part of an address as a default display name. */
static void name_from_email(const char *email, char *out, size_t outsize) {
  const char *at = strchr(email, '@');
  int len = at ? (int)(at - email) : (int)strlen(email);
  snprintf(out, outsize, "%.*s", len, email);
}

int iam_user_prepare(const char *email, const char *password, const char *name, bool verified,
                     struct iam_new_user *out, const char **why) {
  memset(out, 0, sizeof(*out));
  if (iam_email_normalise(email, out->email_norm, sizeof(out->email_norm)) != 0) {
    *why = "email: not a valid email address";
    return KEEL_EINVAL;
  }
  struct user *u = &out->user;
  snprintf(u->email, sizeof(u->email), "%s", email);
  if (name && name[0]) {
    if (!iam_name_valid(name)) {
      *why = "name: 1 to 100 bytes without control characters";
      return KEEL_EINVAL;
    }
    snprintf(u->name, sizeof(u->name), "%s", name);
  } else {
    name_from_email(email, u->name, sizeof(u->name));
  }
  if (password) {
    const char *code, *message;
    if (password_policy(password, &code, &message) != 0) {
      *why = message;
      return KEEL_EINVAL;
    }
    if (password_hash(password, u->password_hash) != 0) return KEEL_ENOMEM;
  }
  id_new_str(u->id);
  u->verified = verified;
  u->session_version = 1;
  return 0;
}

int iam_user_insert(struct store_tx *tx, const struct iam_new_user *nu, struct user *out) {
  int rc = store_user_insert(tx, &nu->user, nu->email_norm);
  if (rc) return rc;
  return out ? store_user_get(tx, nu->user.id, out) : 0;
}

int iam_user_create(struct store_tx *tx, const char *email, const char *password, const char *name,
                    bool verified, struct user *out, const char **why) {
  struct iam_new_user nu;
  int rc = iam_user_prepare(email, password, name, verified, &nu, why);
  if (rc == 0) rc = iam_user_insert(tx, &nu, out);
  if (rc == KEEL_ECONFLICT) *why = "email: a user with this email exists";
  crypto_wipe(&nu, sizeof(nu));
  return rc;
}

/* --- single-use tokens -------------------------------------------------- */

int iam_token_hash(const char *token, uint8_t hash[SHA256_LEN]) {
  size_t n = strlen(token);
  if (n != IAM_TOKEN_LEN) return -1;
  for (size_t i = 0; i < n; i++) {
    char c = token[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return -1;
  }
  crypto_sha256(token, n, hash);
  return 0;
}

int iam_token_issue(struct store_tx *tx, const char *user_id, const char *purpose, int64_t now_us,
                    int64_t ttl_us, char token[IAM_TOKEN_SIZE]) {
  uint8_t hash[SHA256_LEN];
  crypto_token(IAM_TOKEN_BYTES, token, IAM_TOKEN_SIZE);
  crypto_sha256(token, strlen(token), hash);
  return store_user_token_insert(tx, hash, user_id, purpose, now_us, now_us + ttl_us);
}

int iam_token_redeem(struct store_tx *tx, const char *token, const char *purpose, int64_t now_us,
                     bool consume, char user_id[ID_STR_SIZE]) {
  uint8_t hash[SHA256_LEN];
  if (iam_token_hash(token, hash) != 0) return KEEL_ENOTFOUND;
  return store_user_token_find(tx, hash, purpose, now_us, consume, user_id);
}

/* --- login -------------------------------------------------------------- */

enum iam_login_verdict iam_login_verify(const struct user *u, const char *password,
                                        const char **reason) {
  if (!u) {
    password_verify_dummy(password);
    *reason = "unknown_email";
    return IAM_LOGIN_BAD;
  }
  if (!u->password_hash[0]) {
    password_verify_dummy(password);
    *reason = "no_password";
    return IAM_LOGIN_BAD;
  }
  if (!password_verify(u->password_hash, password)) {
    *reason = "wrong_password";
    return IAM_LOGIN_BAD;
  }
  if (u->suspended) {
    *reason = "suspended";
    return IAM_LOGIN_BAD;
  }
  if (!u->verified) {
    *reason = "email_not_verified";
    return IAM_LOGIN_UNVERIFIED;
  }
  *reason = "ok";
  return IAM_LOGIN_OK;
}

int iam_lock_remaining(struct store_tx *tx, const char *email_norm, int64_t now_us,
                       int64_t *retry_after_s) {
  int64_t until = 0;
  int rc = store_login_lock_get(tx, email_norm, &until);
  if (rc) return rc;
  *retry_after_s = until > now_us ? (until - now_us + US_PER_SEC - 1) / US_PER_SEC : 0;
  return 0;
}

int iam_login_failed(struct store_tx *tx, const char *email_norm, int64_t now_us, bool *locked) {
  int64_t count = 0;
  *locked = false;
  int rc = store_login_failure_add(tx, email_norm, now_us, now_us - IAM_LOCK_WINDOW_US, &count);
  if (rc || count < IAM_LOCK_FAILURES) return rc;
  *locked = true;
  return store_login_lock_set(tx, email_norm, now_us + IAM_LOCK_DURATION_US);
}

int iam_login_clear(struct store_tx *tx, const char *email_norm) {
  return store_login_clear(tx, email_norm);
}

/* --- sessions ----------------------------------------------------------- */

void iam_session_set_orgs(struct session_claims *c, const struct user_org *orgs, size_t norgs) {
  c->norgs = norgs < SESSION_ORGS_MAX ? norgs : SESSION_ORGS_MAX;
  c->orgs_truncated = norgs > SESSION_ORGS_MAX;
  for (size_t i = 0; i < c->norgs; i++) {
    snprintf(c->orgs[i].org_id, sizeof(c->orgs[i].org_id), "%s", orgs[i].id);
    snprintf(c->orgs[i].role, sizeof(c->orgs[i].role), "%s", orgs[i].role);
  }
}

void iam_session_claims(const struct user *u, const struct user_org *orgs, size_t norgs,
                        const char *active_org_id, int64_t now_s, struct session_claims *c) {
  memset(c, 0, sizeof(*c));
  snprintf(c->sub, sizeof(c->sub), "%s", u->id);
  session_new_sid(c->sid);
  snprintf(c->email, sizeof(c->email), "%s", u->email);
  snprintf(c->name, sizeof(c->name), "%s", u->name);
  c->sv = u->session_version;
  c->iat = c->auth_time = now_s;
  iam_session_set_orgs(c, orgs, norgs);
  const char *aorg = active_org_id && active_org_id[0] ? active_org_id : norgs ? orgs[0].id : "";
  snprintf(c->aorg, sizeof(c->aorg), "%s", aorg);
  session_set_expiry(c);
}
