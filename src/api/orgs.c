/*
 * orgs.c — organisations: create, list, read, update, delete (R-TEN-1,
 * R-IAM-10), and the helpers the organisation area's handlers share
 * (api/orgs.h).
 *
 * Every change and its audit entry are written in one store_write job.
 * Deletion is soft (deleted_at): the org disappears for everyone at once (the
 * middleware resolves only orgs that are not deleted); its data is purged
 * later (R-LIF-2).
 */
#include "api/orgs.h"
#include "api/authcache.h"
#include "api/keys.h"

#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "domain/plans.h"
#include "domain/tenancy.h"
#include "store/orgs.h"

/* --- shared helpers ------------------------------------------------------- */

int orgs_refusal(struct ctx *ctx, const struct tenancy_err *err, int status) {
  if (!err || !err->code) return api_status(ctx, status);
  if (strcmp(err->code, "plan_limit_reached") == 0) {
    return api_plan_limit(ctx, err->limit, err->limit_value, err->plan);
  }
  if (strcmp(err->code, "validation_failed") == 0) {
    struct field_errors fe = {0};
    field_errors_add(&fe, err->field ? err->field : "body", "invalid_format", err->detail);
    return api_validation(ctx, &fe);
  }
  if (strcmp(err->code, "forbidden") == 0) {
    json_t *d = json_pack("{s:s, s:s, s:s, s:s}", "route", ctx->route->pattern, "method",
                          http_method_name(ctx->route->method), "role", rbac_role_name(ctx->role),
                          "reason", err->detail ? err->detail : "");
    ctx_audit_now(ctx, "permission.denied", "route", ctx->route->pattern, false, d);
    json_decref(d);
  }
  return api_problem(ctx, err->code, err->detail);
}

int orgs_page_query(struct ctx *ctx, int64_t *limit, char *cursor, size_t cursor_size) {
  *limit = LIMIT_PAGE_DEFAULT;
  cursor[0] = '\0';
  const char *l = http_req_query(ctx->req, "limit");
  if (l &&
      (slice_to_i64(slice_from_cstr(l), limit) != 0 || *limit < 1 || *limit > LIMIT_PAGE_MAX)) {
    api_problemf(ctx, "invalid_parameter", "limit must be an integer from 1 to %d", LIMIT_PAGE_MAX);
    return 1;
  }
  const char *c = http_req_query(ctx->req, "cursor");
  if (!c || !c[0]) return 0;
  size_t n = strlen(c);
  long got = n <= LIMIT_CURSOR_MAX ? crypto_unb64url(c, n, (uint8_t *)cursor, cursor_size - 1) : -1;
  bool printable = got > 0;
  for (long i = 0; printable && i < got; i++) printable = cursor[i] > 0x20 && cursor[i] < 0x7f;
  if (!printable) {
    cursor[0] = '\0';
    api_problem(ctx, "invalid_parameter", "cursor is not one this list returned");
    return 1;
  }
  cursor[got] = '\0';
  return 0;
}

const char *orgs_cursor_encode(struct ctx *ctx, const char *key) {
  size_t n = strlen(key);
  size_t size = 4 * ((n + 2) / 3) + 1;
  char *out = arena_alloc(ctx->arena, size);
  crypto_b64url((const uint8_t *)key, n, out, size);
  return out;
}

void orgs_set_scope(struct ctx *ctx, const char *org_id) {
  ctx->has_org = true;
  snprintf(ctx->scope.org_id, sizeof(ctx->scope.org_id), "%s", org_id);
  log_set_org_id(ctx->scope.org_id);
}

int orgs_no_content(struct ctx *ctx) {
  http_resp_set(ctx->req, 204, NULL, NULL, 0);
  return 0;
}

const char *orgs_id_param(struct ctx *ctx, const char *name, const char *what) {
  const char *v = ctx_param(ctx, name);
  if (!v || !id_valid(slice_from_cstr(v))) {
    api_problemf(ctx, "not_found", "no such %s", what);
    return NULL;
  }
  char *id = arena_strdup(ctx->arena, v);
  for (char *p = id; *p; p++) {
    if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
  }
  return id;
}

/* --- POST /v1/orgs ---------------------------------------------------------- */

static const char *const create_fields[] = {"name", "slug"};

struct org_create {
  struct ctx *ctx;
  const char *name, *slug;
  struct org org;
  const char *why;
};

static int org_create_tx(struct store_tx *tx, void *arg) {
  struct org_create *j = arg;
  int rc = tenancy_org_create(tx, j->ctx->user.id, j->name, j->slug, NULL, &j->org, &j->why);
  if (rc) return rc;
  orgs_set_scope(j->ctx, j->org.id);
  json_t *d =
      json_pack("{s:s, s:s, s:s}", "name", j->org.name, "slug", j->org.slug, "plan", j->org.plan);
  rc = ctx_audit(j->ctx, tx, "org.created", "org", j->org.id, true, d);
  json_decref(d);
  return rc;
}

