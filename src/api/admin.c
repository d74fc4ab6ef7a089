/*
 * admin.c — platform administration (R-IAM-11), for users with the
 * platform-admin flag (AUTH_PLATFORM: the middleware answers 403 and audits
 * everyone else):
 *
 *   GET   /v1/admin/overview                 counts
 *   GET   /v1/admin/orgs?q=&limit=&cursor=   every org, deleted included
 *   PATCH /v1/admin/orgs/{org_id}            {plan}
 *   GET   /v1/admin/users?q=&limit=&cursor=  every user
 *   POST  /v1/admin/users/{user_id}/suspend | /unsuspend
 *
 * The org path parameter is named org_id, not org, on purpose: the
 * middleware resolves {org} for the caller's own membership (404 when not a
 * member), which is the wrong rule for a platform administrator acting on
 * any org. API.md writes the path with {org}; the name is internal.
 *
 * Audit: a plan change is written on the org's own chain ("org.plan_changed",
 * {from, to}); suspensions on the platform chain. Requests that change
 * nothing (the same plan, suspending a suspended user) answer 200 and write
 * no entry.
 */
#include <string.h>

#include "api/api.h"
#include "api/keys.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/time.h"
#include "domain/audit.h"
#include "domain/plans.h"
#include "store/admin.h"

/* "active" in the overview: activity within this window. */
#define ADMIN_ACTIVE_WINDOW_DAYS 7

static json_t *time_json(int64_t us) {
  char t[RFC3339_MAX];
  time_format_rfc3339(us, t);
  return json_string(t);
}

/* --- GET /v1/admin/overview --------------------------------------------- */

struct overview_job {
  int64_t since;
  struct admin_overview out;
};

static int overview_tx(struct store_tx *tx, void *arg) {
  struct overview_job *j = arg;
  return store_admin_overview(tx, j->since, &j->out);
}

static int h_overview(struct ctx *ctx) {
  struct overview_job j = {.since = time_now_us() - ADMIN_ACTIVE_WINDOW_DAYS * US_PER_DAY};
  int rc = store_read(api_store(ctx->api), overview_tx, &j);
  if (rc) return api_status(ctx, rc);
  /* events_*: telemetry ingestion does not exist yet; the fields are kept
   * so the dashboard's shape does not change when it does. */
  return api_json(
      ctx, 200,
      json_pack("{s:I, s:I, s:I, s:i, s:I, s:I}", "users", (json_int_t)j.out.users, "orgs",
                (json_int_t)j.out.orgs, "active_orgs", (json_int_t)j.out.active_orgs,
                "active_window_days", ADMIN_ACTIVE_WINDOW_DAYS, "events_today", (json_int_t)0,
                "events_week", (json_int_t)0));
}

/* --- lists -------------------------------------------------------------- */

struct list_query {
  const char *q;
  int64_t limit;
  char after_id[ID_STR_SIZE]; /* "" from the start */
};

/* ?q=, ?limit=, ?cursor= (kind 'O' or 'U'). Returns 0, or 1 after a 400. */
static int list_query_parse(struct ctx *ctx, char kind, struct list_query *lq) {
  memset(lq, 0, sizeof(*lq));
  lq->q = http_req_query(ctx->req, "q");
  if (lq->q && strlen(lq->q) > STORE_ADMIN_QUERY_MAX) {
    api_param_problem(
        ctx, "q", arena_printf(ctx->arena, "q must be at most %d bytes", STORE_ADMIN_QUERY_MAX));
    return 1;
  }
  if (api_query_limit(ctx, LIMIT_PAGE_MAX, &lq->limit)) return 1;
  const char *cursor = http_req_query(ctx->req, "cursor");
  if (cursor) {
    struct id id;
    if (api_cursor_decode(ctx, kind, "", cursor, id.b, sizeof(id.b)) != (long)sizeof(id.b)) {
      api_param_problem(ctx, "cursor",
                        "cursor is not one this server issued for this list; start again without "
                        "it");
      return 1;
    }
    id_format(&id, lq->after_id);
  }
  return 0;
}

/* next_cursor for a page that ended at last_id (when more rows exist). */
static json_t *next_cursor(struct ctx *ctx, char kind, bool more, const char *last_id) {
  struct id id;
  char out[64];
  if (!more || id_parse(slice_from_cstr(last_id), &id) != 0 ||
      api_cursor_encode(ctx, kind, "", id.b, sizeof(id.b), out, sizeof(out)) != 0) {
    return json_null();
  }
  return json_string(out);
}

