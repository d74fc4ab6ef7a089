/*
 * store/admin.c — the platform administrators' queries (store/admin.h).
 *
 * Searches are substring matches written as LIKE with an escaped pattern
 * (the user's %, _ and \ match themselves), compared lower-cased on both
 * sides so they behave alike on SQLite and PostgreSQL. Lists are keyed by
 * id (UUIDv7: creation order) and never count the whole table.
 */
#include "store/admin.h"

#include <string.h>

#include "core/errors.h"
#include "core/time.h"
#include "store/db.h"

/* "%q%" with \, % and _ escaped by '\'. out holds 2*STORE_ADMIN_QUERY_MAX+3
 * bytes. Returns 0, 1 when q is empty (no filter), or KEEL_EINVAL. */
#define LIKE_PATTERN_SIZE (2 * STORE_ADMIN_QUERY_MAX + 3)
static int like_pattern(const char *q, char out[LIKE_PATTERN_SIZE]) {
  if (!q || !q[0]) return 1;
  size_t n = strlen(q);
  if (n > STORE_ADMIN_QUERY_MAX) return KEEL_EINVAL;
  size_t o = 0;
  out[o++] = '%';
  for (size_t i = 0; i < n; i++) {
    char c = q[i];
    if (c == '\\' || c == '%' || c == '_') out[o++] = '\\';
    out[o++] = c;
  }
  out[o++] = '%';
  out[o] = '\0';
  return 0;
}

static int count_one(struct store_tx *tx, const char *sql, int64_t bind1, bool has_bind,
                     int64_t *out) {
  struct db_stmt *st = db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  if (has_bind) db_bind_i64(st, 1, bind1);
  int rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *out = db_col_i64(st, 0);
  return 0;
}

int store_admin_overview(struct store_tx *tx, int64_t active_since_us, struct admin_overview *out) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  memset(out, 0, sizeof(*out));
  int rc = count_one(tx, "SELECT count(*) FROM users", 0, false, &out->users);
  if (rc) return rc;
  rc = count_one(tx, "SELECT count(*) FROM orgs WHERE deleted_at IS NULL", 0, false, &out->orgs);
  if (rc) return rc;
  /* Per org, both probes are index range scans: audit_log_by_time
   * (org_id, at) and the memberships primary key (org_id, user_id). */
  return count_one(tx,
                   "SELECT count(*) FROM orgs o WHERE o.deleted_at IS NULL AND ("
                   " EXISTS (SELECT 1 FROM audit_log a WHERE a.org_id = o.id AND a.at >= @ts($1))"
                   " OR EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = o.id"
                   " AND m.created_at >= @ts($1)))",
                   active_since_us, true, &out->active_orgs);
}

int store_admin_user_count(struct store_tx *tx, int64_t *out) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  return count_one(tx, "SELECT count(*) FROM users", 0, false, out);
}

/* --- orgs --------------------------------------------------------------- */

#define ADMIN_ORG_COLS                                                              \
  "o.id, o.name, o.slug, o.plan, o.billing_status,"                                 \
  " (SELECT count(*) FROM memberships m WHERE m.org_id = o.id), @us(o.created_at)," \
  " CASE WHEN o.deleted_at IS NULL THEN 0 ELSE 1 END"

static void admin_org_from(struct db_stmt *st, struct admin_org *o) {
  memset(o, 0, sizeof(*o));
  db_col_copy(st, 0, o->id, sizeof(o->id));
  db_col_copy(st, 1, o->name, sizeof(o->name));
  db_col_copy(st, 2, o->slug, sizeof(o->slug));
  db_col_copy(st, 3, o->plan, sizeof(o->plan));
  db_col_copy(st, 4, o->billing_status, sizeof(o->billing_status));
  o->members = db_col_i64(st, 5);
  o->created_at = db_col_i64(st, 6);
  o->deleted = db_col_i64(st, 7) != 0;
}

