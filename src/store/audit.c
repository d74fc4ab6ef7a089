/*
 * store/audit.c — audit log rows. The table refuses UPDATE and DELETE by
 * trigger (see the migration); nothing here issues either.
 */
#include "store/audit.h"

#include <string.h>

#include "core/errors.h"
#include "store/db.h"

int store_audit_head(struct store_tx *tx, const struct org_scope *scope, int64_t *seq,
                     uint8_t hash[AUDIT_HASH_LEN]) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT seq, hash FROM audit_log WHERE org_id = $1 ORDER BY seq DESC LIMIT 1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  int rc = db_step(st);
  if (rc == DB_DONE) {
    *seq = 0;
    memset(hash, 0, AUDIT_HASH_LEN);
    return 0;
  }
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *seq = db_col_i64(st, 0);
  if (db_col_len(st, 1) != AUDIT_HASH_LEN) return KEEL_EINTERNAL;
  memcpy(hash, db_col_blob(st, 1), AUDIT_HASH_LEN);
  return 0;
}

int store_audit_insert(struct store_tx *tx, const struct org_scope *scope,
                       const struct audit_row *r) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(
      tx,
      "INSERT INTO audit_log(org_id, seq, id, at, actor_type, actor_id, action, resource_type,"
      " resource_id, ip, user_agent, result, details, prev_hash, hash)"
      " VALUES($1, $2, $3, @ts($4), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_i64(st, 2, r->seq);
  db_bind_text(st, 3, r->id);
  db_bind_i64(st, 4, r->at);
  db_bind_text(st, 5, r->actor_type);
  db_bind_text(st, 6, r->actor_id);
  db_bind_text(st, 7, r->action);
  db_bind_text(st, 8, r->resource_type);
  db_bind_text(st, 9, r->resource_id);
  db_bind_text(st, 10, r->ip);
  db_bind_text(st, 11, r->user_agent);
  db_bind_text(st, 12, r->result);
  db_bind_text(st, 13, r->details);
  db_bind_blob(st, 14, r->prev_hash, AUDIT_HASH_LEN);
  db_bind_blob(st, 15, r->hash, AUDIT_HASH_LEN);
  int rc = db_step(st);
  return rc == DB_DONE ? 0 : (rc < 0 ? rc : KEEL_ESTORE);
}

static const char *text_or_null(struct db_stmt *st, int col) {
  return db_col_is_null(st, col) ? NULL : db_col_text(st, col);
}

static int row_from(struct db_stmt *st, struct audit_row *r) {
  memset(r, 0, sizeof(*r));
  r->seq = db_col_i64(st, 0);
  const char *id = db_col_text(st, 1);
  if (!id || strlen(id) >= sizeof(r->id)) return KEEL_EINTERNAL;
  memcpy(r->id, id, strlen(id) + 1);
  r->at = db_col_i64(st, 2);
  r->actor_type = db_col_text(st, 3);
  r->actor_id = text_or_null(st, 4);
  r->action = db_col_text(st, 5);
  r->resource_type = text_or_null(st, 6);
  r->resource_id = text_or_null(st, 7);
  r->ip = text_or_null(st, 8);
  r->user_agent = text_or_null(st, 9);
  r->result = db_col_text(st, 10);
  r->details = db_col_text(st, 11);
  if (db_col_len(st, 12) != AUDIT_HASH_LEN || db_col_len(st, 13) != AUDIT_HASH_LEN) {
    /* A damaged row: hand it over with zero hashes; verification reports it. */
    return 0;
  }
  memcpy(r->prev_hash, db_col_blob(st, 12), AUDIT_HASH_LEN);
  memcpy(r->hash, db_col_blob(st, 13), AUDIT_HASH_LEN);
  return 0;
}

/*
 * One statement serves every filter combination: each condition is switched
 * off by a NULL/0 parameter. The index (org_id, seq) drives the scan; the
 * other conditions filter it.
 */
static const char list_desc_sql[] =
    "SELECT seq, id, @us(at), actor_type, actor_id, action, resource_type, resource_id, ip,"
    " user_agent, result, details, prev_hash, hash FROM audit_log"
    " WHERE org_id = $1"
    " AND (CAST($2 AS text) IS NULL OR action = $2"
    " OR (substr($2, length($2)) = '.' AND substr(action, 1, length($2)) = $2))"
    " AND (CAST($3 AS text) IS NULL OR actor_id = $3)"
    " AND (CAST($4 AS bigint) = 0 OR at >= @ts($4))"
    " AND (CAST($5 AS bigint) = 0 OR at < @ts($5))"
    " AND (CAST($6 AS bigint) = 0 OR seq < $6)"
    " ORDER BY seq DESC LIMIT $7";
static const char list_asc_sql[] =
    "SELECT seq, id, @us(at), actor_type, actor_id, action, resource_type, resource_id, ip,"
    " user_agent, result, details, prev_hash, hash FROM audit_log"
    " WHERE org_id = $1"
    " AND (CAST($2 AS text) IS NULL OR action = $2"
    " OR (substr($2, length($2)) = '.' AND substr(action, 1, length($2)) = $2))"
    " AND (CAST($3 AS text) IS NULL OR actor_id = $3)"
    " AND (CAST($4 AS bigint) = 0 OR at >= @ts($4))"
    " AND (CAST($5 AS bigint) = 0 OR at < @ts($5))"
    " AND (CAST($6 AS bigint) = 0 OR seq > $6)"
    " ORDER BY seq ASC LIMIT $7";

int store_audit_list(struct store_tx *tx, const struct org_scope *scope,
                     const struct audit_filter *f, audit_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, f->ascending ? list_asc_sql : list_desc_sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, f->action && f->action[0] ? f->action : NULL);
  db_bind_text(st, 3, f->actor && f->actor[0] ? f->actor : NULL);
  db_bind_i64(st, 4, f->from_us);
  db_bind_i64(st, 5, f->to_us);
  db_bind_i64(st, 6, f->after_seq);
  db_bind_i64(st, 7, f->limit > 0 ? f->limit : INT64_MAX);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct audit_row r;
    int e = row_from(st, &r);
    if (e) return e;
    e = fn(&r, arg);
    if (e) return e;
  }
  return rc == DB_DONE ? 0 : rc;
}
