/*
 * backend.c — store.h and db.h, forwarded to the backend that opened the
 * store (store/backend.h).
 */
#include "store/backend.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"

#define BE(p) (((const struct store_head *)(const void *)(p))->be)

static bool is_postgres_url(const char *url) {
  return url && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0);
}

int store_open(const struct store_options *opt, struct store **out, char *err, size_t errlen) {
  if (opt->url && opt->url[0] && !is_postgres_url(opt->url)) {
    snprintf(err, errlen, "store URL must be empty (SQLite) or start with postgres://");
    return KEEL_EINVAL;
  }
  const struct store_backend *be =
      is_postgres_url(opt->url) ? &store_backend_postgres : &store_backend_sqlite;
  return be->open(opt, out, err, errlen);
}

void store_close(struct store *s) {
  if (s) BE(s)->close(s);
}

const char *store_backend(const struct store *s) {
  return BE(s)->name;
}

int store_migrate(struct store *s, int *applied, char *err, size_t errlen) {
  return BE(s)->migrate(s, applied, err, errlen);
}

int store_schema_version(struct store *s, int *current, int *latest) {
  return BE(s)->schema_version(s, current, latest);
}

int store_ready(struct store *s) {
  return BE(s)->ready(s);
}

int store_read(struct store *s, store_tx_fn fn, void *arg) {
  return BE(s)->read(s, fn, arg);
}

int store_write(struct store *s, store_tx_fn fn, void *arg) {
  return BE(s)->write(s, fn, arg);
}

int store_write_async(struct store *s, store_tx_fn fn, void *arg, void (*done)(void *arg, int rc)) {
  return BE(s)->write_async(s, fn, arg, done);
}

uint64_t store_write_generation(struct store *s) {
  return BE(s)->write_generation(s);
}

size_t store_write_queue_depth(struct store *s) {
  return BE(s)->write_queue_depth(s);
}

void store_fail_next_writes(struct store *s, unsigned n) {
  BE(s)->fail_next_writes(s, n);
}

/* --- db.h --------------------------------------------------------------- */

struct db_stmt *db_prepare(struct store_tx *tx, const char *sql) {
  return BE(tx)->prepare(tx, sql);
}

struct db_stmt *db_prepare_adhoc(struct store_tx *tx, const char *sql) {
  return BE(tx)->prepare_adhoc(tx, sql);
}

int db_bind_text(struct db_stmt *st, int idx, const char *s) {
  return BE(st)->bind_text(st, idx, s);
}

int db_bind_textn(struct db_stmt *st, int idx, const char *s, size_t n) {
  return BE(st)->bind_textn(st, idx, s, n);
}

int db_bind_textn_nocopy(struct db_stmt *st, int idx, const char *s, size_t n) {
  return BE(st)->bind_textn_nocopy(st, idx, s, n);
}

int db_bind_i64(struct db_stmt *st, int idx, int64_t v) {
  return BE(st)->bind_i64(st, idx, v);
}

int db_bind_blob(struct db_stmt *st, int idx, const void *p, size_t n) {
  return BE(st)->bind_blob(st, idx, p, n);
}

int db_bind_null(struct db_stmt *st, int idx) {
  return BE(st)->bind_null(st, idx);
}

int db_bind_uuid(struct db_stmt *st, int idx, const char *text) {
  return BE(st)->bind_uuid(st, idx, text);
}

void db_col_uuid(struct db_stmt *st, int col, char out[ID_STR_SIZE]) {
  BE(st)->col_uuid(st, col, out);
}

int db_step(struct db_stmt *st) {
  return BE(st)->step(st);
}

const char *db_col_text(struct db_stmt *st, int col) {
  return BE(st)->col_text(st, col);
}

size_t db_col_len(struct db_stmt *st, int col) {
  return BE(st)->col_len(st, col);
}

int64_t db_col_i64(struct db_stmt *st, int col) {
  return BE(st)->col_i64(st, col);
}

const void *db_col_blob(struct db_stmt *st, int col) {
  return BE(st)->col_blob(st, col);
}

bool db_col_is_null(struct db_stmt *st, int col) {
  return BE(st)->col_is_null(st, col);
}

void db_reset(struct db_stmt *st) {
  BE(st)->reset(st);
}

int db_exec(struct store_tx *tx, const char *sql) {
  return BE(tx)->exec(tx, sql);
}

int64_t db_changes(struct store_tx *tx) {
  return BE(tx)->changes(tx);
}

static int context(struct store_tx *tx, enum db_context kind, const char *id) {
  const struct store_backend *be = BE(tx);
  return be->context ? be->context(tx, kind, id) : 0;
}

int db_scope(struct store_tx *tx, const struct org_scope *scope) {
  return context(tx, DB_CTX_ORG, scope->org_id);
}

int db_as_user(struct store_tx *tx, const char *user_id) {
  return context(tx, DB_CTX_USER, user_id);
}

int db_as_system(struct store_tx *tx) {
  return context(tx, DB_CTX_SYSTEM, NULL);
}

const char *db_backend(struct store_tx *tx) {
  return BE(tx)->name;
}
