/*
 * db.h — the statement layer under the domain operations (private to store/).
 *
 * Domain operations in store/ (one file per area) are written once over this layer; each
 * backend implements it. SQL is written in keel's portable dialect:
 *   - parameters are $1, $2, … (bound by number on both backends);
 *   - a timestamp column is read with @us(col) and written with @ts($n),
 *     where the bound value is int64 microseconds since the epoch; SQLite
 *     stores such columns as INTEGER µs, PostgreSQL as timestamptz;
 *   - booleans are bound and read as integers 0/1.
 * db_prepare rewrites the text for the backend once and caches the prepared
 * statement per connection, keyed by the SQL text's address: pass string
 * literals (or other static storage).
 *
 * A statement is reset when the transaction function returns; within a
 * function, db_reset lets a statement be run again.
 */
#ifndef KEEL_STORE_DB_H
#define KEEL_STORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"
#include "store/store.h"

struct db_stmt;

enum { DB_ROW = 1, DB_DONE = 0 };

/* Returns a ready statement or NULL (the error is logged; the transaction
 * should fail with KEEL_ESTORE). */
struct db_stmt *db_prepare(struct store_tx *tx, const char *sql);
/* As db_prepare, for a statement whose best plan depends on its values (a
 * lookup by a list of keys; a join with an array of rows): on PostgreSQL it
 * is never prepared but sent with its values at every db_step (PQexecParams:
 * the unnamed statement, planned with the real values and the current
 * statistics; a prepared statement's generic plan, made once, may keep a
 * bad index choice from when the tables were empty). Its parameters' types
 * are unknown to the client: text goes in text format (copied). On SQLite
 * it is db_prepare. A given SQL text is always prepared one way. */
struct db_stmt *db_prepare_adhoc(struct store_tx *tx, const char *sql);
/* Binding: idx is 1-based. Strings and blobs are copied (transient). */
int db_bind_text(struct db_stmt *st, int idx, const char *s); /* NULL → SQL NULL */
int db_bind_textn(struct db_stmt *st, int idx, const char *s, size_t n);
/* Not copied: s must stay valid until the statement is reset or the
 * parameter bound again (the hot path of ingestion binds the batch's own
 * memory, which outlives the transaction). */
int db_bind_textn_nocopy(struct db_stmt *st, int idx, const char *s, size_t n);
int db_bind_i64(struct db_stmt *st, int idx, int64_t v);
int db_bind_blob(struct db_stmt *st, int idx, const void *p, size_t n);
int db_bind_null(struct db_stmt *st, int idx);
/* A UUID column kept compact (the events table's org_id and api_key_id):
 * SQLite stores the 16 raw bytes as a BLOB, PostgreSQL a uuid. Binds the
 * canonical text form; NULL, or text that is not a UUID, binds SQL NULL
 * (which matches no row). */
int db_bind_uuid(struct db_stmt *st, int idx, const char *text);
/* Reads such a column as canonical lower-case text into out ("" for NULL). */
void db_col_uuid(struct db_stmt *st, int col, char out[ID_STR_SIZE]);
/* Runs the statement: DB_ROW (a row is ready), DB_DONE, or a negative
 * KEEL_E* status (KEEL_ECONFLICT for a unique/primary-key violation). */
int db_step(struct db_stmt *st);
/* Column access for the current row (0-based). Text/blob pointers are valid
 * until the next db_step/db_reset. */
const char *db_col_text(struct db_stmt *st, int col); /* NULL for SQL NULL */
size_t db_col_len(struct db_stmt *st, int col);
int64_t db_col_i64(struct db_stmt *st, int col);
const void *db_col_blob(struct db_stmt *st, int col);
bool db_col_is_null(struct db_stmt *st, int col);
void db_reset(struct db_stmt *st);
/* Copies a text column into dst[n] (NUL-terminated; "" for SQL NULL), cut at
 * a UTF-8 character boundary when it does not fit (the result often ends up
 * in JSON, which refuses broken UTF-8). Backend-neutral (db_util.c). */
void db_col_copy(struct db_stmt *st, int col, char *dst, size_t n);
/* Runs a statement that returns no rows, binding nothing. */
int db_exec(struct store_tx *tx, const char *sql);
/* Rows changed by the last INSERT/UPDATE/DELETE on this transaction. */
int64_t db_changes(struct store_tx *tx);

/*
 * Row-level security contexts (docs/internals/postgres.md). On PostgreSQL
 * every tenant table lets a transaction see and write only the rows of the
 * org set by db_scope (set_config('app.org_id', …, true)): a statement that
 * forgot its own org_id condition still cannot reach another tenant. Every
 * store function that touches tenant data calls db_scope first; the few
 * that legitimately cross tenants say so with one of the two others:
 *  - db_as_user: the rows about this user in any org (their memberships and
 *    those orgs), for login, the org switcher and invitations;
 *  - db_as_system: read (and expire) across every org, for platform
 *    administration, authentication lookups and background jobs.
 * A later call replaces the earlier context of the same kind; db_scope with
 * another org replaces the org. On SQLite these do nothing.
 * Return 0 or KEEL_ESTORE.
 */
enum db_context { DB_CTX_ORG, DB_CTX_USER, DB_CTX_SYSTEM };
int db_scope(struct store_tx *tx, const struct org_scope *scope);
int db_as_user(struct store_tx *tx, const char *user_id);
int db_as_system(struct store_tx *tx);
/* "sqlite" | "postgres": for the rare statement whose text must differ. */
const char *db_backend(struct store_tx *tx);

#endif
