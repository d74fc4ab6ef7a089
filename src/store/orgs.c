/*
 * store/orgs.c — organisations and memberships (the SQL behind
 * domain/tenancy.c). Every query on one org's members is keyed by the
 * scope's org_id, first column of the memberships primary key.
 */
#include "store/orgs.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "store/db.h"

#define ORG_COLS                                                                   \
  "o.id, o.name, o.slug, o.plan, o.billing_status, o.settings, @us(o.created_at)," \
  " @us(o.updated_at)"

static void org_from(struct db_stmt *st, struct org *o) {
  memset(o, 0, sizeof(*o));
  db_col_copy(st, 0, o->id, sizeof(o->id));
  db_col_copy(st, 1, o->name, sizeof(o->name));
  db_col_copy(st, 2, o->slug, sizeof(o->slug));
  db_col_copy(st, 3, o->plan, sizeof(o->plan));
  db_col_copy(st, 4, o->billing_status, sizeof(o->billing_status));
  db_col_copy(st, 5, o->settings, sizeof(o->settings));
  o->created_at = db_col_i64(st, 6);
  o->updated_at = db_col_i64(st, 7);
}

int store_org_for_member(struct store_tx *tx, const char *user_id, const char *ref, struct org *org,
                         enum role *role) {
  if (db_as_user(tx, user_id) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " ORG_COLS
                                      ", m.role FROM orgs o"
                                      " JOIN memberships m ON m.org_id = o.id AND m.user_id = $1"
                                      " WHERE (CAST(o.id AS text) = $2 OR o.slug = $2)"
                                      " AND o.deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_text(st, 2, ref);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  org_from(st, org);
  *role = rbac_role_parse(db_col_text(st, 8));
  return 0;
}

int store_org_get(struct store_tx *tx, const struct org_scope *scope, struct org *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " ORG_COLS " FROM orgs o WHERE o.id = $1 AND o.deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  org_from(st, out);
  return 0;
}

/* Runs a statement that returns no rows; DB_DONE → 0. */
static int run_done(struct db_stmt *st) {
  int rc = db_step(st);
  if (rc == DB_DONE) return 0;
  return rc < 0 ? rc : KEEL_ESTORE;
}

/* Runs a single-row COUNT(*) statement into *out. */
static int run_count(struct db_stmt *st, int64_t *out) {
  int rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *out = db_col_i64(st, 0);
  return 0;
}

int store_org_insert(struct store_tx *tx, const struct org *org, const char *owner_id) {
  int64_t now = time_now_us();
  struct org_scope scope;
  memcpy(scope.org_id, org->id, sizeof(scope.org_id));
  if (db_scope(tx, &scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx,
                 "INSERT INTO orgs(id, name, slug, plan, billing_status, settings, created_by,"
                 " created_at, updated_at) VALUES($1, $2, $3, $4, $5, $6, $7, @ts($8), @ts($8))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, org->id);
  db_bind_text(st, 2, org->name);
  db_bind_text(st, 3, org->slug);
  db_bind_text(st, 4, org->plan);
  db_bind_text(st, 5, org->billing_status[0] ? org->billing_status : "active");
  db_bind_text(st, 6, org->settings[0] ? org->settings : "{}");
  db_bind_text(st, 7, owner_id);
  db_bind_i64(st, 8, now);
  int rc = run_done(st);
  if (rc) return rc;
  return store_member_insert(tx, &scope, owner_id, ROLE_OWNER);
}

int store_org_slug_taken(struct store_tx *tx, const char *slug, bool *taken) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT 1 FROM orgs WHERE slug = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, slug);
  int rc = db_step(st);
  if (rc < 0) return rc;
  *taken = rc == DB_ROW;
  return 0;
}

int store_org_count_owned(struct store_tx *tx, const char *user_id, const char *plan,
                          int64_t *count) {
  if (db_as_user(tx, user_id) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx,
                 "SELECT count(*) FROM memberships m JOIN orgs o ON o.id = m.org_id"
                 " WHERE m.user_id = $1 AND m.role = 'owner' AND o.plan = $2"
                 " AND o.deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_text(st, 2, plan);
  return run_count(st, count);
}

int store_org_list_for_user(struct store_tx *tx, const char *user_id, const char *after_id,
                            int64_t limit, store_org_row_fn fn, void *arg) {
  if (db_as_user(tx, user_id) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " ORG_COLS
                                      ", m.role FROM memberships m JOIN orgs o ON o.id = m.org_id"
                                      " WHERE m.user_id = $1 AND CAST(o.id AS text) > $2"
                                      " AND o.deleted_at IS NULL ORDER BY o.id LIMIT $3");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_text(st, 2, after_id ? after_id : "");
  db_bind_i64(st, 3, limit);
  struct org *o = xmalloc(sizeof(*o));
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    org_from(st, o);
    rc = fn(o, rbac_role_parse(db_col_text(st, 8)), arg);
    if (rc) break;
  }
  xfree(o);
  return rc == DB_DONE ? 0 : rc;
}

int store_org_update(struct store_tx *tx, const struct org_scope *scope, const char *name,
                     const char *slug, const char *settings) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx,
                 "UPDATE orgs SET name = coalesce($2, name), slug = coalesce($3, slug),"
                 " settings = coalesce($4, settings), updated_at = @ts($5)"
                 " WHERE id = $1 AND deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, name);
  db_bind_text(st, 3, slug);
  db_bind_text(st, 4, settings);
  db_bind_i64(st, 5, time_now_us());
  int rc = run_done(st);
  if (rc) return rc;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_org_soft_delete(struct store_tx *tx, const struct org_scope *scope) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE orgs SET deleted_at = @ts($2), updated_at = @ts($2)"
                                  " WHERE id = $1 AND deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, time_now_us());
  int rc = run_done(st);
  if (rc) return rc;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

/* --- memberships ---------------------------------------------------------- */

int store_member_role(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                      enum role *role) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, user_id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *role = rbac_role_parse(db_col_text(st, 0));
  return 0;
}

