/*
 * store/keys.c — API keys (see keys.h).
 */
#include "store/keys.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"
#include "store/db.h"

#define KEY_COLS                                                                                 \
  "k.org_id, k.id, k.name, k.environment, k.live, k.scopes, k.prefix, k.created_by, k.key_hash," \
  " @us(k.created_at), @us(k.last_used_at), @us(k.expires_at), @us(k.revoked_at),"               \
  " k.rate_limit_per_min"
#define KEY_NCOLS 14

static int64_t opt_i64(struct db_stmt *st, int col) {
  return db_col_is_null(st, col) ? 0 : db_col_i64(st, col);
}

static int key_from(struct db_stmt *st, struct apikey_row *k) {
  memset(k, 0, sizeof(*k));
  db_col_copy(st, 0, k->org_id, sizeof(k->org_id));
  db_col_copy(st, 1, k->id, sizeof(k->id));
  db_col_copy(st, 2, k->name, sizeof(k->name));
  db_col_copy(st, 3, k->env, sizeof(k->env));
  k->live = db_col_i64(st, 4) != 0;
  k->scopes = (unsigned)db_col_i64(st, 5);
  db_col_copy(st, 6, k->prefix, sizeof(k->prefix));
  db_col_copy(st, 7, k->created_by, sizeof(k->created_by));
  if (db_col_len(st, 8) != APIKEY_HASH_LEN) return KEEL_ESTORE;
  memcpy(k->key_hash, db_col_blob(st, 8), APIKEY_HASH_LEN);
  k->created_at = db_col_i64(st, 9);
  k->last_used_at = opt_i64(st, 10);
  k->expires_at = opt_i64(st, 11);
  k->revoked_at = opt_i64(st, 12);
  k->rate_limit_per_min = opt_i64(st, 13);
  return 0;
}

static void bind_opt_i64(struct db_stmt *st, int idx, int64_t v) {
  if (v) {
    db_bind_i64(st, idx, v);
  } else {
    db_bind_null(st, idx);
  }
}

int store_apikey_insert(struct store_tx *tx, const struct org_scope *scope,
                        const struct apikey_row *row) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx,
      "INSERT INTO api_keys(org_id, id, name, environment, live, scopes, prefix, key_hash,"
      " created_by, created_at, last_used_at, expires_at, revoked_at, rate_limit_per_min)"
      " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, @ts($10), NULL, @ts($11), NULL, $12)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, row->id);
  db_bind_text(st, 3, row->name);
  db_bind_text(st, 4, row->env);
  db_bind_i64(st, 5, row->live ? 1 : 0);
  db_bind_i64(st, 6, (int64_t)row->scopes);
  db_bind_text(st, 7, row->prefix);
  db_bind_blob(st, 8, row->key_hash, APIKEY_HASH_LEN);
  db_bind_text(st, 9, row->created_by[0] ? row->created_by : NULL);
  db_bind_i64(st, 10, row->created_at);
  bind_opt_i64(st, 11, row->expires_at);
  bind_opt_i64(st, 12, row->rate_limit_per_min);
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

int store_apikey_count_active(struct store_tx *tx, const struct org_scope *scope, int64_t now_us,
                              int64_t *count) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT COUNT(*) FROM api_keys WHERE org_id = $1"
                                  " AND revoked_at IS NULL"
                                  " AND (expires_at IS NULL OR expires_at > @ts($2))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, now_us);
  int rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *count = db_col_i64(st, 0);
  return 0;
}

int store_apikey_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                     struct apikey_row *out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " KEY_COLS " FROM api_keys k WHERE k.org_id = $1 AND k.id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  return key_from(st, out);
}

int store_apikey_list(struct store_tx *tx, const struct org_scope *scope, const char *before_id,
                      bool include_revoked, int64_t limit, apikey_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT " KEY_COLS
                                      " FROM api_keys k WHERE k.org_id = $1"
                                      " AND (k.id < $2 OR $2 IS NULL)"
                                      " AND ($3 = 1 OR k.revoked_at IS NULL)"
                                      " ORDER BY k.id DESC LIMIT $4");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, before_id);
  db_bind_i64(st, 3, include_revoked ? 1 : 0);
  db_bind_i64(st, 4, limit);
  struct apikey_row row;
  for (;;) {
    int rc = db_step(st);
    if (rc == DB_DONE) return 0;
    if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
    if ((rc = key_from(st, &row)) != 0) return rc;
    if ((rc = fn(&row, arg)) != 0) return rc;
  }
}

