/*
 * audit.c — reading an org's audit log (R-AUD-1..3):
 *
 *   GET /v1/orgs/{org}/audit-log         newest first, filtered, paged
 *   GET /v1/orgs/{org}/audit-log/export  oldest first, with hashes and the
 *                                        chain's verification; audited
 *
 * Both need audit.read (owner, admin). Reading the log is not itself
 * audited; exporting it is (R-AUD-2), and an export that cannot be audited
 * is not served.
 *
 * Also here, shared with admin.c (declared there): signed list cursors and
 * the ?limit= parser. A cursor is base64url(kind ‖ payload ‖ tag), the tag a
 * truncated HMAC-SHA-256 over the kind, a binding (the org id for audit
 * pages) and the payload, under a key derived from the server secret. So a
 * cursor cannot be forged, edited, or replayed against another org or list:
 * each of those is a 400 naming `cursor`.
 *
 * The document shapes are in docs/openapi/30-audit-admin.json; the chain and
 * its canonical form in docs/internals/audit.md.
 */
#include <string.h>

#include "api/api.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/time.h"
#include "domain/audit.h"
#include "store/audit.h"

/* --- cursors and list parameters (declared in api.h) ---------------------- */

#define CURSOR_TAG_LEN     12 /* 96-bit tag: forging one is out of reach */
#define CURSOR_PAYLOAD_MAX 32
#define CURSOR_DOMAIN      "keel.list-cursor.v1"

/* 400 invalid_parameter naming the query parameter at fault, in the detail
 * and as the extension member "parameter". Returns 0. */
int api_param_problem(struct ctx *ctx, const char *param, const char *detail) {
  return api_problem_ext(ctx, "invalid_parameter", detail, json_pack("{s:s}", "parameter", param));
}

/* tag = HMAC(HMAC(server key, domain), kind ‖ binding ‖ 0 ‖ payload). */
static void cursor_tag(struct ctx *ctx, char kind, const char *binding, const uint8_t *payload,
                       size_t n, uint8_t tag[HMAC256_LEN]) {
  uint8_t subkey[HMAC256_LEN];
  crypto_hmac_sha256(api_key_mac_key(ctx->api), 32, CURSOR_DOMAIN, strlen(CURSOR_DOMAIN), subkey);
  uint8_t msg[1 + ID_STR_SIZE + 1 + CURSOR_PAYLOAD_MAX];
  size_t blen = binding ? strlen(binding) : 0;
  if (blen > ID_STR_SIZE) blen = ID_STR_SIZE; /* bindings are ids */
  size_t m = 0;
  msg[m++] = (uint8_t)kind;
  if (blen) memcpy(msg + m, binding, blen);
  m += blen;
  msg[m++] = 0;
  memcpy(msg + m, payload, n);
  m += n;
  crypto_hmac_sha256(subkey, sizeof(subkey), msg, m, tag);
  crypto_wipe(subkey, sizeof(subkey));
}

/* Writes the cursor (NUL-terminated) into out; returns 0, or -1 when the
 * payload or out is too small (a bug). */
int api_cursor_encode(struct ctx *ctx, char kind, const char *binding, const void *payload,
                      size_t n, char *out, size_t outsize) {
  if (n > CURSOR_PAYLOAD_MAX) return -1;
  uint8_t raw[1 + CURSOR_PAYLOAD_MAX + CURSOR_TAG_LEN];
  uint8_t tag[HMAC256_LEN];
  raw[0] = (uint8_t)kind;
  memcpy(raw + 1, payload, n);
  cursor_tag(ctx, kind, binding, raw + 1, n, tag);
  memcpy(raw + 1 + n, tag, CURSOR_TAG_LEN);
  size_t rawlen = 1 + n + CURSOR_TAG_LEN;
  if (outsize < (rawlen + 2) / 3 * 4 + 1) return -1;
  crypto_b64url(raw, rawlen, out, outsize);
  return 0;
}

/* Checks a cursor and copies its payload (at most max bytes). Returns the
 * payload length, or -1 when the cursor is malformed, of another kind or
 * binding, or forged. */
