/*
 * session.h — session tokens (a JWT, HS256) and their CSRF tokens.
 *
 * The token travels in the cookie __Host-keel_session. Its claims:
 *   sub (user id), sid (random session id), email, name, sv (the user's
 *   session version when issued: bumping it in the store revokes every
 *   token), iat, exp (sliding: iat + 7 days, never past auth_time + 30 days),
 *   auth_time (the login), aorg (active org id, may be empty), orgs (up to
 *   SESSION_ORGS_MAX {org_id, role} pairs — informational: authorisation
 *   always reads memberships from the store), orgs_truncated.
 * Keeping only ids and roles bounds the cookie well under 4 096 bytes.
 *
 * CSRF: the token returned at login is HMAC(csrf key, sid) — a double submit
 * bound to the session: it cannot be forged without the server key and is
 * useless with any other session.
 *
 * Thread-safety: pure functions.
 */
#ifndef KEEL_DOMAIN_SESSION_H
#define KEEL_DOMAIN_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/ids.h"
#include "core/slice.h"

#define SESSION_COOKIE        "__Host-keel_session"
#define SESSION_ORGS_MAX      30
#define SESSION_SID_SIZE      24           /* 16 random bytes, base64url, NUL */
#define SESSION_CSRF_SIZE     48           /* 32 bytes base64url (43) + NUL */
#define SESSION_IDLE_S        (7 * 86400)  /* sliding inactivity expiry */
#define SESSION_ABSOLUTE_S    (30 * 86400) /* absolute cap from login */
#define SESSION_RENEW_AFTER_S 3600         /* re-issue the cookie when older */
#define SESSION_TOKEN_MAX     4000         /* refuse larger cookies outright */

struct session_org {
  char org_id[ID_STR_SIZE];
  char role[8];
};

struct session_claims {
  char sub[ID_STR_SIZE];
  char sid[SESSION_SID_SIZE];
  char email[256];
  char name[128];
  int64_t sv;
  int64_t iat, exp, auth_time; /* seconds since the epoch */
  char aorg[ID_STR_SIZE];
  struct session_org orgs[SESSION_ORGS_MAX];
  size_t norgs;
  bool orgs_truncated;
};

/* A session-signing key and a CSRF key derived from the server secret. */
struct session_keys {
  uint8_t sign[32];
  uint8_t csrf[32];
};

void session_keys_derive(const uint8_t *secret, size_t secret_len, struct session_keys *out);
/* Fresh sid. */
void session_new_sid(char out[SESSION_SID_SIZE]);
/* Sets exp from iat and auth_time (sliding, capped). */
void session_set_expiry(struct session_claims *c);
/* Appends the signed token to out. Returns 0 or -1 (out full). */
int session_encode(const struct session_claims *c, const struct session_keys *k, struct buf *out);
/*
 * Verifies the signature (constant time), the header (alg HS256 only) and
 * expiry against now_s, and fills *out. Returns 0, or -1 for any defect
 * (the caller answers 401 without saying which).
 */
int session_decode(struct slice token, const struct session_keys *k, int64_t now_s,
                   struct session_claims *out);
/*
 * Whether claims that were once verified are still current at now_s: not
 * expired (exp), not past the absolute cap (auth_time + SESSION_ABSOLUTE_S),
 * not issued in the future (iat more than 5 minutes ahead: clock abuse).
 * session_decode applies the same test; a cache of decoded tokens applies
 * it on every use.
 */
bool session_claims_current(const struct session_claims *c, int64_t now_s);
/* The CSRF token for a session id. */
void session_csrf_token(const struct session_keys *k, const char *sid, char out[SESSION_CSRF_SIZE]);
/* Constant-time check of a presented CSRF token. */
bool session_csrf_ok(const struct session_keys *k, const char *sid, struct slice presented);

#endif
