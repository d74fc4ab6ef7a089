/*
 * store/invitations.c — the invitations table (SQL behind
 * domain/invitations.c). Every query is keyed by the scope's org_id (the
 * first column of the primary key), except the lookup by token hash (a
 * unique index) which is how a token finds its org.
 */
#include "store/invitations.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"
#include "core/ids.h"
#include "core/time.h"
#include "store/db.h"
#include "store/outbox.h"

#define INV_COLS                                                                             \
  "i.id, i.org_id, i.email, i.email_norm, i.role, coalesce(CAST(i.invited_by AS text), '')," \
  " @us(i.created_at), @us(i.expires_at), coalesce(@us(i.accepted_at), 0),"                  \
  " coalesce(@us(i.revoked_at), 0)"

/* Open: neither accepted nor revoked (it may have expired). */
#define INV_OPEN "i.accepted_at IS NULL AND i.revoked_at IS NULL"

static void inv_from(struct db_stmt *st, struct invitation *inv) {
  memset(inv, 0, sizeof(*inv));
  db_col_copy(st, 0, inv->id, sizeof(inv->id));
  db_col_copy(st, 1, inv->org_id, sizeof(inv->org_id));
  db_col_copy(st, 2, inv->email, sizeof(inv->email));
  db_col_copy(st, 3, inv->email_norm, sizeof(inv->email_norm));
  inv->role = rbac_role_parse(db_col_text(st, 4));
  db_col_copy(st, 5, inv->invited_by, sizeof(inv->invited_by));
  inv->created_at = db_col_i64(st, 6);
  inv->expires_at = db_col_i64(st, 7);
  inv->accepted_at = db_col_i64(st, 8);
  inv->revoked_at = db_col_i64(st, 9);
}

static int one_inv(struct db_stmt *st, struct invitation *out) {
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  inv_from(st, out);
  return 0;
}

/* An UPDATE that must change exactly one row. */
static int update_one(struct store_tx *tx, struct db_stmt *st) {
  int rc = db_step(st);
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_invitation_insert(struct store_tx *tx, const struct org_scope *scope,
                            const struct invitation *inv, const uint8_t token_hash[SHA256_LEN]) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx,
      "INSERT INTO invitations(org_id, id, email, email_norm, role, token_hash, invited_by,"
      " created_at, expires_at) VALUES($1, $2, $3, $4, $5, $6, $7, @ts($8), @ts($9))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, inv->id);
  db_bind_text(st, 3, inv->email);
  db_bind_text(st, 4, inv->email_norm);
  db_bind_text(st, 5, rbac_role_name(inv->role));
  db_bind_blob(st, 6, token_hash, SHA256_LEN);
  db_bind_text(st, 7, inv->invited_by[0] ? inv->invited_by : NULL);
  db_bind_i64(st, 8, inv->created_at);
  db_bind_i64(st, 9, inv->expires_at);
  int rc = db_step(st);
  return rc == DB_DONE ? 0 : (rc < 0 ? rc : KEEL_ESTORE);
}

int store_invitation_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                         struct invitation *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " INV_COLS " FROM invitations i WHERE i.org_id = $1 AND i.id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  return one_inv(st, out);
}

int store_invitation_open_for(struct store_tx *tx, const struct org_scope *scope,
                              const char *email_norm, struct invitation *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " INV_COLS
                                      " FROM invitations i WHERE i.org_id = $1"
                                      " AND i.email_norm = $2 AND " INV_OPEN);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, email_norm);
  return one_inv(st, out);
}

int store_invitation_count_pending(struct store_tx *tx, const struct org_scope *scope, int64_t now,
                                   int64_t *count) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT count(*) FROM invitations i WHERE i.org_id = $1 AND "
                                  "i.accepted_at IS NULL AND i.revoked_at IS NULL AND "
                                  "i.expires_at > @ts($2)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, now);
  int rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *count = db_col_i64(st, 0);
  return 0;
}