int store_apikey_update(struct store_tx *tx, const struct org_scope *scope, const char *id,
                        const char *name, bool set_rate, int64_t rate_per_min) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct apikey_row cur;
  int rc = store_apikey_get(tx, scope, id, &cur);
  if (rc) return rc;
  if (cur.revoked_at) return KEEL_ECONFLICT;
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE api_keys SET name = COALESCE($3, name),"
                                  " rate_limit_per_min = CASE WHEN $4 = 1 THEN $5"
                                  " ELSE rate_limit_per_min END"
                                  " WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_text(st, 3, name);
  db_bind_i64(st, 4, set_rate ? 1 : 0);
  bind_opt_i64(st, 5, rate_per_min);
  rc = db_step(st);
  return rc < 0 ? rc : 0;
}

int store_apikey_revoke(struct store_tx *tx, const struct org_scope *scope, const char *id,
                        int64_t now_us, bool *already) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct apikey_row cur;
  int rc = store_apikey_get(tx, scope, id, &cur);
  if (rc) return rc;
  *already = cur.revoked_at != 0;
  if (*already) return 0;
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE api_keys SET revoked_at = @ts($3)"
                                  " WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_i64(st, 3, now_us);
  rc = db_step(st);
  return rc < 0 ? rc : 0;
}

int store_apikey_touch(struct store_tx *tx, const struct org_scope *scope, const char *id,
                       int64_t at) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx,
      "UPDATE api_keys SET last_used_at = @ts($3)"
      " WHERE org_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < @ts($3))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_i64(st, 3, at);
  int rc = db_step(st);
  return rc < 0 ? rc : 0;
}

int store_apikey_by_hash(struct store_tx *tx, const uint8_t hash[APIKEY_HASH_LEN],
                         struct apikey_lookup *out) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " KEY_COLS
                     ", o.slug, o.name, o.plan, o.billing_status, o.settings, @us(o.created_at),"
                     " @us(o.updated_at), o.deleted_at IS NOT NULL, COALESCE(u.suspended, FALSE)"
                     " FROM api_keys k JOIN orgs o ON o.id = k.org_id"
                     " LEFT JOIN users u ON u.id = k.created_by"
                     " WHERE k.key_hash = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_blob(st, 1, hash, APIKEY_HASH_LEN);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  memset(out, 0, sizeof(*out));
  if ((rc = key_from(st, &out->key)) != 0) return rc;
  struct org *o = &out->org;
  memcpy(o->id, out->key.org_id, sizeof(o->id));
  db_col_copy(st, KEY_NCOLS + 0, o->slug, sizeof(o->slug));
  db_col_copy(st, KEY_NCOLS + 1, o->name, sizeof(o->name));
  db_col_copy(st, KEY_NCOLS + 2, o->plan, sizeof(o->plan));
  db_col_copy(st, KEY_NCOLS + 3, o->billing_status, sizeof(o->billing_status));
  db_col_copy(st, KEY_NCOLS + 4, o->settings, sizeof(o->settings));
  o->created_at = db_col_i64(st, KEY_NCOLS + 5);
  o->updated_at = db_col_i64(st, KEY_NCOLS + 6);
  out->org_deleted = db_col_i64(st, KEY_NCOLS + 7) != 0;
  out->creator_suspended = db_col_i64(st, KEY_NCOLS + 8) != 0;
  return 0;
}

int store_apikey_org_resolve(struct store_tx *tx, const char *ref, struct org_scope *out) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT id FROM orgs WHERE (CAST(id AS text) = $1 OR slug = $1)"
                                  " AND deleted_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, ref);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  db_col_copy(st, 0, out->org_id, sizeof(out->org_id));
  return 0;
}
