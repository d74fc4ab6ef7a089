/*
 * invitations.c — invitations (R-IAM-7): send, list, revoke, resend, bulk
 * import from CSV, the public preview by token, and acceptance.
 *
 * Tokens are never in a response, an audit entry or a log line — except in
 * development mode (`keel serve --dev`), where responses that create a token
 * carry it ("token") and the mail is logged (event mail.outbox with the
 * link), so people and tests can follow an invitation without a mail server.
 * Tokens and links are wiped once the response is built.
 */
#include <stdio.h>
#include <string.h>

#include "api/orgs.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "domain/invitations.h"
#include "domain/tenancy.h"

static void release_json(void *p) {
  json_decref(p);
}

static bool dev_mode(struct ctx *ctx) {
  return api_config(ctx->api)->dev;
}

static struct invite_mail_ctx mail_ctx(struct ctx *ctx) {
  return (struct invite_mail_ctx){.public_url = api_config(ctx->api)->public_url,
                                  .org_name = ctx->org.name,
                                  .inviter_name = ctx->user.name};
}

/* After the commit: the mail line in development mode, the token in the
 * JSON (dev only), then the secrets are wiped. */
static void announce(struct ctx *ctx, struct invite_sent *sent, json_t *json) {
  if (dev_mode(ctx)) {
    log_info("mail.outbox", LS("to", sent->inv.email), LS("template", INVITE_TEMPLATE),
             LS("link", sent->link));
    json_object_set_new(json, "token", json_string(sent->token));
  }
  invite_sent_wipe(sent);
}

/* --- POST /v1/orgs/{org}/invitations ----------------------------------------- */

static const char *const invite_fields[] = {"email", "role"};
static const char *const invite_roles[] = {"admin", "member", "viewer"};
static const enum role invite_role_values[] = {ROLE_ADMIN, ROLE_MEMBER, ROLE_VIEWER};

struct invite_job {
  struct ctx *ctx;
  const char *email;
  const char *id;
  enum role role;
  struct invite_mail_ctx mail;
  struct invite_sent sent;
  struct invitation inv;
  struct tenancy_err err;
};

static int invite_tx(struct store_tx *tx, void *arg) {
  struct invite_job *j = arg;
  int rc = invite_create(tx, &j->ctx->org, j->ctx->user.id, j->email, j->role, &j->mail, &j->sent,
                         &j->err);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s, s:s}", "email", j->sent.inv.email, "role",
                        rbac_role_name(j->role), "source", "api");
  rc = ctx_audit(j->ctx, tx, "member.invited", "invitation", j->sent.inv.id, true, d);
  json_decref(d);
  return rc;
}

static int h_invite(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  struct invite_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  int role_index = 0;
  json_reject_unknown(body, NULL, invite_fields, 2, &fe);
  json_get_str(body, "email", NULL, JSON_REQUIRED, 3, 254, &j->email, &fe);
  json_get_enum(body, "role", NULL, JSON_REQUIRED, invite_roles, 3, &role_index, &fe);
  if (fe.count) return api_validation(ctx, &fe);

  j->ctx = ctx;
  j->role = invite_role_values[role_index];
  j->mail = mail_ctx(ctx);
  int rc = store_write(api_store(ctx->api), invite_tx, j);
  if (rc) {
    invite_sent_wipe(&j->sent);
    return orgs_refusal(ctx, &j->err, rc);
  }
  json_t *out = invite_json(&j->sent.inv, time_now_us());
  announce(ctx, &j->sent, out);
  return api_json(ctx, 201, out);
}

/* --- GET /v1/orgs/{org}/invitations -------------------------------------------- */

static const char *const filter_names[] = {"pending", "expired", "accepted", "revoked"};

struct invite_list {
  struct ctx *ctx;
  enum invitation_filter filter;
  const char *before;
  int64_t limit, seen, now;
  json_t *data;
  char last[ID_STR_SIZE];
};

static int invite_list_row(const struct invitation *inv, void *arg) {
  struct invite_list *l = arg;
  if (++l->seen > l->limit) return 0; /* the extra row only says there is more */
  json_array_append_new(l->data, invite_json(inv, l->now));
  memcpy(l->last, inv->id, sizeof(l->last));
  return 0;
}

