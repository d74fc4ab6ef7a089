/*
 * backend.h — the two storage backends behind store.h and db.h (private to
 * store/).
 *
 * store.h and db.h are implemented once, in store/backend.c, by forwarding
 * each call through the backend's table of functions below. Each backend's
 * own struct store, struct store_tx and struct db_stmt begin with a
 * `const struct store_backend *be` member (struct store_head), which is how
 * backend.c finds the table; the rest of each struct is the backend's own.
 *
 * store_open picks the backend from the URL: empty → SQLite in data_dir;
 * postgres:// or postgresql:// → PostgreSQL.
 */
#ifndef KEEL_STORE_BACKEND_H
#define KEEL_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ids.h"
#include "store/db.h"
#include "store/store.h"

struct store_backend {
  const char *name; /* "sqlite" | "postgres" */

  int (*open)(const struct store_options *opt, struct store **out, char *err, size_t errlen);
  void (*close)(struct store *s);
  int (*migrate)(struct store *s, int *applied, char *err, size_t errlen);
  int (*schema_version)(struct store *s, int *current, int *latest);
  int (*ready)(struct store *s);
  int (*read)(struct store *s, store_tx_fn fn, void *arg);
  int (*write)(struct store *s, store_tx_fn fn, void *arg);
  int (*write_async)(struct store *s, store_tx_fn fn, void *arg, void (*done)(void *, int));
  uint64_t (*write_generation)(struct store *s);
  size_t (*write_queue_depth)(struct store *s);
  void (*fail_next_writes)(struct store *s, unsigned n);

  /* db.h, one for one. */
  struct db_stmt *(*prepare)(struct store_tx *tx, const char *sql);
  struct db_stmt *(*prepare_adhoc)(struct store_tx *tx, const char *sql);
  int (*bind_text)(struct db_stmt *st, int idx, const char *s);
  int (*bind_textn)(struct db_stmt *st, int idx, const char *s, size_t n);
  int (*bind_textn_nocopy)(struct db_stmt *st, int idx, const char *s, size_t n);
  int (*bind_i64)(struct db_stmt *st, int idx, int64_t v);
  int (*bind_blob)(struct db_stmt *st, int idx, const void *p, size_t n);
  int (*bind_null)(struct db_stmt *st, int idx);
  int (*bind_uuid)(struct db_stmt *st, int idx, const char *text);
  void (*col_uuid)(struct db_stmt *st, int col, char out[ID_STR_SIZE]);
  int (*step)(struct db_stmt *st);
  const char *(*col_text)(struct db_stmt *st, int col);
  size_t (*col_len)(struct db_stmt *st, int col);
  int64_t (*col_i64)(struct db_stmt *st, int col);
  const void *(*col_blob)(struct db_stmt *st, int col);
  bool (*col_is_null)(struct db_stmt *st, int col);
  void (*reset)(struct db_stmt *st);
  int (*exec)(struct store_tx *tx, const char *sql);
  int64_t (*changes)(struct store_tx *tx);
  /* db_scope / db_as_user / db_as_system (NULL: nothing to do, as on SQLite,
   * where every statement's own org_id condition is the only fence). */
  int (*context)(struct store_tx *tx, enum db_context kind, const char *id);
};

/* The first member of every backend's struct store, struct store_tx and
 * struct db_stmt. */
struct store_head {
  const struct store_backend *be;
};

extern const struct store_backend store_backend_sqlite;
extern const struct store_backend store_backend_postgres;

#endif
