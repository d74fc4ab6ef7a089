/*
 * invitations.c — invitations and bulk CSV invitations (R-IAM-7).
 *
 * Invariants:
 *  - at most one open invitation per address and org (a unique index says
 *    so too); an expired open one is closed before a new one is stored;
 *  - the token leaves this module only in struct invite_sent (mailed, and
 *    shown in development mode), never in the store, the audit log or a
 *    non-dev log line;
 *  - a CSV import writes every valid row or none: all checks (including
 *    the plan's seats) run before the first write, and any store failure
 *    fails the caller's job, whose savepoint undoes the rest.
 */
#include "domain/invitations.h"

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "domain/iam.h"
#include "domain/plans.h"

static const char *const status_names[] = {
    [INVITE_PENDING] = "pending",
    [INVITE_EXPIRED] = "expired",
    [INVITE_ACCEPTED] = "accepted",
    [INVITE_REVOKED] = "revoked",
};

enum invite_status invite_status(const struct invitation *inv, int64_t now) {
  if (inv->accepted_at) return INVITE_ACCEPTED;
  if (inv->revoked_at) return inv->revoked_at >= inv->expires_at ? INVITE_EXPIRED : INVITE_REVOKED;
  return inv->expires_at <= now ? INVITE_EXPIRED : INVITE_PENDING;
}

const char *invite_status_name(enum invite_status s) {
  return (unsigned)s <= INVITE_REVOKED ? status_names[s] : "unknown";
}

static const char *const outcome_names[] = {
    [INVITE_OUT_NONE] = "none",
    [INVITE_OUT_INVITED] = "invited",
    [INVITE_OUT_INVALID_EMAIL] = "invalid_email",
    [INVITE_OUT_UNKNOWN_ROLE] = "unknown_role",
    [INVITE_OUT_ALREADY_MEMBER] = "already_member",
    [INVITE_OUT_ALREADY_INVITED] = "already_invited",
    [INVITE_OUT_DUPLICATE] = "duplicate_in_file",
    [INVITE_OUT_NOT_APPLIED] = "not_applied",
};

const char *invite_outcome_name(enum invite_outcome o) {
  return (unsigned)o <= INVITE_OUT_NOT_APPLIED ? outcome_names[o] : "none";
}

enum role invite_role_parse(const char *s) {
  enum role r = rbac_role_parse(s);
  return r == ROLE_OWNER ? ROLE_NONE : r;
}

static bool b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

int invite_token_hash(const char *token, uint8_t hash[SHA256_LEN]) {
  if (!token) return -1;
  size_t n = strnlen(token, INVITE_TOKEN_LEN + 1);
  if (n != INVITE_TOKEN_LEN) return -1;
  for (size_t i = 0; i < n; i++) {
    if (!b64url_char(token[i])) return -1;
  }
  crypto_sha256(token, n, hash);
  return 0;
}

void invite_sent_wipe(struct invite_sent *s) {
  crypto_wipe(s->token, sizeof(s->token));
  crypto_wipe(s->link, sizeof(s->link));
}

json_t *invite_json(const struct invitation *inv, int64_t now) {
  enum invite_status st = invite_status(inv, now);
  json_t *o = json_pack(
      "{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id", inv->id, "email", inv->email, "role",
      rbac_role_name(inv->role), "status", invite_status_name(st), "invited_by",
      inv->invited_by[0] ? json_string(inv->invited_by) : json_null(), "created_at",
      tenancy_time_json(inv->created_at), "expires_at", tenancy_time_json(inv->expires_at));
  if (st == INVITE_ACCEPTED)
    json_object_set_new(o, "accepted_at", tenancy_time_json(inv->accepted_at));
  if (st == INVITE_REVOKED)
    json_object_set_new(o, "revoked_at", tenancy_time_json(inv->revoked_at));
  return o;
}

/* --- the mail --------------------------------------------------------------- */

static int build_link(const char *public_url, const char *token, char out[INVITE_LINK_MAX]) {
  size_t base = strlen(public_url);
  while (base > 0 && public_url[base - 1] == '/') base--;
  int n = snprintf(out, INVITE_LINK_MAX, "%.*s/invitations/%s", (int)base, public_url, token);
  return n < 0 || n >= INVITE_LINK_MAX ? KEEL_EINVAL : 0;
}