/* Reads name and slug, each checked by the tenancy rules, into fe. */
static void read_name_slug(json_t *body, enum json_req name_req, const char **name,
                           const char **slug, struct field_errors *fe) {
  if (json_get_str(body, "name", NULL, name_req, 1, LIMIT_ORG_NAME_SIZE - 1, name, fe) == 0) {
    const char *bad = tenancy_name_check(*name);
    if (bad) field_errors_add(fe, "name", "invalid_format", bad);
  }
  if (json_get_str(body, "slug", NULL, JSON_OPTIONAL, LIMIT_SLUG_MIN, LIMIT_SLUG_MAX, slug, fe) ==
      0) {
    const char *bad = tenancy_slug_check(*slug);
    if (bad) field_errors_add(fe, "slug", "invalid_format", bad);
  }
}

static int h_org_create(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  struct org_create *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  json_reject_unknown(body, NULL, create_fields, 2, &fe);
  read_name_slug(body, JSON_REQUIRED, &j->name, &j->slug, &fe);
  if (fe.count) return api_validation(ctx, &fe);

  int rc = store_write(api_store(ctx->api), org_create_tx, j);
  if (rc == KEEL_EDENIED) {
    const struct plan *free_plan = plans_get(PLAN_DEFAULT);
    return api_plan_limit(ctx, "orgs_per_user", free_plan ? free_plan->orgs_per_user_max : 0,
                          PLAN_DEFAULT);
  }
  if (rc == KEEL_ECONFLICT) return api_problem(ctx, "slug_taken", "this slug is taken");
  if (rc == KEEL_EINVAL) return api_problem(ctx, "validation_failed", j->why);
  if (rc) return api_status(ctx, rc);
  http_resp_header(ctx->req, "Location", arena_printf(ctx->arena, "/v1/orgs/%s", j->org.id));
  return api_json(ctx, 201, tenancy_org_json(&j->org, ROLE_OWNER));
}

/* --- GET /v1/orgs -------------------------------------------------------------- */

struct org_list {
  struct ctx *ctx;
  const char *after;
  int64_t limit;
  json_t *data;
  char last[ID_STR_SIZE];
  int64_t seen;
};

static int org_list_row(const struct org *org, enum role role, void *arg) {
  struct org_list *l = arg;
  if (++l->seen > l->limit) return 0; /* the extra row only says there is more */
  json_array_append_new(l->data, tenancy_org_json(org, role));
  memcpy(l->last, org->id, sizeof(l->last));
  return 0;
}

static int org_list_tx(struct store_tx *tx, void *arg) {
  struct org_list *l = arg;
  return store_org_list_for_user(tx, l->ctx->user.id, l->after, l->limit + 1, org_list_row, l);
}

static void release_json(void *p) {
  json_decref(p);
}

static int h_orgs_list(struct ctx *ctx) {
  char cursor[LIMIT_CURSOR_MAX];
  struct org_list l = {.ctx = ctx, .data = json_array()};
  arena_on_cleanup(ctx->arena, release_json, l.data);
  if (orgs_page_query(ctx, &l.limit, cursor, sizeof(cursor))) return 0;
  if (cursor[0] && !id_valid(slice_from_cstr(cursor))) {
    return api_problem(ctx, "invalid_parameter", "cursor is not one this list returned");
  }
  l.after = cursor;
  int rc = store_read(api_store(ctx->api), org_list_tx, &l);
  if (rc) return api_status(ctx, rc);
  json_t *next = l.seen > l.limit ? json_string(orgs_cursor_encode(ctx, l.last)) : json_null();
  return api_json(ctx, 200, json_pack("{s:O, s:o}", "data", l.data, "next_cursor", next));
}

/* --- GET /v1/orgs/{org} -------------------------------------------------------- */

/*
 * Never blocks (ROUTE_INLINE_SESSION). The body depends on the org and the
 * role only, so it is kept with the cached membership the request was
 * authorised from (ctx->org_stamp): rendering it with jansson (parsing the
 * settings, building and dumping a tree) cost about as much as everything
 * else on the cached path together; a later hit is one copy.
 */
static int h_org_get(struct ctx *ctx) {
  struct authcache *ac = api_authcache(ctx->api);
  struct buf *body = &ctx->req->resp_body;
  buf_reset(body);
  if (ac && authcache_member_json_get(ac, ctx->user.id, ctx->org_ref, ctx->org_stamp, body)) {
    ctx->req->status = 200;
    ctx->req->content_type = "application/json";
    return 0;
  }
  int rc = api_json(ctx, 200, tenancy_org_json(&ctx->org, ctx->role));
  if (rc == 0 && ac && ctx->req->status == 200) {
    authcache_member_json_put(ac, ctx->user.id, ctx->org_ref, ctx->org_stamp, body->data,
                              body->len);
  }
  return rc;
}

/* --- PATCH /v1/orgs/{org} ------------------------------------------------------- */

static const char *const update_fields[] = {"name", "slug", "settings"};

struct org_update {
  struct ctx *ctx;
  const char *name, *slug, *settings; /* NULL: unchanged */
  json_t *changed;                    /* field names */
  struct org org;
};