static json_t *org_json(const struct admin_org *o) {
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:b}", "id", o->id, "name", o->name, "slug",
                   o->slug, "plan", o->plan, "billing_status", o->billing_status, "members",
                   (json_int_t)o->members, "created_at", time_json(o->created_at), "deleted",
                   o->deleted);
}

static json_t *user_json(const struct admin_user *u) {
  return json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:o}", "id", u->id, "email", u->email, "name",
                   u->name, "verified", u->verified, "platform_admin", u->platform_admin,
                   "suspended", u->suspended, "created_at", time_json(u->created_at));
}

struct list_job {
  struct list_query *lq;
  json_t *data;
  int64_t rows;
  char last_id[ID_STR_SIZE];
  bool more;
};

/* A page is read with one probe row past it, which tells whether there is
 * a next page without counting. */
static bool page_full(struct list_job *j) {
  if (j->rows < j->lq->limit) return false;
  j->more = true;
  return true;
}

static int org_row(const struct admin_org *o, void *arg) {
  struct list_job *j = arg;
  if (page_full(j)) return 1;
  json_array_append_new(j->data, org_json(o));
  memcpy(j->last_id, o->id, sizeof(j->last_id));
  j->rows++;
  return 0;
}

static int orgs_tx(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  int rc = store_admin_orgs_list(tx, j->lq->q, j->lq->after_id, j->lq->limit + 1, org_row, j);
  return rc == 1 ? 0 : rc;
}

static int user_row(const struct admin_user *u, void *arg) {
  struct list_job *j = arg;
  if (page_full(j)) return 1;
  json_array_append_new(j->data, user_json(u));
  memcpy(j->last_id, u->id, sizeof(j->last_id));
  j->rows++;
  return 0;
}

static int users_tx(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  int rc = store_admin_users_list(tx, j->lq->q, j->lq->after_id, j->lq->limit + 1, user_row, j);
  return rc == 1 ? 0 : rc;
}

static int list(struct ctx *ctx, char kind, store_tx_fn fn) {
  struct list_query lq;
  if (list_query_parse(ctx, kind, &lq)) return 0;
  struct list_job j = {.lq = &lq, .data = json_array()};
  int rc = store_read(api_store(ctx->api), fn, &j);
  if (rc) {
    json_decref(j.data);
    return api_status(ctx, rc);
  }
  return api_json(ctx, 200,
                  json_pack("{s:o, s:o}", "data", j.data, "next_cursor",
                            next_cursor(ctx, kind, j.more, j.last_id)));
}

static int h_orgs_list(struct ctx *ctx) {
  return list(ctx, 'O', orgs_tx);
}

static int h_users_list(struct ctx *ctx) {
  return list(ctx, 'U', users_tx);
}

/* --- PATCH /v1/admin/orgs/{org_id} -------------------------------------- */

/* An audit entry for this request on org_id's chain (ctx has no org scope:
 * admin routes act on orgs they need not belong to). */
static int audit_on_org(struct ctx *ctx, struct store_tx *tx, const char *org_id,
                        const char *action, json_t *details) {
  struct audit_entry e = {
      .org_id = org_id,
      .actor_type = "user",
      .actor_id = ctx->user.id,
      .action = action,
      .resource_type = "org",
      .resource_id = org_id,
      .ip = ctx_ip(ctx),
      .user_agent = ctx_user_agent(ctx),
      .success = true,
      .details = details,
  };
  return audit_append(tx, &e, NULL);
}

struct plan_job {
  struct ctx *ctx;
  struct org_scope scope;
  const char *plan;
  struct admin_org org; /* after the change */
};

static int plan_tx(struct store_tx *tx, void *arg) {
  struct plan_job *j = arg;
  int rc = store_admin_org_get(tx, &j->scope, &j->org);
  if (rc) return rc;
  if (j->org.deleted) return KEEL_ENOTFOUND;
  if (strcmp(j->org.plan, j->plan) == 0) return 0; /* nothing changes */
  rc = store_admin_org_set_plan(tx, &j->scope, j->plan);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s}", "from", j->org.plan, "to", j->plan);
  rc = audit_on_org(j->ctx, tx, j->scope.org_id, "org.plan_changed", d);
  json_decref(d);
  if (rc) return rc;
  return store_admin_org_get(tx, &j->scope, &j->org);
}

