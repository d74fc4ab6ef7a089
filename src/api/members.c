/*
 * members.c — team management (R-IAM-8): list members, change a role,
 * remove a member, leave, transfer ownership.
 *
 * The rules (admins never touch owners, the last owner stays, owner-only
 * transfer) are domain/tenancy.c's; each change runs with its audit entry in
 * one store_write job, so the check and the change see the same state.
 */
#include <stdio.h>
#include <string.h>

#include "api/orgs.h"
#include "core/json.h"
#include "core/limits.h"
#include "domain/tenancy.h"
#include "store/orgs.h"

static json_t *member_json(const struct member_row *m) {
  return json_pack("{s:s, s:s, s:s, s:s, s:o}", "user_id", m->user_id, "email", m->email, "name",
                   m->name, "role", rbac_role_name(m->role), "joined_at",
                   tenancy_time_json(m->joined_at));
}

static void release_json(void *p) {
  json_decref(p);
}

/* --- GET /v1/orgs/{org}/members -------------------------------------------- */

struct member_list {
  struct ctx *ctx;
  int64_t after_joined;
  const char *after_user;
  int64_t limit, seen;
  json_t *data;
  struct member_row last;
};

static int member_list_row(const struct member_row *row, void *arg) {
  struct member_list *l = arg;
  if (++l->seen > l->limit) return 0; /* the extra row only says there is more */
  json_array_append_new(l->data, member_json(row));
  l->last = *row;
  return 0;
}

static int member_list_tx(struct store_tx *tx, void *arg) {
  struct member_list *l = arg;
  return store_member_list(tx, &l->ctx->scope, l->after_joined, l->after_user, l->limit + 1,
                           member_list_row, l);
}

/* A members cursor is "<joined µs>.<user id>". */
static int parse_member_cursor(char *cursor, struct member_list *l) {
  if (!cursor[0]) return 0;
  char *dot = strchr(cursor, '.');
  if (!dot) return -1;
  *dot = '\0';
  if (slice_to_i64(slice_from_cstr(cursor), &l->after_joined) != 0) return -1;
  /* A join time is after 1970 and before the year 10000; anything else was
   * not made here (and is out of range for a PostgreSQL timestamp). */
  if (l->after_joined < 0 || l->after_joined >= INT64_C(253402300800000000)) return -1;
  l->after_user = dot + 1;
  return id_valid(slice_from_cstr(l->after_user)) ? 0 : -1;
}

static int h_members_list(struct ctx *ctx) {
  char *cursor = arena_alloc(ctx->arena, LIMIT_CURSOR_MAX);
  struct member_list *l = arena_calloc(ctx->arena, 1, sizeof(*l));
  l->ctx = ctx;
  l->after_user = "";
  l->data = json_array();
  arena_on_cleanup(ctx->arena, release_json, l->data);
  if (orgs_page_query(ctx, &l->limit, cursor, LIMIT_CURSOR_MAX)) return 0;
  if (parse_member_cursor(cursor, l) != 0) {
    return api_problem(ctx, "invalid_parameter", "cursor is not one this list returned");
  }
  int rc = store_read(api_store(ctx->api), member_list_tx, l);
  if (rc) return api_status(ctx, rc);
  json_t *next = json_null();
  if (l->seen > l->limit) {
    const char *key =
        arena_printf(ctx->arena, "%lld.%s", (long long)l->last.joined_at, l->last.user_id);
    json_decref(next);
    next = json_string(orgs_cursor_encode(ctx, key));
  }
  return api_json(ctx, 200, json_pack("{s:O, s:o}", "data", l->data, "next_cursor", next));
}

/* --- PATCH /v1/orgs/{org}/members/{user} ------------------------------------ */

static const char *const role_names[] = {"owner", "admin", "member", "viewer"};
static const enum role role_values[] = {ROLE_OWNER, ROLE_ADMIN, ROLE_MEMBER, ROLE_VIEWER};
static const char *const role_fields[] = {"role"};

struct member_change {
  struct ctx *ctx;
  const char *user_id;
  enum role to, from;
  struct member_row member;
  struct tenancy_err err;
};

static int role_change_tx(struct store_tx *tx, void *arg) {
  struct member_change *j = arg;
  struct ctx *ctx = j->ctx;
  int rc = tenancy_member_set_role(tx, &ctx->org, ctx->role, j->user_id, j->to, &j->from, &j->err);
  if (!rc) rc = store_member_get(tx, &ctx->scope, j->user_id, &j->member);
  if (rc || j->from == j->to) return rc;
  json_t *d = json_pack("{s:s, s:s}", "from", rbac_role_name(j->from), "to", rbac_role_name(j->to));
  rc = ctx_audit(ctx, tx, "member.role_changed", "user", j->user_id, true, d);
  json_decref(d);
  return rc;
}