static int invite_list_tx(struct store_tx *tx, void *arg) {
  struct invite_list *l = arg;
  return store_invitation_list(tx, &l->ctx->scope, l->filter, l->now, l->before, l->limit + 1,
                               invite_list_row, l);
}

/* ?status= into l->filter; 0, or 1 after answering 400. */
static int read_filter(struct ctx *ctx, struct invite_list *l) {
  const char *s = http_req_query(ctx->req, "status");
  l->filter = INVITATION_ANY;
  if (!s) return 0;
  for (size_t i = 0; i < 4; i++) {
    if (strcmp(s, filter_names[i]) == 0) {
      l->filter = (enum invitation_filter)(INVITATION_PENDING + i);
      return 0;
    }
  }
  api_problem(ctx, "invalid_parameter", "status must be pending, expired, accepted or revoked");
  return 1;
}

static int h_invitations_list(struct ctx *ctx) {
  char *cursor = arena_alloc(ctx->arena, LIMIT_CURSOR_MAX);
  struct invite_list *l = arena_calloc(ctx->arena, 1, sizeof(*l));
  l->ctx = ctx;
  l->now = time_now_us();
  l->data = json_array();
  arena_on_cleanup(ctx->arena, release_json, l->data);
  if (read_filter(ctx, l) || orgs_page_query(ctx, &l->limit, cursor, LIMIT_CURSOR_MAX)) return 0;
  if (cursor[0] && !id_valid(slice_from_cstr(cursor))) {
    return api_problem(ctx, "invalid_parameter", "cursor is not one this list returned");
  }
  l->before = cursor;
  int rc = store_read(api_store(ctx->api), invite_list_tx, l);
  if (rc) return api_status(ctx, rc);
  json_t *next = l->seen > l->limit ? json_string(orgs_cursor_encode(ctx, l->last)) : json_null();
  return api_json(ctx, 200, json_pack("{s:O, s:o}", "data", l->data, "next_cursor", next));
}

/* --- DELETE /v1/orgs/{org}/invitations/{id} and POST …/{id}/resend ------------- */

static int revoke_tx(struct store_tx *tx, void *arg) {
  struct invite_job *j = arg;
  int rc = invite_revoke(tx, &j->ctx->org, j->id, &j->inv, &j->err);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s}", "email", j->inv.email, "role", rbac_role_name(j->inv.role));
  rc = ctx_audit(j->ctx, tx, "invitation.revoked", "invitation", j->id, true, d);
  json_decref(d);
  return rc;
}

static int h_invitation_revoke(struct ctx *ctx) {
  struct invite_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->id = orgs_id_param(ctx, "id", "invitation");
  if (!j->id) return 0;
  int rc = store_write(api_store(ctx->api), revoke_tx, j);
  if (rc) return orgs_refusal(ctx, &j->err, rc);
  return orgs_no_content(ctx);
}

static int resend_tx(struct store_tx *tx, void *arg) {
  struct invite_job *j = arg;
  int rc = invite_resend(tx, &j->ctx->org, j->id, &j->mail, &j->sent, &j->err);
  if (rc) return rc;
  json_t *d = json_pack("{s:s}", "email", j->sent.inv.email);
  rc = ctx_audit(j->ctx, tx, "invitation.resent", "invitation", j->id, true, d);
  json_decref(d);
  return rc;
}

static int h_invitation_resend(struct ctx *ctx) {
  struct invite_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->id = orgs_id_param(ctx, "id", "invitation");
  if (!j->id) return 0;
  j->mail = mail_ctx(ctx);
  int rc = store_write(api_store(ctx->api), resend_tx, j);
  if (rc) {
    invite_sent_wipe(&j->sent);
    return orgs_refusal(ctx, &j->err, rc);
  }
  json_t *out = invite_json(&j->sent.inv, time_now_us());
  announce(ctx, &j->sent, out);
  return api_json(ctx, 200, out);
}

/* --- GET /v1/invitations/{token} (public) ---------------------------------------- */