static int queue_mail(struct store_tx *tx, const struct org_scope *scope,
                      const struct invite_mail_ctx *mail, const struct invite_sent *sent) {
  struct buf subject, body;
  buf_init(&subject, 1024);
  buf_init(&body, 8192);
  int rc = KEEL_ENOMEM;
  if (buf_printf(&subject, "You are invited to join %s on keel", mail->org_name)) goto fail;
  if (buf_printf(&body,
                 "%s invited you to join the organisation \"%s\" on keel as %s.\n\n"
                 "Open this link within 7 days to accept the invitation:\n\n%s\n\n"
                 "Sign in, or sign up, with this email address (%s) to accept it. If you did "
                 "not expect this invitation, ignore this message.\n",
                 mail->inviter_name && mail->inviter_name[0] ? mail->inviter_name : "Someone",
                 mail->org_name, rbac_role_name(sent->inv.role), sent->link, sent->inv.email)) {
    goto fail;
  }
  rc = store_invitation_mail(tx, scope, sent->inv.email, INVITE_TEMPLATE, subject.data, body.data);
fail:
  if (body.data) crypto_wipe(body.data, body.len); /* holds the token */
  buf_free(&body);
  buf_free(&subject);
  return rc;
}

/* A fresh token and link into out, its hash into hash. */
static int issue_token(const struct invite_mail_ctx *mail, struct invite_sent *out,
                       uint8_t hash[SHA256_LEN]) {
  crypto_token(INVITE_TOKEN_BYTES, out->token, sizeof(out->token));
  crypto_sha256(out->token, strlen(out->token), hash);
  return build_link(mail->public_url, out->token, out->link);
}

/* --- checks ----------------------------------------------------------------- */

/*
 * Can email_norm be invited into scope? *outcome INVITE_OUT_NONE when it can, else
 * INVITE_OUT_ALREADY_MEMBER / INVITE_OUT_ALREADY_INVITED. replace gets the id
 * of an expired open invitation to close first ("" when none).
 */
static int judge_address(struct store_tx *tx, const struct org_scope *scope, const char *email_norm,
                         int64_t now, enum invite_outcome *outcome, char replace[ID_STR_SIZE]) {
  bool member = false;
  replace[0] = '\0';
  *outcome = INVITE_OUT_NONE;
  int rc = store_member_with_email(tx, scope, email_norm, &member);
  if (rc) return rc;
  if (member) {
    *outcome = INVITE_OUT_ALREADY_MEMBER;
    return 0;
  }
  struct invitation open;
  rc = store_invitation_open_for(tx, scope, email_norm, &open);
  if (rc == KEEL_ENOTFOUND) return 0;
  if (rc) return rc;
  if (invite_status(&open, now) == INVITE_PENDING) {
    *outcome = INVITE_OUT_ALREADY_INVITED;
  } else {
    memcpy(replace, open.id, ID_STR_SIZE);
  }
  return 0;
}

/* Do members + pending invitations + adding fit the org's plan? */
static int seats_free(struct store_tx *tx, const struct org *org, const struct org_scope *scope,
                      int64_t now, int64_t pending_counts, int64_t adding,
                      struct tenancy_err *err) {
  const struct plan *p = plans_get(org->plan);
  if (!p) p = plans_get(PLAN_DEFAULT);
  if (p && p->members_max == PLAN_UNLIMITED) return 0;
  int64_t members = 0, pending = 0;
  int rc = store_member_count(tx, scope, &members);
  if (!rc && pending_counts) rc = store_invitation_count_pending(tx, scope, now, &pending);
  if (rc) return rc;
  if (p && tenancy_seats_within(p->id, members, pending, adding)) return 0;
  tenancy_err_limit(err, "members", p ? p : plans_get(PLAN_DEFAULT));
  return KEEL_EDENIED;
}