static int h_member_update(struct ctx *ctx) {
  const char *user_id = orgs_id_param(ctx, "user", "member");
  if (!user_id) return 0;
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  int role_index = 0;
  json_reject_unknown(body, NULL, role_fields, 1, &fe);
  json_get_enum(body, "role", NULL, JSON_REQUIRED, role_names, 4, &role_index, &fe);
  if (fe.count) return api_validation(ctx, &fe);

  struct member_change *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->user_id = user_id;
  j->to = role_values[role_index];
  int rc = store_write(api_store(ctx->api), role_change_tx, j);
  if (rc) return orgs_refusal(ctx, &j->err, rc);
  return api_json(ctx, 200, member_json(&j->member));
}

/* --- DELETE /v1/orgs/{org}/members/{user} and POST /v1/orgs/{org}/leave ----- */

static int member_remove_tx(struct store_tx *tx, void *arg) {
  struct member_change *j = arg;
  struct ctx *ctx = j->ctx;
  bool leaving = strcmp(j->user_id, ctx->user.id) == 0;
  int rc =
      tenancy_member_remove(tx, &ctx->org, ctx->user.id, ctx->role, j->user_id, &j->from, &j->err);
  if (rc) return rc;
  json_t *d = json_pack("{s:s}", "role", rbac_role_name(j->from));
  rc = ctx_audit(ctx, tx,
                 leaving && ctx->route->method == HTTP_POST ? "member.left" : "member.removed",
                 "user", j->user_id, true, d);
  json_decref(d);
  return rc;
}

static int remove_member(struct ctx *ctx, const char *user_id) {
  struct member_change *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->user_id = user_id;
  int rc = store_write(api_store(ctx->api), member_remove_tx, j);
  if (rc) return orgs_refusal(ctx, &j->err, rc);
  return orgs_no_content(ctx);
}

static int h_member_remove(struct ctx *ctx) {
  const char *user_id = orgs_id_param(ctx, "user", "member");
  if (!user_id) return 0;
  return remove_member(ctx, user_id);
}

static int h_org_leave(struct ctx *ctx) {
  return remove_member(ctx, ctx->user.id);
}

/* --- POST /v1/orgs/{org}/transfer-ownership --------------------------------- */

static const char *const transfer_fields[] = {"user_id"};

struct transfer {
  struct ctx *ctx;
  const char *to;
  struct tenancy_err err;
};

static int transfer_tx(struct store_tx *tx, void *arg) {
  struct transfer *j = arg;
  struct ctx *ctx = j->ctx;
  int rc = tenancy_ownership_transfer(tx, &ctx->org, ctx->user.id, j->to, &j->err);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s}", "from", ctx->user.id, "to", j->to);
  rc = ctx_audit(ctx, tx, "org.ownership_transferred", "user", j->to, true, d);
  json_decref(d);
  return rc;
}

static int h_ownership_transfer(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  struct transfer *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  json_reject_unknown(body, NULL, transfer_fields, 1, &fe);
  if (json_get_str(body, "user_id", NULL, JSON_REQUIRED, ID_STR_LEN, ID_STR_LEN, &j->to, &fe) ==
          0 &&
      !id_valid(slice_from_cstr(j->to))) {
    field_errors_add(&fe, "user_id", "invalid_format", "must be a user id (UUID)");
  }
  if (fe.count) return api_validation(ctx, &fe);
  char *to = arena_strdup(ctx->arena, j->to);
  for (char *p = to; *p; p++) {
    if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
  }
  j->to = to;
  int rc = store_write(api_store(ctx->api), transfer_tx, j);
  if (rc) return orgs_refusal(ctx, &j->err, rc);
  ctx->role = ROLE_ADMIN;
  return api_json(ctx, 200, tenancy_org_json(&ctx->org, ROLE_ADMIN));
}

/* --- routes ------------------------------------------------------------------ */

static const struct route rows[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/members",
     .handler = h_members_list,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_READ},
    {.method = HTTP_PATCH,
     .pattern = "/v1/orgs/{org}/members/{user}",
     .handler = h_member_update,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_DELETE,
     .pattern = "/v1/orgs/{org}/members/{user}",
     .handler = h_member_remove,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs/{org}/leave",
     .handler = h_org_leave,
     .auth = AUTH_SESSION,
     .permission = PERM_ORG_READ},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs/{org}/transfer-ownership",
     .handler = h_ownership_transfer,
     .auth = AUTH_SESSION,
     .permission = PERM_OWNERSHIP_TRANSFER,
     .body = ROUTE_BODY_DEFAULT},
};

const struct route *routes_members(size_t *count) {
  *count = sizeof(rows) / sizeof(rows[0]);
  return rows;
}
