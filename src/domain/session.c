/*
 * session.c — HS256 JWTs for sessions, with jansson for the claims and
 * libsodium for the MAC.
 */
#include "domain/session.h"

#include <jansson.h>
#include <string.h>

#include "core/crypto.h"
#include "core/xmalloc.h"

static const char jwt_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

void session_keys_derive(const uint8_t *secret, size_t secret_len, struct session_keys *out) {
  crypto_hmac_sha256(secret, secret_len, "keel session signing v1", 23, out->sign);
  crypto_hmac_sha256(secret, secret_len, "keel csrf v1", 12, out->csrf);
}

void session_new_sid(char out[SESSION_SID_SIZE]) {
  crypto_token(16, out, SESSION_SID_SIZE);
}

void session_set_expiry(struct session_claims *c) {
  int64_t exp = c->iat + SESSION_IDLE_S;
  int64_t cap = c->auth_time + SESSION_ABSOLUTE_S;
  c->exp = exp < cap ? exp : cap;
}

static int append_b64(struct buf *out, const void *p, size_t n) {
  size_t cap = 4 * ((n + 2) / 3) + 1;
  if (buf_reserve(out, cap) != 0) return -1;
  size_t w = crypto_b64url(p, n, out->data + out->len, cap);
  out->len += w;
  out->data[out->len] = '\0';
  return 0;
}

int session_encode(const struct session_claims *c, const struct session_keys *k, struct buf *out) {
  json_t *orgs = json_array();
  for (size_t i = 0; i < c->norgs; i++) {
    json_array_append_new(
        orgs, json_pack("{s:s, s:s}", "org_id", c->orgs[i].org_id, "role", c->orgs[i].role));
  }
  json_t *claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:o, s:b}", "sub",
                             c->sub, "sid", c->sid, "email", c->email, "name", c->name, "sv",
                             (json_int_t)c->sv, "iat", (json_int_t)c->iat, "exp",
                             (json_int_t)c->exp, "auth_time", (json_int_t)c->auth_time, "aorg",
                             c->aorg, "orgs", orgs, "orgs_truncated", c->orgs_truncated);
  if (!claims) return -1;
  char *payload = json_dumps(claims, JSON_COMPACT);
  json_decref(claims);
  if (!payload) return -1;
  size_t start = out->len;
  int rc = append_b64(out, jwt_header, sizeof(jwt_header) - 1);
  rc |= buf_putc(out, '.');
  rc |= append_b64(out, payload, strlen(payload));
  xfree(payload); /* jansson allocates through xmalloc (see main) */
  if (rc) return -1;
  uint8_t mac[32];
  crypto_hmac_sha256(k->sign, sizeof(k->sign), out->data + start, out->len - start, mac);
  rc |= buf_putc(out, '.');
  rc |= append_b64(out, mac, sizeof(mac));
  return rc ? -1 : 0;
}

static int copy_str(json_t *obj, const char *key, char *dst, size_t dstsize, bool required) {
  json_t *v = json_object_get(obj, key);
  if (!v) {
    if (required) return -1;
    dst[0] = '\0';
    return 0;
  }
  const char *s = json_string_value(v);
  if (!s || strlen(s) >= dstsize) return -1;
  memcpy(dst, s, strlen(s) + 1);
  return 0;
}

static int get_int(json_t *obj, const char *key, int64_t *out) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v)) return -1;
  *out = (int64_t)json_integer_value(v);
  return 0;
}

int session_decode(struct slice token, const struct session_keys *k, int64_t now_s,
                   struct session_claims *out) {
  if (token.len == 0 || token.len > SESSION_TOKEN_MAX) return -1;
  struct slice head, rest, body, sig;
  if (!slice_cut(token, '.', &head, &rest)) return -1;
  if (!slice_cut(rest, '.', &body, &sig)) return -1;
  if (slice_index(sig, '.') >= 0) return -1;
  /* Signature first: nothing of an unsigned token is parsed. */
  uint8_t want[32], got[33];
  crypto_hmac_sha256(k->sign, sizeof(k->sign), token.p, head.len + 1 + body.len, want);
  if (crypto_unb64url(sig.p, sig.len, got, sizeof(got)) != 32) return -1;
  if (!crypto_equal(want, got, 32)) return -1;

  char hdr[128];
  long hn = crypto_unb64url(head.p, head.len, (uint8_t *)hdr, sizeof(hdr) - 1);
  if (hn < 0 || (size_t)hn != sizeof(jwt_header) - 1 || memcmp(hdr, jwt_header, (size_t)hn) != 0) {
    return -1;
  }
  size_t cap = body.len;
  uint8_t *payload = xmalloc(cap + 1);
  long pn = crypto_unb64url(body.p, body.len, payload, cap);
  json_t *claims = pn > 0 ? json_loadb((const char *)payload, (size_t)pn, 0, NULL) : NULL;
  xfree(payload);
  if (!json_is_object(claims)) {
    json_decref(claims);
    return -1;
  }
  memset(out, 0, sizeof(*out));
  int rc = 0;
  rc |= copy_str(claims, "sub", out->sub, sizeof(out->sub), true);
  rc |= copy_str(claims, "sid", out->sid, sizeof(out->sid), true);
  rc |= copy_str(claims, "email", out->email, sizeof(out->email), true);
  rc |= copy_str(claims, "name", out->name, sizeof(out->name), true);
  rc |= copy_str(claims, "aorg", out->aorg, sizeof(out->aorg), false);
  rc |= get_int(claims, "sv", &out->sv);
  rc |= get_int(claims, "iat", &out->iat);
  rc |= get_int(claims, "exp", &out->exp);
  rc |= get_int(claims, "auth_time", &out->auth_time);
  json_t *orgs = json_object_get(claims, "orgs");
  size_t i;
  json_t *o;
  json_array_foreach(orgs, i, o) {
    if (out->norgs == SESSION_ORGS_MAX) break;
    struct session_org *so = &out->orgs[out->norgs++];
    rc |= copy_str(o, "org_id", so->org_id, sizeof(so->org_id), true);
    rc |= copy_str(o, "role", so->role, sizeof(so->role), true);
  }
  out->orgs_truncated = json_is_true(json_object_get(claims, "orgs_truncated"));
  json_decref(claims);
  if (rc) return -1;
  return session_claims_current(out, now_s) ? 0 : -1;
}

bool session_claims_current(const struct session_claims *c, int64_t now_s) {
  if (now_s >= c->exp) return false;
  if (now_s >= c->auth_time + SESSION_ABSOLUTE_S) return false;
  return c->iat <= now_s + 300; /* issued in the future: clock abuse */
}

void session_csrf_token(const struct session_keys *k, const char *sid,
                        char out[SESSION_CSRF_SIZE]) {
  uint8_t mac[32];
  crypto_hmac_sha256(k->csrf, sizeof(k->csrf), sid, strlen(sid), mac);
  crypto_b64url(mac, sizeof(mac), out, SESSION_CSRF_SIZE);
}

bool session_csrf_ok(const struct session_keys *k, const char *sid, struct slice presented) {
  char want[SESSION_CSRF_SIZE];
  session_csrf_token(k, sid, want);
  size_t n = strlen(want);
  if (presented.len != n) return false;
  return crypto_equal(want, presented.p, n);
}