/* Stores a new invitation (closing replace first) and queues its mail. */
static int apply_invite(struct store_tx *tx, const struct org_scope *scope, const char *inviter_id,
                        const char *email, const char *email_norm, enum role role,
                        const char *replace, int64_t now, const struct invite_mail_ctx *mail,
                        struct invite_sent *out) {
  int rc;
  if (replace && replace[0]) {
    rc = store_invitation_close(tx, scope, replace, now);
    if (rc) return rc;
  }
  memset(out, 0, sizeof(*out));
  struct invitation *inv = &out->inv;
  id_new_str(inv->id);
  memcpy(inv->org_id, scope->org_id, sizeof(inv->org_id));
  snprintf(inv->email, sizeof(inv->email), "%s", email);
  snprintf(inv->email_norm, sizeof(inv->email_norm), "%s", email_norm);
  inv->role = role;
  snprintf(inv->invited_by, sizeof(inv->invited_by), "%s", inviter_id ? inviter_id : "");
  inv->created_at = now;
  inv->expires_at = now + INVITE_TTL_US;
  uint8_t hash[SHA256_LEN];
  rc = issue_token(mail, out, hash);
  if (!rc) rc = store_invitation_insert(tx, scope, inv, hash);
  if (!rc) rc = queue_mail(tx, scope, mail, out);
  return rc;
}

static void scope_of(const struct org *org, struct org_scope *scope) {
  memcpy(scope->org_id, org->id, sizeof(scope->org_id));
}

static int invalid(struct tenancy_err *err, const char *field, const char *detail) {
  tenancy_err_set(err, "validation_failed", detail);
  if (err) err->field = field;
  return KEEL_EINVAL;
}

/* --- single invitations ------------------------------------------------------ */

int invite_create(struct store_tx *tx, const struct org *org, const char *inviter_id,
                  const char *email, enum role role, const struct invite_mail_ctx *mail,
                  struct invite_sent *out, struct tenancy_err *err) {
  char norm[256];
  if (!email || iam_email_normalise(email, norm, sizeof(norm)) != 0) {
    return invalid(err, "email", "must be a valid email address");
  }
  if (role != ROLE_ADMIN && role != ROLE_MEMBER && role != ROLE_VIEWER) {
    return invalid(err, "role", "must be admin, member or viewer");
  }
  struct org_scope scope;
  scope_of(org, &scope);
  int64_t now = time_now_us();
  enum invite_outcome outcome;
  char replace[ID_STR_SIZE];
  int rc = judge_address(tx, &scope, norm, now, &outcome, replace);
  if (rc) return rc;
  if (outcome == INVITE_OUT_ALREADY_MEMBER) {
    tenancy_err_set(err, "already_member", "this address belongs to a member already");
    return KEEL_ECONFLICT;
  }
  if (outcome == INVITE_OUT_ALREADY_INVITED) {
    tenancy_err_set(err, "conflict",
                    "an invitation for this address is pending; resend or revoke it");
    return KEEL_ECONFLICT;
  }
  rc = seats_free(tx, org, &scope, now, true, 1, err);
  if (rc) return rc;
  return apply_invite(tx, &scope, inviter_id, email, norm, role, replace, now, mail, out);
}

/* The invitation id of org, for a change: not found / closed refusals. */
static int open_invitation(struct store_tx *tx, const struct org_scope *scope, const char *id,
                           struct invitation *inv, struct tenancy_err *err) {
  int rc = store_invitation_get(tx, scope, id, inv);
  if (rc == KEEL_ENOTFOUND) tenancy_err_set(err, "not_found", "no such invitation");
  if (rc) return rc;
  if (inv->accepted_at) {
    tenancy_err_set(err, "conflict", "the invitation was accepted already");
    return KEEL_ECONFLICT;
  }
  if (inv->revoked_at) {
    tenancy_err_set(err, "conflict", "the invitation was revoked or replaced");
    return KEEL_ECONFLICT;
  }
  return 0;
}

int invite_resend(struct store_tx *tx, const struct org *org, const char *id,
                  const struct invite_mail_ctx *mail, struct invite_sent *out,
                  struct tenancy_err *err) {
  struct org_scope scope;
  scope_of(org, &scope);
  memset(out, 0, sizeof(*out));
  int rc = open_invitation(tx, &scope, id, &out->inv, err);
  if (rc) return rc;
  int64_t now = time_now_us();
  if (invite_status(&out->inv, now) == INVITE_EXPIRED) {
    rc = seats_free(tx, org, &scope, now, true, 1, err); /* it takes a seat again */
    if (rc) return rc;
  }
  uint8_t hash[SHA256_LEN];
  out->inv.expires_at = now + INVITE_TTL_US;
  rc = issue_token(mail, out, hash);
  if (!rc) rc = store_invitation_retoken(tx, &scope, id, hash, out->inv.expires_at);
  if (!rc) rc = queue_mail(tx, &scope, mail, out);
  return rc;
}