long api_cursor_decode(struct ctx *ctx, char kind, const char *binding, const char *cursor,
                       void *payload, size_t max) {
  size_t len = strlen(cursor);
  if (len == 0 || len > LIMIT_CURSOR_MAX) return -1;
  uint8_t raw[1 + CURSOR_PAYLOAD_MAX + CURSOR_TAG_LEN + 3];
  long got = crypto_unb64url(cursor, len, raw, sizeof(raw));
  if (got < 1 + CURSOR_TAG_LEN || raw[0] != (uint8_t)kind) return -1;
  size_t n = (size_t)got - 1 - CURSOR_TAG_LEN;
  if (n > max || n > CURSOR_PAYLOAD_MAX) return -1;
  uint8_t tag[HMAC256_LEN];
  cursor_tag(ctx, kind, binding, raw + 1, n, tag);
  if (!crypto_equal(tag, raw + 1 + n, CURSOR_TAG_LEN)) return -1;
  memcpy(payload, raw + 1, n);
  return (long)n;
}

/* ?limit=: 1..max, default LIMIT_PAGE_DEFAULT (or max when smaller).
 * Returns 0, or 1 after answering 400. */
int api_query_limit(struct ctx *ctx, int64_t max, int64_t *limit) {
  const char *s = http_req_query(ctx->req, "limit");
  *limit = max < LIMIT_PAGE_DEFAULT ? max : LIMIT_PAGE_DEFAULT;
  if (!s) return 0;
  if (slice_to_i64(slice_from_cstr(s), limit) != 0 || *limit < 1 || *limit > max) {
    api_param_problem(
        ctx, "limit",
        arena_printf(ctx->arena, "limit must be an integer from 1 to %lld", (long long)max));
    return 1;
  }
  return 0;
}

/* --- query parameters --------------------------------------------------- */

#define AUDIT_ACTION_MAX 64
#define AUDIT_ACTOR_MAX  64

struct audit_query {
  struct audit_filter f;
  const char *from_text, *to_text; /* as sent, echoed in exports */
  bool empty;                      /* the range cannot hold an entry */
};

static bool action_chars_ok(const char *s) {
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) return false;
  }
  return true;
}

static bool actor_chars_ok(const char *s) {
  for (; *s; s++) {
    if (*s <= ' ' || *s > '~') return false; /* ids and key prefixes: printable ASCII */
  }
  return true;
}

static int bad_param(struct ctx *ctx, const char *param, const char *detail) {
  api_param_problem(ctx, param, detail);
  return 1;
}

static int parse_time_param(struct ctx *ctx, const char *name, const char **text, int64_t *us,
                            bool *present) {
  *text = http_req_query(ctx->req, name);
  *present = *text != NULL;
  if (!*text) return 0;
  if (time_parse_rfc3339(slice_from_cstr(*text), us) != 0) {
    return bad_param(
        ctx, name,
        arena_printf(ctx->arena, "%s must be an RFC 3339 time, e.g. 2026-01-31T09:30:00Z", name));
  }
  return 0;
}

/*
 * Reads action, actor, from, to, limit (up to limit_max) and cursor into q.
 * ascending: the cursor continues an oldest-first walk (export). Returns 0,
 * or 1 after answering 400.
 */