struct preview {
  const char *token;
  struct invitation inv;
  struct org org;
};

static int preview_tx(struct store_tx *tx, void *arg) {
  struct preview *p = arg;
  return invite_preview(tx, p->token, &p->inv, &p->org);
}

static int h_invitation_preview(struct ctx *ctx) {
  struct preview *p = arena_calloc(ctx->arena, 1, sizeof(*p));
  p->token = ctx_param(ctx, "token");
  int rc = store_read(api_store(ctx->api), preview_tx, p);
  if (rc == KEEL_ENOTFOUND) {
    return api_problem(ctx, "not_found", "no such invitation, or it expired or was used");
  }
  if (rc) return api_status(ctx, rc);
  json_t *org = json_pack("{s:s, s:s}", "name", p->org.name, "slug", p->org.slug);
  return api_json(
      ctx, 200,
      json_pack("{s:o, s:s, s:s, s:o}", "org", org, "role", rbac_role_name(p->inv.role), "email",
                p->inv.email, "expires_at", tenancy_time_json(p->inv.expires_at)));
}

/* --- POST /v1/invitations/{token}/accept ---------------------------------------- */

struct accept {
  struct ctx *ctx;
  const char *token;
  struct invitation inv;
  struct org org;
  struct tenancy_err err;
};

static int accept_tx(struct store_tx *tx, void *arg) {
  struct accept *a = arg;
  int rc = invite_accept(tx, a->token, &a->ctx->user, &a->inv, &a->org, &a->err);
  if (rc) return rc;
  orgs_set_scope(a->ctx, a->org.id);
  json_t *d =
      json_pack("{s:s, s:s}", "role", rbac_role_name(a->inv.role), "invitation_id", a->inv.id);
  rc = ctx_audit(a->ctx, tx, "member.joined", "user", a->ctx->user.id, true, d);
  json_decref(d);
  return rc;
}

static int h_invitation_accept(struct ctx *ctx) {
  struct accept *a = arena_calloc(ctx->arena, 1, sizeof(*a));
  a->ctx = ctx;
  a->token = ctx_param(ctx, "token");
  int rc = store_write(api_store(ctx->api), accept_tx, a);
  if (rc == KEEL_EDENIED && a->err.code && strcmp(a->err.code, "invitation_email_mismatch") == 0) {
    /* A denial: audited on the inviting org's chain. */
    orgs_set_scope(ctx, a->org.id);
    json_t *d =
        json_pack("{s:s, s:s}", "reason", "invitation_email_mismatch", "invitation_id", a->inv.id);
    ctx_audit_now(ctx, "invitation.accept_denied", "invitation", a->inv.id, false, d);
    json_decref(d);
  }
  if (rc) return orgs_refusal(ctx, &a->err, rc);
  return api_json(ctx, 200,
                  json_pack("{s:o, s:s}", "org", tenancy_org_json(&a->org, a->inv.role), "role",
                            rbac_role_name(a->inv.role)));
}

/* --- POST /v1/orgs/{org}/invitations/import (text/csv) ------------------------------ */

struct import_job {
  struct ctx *ctx;
  struct invite_csv_row *rows;
  size_t nrows;
  int64_t invited;
  struct invite_mail_ctx mail;
  struct tenancy_err err;
};

static int import_tx(struct store_tx *tx, void *arg) {
  struct import_job *j = arg;
  int rc = invite_import(tx, j->ctx->arena, &j->ctx->org, j->ctx->user.id, j->rows, j->nrows,
                         &j->mail, &j->invited, &j->err);
  for (size_t i = 0; !rc && i < j->nrows; i++) {
    const struct invite_csv_row *r = &j->rows[i];
    if (r->outcome != INVITE_OUT_INVITED) continue;
    json_t *d = json_pack("{s:s, s:s, s:s, s:i}", "email", r->sent->inv.email, "role",
                          rbac_role_name(r->role_parsed), "source", "csv", "line", r->line);
    rc = ctx_audit(j->ctx, tx, "member.invited", "invitation", r->sent->inv.id, true, d);
    json_decref(d);
  }
  return rc;
}

