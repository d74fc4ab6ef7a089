/*
 * audit.c — appending to and verifying the per-org audit hash chains.
 */
#include "domain/audit.h"

#include <string.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/time.h"
#include "core/xmalloc.h"

/* Compact, keys sorted, non-ASCII as \uXXXX: deterministic across
 * implementations (docs/internals/audit.md). */
#define CANON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY)

/* Every member of the canonical form is present: a value that cannot be
 * encoded (not UTF-8) makes the whole entry unencodable rather than being
 * left out, so no stored field escapes the hash. */
static void put(json_t *o, const char *key, json_t *v, bool *bad) {
  if (!v || json_object_set_new(o, key, v) != 0) *bad = true;
}

static json_t *str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

int audit_canonical(const char *org_id, const struct audit_row *r, struct buf *out) {
  json_t *details = json_loads(r->details ? r->details : "{}", JSON_DECODE_ANY, NULL);
  if (!details) details = json_string(r->details); /* damaged: still hashed, never matches */
  bool bad = false;
  json_t *o = json_object();
  put(o, "action", str_or_null(r->action), &bad);
  put(o, "actor_id", str_or_null(r->actor_id), &bad);
  put(o, "actor_type", str_or_null(r->actor_type), &bad);
  put(o, "at", json_integer((json_int_t)r->at), &bad);
  put(o, "details", details, &bad);
  put(o, "id", json_string(r->id), &bad);
  put(o, "ip", str_or_null(r->ip), &bad);
  put(o, "org_id", json_string(org_id), &bad);
  put(o, "resource_id", str_or_null(r->resource_id), &bad);
  put(o, "resource_type", str_or_null(r->resource_type), &bad);
  put(o, "result", str_or_null(r->result), &bad);
  put(o, "seq", json_integer((json_int_t)r->seq), &bad);
  put(o, "user_agent", str_or_null(r->user_agent), &bad);
  if (bad) {
    json_decref(o);
    return -1;
  }
  size_t need = json_dumpb(o, NULL, 0, CANON_FLAGS);
  int rc = -1;
  if (need > 0 && buf_reserve(out, need) == 0) {
    json_dumpb(o, out->data + out->len, need, CANON_FLAGS);
    out->len += need;
    out->data[out->len] = '\0';
    rc = 0;
  }
  json_decref(o);
  return rc;
}

void audit_hash(const uint8_t prev[AUDIT_HASH_LEN], const struct buf *canonical,
                uint8_t out[AUDIT_HASH_LEN]) {
  size_t n = AUDIT_HASH_LEN + canonical->len;
  uint8_t *msg = xmalloc(n);
  memcpy(msg, prev, AUDIT_HASH_LEN);
  memcpy(msg + AUDIT_HASH_LEN, canonical->data, canonical->len);
  crypto_sha256(msg, n, out);
  xfree(msg);
}

int audit_append(struct store_tx *tx, const struct audit_entry *e, char id_out[ID_STR_SIZE]) {
  struct org_scope scope;
  const char *org = e->org_id ? e->org_id : AUDIT_PLATFORM_ORG;
  if (strlen(org) >= sizeof(scope.org_id)) return KEEL_EINVAL;
  memcpy(scope.org_id, org, strlen(org) + 1);

  char *details = NULL;
  if (e->details) details = json_dumps(e->details, CANON_FLAGS);
  struct audit_row r = {
      .at = time_now_us(),
      .actor_type = e->actor_type ? e->actor_type : "system",
      .actor_id = e->actor_id,
      .action = e->action,
      .resource_type = e->resource_type,
      .resource_id = e->resource_id,
      .ip = e->ip,
      .user_agent = e->user_agent,
      .result = e->success ? "success" : "failure",
      .details = details ? details : "{}",
  };
  id_new_str(r.id);
  int rc = store_audit_head(tx, &scope, &r.seq, r.prev_hash);
  if (rc) goto done;
  r.seq++;
  struct buf canon;
  buf_init(&canon, 1 << 20);
  rc = audit_canonical(org, &r, &canon) == 0 ? 0 : KEEL_EINVAL;
  if (rc == 0) {
    audit_hash(r.prev_hash, &canon, r.hash);
    rc = store_audit_insert(tx, &scope, &r);
  }
  buf_free(&canon);
  if (rc == 0 && id_out) memcpy(id_out, r.id, ID_STR_SIZE);
done:
  xfree(details); /* jansson allocates through xmalloc (see main) */
  return rc;
}

struct verify_state {
  const char *org_id;
  struct audit_verify_result *res;
  uint8_t prev[AUDIT_HASH_LEN];
  int64_t expect_seq;
};

static int verify_row(const struct audit_row *r, void *arg) {
  struct verify_state *vs = arg;
  struct audit_verify_result *res = vs->res;
  res->entries++;
  const char *reason = NULL;
  if (r->seq != vs->expect_seq) {
    reason = "an entry is missing (sequence gap)";
  } else if (memcmp(r->prev_hash, vs->prev, AUDIT_HASH_LEN) != 0) {
    reason = "prev_hash does not match the previous entry's hash";
  } else {
    struct buf canon;
    buf_init(&canon, 1 << 20);
    uint8_t h[AUDIT_HASH_LEN];
    if (audit_canonical(vs->org_id, r, &canon) != 0) {
      reason = "the entry cannot be encoded";
    } else {
      audit_hash(r->prev_hash, &canon, h);
      if (!crypto_equal(h, r->hash, AUDIT_HASH_LEN)) {
        reason = "the entry's content does not match its hash";
      }
    }
    buf_free(&canon);
  }
  if (reason) {
    res->valid = false;
    res->failed_seq = r->seq;
    res->reason = reason;
    return 1; /* stop at the first broken link */
  }
  memcpy(vs->prev, r->hash, AUDIT_HASH_LEN);
  vs->expect_seq++;
  return 0;
}

struct verify_args {
  const char *org_id;
  struct audit_verify_result *res;
};

static int verify_tx(struct store_tx *tx, void *arg) {
  struct verify_args *va = arg;
  struct org_scope scope;
  memcpy(scope.org_id, va->org_id, strlen(va->org_id) + 1);
  struct verify_state vs = {.org_id = va->org_id, .res = va->res, .expect_seq = 1};
  struct audit_filter f = {.ascending = true};
  int rc = store_audit_list(tx, &scope, &f, verify_row, &vs);
  return rc == 1 ? 0 : rc;
}

int audit_verify(struct store *s, const char *org_id, struct audit_verify_result *out) {
  memset(out, 0, sizeof(*out));
  out->valid = true;
  if (strlen(org_id) >= ID_STR_SIZE) return KEEL_EINVAL;
  struct verify_args va = {.org_id = org_id, .res = out};
  return store_read(s, verify_tx, &va);
}