static int audit_query_parse(struct ctx *ctx, int64_t limit_max, bool ascending,
                             struct audit_query *q) {
  memset(q, 0, sizeof(*q));
  q->f.ascending = ascending;
  const char *action = http_req_query(ctx->req, "action");
  if (action) {
    if (!action[0] || strlen(action) > AUDIT_ACTION_MAX || !action_chars_ok(action)) {
      return bad_param(ctx, "action",
                       "action must be an action name such as member.role_changed, or a "
                       "prefix ending in '.' such as member. (at most 64 of [a-z0-9_.])");
    }
    q->f.action = action;
  }
  const char *actor = http_req_query(ctx->req, "actor");
  if (actor) {
    if (!actor[0] || strlen(actor) > AUDIT_ACTOR_MAX || !actor_chars_ok(actor)) {
      return bad_param(ctx, "actor", "actor must be a user id or an API key prefix");
    }
    q->f.actor = actor;
  }
  bool has_from, has_to;
  int64_t from = 0, to = 0;
  if (parse_time_param(ctx, "from", &q->from_text, &from, &has_from)) return 1;
  if (parse_time_param(ctx, "to", &q->to_text, &to, &has_to)) return 1;
  if (has_from && has_to && from > to) {
    return bad_param(ctx, "from", "from is after to: the time range is empty the wrong way round");
  }
  /* The store reads 0 as "no bound"; entries are never older than the
   * epoch, so a from at or before it is no bound, and a to at or before it
   * leaves nothing. */
  q->f.from_us = has_from && from > 0 ? from : 0;
  if (has_to) {
    if (to <= 0) q->empty = true;
    q->f.to_us = to;
  }
  if (api_query_limit(ctx, limit_max, &q->f.limit)) return 1;
  const char *cursor = http_req_query(ctx->req, "cursor");
  if (cursor) {
    uint8_t be[8];
    long n =
        api_cursor_decode(ctx, ascending ? 'E' : 'A', ctx->scope.org_id, cursor, be, sizeof(be));
    int64_t seq = 0;
    for (long i = 0; i < n; i++) seq = (int64_t)((uint64_t)seq << 8 | be[i]);
    if (n != 8 || seq < 1) {
      return bad_param(ctx, "cursor",
                       "cursor is not one this server issued for this list; start again "
                       "without it");
    }
    q->f.after_seq = seq;
  }
  return 0;
}

static char *seq_cursor(struct ctx *ctx, char kind, int64_t seq) {
  uint8_t be[8];
  for (int i = 7; i >= 0; i--) {
    be[i] = (uint8_t)(seq & 0xff);
    seq >>= 8;
  }
  char *out = arena_alloc(ctx->arena, 64);
  if (api_cursor_encode(ctx, kind, ctx->scope.org_id, be, sizeof(be), out, 64) != 0) return NULL;
  return out;
}

/* --- entries as JSON ---------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (at most left bytes), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t left) {
  unsigned c = p[0];
  size_t n;
  uint32_t cp, min;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n > left) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

/*
 * A JSON string for s, or null. Stored text is normally UTF-8, but a
 * header value cut at 256 bytes (user agents) can end mid-character; such
 * bytes are shown as U+FFFD rather than dropping the field.
 */
static json_t *str_json(struct ctx *ctx, const char *s) {
  if (!s) return json_null();
  json_t *j = json_string(s);
  if (j) return j;
  size_t n = strlen(s);
  char *fixed = arena_alloc(ctx->arena, n * 3 + 1);
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq(p + i, n - i);
    if (k == 0) {
      memcpy(fixed + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    } else {
      memcpy(fixed + o, p + i, k);
      o += k;
      i += k;
    }
  }
  return json_stringn(fixed, o);
}

static json_t *time_json(int64_t us) {
  char t[RFC3339_MAX];
  time_format_rfc3339(us, t);
  return json_string(t);
}

static json_t *pair_json(struct ctx *ctx, const char *type, const char *id) {
  json_t *o = json_object();
  json_object_set_new(o, "type", str_json(ctx, type));
  json_object_set_new(o, "id", str_json(ctx, id));
  return o;
}

/* One entry as the API shows it; with_chain adds at_us, prev_hash and hash
 * (exports, for offline verification). */
static json_t *entry_json(struct ctx *ctx, const struct audit_row *r, bool with_chain) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(r->id));
  json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
  json_object_set_new(o, "at", time_json(r->at));
  json_object_set_new(o, "actor", pair_json(ctx, r->actor_type, r->actor_id));
  json_object_set_new(o, "action", str_json(ctx, r->action));
  json_object_set_new(o, "resource", pair_json(ctx, r->resource_type, r->resource_id));
  json_object_set_new(o, "ip", str_json(ctx, r->ip));
  json_object_set_new(o, "user_agent", str_json(ctx, r->user_agent));
  json_object_set_new(o, "result", str_json(ctx, r->result));
  json_t *details = r->details ? json_loads(r->details, JSON_DECODE_ANY, NULL) : NULL;
  json_object_set_new(o, "details", details ? details : json_object());
  if (with_chain) {
    char hex[SHA256_HEX_SIZE];
    json_object_set_new(o, "at_us", json_integer((json_int_t)r->at));
    crypto_hex(r->prev_hash, AUDIT_HASH_LEN, hex);
    json_object_set_new(o, "prev_hash", json_string(hex));
    crypto_hex(r->hash, AUDIT_HASH_LEN, hex);
    json_object_set_new(o, "hash", json_string(hex));
  }
  return o;
}