int store_invitation_close(struct store_tx *tx, const struct org_scope *scope, const char *id,
                           int64_t at) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE invitations SET revoked_at = @ts($3)"
                                  " WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL"
                                  " AND revoked_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_i64(st, 3, at);
  return update_one(tx, st);
}

int store_invitation_retoken(struct store_tx *tx, const struct org_scope *scope, const char *id,
                             const uint8_t token_hash[SHA256_LEN], int64_t expires_at) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE invitations SET token_hash = $3, expires_at = @ts($4)"
                                  " WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL"
                                  " AND revoked_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_blob(st, 3, token_hash, SHA256_LEN);
  db_bind_i64(st, 4, expires_at);
  return update_one(tx, st);
}

int store_invitation_accept(struct store_tx *tx, const struct org_scope *scope, const char *id,
                            const char *user_id, int64_t at) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx,
                 "UPDATE invitations SET accepted_at = @ts($3), accepted_by = $4"
                 " WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_i64(st, 3, at);
  db_bind_text(st, 4, user_id);
  return update_one(tx, st);
}

/* The WHERE clause of each status filter, the same rules as invite_status()
 * (domain/invitations.c). $2 is now; filters that do not need it still
 * mention it so every statement has the same parameters. */
#define INV_LIST_HEAD \
  "SELECT " INV_COLS " FROM invitations i WHERE i.org_id = $1 AND CAST(i.id AS text) < $3 AND "
#define INV_LIST_TAIL " ORDER BY i.id DESC LIMIT $4"

static const char *const list_sql[] = {
    [INVITATION_ANY] = INV_LIST_HEAD "@ts($2) = @ts($2)" INV_LIST_TAIL,
    [INVITATION_PENDING] = INV_LIST_HEAD INV_OPEN " AND i.expires_at > @ts($2)" INV_LIST_TAIL,
    [INVITATION_EXPIRED] = INV_LIST_HEAD
    "i.accepted_at IS NULL AND ((i.revoked_at IS NULL AND i.expires_at <= @ts($2))"
    " OR i.revoked_at >= i.expires_at)" INV_LIST_TAIL,
    [INVITATION_ACCEPTED] =
        INV_LIST_HEAD "i.accepted_at IS NOT NULL AND @ts($2) = @ts($2)" INV_LIST_TAIL,
    [INVITATION_REVOKED] = INV_LIST_HEAD
    "i.accepted_at IS NULL AND i.revoked_at < i.expires_at AND @ts($2) = @ts($2)" INV_LIST_TAIL,
};

int store_invitation_list(struct store_tx *tx, const struct org_scope *scope,
                          enum invitation_filter filter, int64_t now, const char *before_id,
                          int64_t limit, store_invitation_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  if ((unsigned)filter > INVITATION_REVOKED) return KEEL_EINVAL;
  struct db_stmt *st = db_prepare(tx, list_sql[filter]);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, now);
  /* Ids are lower-case hex UUIDs: "g" sorts after every one of them. */
  db_bind_text(st, 3, before_id && before_id[0] ? before_id : "g");
  db_bind_i64(st, 4, limit);
  struct invitation inv;
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    inv_from(st, &inv);
    rc = fn(&inv, arg);
    if (rc) break;
  }
  return rc == DB_DONE ? 0 : rc;
}

int store_invitation_by_token(struct store_tx *tx, const uint8_t token_hash[SHA256_LEN],
                              struct invitation *out) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " INV_COLS
                                      " FROM invitations i JOIN orgs o ON o.id = i.org_id"
                                      " WHERE i.token_hash = $1 AND o.deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_blob(st, 1, token_hash, SHA256_LEN);
  return one_inv(st, out);
}

int store_invitation_mail(struct store_tx *tx, const struct org_scope *scope, const char *to_email,
                          const char *template_name, const char *subject, const char *body) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct outbox_mail m = {.org_id = scope->org_id,
                          .to_email = to_email,
                          .template_name = template_name,
                          .subject = subject,
                          .body = body,
                          .created_at = time_now_us()};
  id_new_str(m.id);
  return store_outbox_insert(tx, &m);
}