/* The per-row report; with_tokens adds each invited row's token (dev). */
static json_t *import_report(struct ctx *ctx, struct import_job *j, bool with_tokens) {
  json_t *rows = json_array();
  int64_t rejected = 0, not_applied = 0;
  for (size_t i = 0; i < j->nrows; i++) {
    struct invite_csv_row *r = &j->rows[i];
    json_t *row = json_pack("{s:i, s:s, s:s, s:s}", "line", r->line, "email", r->email, "role",
                            r->role, "outcome", invite_outcome_name(r->outcome));
    if (r->sent) {
      json_object_set_new(row, "invitation_id", json_string(r->sent->inv.id));
      if (with_tokens) announce(ctx, r->sent, row);
      invite_sent_wipe(r->sent);
    }
    if (r->outcome == INVITE_OUT_NOT_APPLIED) {
      not_applied++;
    } else if (r->outcome != INVITE_OUT_INVITED) {
      rejected++;
    }
    json_array_append_new(rows, row);
  }
  json_t *report = json_pack("{s:o, s:I, s:I}", "rows", rows, "invited", (json_int_t)j->invited,
                             "rejected", (json_int_t)rejected);
  if (not_applied) json_object_set_new(report, "not_applied", json_integer(not_applied));
  return report;
}

static void wipe_rows(struct import_job *j) {
  for (size_t i = 0; i < j->nrows; i++) {
    if (j->rows[i].sent) invite_sent_wipe(j->rows[i].sent);
  }
}

static int h_invitations_import(struct ctx *ctx) {
  struct import_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  struct invite_csv_error e = {0};
  if (invite_csv_parse(ctx->arena, buf_slice(&ctx->req->body), &j->rows, &j->nrows, &e) != 0) {
    struct field_errors fe = {0};
    field_errors_add(&fe, e.field, e.code, e.message);
    return api_validation(ctx, &fe);
  }
  j->ctx = ctx;
  j->mail = mail_ctx(ctx);
  int rc = store_write(api_store(ctx->api), import_tx, j);
  if (rc == KEEL_EDENIED && j->err.code) {
    wipe_rows(j);
    json_t *ext = import_report(ctx, j, false);
    json_object_set_new(ext, "limit", json_string(j->err.limit));
    json_object_set_new(ext, "limit_value", json_integer(j->err.limit_value));
    json_object_set_new(ext, "plan", json_string(j->err.plan));
    json_object_set_new(
        ext, "upgrade_url",
        json_string(arena_printf(ctx->arena, "%s/billing", api_config(ctx->api)->public_url)));
    return api_problem_ext(ctx, "plan_limit_reached",
                           "the valid rows do not fit the plan's member limit; nothing was applied",
                           ext);
  }
  if (rc) {
    wipe_rows(j);
    return orgs_refusal(ctx, &j->err, rc);
  }
  return api_json(ctx, 200, import_report(ctx, j, dev_mode(ctx)));
}

/* --- routes ------------------------------------------------------------------------ */

static const struct route rows[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/invitations",
     .handler = h_invitations_list,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs/{org}/invitations",
     .handler = h_invite,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs/{org}/invitations/import",
     .handler = h_invitations_import,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE,
     .body = ROUTE_BODY_DEFAULT,
     .content_type = "text/csv"},
    {.method = HTTP_DELETE,
     .pattern = "/v1/orgs/{org}/invitations/{id}",
     .handler = h_invitation_revoke,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE},
    {.method = HTTP_POST,
     .pattern = "/v1/orgs/{org}/invitations/{id}/resend",
     .handler = h_invitation_resend,
     .auth = AUTH_SESSION,
     .permission = PERM_MEMBERS_MANAGE},
    {.method = HTTP_GET,
     .pattern = "/v1/invitations/{token}",
     .handler = h_invitation_preview,
     .auth = AUTH_PUBLIC},
    {.method = HTTP_POST,
     .pattern = "/v1/invitations/{token}/accept",
     .handler = h_invitation_accept,
     .auth = AUTH_SESSION},
};

const struct route *routes_invitations(size_t *count) {
  *count = sizeof(rows) / sizeof(rows[0]);
  return rows;
}