/* --- GET /v1/orgs/{org}/audit-log --------------------------------------- */

struct list_job {
  struct ctx *ctx;
  struct audit_query *q;
  json_t *data;
  int64_t rows;
  int64_t last_seq;
  bool more;
};

static int list_row(const struct audit_row *r, void *arg) {
  struct list_job *j = arg;
  if (j->rows == j->q->f.limit - 1) { /* the probe row past the page */
    j->more = true;
    return 1;
  }
  json_array_append_new(j->data, entry_json(j->ctx, r, false));
  j->rows++;
  j->last_seq = r->seq;
  return 0;
}

static int list_tx(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  int rc = store_audit_list(tx, &j->ctx->scope, &j->q->f, list_row, j);
  return rc == 1 ? 0 : rc;
}

static int h_audit_list(struct ctx *ctx) {
  struct audit_query q;
  if (audit_query_parse(ctx, LIMIT_PAGE_MAX, false, &q)) return 0;
  struct list_job j = {.ctx = ctx, .q = &q, .data = json_array()};
  if (!q.empty) {
    q.f.limit++; /* one more row tells whether there is a next page */
    int rc = store_read(api_store(ctx->api), list_tx, &j);
    if (rc) {
      json_decref(j.data);
      return api_status(ctx, rc);
    }
  }
  json_t *next = json_null();
  if (j.more) {
    char *c = seq_cursor(ctx, 'A', j.last_seq);
    if (c) {
      json_decref(next);
      next = json_string(c);
    }
  }
  return api_json(ctx, 200, json_pack("{s:o, s:o}", "data", j.data, "next_cursor", next));
}

/* --- GET /v1/orgs/{org}/audit-log/export -------------------------------- */

struct export_job {
  struct ctx *ctx;
  struct audit_query *q;
  struct buf *out;
  int64_t rows;
  int64_t last_seq;
  bool truncated;
  int failed; /* 0, or a status */
};

static int export_row(const struct audit_row *r, void *arg) {
  struct export_job *j = arg;
  if (j->rows == j->q->f.limit - 1) {
    j->truncated = true;
    return 1;
  }
  json_t *e = entry_json(j->ctx, r, true);
  size_t need = json_dumpb(e, NULL, 0, JSON_COMPACT);
  if (j->out->len + need + 1 > LIMIT_AUDIT_EXPORT_BYTES) {
    json_decref(e);
    j->truncated = true;
    return 1;
  }
  int rc = (j->rows > 0 ? buf_putc(j->out, ',') : 0) | json_dump_buf(e, j->out);
  json_decref(e);
  if (rc) {
    j->failed = KEEL_ETOOBIG;
    return 1;
  }
  j->rows++;
  j->last_seq = r->seq;
  return 0;
}

static int export_tx(struct store_tx *tx, void *arg) {
  struct export_job *j = arg;
  int rc = store_audit_list(tx, &j->ctx->scope, &j->q->f, export_row, j);
  if (rc == 1) rc = j->failed;
  return rc;
}

static json_t *filters_json(const struct audit_query *q) {
  json_t *o = json_object();
  json_object_set_new(o, "action", q->f.action ? json_string(q->f.action) : json_null());
  json_object_set_new(o, "actor", q->f.actor ? json_string(q->f.actor) : json_null());
  json_object_set_new(o, "from", q->from_text ? json_string(q->from_text) : json_null());
  json_object_set_new(o, "to", q->to_text ? json_string(q->to_text) : json_null());
  return o;
}

