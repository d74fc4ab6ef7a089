/*
 * store/deadletters.c — dead-letter rows (store/deadletters.h).
 *
 * Lists walk index dead_letters_org_received (org_id, received_at DESC,
 * id DESC) with a row-value bound, so a page costs the same wherever it
 * starts. The expiry walks dead_letters_received (received_at) across orgs.
 */
#include "store/deadletters.h"

#include <string.h>

#include "core/errors.h"
#include "core/ids.h"
#include "core/time.h"
#include "store/db.h"

int store_dead_letter_put(struct store_tx *tx, const struct org_scope *scope,
                          const struct dead_letter_in *in, char *id_out) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  char id[ID_STR_SIZE];
  id_new_str(id);
  struct db_stmt *st = db_prepare(
      tx,
      "INSERT INTO dead_letters(org_id, id, received_at, error, payload, event_id, session_id,"
      " type, api_key_id, failed_at, attempts)"
      " VALUES($1, $2, @ts($3), $4, $5, $6, $7, $8, $9, @ts($10), 1)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_i64(st, 3, in->received_at);
  db_bind_text(st, 4, in->error);
  db_bind_textn(st, 5, in->payload, in->payload_len);
  db_bind_text(st, 6, in->event_id);
  db_bind_text(st, 7, in->session_id);
  db_bind_text(st, 8, in->type);
  db_bind_text(st, 9, in->api_key_id);
  db_bind_i64(st, 10, time_now_us());
  int rc = db_step(st);
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  if (id_out) memcpy(id_out, id, ID_STR_SIZE);
  return 0;
}

/* The columns every read selects, in the order row_from reads them. */
#define DL_COLS                                                                          \
  "id, event_id, session_id, type, api_key_id, error, @us(received_at), @us(failed_at)," \
  " attempts, payload"

static void row_from(struct db_stmt *st, struct dead_letter_row *r) {
  db_col_copy(st, 0, r->id, sizeof(r->id));
  db_col_copy(st, 1, r->event_id, sizeof(r->event_id));
  db_col_copy(st, 2, r->session_id, sizeof(r->session_id));
  db_col_copy(st, 3, r->type, sizeof(r->type));
  db_col_copy(st, 4, r->api_key_id, sizeof(r->api_key_id));
  db_col_copy(st, 5, r->error, sizeof(r->error));
  r->received_at = db_col_i64(st, 6);
  r->failed_at = db_col_i64(st, 7);
  r->attempts = db_col_i64(st, 8);
  r->payload = db_col_text(st, 9);
  r->payload_len = db_col_len(st, 9);
  if (!r->payload) r->payload_len = 0;
}

/* Runs a bound list statement, calling fn for each row. */
static int walk(struct db_stmt *st, dead_letter_row_fn fn, void *arg) {
  struct dead_letter_row row;
  for (;;) {
    int rc = db_step(st);
    if (rc == DB_DONE) return 0;
    if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
    row_from(st, &row);
    if ((rc = fn(&row, arg)) != 0) return rc;
  }
}

int store_dead_letters_list(struct store_tx *tx, const struct org_scope *scope,
                            const struct dead_letter_pos *after, int64_t limit,
                            dead_letter_row_fn fn, void *arg) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st;
  if (!after) {
    st = db_prepare(tx, "SELECT " DL_COLS
                        " FROM dead_letters WHERE org_id = $1"
                        " ORDER BY received_at DESC, id DESC LIMIT $2");
    if (!st) return KEEL_ESTORE;
    db_bind_text(st, 1, scope->org_id);
    db_bind_i64(st, 2, limit);
  } else {
    st = db_prepare(tx, "SELECT " DL_COLS
                        " FROM dead_letters WHERE org_id = $1"
                        " AND (received_at, id) < (@ts($2), $3)"
                        " ORDER BY received_at DESC, id DESC LIMIT $4");
    if (!st) return KEEL_ESTORE;
    db_bind_text(st, 1, scope->org_id);
    db_bind_i64(st, 2, after->received_at);
    db_bind_text(st, 3, after->id);
    db_bind_i64(st, 4, limit);
  }
  return walk(st, fn, arg);
}

int store_dead_letter_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                          struct dead_letter_row *out, struct buf *payload) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st =
      db_prepare(tx, "SELECT " DL_COLS " FROM dead_letters WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  row_from(st, out);
  if (payload && buf_append(payload, out->payload ? out->payload : "", out->payload_len) != 0) {
    return KEEL_ETOOBIG;
  }
  out->payload = NULL; /* the statement's memory: not valid past this call */
  out->payload_len = 0;
  return 0;
}

int store_dead_letter_delete(struct store_tx *tx, const struct org_scope *scope, const char *id) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "DELETE FROM dead_letters WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  int rc = db_step(st);
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_dead_letter_record_failure(struct store_tx *tx, const struct org_scope *scope,
                                     const char *id, const char *error, int64_t failed_at_us) {
  if (db_scope(tx, scope) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE dead_letters SET attempts = attempts + 1, error = $3,"
                                  " failed_at = @ts($4) WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, scope->org_id);
  db_bind_text(st, 2, id);
  db_bind_text(st, 3, error);
  db_bind_i64(st, 4, failed_at_us);
  int rc = db_step(st);
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_dead_letters_expire(struct store_tx *tx, int64_t cutoff_us, int64_t max_rows,
                              int64_t *deleted) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  /* The rows are picked by the received_at index, then deleted by primary
   * key: DELETE … LIMIT is not portable (nor in every SQLite build). */
  struct db_stmt *st = db_prepare(tx,
                                  "DELETE FROM dead_letters WHERE (org_id, id) IN"
                                  " (SELECT org_id, id FROM dead_letters"
                                  " WHERE received_at < @ts($1) ORDER BY received_at LIMIT $2)");
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, cutoff_us);
  db_bind_i64(st, 2, max_rows);
  int rc = db_step(st);
  if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  if (deleted) *deleted = db_changes(tx);
  return 0;
}

int store_dead_letters_count(struct store_tx *tx, int64_t *count) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx, "SELECT count(*) FROM dead_letters");
  if (!st) return KEEL_ESTORE;
  int rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *count = db_col_i64(st, 0);
  return 0;
}