int store_member_with_email(struct store_tx *tx, const struct org_scope *scope,
                            const char *email_norm, bool *found) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id"
                                  " WHERE m.org_id = $1 AND u.email_norm = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, email_norm);
  int rc = db_step(st);
  if (rc < 0) return rc;
  *found = rc == DB_ROW;
  return 0;
}

int store_member_count(struct store_tx *tx, const struct org_scope *scope, int64_t *count) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT count(*) FROM memberships WHERE org_id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  return run_count(st, count);
}

int store_member_count_role(struct store_tx *tx, const struct org_scope *scope, enum role role,
                            int64_t *count) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT count(*) FROM memberships WHERE org_id = $1 AND role = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, rbac_role_name(role));
  return run_count(st, count);
}

int store_member_insert(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                        enum role role) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx, "INSERT INTO memberships(org_id, user_id, role, created_at) VALUES($1, $2, $3, @ts($4))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, user_id);
  db_bind_text(st, 3, rbac_role_name(role));
  db_bind_i64(st, 4, time_now_us());
  return run_done(st);
}

int store_member_set_role(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                          enum role role) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, user_id);
  db_bind_text(st, 3, rbac_role_name(role));
  int rc = run_done(st);
  if (rc) return rc;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_member_delete(struct store_tx *tx, const struct org_scope *scope, const char *user_id) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, user_id);
  int rc = run_done(st);
  if (rc) return rc;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

#define MEMBER_COLS "m.user_id, u.email, u.name, m.role, @us(m.created_at)"

static void member_from(struct db_stmt *st, struct member_row *row) {
  memset(row, 0, sizeof(*row));
  db_col_copy(st, 0, row->user_id, sizeof(row->user_id));
  db_col_copy(st, 1, row->email, sizeof(row->email));
  db_col_copy(st, 2, row->name, sizeof(row->name));
  row->role = rbac_role_parse(db_col_text(st, 3));
  row->joined_at = db_col_i64(st, 4);
}

int store_member_get(struct store_tx *tx, const struct org_scope *scope, const char *user_id,
                     struct member_row *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " MEMBER_COLS
                                      " FROM memberships m JOIN users u ON u.id = m.user_id"
                                      " WHERE m.org_id = $1 AND m.user_id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, user_id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  member_from(st, out);
  return 0;
}

int store_member_list(struct store_tx *tx, const struct org_scope *scope, int64_t after_joined,
                      const char *after_user, int64_t limit, store_member_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx,
      "SELECT " MEMBER_COLS
      " FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1"
      " AND (m.created_at > @ts($2) OR (m.created_at = @ts($2) AND CAST(m.user_id AS text) > $3))"
      " ORDER BY m.created_at, m.user_id LIMIT $4");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, after_joined);
  db_bind_text(st, 3, after_user ? after_user : "");
  db_bind_i64(st, 4, limit);
  struct member_row row;
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    member_from(st, &row);
    rc = fn(&row, arg);
    if (rc) break;
  }
  return rc == DB_DONE ? 0 : rc;
}