/* Appends ,"name":<v> (v consumed). */
static int put_member(struct buf *out, const char *name, json_t *v) {
  int rc = buf_printf(out, ",\"%s\":", name);
  if (rc == 0) rc = json_dump_buf(v, out);
  json_decref(v);
  return rc;
}

static int h_audit_export(struct ctx *ctx) {
  struct audit_query q;
  if (audit_query_parse(ctx, LIMIT_AUDIT_EXPORT_ENTRIES, true, &q)) return 0;
  if (!http_req_query(ctx->req, "limit")) q.f.limit = LIMIT_AUDIT_EXPORT_ENTRIES;

  /* The whole chain is verified, whatever the filters select. */
  struct audit_verify_result chain;
  int rc = audit_verify(api_store(ctx->api), ctx->scope.org_id, &chain);
  if (rc) return api_status(ctx, rc);

  /* The document is written straight into the response body: an export can
   * hold tens of thousands of entries, too many to build as one tree. */
  struct buf *out = &ctx->req->resp_body;
  buf_reset(out);
  char now[RFC3339_MAX];
  time_format_rfc3339(time_now_us(), now);
  json_t *org_id = json_string(ctx->scope.org_id);
  rc = buf_append_cstr(out, "{\"org_id\":") | json_dump_buf(org_id, out);
  json_decref(org_id);
  rc |= buf_printf(out, ",\"exported_at\":\"%s\",\"entries\":[", now);
  if (rc) {
    buf_reset(out);
    return api_problem(ctx, "internal_error", "the export does not fit in a response");
  }
  struct export_job j = {.ctx = ctx, .q = &q, .out = out};
  if (!q.empty) {
    q.f.limit++; /* the probe row tells whether the export is complete */
    rc = store_read(api_store(ctx->api), export_tx, &j);
    q.f.limit--;
    if (rc) {
      buf_reset(out);
      return api_status(ctx, rc == KEEL_ETOOBIG ? KEEL_EINTERNAL : rc);
    }
  }
  json_t *next = json_null();
  if (j.truncated) {
    char *c = seq_cursor(ctx, 'E', j.last_seq);
    if (c) {
      json_decref(next);
      next = json_string(c);
    }
  }
  json_t *chain_json = json_pack(
      "{s:b, s:I, s:o, s:o}", "valid", chain.valid, "entries", (json_int_t)chain.entries,
      "failed_at_seq", chain.valid ? json_null() : json_integer((json_int_t)chain.failed_seq),
      "reason", chain.reason ? json_string(chain.reason) : json_null());
  rc = buf_putc(out, ']');
  rc |= put_member(out, "count", json_integer((json_int_t)j.rows));
  rc |= put_member(out, "truncated", json_boolean(j.truncated));
  rc |= put_member(out, "next_cursor", next);
  rc |= put_member(out, "filters", filters_json(&q));
  rc |= put_member(out, "chain", chain_json);
  rc |= buf_putc(out, '}');
  if (rc) {
    buf_reset(out);
    return api_problem(ctx, "internal_error", "the export does not fit in a response");
  }

  /* R-AUD-2: exports are audited. No entry, no export. */
  json_t *d = json_pack("{s:I, s:b, s:o, s:b}", "entries", (json_int_t)j.rows, "truncated",
                        j.truncated, "filters", filters_json(&q), "chain_valid", chain.valid);
  rc = ctx_audit_now(ctx, "audit.exported", "audit_log", ctx->scope.org_id, true, d);
  json_decref(d);
  if (rc) {
    buf_reset(out);
    return api_status(ctx, rc);
  }
  ctx->req->status = 200;
  ctx->req->content_type = "application/json";
  http_resp_header(ctx->req, "Cache-Control", "no-store");
  return 0;
}

static const struct route audit_routes[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/audit-log",
     .handler = h_audit_list,
     .auth = AUTH_SESSION,
     .permission = PERM_AUDIT_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/audit-log/export",
     .handler = h_audit_export,
     .auth = AUTH_SESSION,
     .permission = PERM_AUDIT_READ},
};

const struct route *routes_audit(size_t *count) {
  *count = sizeof(audit_routes) / sizeof(audit_routes[0]);
  return audit_routes;
}