int store_admin_orgs_list(struct store_tx *tx, const char *q, const char *after_id, int64_t limit,
                          admin_org_fn fn, void *arg) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  char pattern[LIKE_PATTERN_SIZE];
  int p = like_pattern(q, pattern);
  if (p < 0) return p;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " ADMIN_ORG_COLS
                     " FROM orgs o"
                     " WHERE (CAST($1 AS text) IS NULL OR lower(o.name) LIKE lower($1) ESCAPE '\\'"
                     " OR lower(o.slug) LIKE lower($1) ESCAPE '\\')"
                     " AND (o.id > $2 OR $2 IS NULL)"
                     " ORDER BY o.id LIMIT $3");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, p == 0 ? pattern : NULL);
  db_bind_text(st, 2, after_id && after_id[0] ? after_id : NULL);
  db_bind_i64(st, 3, limit > 0 ? limit : INT64_MAX);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct admin_org o;
    admin_org_from(st, &o);
    int e = fn(&o, arg);
    if (e) return e;
  }
  return rc == DB_DONE ? 0 : rc;
}

int store_admin_org_get(struct store_tx *tx, const struct org_scope *scope, struct admin_org *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " ADMIN_ORG_COLS " FROM orgs o WHERE o.id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  admin_org_from(st, out);
  return 0;
}

static int changed_one(struct store_tx *tx, int rc) {
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_admin_org_set_plan(struct store_tx *tx, const struct org_scope *scope, const char *plan) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx, "UPDATE orgs SET plan = $2, updated_at = @ts($3) WHERE id = $1 AND deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, plan);
  db_bind_i64(st, 3, time_now_us());
  return changed_one(tx, db_step(st));
}

/* --- users -------------------------------------------------------------- */

#define ADMIN_USER_COLS "id, email, name, verified, platform_admin, suspended, @us(created_at)"

static void admin_user_from(struct db_stmt *st, struct admin_user *u) {
  memset(u, 0, sizeof(*u));
  db_col_copy(st, 0, u->id, sizeof(u->id));
  db_col_copy(st, 1, u->email, sizeof(u->email));
  db_col_copy(st, 2, u->name, sizeof(u->name));
  u->verified = db_col_i64(st, 3) != 0;
  u->platform_admin = db_col_i64(st, 4) != 0;
  u->suspended = db_col_i64(st, 5) != 0;
  u->created_at = db_col_i64(st, 6);
}

int store_admin_users_list(struct store_tx *tx, const char *q, const char *after_id, int64_t limit,
                           admin_user_fn fn, void *arg) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  char pattern[LIKE_PATTERN_SIZE];
  int p = like_pattern(q, pattern);
  if (p < 0) return p;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " ADMIN_USER_COLS
                     " FROM users"
                     " WHERE (CAST($1 AS text) IS NULL OR email_norm LIKE lower($1) ESCAPE '\\'"
                     " OR lower(name) LIKE lower($1) ESCAPE '\\')"
                     " AND (id > $2 OR $2 IS NULL)"
                     " ORDER BY id LIMIT $3");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, p == 0 ? pattern : NULL);
  db_bind_text(st, 2, after_id && after_id[0] ? after_id : NULL);
  db_bind_i64(st, 3, limit > 0 ? limit : INT64_MAX);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct admin_user u;
    admin_user_from(st, &u);
    int e = fn(&u, arg);
    if (e) return e;
  }
  return rc == DB_DONE ? 0 : rc;
}

int store_admin_user_get(struct store_tx *tx, const char *user_id, struct admin_user *out) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " ADMIN_USER_COLS " FROM users WHERE id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  admin_user_from(st, out);
  return 0;
}

int store_admin_user_set_suspended(struct store_tx *tx, const char *user_id, bool suspended) {
  struct db_stmt *st =
      db_prepare(tx,
                 "UPDATE users SET suspended = $2,"
                 " session_version = session_version + CASE WHEN $2 THEN 1 ELSE 0 END,"
                 " updated_at = @ts($3) WHERE id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_i64(st, 2, suspended ? 1 : 0);
  db_bind_i64(st, 3, time_now_us());
  return changed_one(tx, db_step(st));
}