int invite_revoke(struct store_tx *tx, const struct org *org, const char *id,
                  struct invitation *out, struct tenancy_err *err) {
  struct org_scope scope;
  scope_of(org, &scope);
  int rc = open_invitation(tx, &scope, id, out, err);
  if (rc) return rc;
  int64_t now = time_now_us();
  rc = store_invitation_close(tx, &scope, id, now);
  if (!rc) out->revoked_at = now;
  return rc;
}

/* --- the invitee's side --------------------------------------------------------- */

int invite_preview(struct store_tx *tx, const char *token, struct invitation *inv,
                   struct org *org) {
  uint8_t hash[SHA256_LEN];
  if (invite_token_hash(token, hash) != 0) return KEEL_ENOTFOUND;
  int rc = store_invitation_by_token(tx, hash, inv);
  if (rc) return rc;
  if (invite_status(inv, time_now_us()) != INVITE_PENDING) return KEEL_ENOTFOUND;
  struct org_scope scope;
  memcpy(scope.org_id, inv->org_id, sizeof(scope.org_id));
  return store_org_get(tx, &scope, org);
}

int invite_accept(struct store_tx *tx, const char *token, const struct user *user,
                  struct invitation *inv, struct org *org, struct tenancy_err *err) {
  int rc = invite_preview(tx, token, inv, org);
  if (rc == KEEL_ENOTFOUND) {
    tenancy_err_set(err, "not_found", "no such invitation, or it expired or was used");
  }
  if (rc) return rc;
  char norm[256];
  if (iam_email_normalise(user->email, norm, sizeof(norm)) != 0 ||
      strcmp(norm, inv->email_norm) != 0) {
    tenancy_err_set(err, "invitation_email_mismatch",
                    "this invitation was sent to another email address; sign in with that one");
    return KEEL_EDENIED;
  }
  struct org_scope scope;
  scope_of(org, &scope);
  enum role current;
  rc = store_member_role(tx, &scope, user->id, &current);
  if (rc == 0) {
    tenancy_err_set(err, "already_member", "you are a member of this organisation already");
    return KEEL_ECONFLICT;
  }
  if (rc != KEEL_ENOTFOUND) return rc;
  int64_t now = time_now_us();
  rc = seats_free(tx, org, &scope, now, false, 1, err);
  if (rc) return rc;
  rc = store_member_insert(tx, &scope, user->id, inv->role);
  if (!rc) rc = store_invitation_accept(tx, &scope, inv->id, user->id, now);
  if (!rc) {
    inv->accepted_at = now;
  }
  return rc;
}

/* --- bulk: judging and applying ------------------------------------------------ */

