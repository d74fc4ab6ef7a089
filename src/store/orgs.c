/*
 * store/orgs.c — organisations and memberships.
 */
#include "store/orgs.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"
#include "core/time.h"
#include "store/db.h"

#define ORG_COLS                                                                   \
  "o.id, o.name, o.slug, o.plan, o.billing_status, o.settings, @us(o.created_at)," \
  " @us(o.updated_at)"

static void copy_col(struct db_stmt *st, int col, char *dst, size_t n) {
  const char *s = db_col_text(st, col);
  snprintf(dst, n, "%s", s ? s : "");
}

static void org_from(struct db_stmt *st, struct org *o) {
  memset(o, 0, sizeof(*o));
  copy_col(st, 0, o->id, sizeof(o->id));
  copy_col(st, 1, o->name, sizeof(o->name));
  copy_col(st, 2, o->slug, sizeof(o->slug));
  copy_col(st, 3, o->plan, sizeof(o->plan));
  copy_col(st, 4, o->billing_status, sizeof(o->billing_status));
  copy_col(st, 5, o->settings, sizeof(o->settings));
  o->created_at = db_col_i64(st, 6);
  o->updated_at = db_col_i64(st, 7);
}

int store_org_for_member(struct store_tx *tx, const char *user_id, const char *ref, struct org *org,
                         enum role *role) {
  struct db_stmt *st = db_prepare(tx, "SELECT " ORG_COLS
                                      ", m.role FROM orgs o"
                                      " JOIN memberships m ON m.org_id = o.id AND m.user_id = $1"
                                      " WHERE (o.id = $2 OR o.slug = $2) AND o.deleted_at IS NULL");
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