static int org_update_tx(struct store_tx *tx, void *arg) {
  struct org_update *j = arg;
  int rc = store_org_update(tx, &j->ctx->scope, j->name, j->slug, j->settings);
  if (!rc) rc = store_org_get(tx, &j->ctx->scope, &j->org);
  if (rc) return rc;
  json_t *d = json_pack("{s:O}", "fields", j->changed);
  if (j->name) json_object_set_new(d, "name", json_string(j->name));
  if (j->slug) json_object_set_new(d, "slug", json_string(j->slug));
  rc = ctx_audit(j->ctx, tx, "org.updated", "org", j->org.id, true, d);
  json_decref(d);
  return rc;
}

/* The settings object as compact JSON text within LIMIT_ORG_SETTINGS_MAX
 * (arena), or NULL after adding a field error. */
static const char *settings_text(struct ctx *ctx, json_t *settings, struct field_errors *fe) {
  size_t need = json_dumpb(settings, NULL, 0, JSON_COMPACT);
  if (need == 0 || need > LIMIT_ORG_SETTINGS_MAX) {
    field_errors_add(fe, "settings", "too_long", "must be at most 16 KiB as compact JSON");
    return NULL;
  }
  char *text = arena_alloc(ctx->arena, need + 1);
  json_dumpb(settings, text, need, JSON_COMPACT);
  text[need] = '\0';
  return text;
}

/* Keeps only the fields that differ from the org; lists them in changed. */
static void keep_changes(struct org_update *j, const struct org *org) {
  if (j->name && strcmp(j->name, org->name) == 0) j->name = NULL;
  if (j->slug && strcmp(j->slug, org->slug) == 0) j->slug = NULL;
  if (j->settings && strcmp(j->settings, org->settings) == 0) j->settings = NULL;
  if (j->name) json_array_append_new(j->changed, json_string("name"));
  if (j->slug) json_array_append_new(j->changed, json_string("slug"));
  if (j->settings) json_array_append_new(j->changed, json_string("settings"));
}

static int h_org_update(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  struct org_update *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  json_t *settings = NULL;
  json_reject_unknown(body, NULL, update_fields, 3, &fe);
  read_name_slug(body, JSON_OPTIONAL, &j->name, &j->slug, &fe);
  if (json_get_obj(body, "settings", NULL, JSON_OPTIONAL, &settings, &fe) == 0) {
    j->settings = settings_text(ctx, settings, &fe);
  }
  if (fe.count) return api_validation(ctx, &fe);

  j->changed = json_array();
  arena_on_cleanup(ctx->arena, release_json, j->changed);
  keep_changes(j, &ctx->org);
  if (json_array_size(j->changed) == 0) {
    return api_json(ctx, 200, tenancy_org_json(&ctx->org, ctx->role));
  }
  int rc = store_write(api_store(ctx->api), org_update_tx, j);
  if (rc == KEEL_ECONFLICT) return api_problem(ctx, "slug_taken", "this slug is taken");
  if (rc) return api_status(ctx, rc);
  keys_org_changed(ctx->api, ctx->org.id); /* cached keys carry the org's name and settings */
  return api_json(ctx, 200, tenancy_org_json(&j->org, ctx->role));
}

/* --- DELETE /v1/orgs/{org} ------------------------------------------------------- */

static int org_delete_tx(struct store_tx *tx, void *arg) {
  struct ctx *ctx = arg;
  int rc = store_org_soft_delete(tx, &ctx->scope);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s}", "name", ctx->org.name, "slug", ctx->org.slug);
  rc = ctx_audit(ctx, tx, "org.deleted", "org", ctx->org.id, true, d);
  json_decref(d);
  return rc;
}

static int h_org_delete(struct ctx *ctx) {
  int rc = store_write(api_store(ctx->api), org_delete_tx, ctx);
  if (rc) return api_status(ctx, rc);
  keys_org_changed(ctx->api, ctx->org.id); /* its keys stop at once */
  return orgs_no_content(ctx);
}

/* --- routes --------------------------------------------------------------------- */

static const struct route rows[] = {
    {.method = HTTP_GET, .pattern = "/v1/orgs", .handler = h_orgs_list, .auth = AUTH_SESSION},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs",
     .handler = h_org_create,
     .auth = AUTH_SESSION,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}",
     .handler = h_org_get,
     .auth = AUTH_SESSION,
     .permission = PERM_ORG_READ,
     .flags = ROUTE_INLINE_SESSION},
    {.method = HTTP_PATCH,
     .pattern = "/v1/orgs/{org}",
     .handler = h_org_update,
     .auth = AUTH_SESSION,
     .permission = PERM_ORG_UPDATE,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_DELETE,
     .pattern = "/v1/orgs/{org}",
     .handler = h_org_delete,
     .auth = AUTH_SESSION,
     .permission = PERM_ORG_DELETE},
};

const struct route *routes_orgs(size_t *count) {
  *count = sizeof(rows) / sizeof(rows[0]);
  return rows;
}