/* Sets rows[i].outcome; *rc gets a store failure. */
static void judge_row(struct store_tx *tx, const struct org_scope *scope,
                      struct invite_csv_row *rows, size_t i, int64_t now, char *replace, int *rc) {
  struct invite_csv_row *r = &rows[i];
  char norm[256], role[16];
  if (iam_email_normalise(r->email, norm, sizeof(norm)) != 0) {
    r->outcome = INVITE_OUT_INVALID_EMAIL;
    return;
  }
  snprintf(r->email_norm, sizeof(r->email_norm), "%s", norm);
  size_t k = 0;
  for (; r->role[k] && k + 1 < sizeof(role); k++) {
    char c = r->role[k];
    role[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  role[k] = '\0';
  r->role_parsed = r->role[k] ? ROLE_NONE : invite_role_parse(role);
  if (r->role_parsed == ROLE_NONE) {
    r->outcome = INVITE_OUT_UNKNOWN_ROLE;
    return;
  }
  for (size_t j = 0; j < i; j++) {
    if (rows[j].email_norm[0] && strcmp(rows[j].email_norm, norm) == 0) {
      r->outcome = INVITE_OUT_DUPLICATE;
      return;
    }
  }
  enum invite_outcome outcome = INVITE_OUT_NONE;
  *rc = judge_address(tx, scope, norm, now, &outcome, replace);
  r->outcome = outcome != INVITE_OUT_NONE ? outcome : INVITE_OUT_INVITED;
}

int invite_import(struct store_tx *tx, struct arena *a, const struct org *org,
                  const char *inviter_id, struct invite_csv_row *rows, size_t nrows,
                  const struct invite_mail_ctx *mail, int64_t *invited, struct tenancy_err *err) {
  struct org_scope scope;
  scope_of(org, &scope);
  int64_t now = time_now_us();
  int64_t valid = 0;
  char(*replace)[ID_STR_SIZE] = arena_calloc(a, nrows ? nrows : 1, ID_STR_SIZE);
  *invited = 0;
  for (size_t i = 0; i < nrows; i++) {
    int rc = 0;
    rows[i].email_norm[0] = '\0';
    rows[i].sent = NULL;
    judge_row(tx, &scope, rows, i, now, replace[i], &rc);
    if (rc) return rc;
    if (rows[i].outcome == INVITE_OUT_INVITED) valid++;
  }
  if (valid == 0) return 0;
  int rc = seats_free(tx, org, &scope, now, true, valid, err);
  if (rc == KEEL_EDENIED) {
    for (size_t i = 0; i < nrows; i++) {
      if (rows[i].outcome == INVITE_OUT_INVITED) rows[i].outcome = INVITE_OUT_NOT_APPLIED;
    }
  }
  if (rc) return rc;
  for (size_t i = 0; i < nrows; i++) {
    struct invite_csv_row *r = &rows[i];
    if (r->outcome != INVITE_OUT_INVITED) continue;
    r->sent = arena_calloc(a, 1, sizeof(*r->sent));
    rc = apply_invite(tx, &scope, inviter_id, r->email, r->email_norm, r->role_parsed, replace[i],
                      now, mail, r->sent);
    if (rc) return rc;
  }
  *invited = valid;
  return 0;
}

/* --- bulk: the CSV reader ------------------------------------------------------- */

struct csv_cur {
  const char *p, *end;
  int line; /* 1-based line of p */
};

static void skip_blanks(struct csv_cur *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

/* Consumes what ends a field: ',' (returned), a line break ("\r\n", "\n"
 * or "\r": '\n' returned), the end of input (0); -1 for anything else. */
static int csv_sep(struct csv_cur *c) {
  if (c->p >= c->end) return 0;
  char ch = *c->p;
  if (ch == ',') {
    c->p++;
    return ',';
  }
  if (ch != '\n' && ch != '\r') return -1;
  c->p++;
  if (ch == '\r' && c->p < c->end && *c->p == '\n') c->p++;
  c->line++;
  return '\n';
}

/* A quoted field (c->p at the opening quote), unescaped into out. */
static int csv_quoted(struct csv_cur *c, struct buf *out, const char **why) {
  c->p++;
  for (;;) {
    if (c->p >= c->end) {
      *why = "a quoted field is not closed";
      return -1;
    }
    char ch = *c->p++;
    if (ch == '"') {
      if (c->p < c->end && *c->p == '"') {
        c->p++;
      } else {
        return 0;
      }
    } else if (ch == '\n') {
      c->line++;
    }
    if (buf_putc(out, ch)) {
      *why = "a field is too long";
      return -1;
    }
  }
}

/* An unquoted field. */
static int csv_bare(struct csv_cur *c, struct buf *out, const char **why) {
  while (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r') {
    if (*c->p == '"') {
      *why = "a quote inside an unquoted field (quote the whole field)";
      return -1;
    }
    if (buf_putc(out, *c->p++)) {
      *why = "a field is too long";
      return -1;
    }
  }
  return 0;
}

/* The field's value without surrounding blanks (quoted or not: neither an
 * address nor a role has meaningful spaces). */
static struct slice csv_value(const struct buf *b) {
  struct slice v = slice_make(b->data ? b->data : "", b->len);
  return slice_trim(v);
}

#define CSV_FIELDS_KEPT 3 /* two are expected; a third means "too many" */

/*
 * Reads one record: 1 (fields[0..min(*n, CSV_FIELDS_KEPT)) are arena
 * copies, *n counts them all; *blank when the line held nothing), 0 at the
 * end of input, -1 when malformed (*why).
 */
static int csv_record(struct csv_cur *c, struct arena *a, struct buf *tmp,
                      char *fields[CSV_FIELDS_KEPT], size_t *n, bool *blank, const char **why) {
  *n = 0;
  *blank = true;
  if (c->p >= c->end) return 0;
  for (;;) {
    skip_blanks(c);
    buf_reset(tmp);
    bool quoted = c->p < c->end && *c->p == '"';
    if ((quoted ? csv_quoted(c, tmp, why) : csv_bare(c, tmp, why)) != 0) return -1;
    if (quoted) skip_blanks(c);
    struct slice v = csv_value(tmp);
    if (*n < CSV_FIELDS_KEPT) fields[*n] = arena_strndup(a, v.p, v.len);
    (*n)++;
    if (quoted || v.len > 0) *blank = false;
    int sep = csv_sep(c);
    if (sep == ',') {
      *blank = false;
      continue;
    }
    if (sep == '\n' || sep == 0) return 1;
    *why = "unexpected text after a closing quote";
    return -1;
  }
}

static int csv_fail(struct invite_csv_error *e, const char *field, const char *code,
                    const char *message) {
  e->field = field;
  e->code = code;
  e->message = message;
  return -1;
}

/* Reads the next record that is not a blank line: 1, 0 at the end, -1. */
static int csv_next(struct csv_cur *c, struct arena *a, struct buf *tmp, char **fields, size_t *n,
                    int *line, struct invite_csv_error *e) {
  for (;;) {
    bool blank;
    const char *why = NULL;
    *line = c->line;
    int rc = csv_record(c, a, tmp, fields, n, &blank, &why);
    if (rc < 0) {
      return csv_fail(e, arena_printf(a, "line %d", *line), "invalid_format", why);
    }
    if (rc == 0 || !blank) return rc;
  }
}

static bool header_ok(char **fields, size_t n) {
  return n == 2 && slice_eq_cstr_nocase(slice_from_cstr(fields[0]), "email") &&
         slice_eq_cstr_nocase(slice_from_cstr(fields[1]), "role");
}

int invite_csv_parse(struct arena *a, struct slice body, struct invite_csv_row **rows,
                     size_t *nrows, struct invite_csv_error *e) {
  *rows = NULL;
  *nrows = 0;
  if (!tenancy_utf8_valid(body.p, body.len)) {
    return csv_fail(e, "body", "invalid_format", "the CSV must be UTF-8 text without NUL bytes");
  }
  struct csv_cur c = {body.p, body.p + body.len, 1};
  if (body.len >= 3 && memcmp(body.p, "\xEF\xBB\xBF", 3) == 0) c.p += 3;
  struct buf tmp;
  buf_init(&tmp, body.len + 1);
  char *fields[CSV_FIELDS_KEPT];
  size_t n = 0;
  int line = 0;
  int rc = csv_next(&c, a, &tmp, fields, &n, &line, e);
  if (rc == 0) {
    rc = csv_fail(e, "body", "required", "the CSV is empty; the first line must be email,role");
  } else if (rc > 0 && !header_ok(fields, n)) {
    rc = csv_fail(e, arena_printf(a, "line %d", line), "invalid_format",
                  "the first line must be the header email,role");
  }
  if (rc < 0) goto done;
  size_t cap = 0;
  while ((rc = csv_next(&c, a, &tmp, fields, &n, &line, e)) > 0) {
    if (n != 2) {
      rc = csv_fail(e, arena_printf(a, "line %d", line), "invalid_format",
                    "expected 2 fields: email,role");
      break;
    }
    if (*nrows == LIMIT_INVITE_CSV_ROWS) {
      rc = csv_fail(e, "body", "too_long", "at most 1000 rows per upload");
      break;
    }
    if (*nrows == cap) { /* grow by doubling; the old array stays in the arena */
      size_t ncap = cap ? 2 * cap : 16;
      if (ncap > LIMIT_INVITE_CSV_ROWS) ncap = LIMIT_INVITE_CSV_ROWS;
      struct invite_csv_row *grown = arena_calloc(a, ncap, sizeof(*grown));
      if (*nrows) memcpy(grown, *rows, *nrows * sizeof(*grown));
      *rows = grown;
      cap = ncap;
    }
    struct invite_csv_row *r = &(*rows)[(*nrows)++];
    r->line = line;
    r->email = fields[0];
    r->role = fields[1];
  }
done:
  buf_free(&tmp);
  if (rc < 0) *nrows = 0;
  return rc < 0 ? -1 : 0;
}