static int h_org_patch(struct ctx *ctx) {
  const char *org_id = ctx_param(ctx, "org_id");
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  static const char *const allowed[] = {"plan"};
  json_reject_unknown(body, NULL, allowed, 1, &fe);
  const char *plan = NULL;
  if (json_get_str(body, "plan", NULL, JSON_REQUIRED, 1, 15, &plan, &fe) == 0 && !plans_get(plan)) {
    field_errors_add(&fe, "plan", "not_allowed", "is not a plan of this server (see /v1/plans)");
  }
  if (fe.count) return api_validation(ctx, &fe);
  if (!org_id || !id_valid(slice_from_cstr(org_id))) {
    return api_problem(ctx, "not_found", "no such organisation");
  }
  struct plan_job j = {.ctx = ctx, .plan = plan};
  memcpy(j.scope.org_id, org_id, ID_STR_SIZE);
  int rc = store_write(api_store(ctx->api), plan_tx, &j);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such organisation");
  if (rc) return api_status(ctx, rc);
  keys_org_changed(ctx->api, j.scope.org_id); /* rate limits follow the plan at once */
  return api_json(ctx, 200, org_json(&j.org));
}

/* --- POST /v1/admin/users/{user_id}/suspend | /unsuspend --------------- */

struct suspend_job {
  struct ctx *ctx;
  const char *user_id;
  bool suspend;
  struct admin_user user; /* after the change */
};

static int suspend_tx(struct store_tx *tx, void *arg) {
  struct suspend_job *j = arg;
  int rc = store_admin_user_get(tx, j->user_id, &j->user);
  if (rc) return rc;
  if (j->user.suspended == j->suspend) return 0; /* nothing changes */
  rc = store_admin_user_set_suspended(tx, j->user_id, j->suspend);
  if (rc) return rc;
  rc = ctx_audit(j->ctx, tx, j->suspend ? "user.suspended" : "user.unsuspended", "user", j->user_id,
                 true, NULL);
  if (rc) return rc;
  return store_admin_user_get(tx, j->user_id, &j->user);
}

static int set_suspended(struct ctx *ctx, bool suspend) {
  const char *user_id = ctx_param(ctx, "user_id");
  if (!user_id || !id_valid(slice_from_cstr(user_id))) {
    return api_problem(ctx, "not_found", "no such user");
  }
  if (suspend && strcmp(user_id, ctx->user.id) == 0) {
    return api_problem(ctx, "conflict",
                       "you cannot suspend yourself; ask another platform administrator");
  }
  struct suspend_job j = {.ctx = ctx, .user_id = user_id, .suspend = suspend};
  int rc = store_write(api_store(ctx->api), suspend_tx, &j);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such user");
  if (rc) return api_status(ctx, rc);
  keys_org_changed(ctx->api, NULL); /* the user's keys stop (or work) at once */
  return api_json(ctx, 200, user_json(&j.user));
}

static int h_user_suspend(struct ctx *ctx) {
  return set_suspended(ctx, true);
}

static int h_user_unsuspend(struct ctx *ctx) {
  return set_suspended(ctx, false);
}

static const struct route admin_routes[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/admin/overview",
     .handler = h_overview,
     .auth = AUTH_PLATFORM},
    {.method = HTTP_GET,
     .pattern = "/v1/admin/orgs",
     .handler = h_orgs_list,
     .auth = AUTH_PLATFORM},
    {.method = HTTP_PATCH,
     .pattern = "/v1/admin/orgs/{org_id}",
     .handler = h_org_patch,
     .auth = AUTH_PLATFORM,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_GET,
     .pattern = "/v1/admin/users",
     .handler = h_users_list,
     .auth = AUTH_PLATFORM},
    {.method = HTTP_POST,
     .pattern = "/v1/admin/users/{user_id}/suspend",
     .handler = h_user_suspend,
     .auth = AUTH_PLATFORM},
    {.method = HTTP_POST,
     .pattern = "/v1/admin/users/{user_id}/unsuspend",
     .handler = h_user_unsuspend,
     .auth = AUTH_PLATFORM},
};

const struct route *routes_admin(size_t *count) {
  *count = sizeof(admin_routes) / sizeof(admin_routes[0]);
  return admin_routes;
}
