/*
 * store.h — the storage adapter: keel's only way to its data.
 *
 * The interface speaks in domain operations, not SQL. Two backends implement
 * it: SQLite (store/sqlite/, the default, embedded) and PostgreSQL (store/pg/).
 * SQL text lives only under store/.
 *
 * Transactions. Work runs inside a function given to store_read or
 * store_write; it receives a struct store_tx * and must not keep it after
 * returning. Returning non-zero from the function rolls its work back, and
 * store_write/store_read return that status.
 *
 *  - SQLite: store_write hands the function to the single writer thread,
 *    which groups every job waiting into one transaction (each job inside its
 *    own SAVEPOINT, so a failing job is undone alone) and commits once
 *    (synchronous=FULL): group commit. store_write returns only after the
 *    commit. Reads run on a per-thread reader connection (WAL: never blocked
 *    by the writer).
 *  - Callers of store_read/store_write may block: never call them on an HTTP
 *    I/O thread.
 *
 * Tenancy. Every operation on tenant data takes a const struct org_scope * as
 * its first argument after the transaction; there is no unscoped variant.
 *
 * Thread-safety: store_read and store_write may be called from any number of
 * threads at once.
 */
#ifndef KEEL_STORE_STORE_H
#define KEEL_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ids.h"

struct store;
struct store_tx;

/* The org a tenant operation is confined to. */
struct org_scope {
  char org_id[ID_STR_SIZE];
};

struct store_options {
  const char *data_dir; /* SQLite: directory holding keel.db */
  const char *url;      /* "" or NULL: SQLite; postgres://…: PostgreSQL */
  int busy_timeout_ms;
  int cache_kib;
  bool migrate_on_open; /* apply pending migrations before returning */
  /* PostgreSQL only. */
  int pool_size;        /* reader connections (0: 8); the writer has its own */
  const char *app_role; /* role granted the app's privileges by store_migrate ("": keel_app) */
  /* Send every statement with its values (the unnamed statement) instead of
   * preparing it once per connection: for a transaction-mode pooler
   * (PgBouncer before 1.21), which hands each transaction any server
   * connection, where a statement prepared on another one does not exist. */
  bool no_prepare;
  /* Test hook (test builds only): set the org with a session-level SET that
   * outlives the transaction on its pooled connection, instead of
   * set_config(…, true) — deliberately broken isolation, so the leakage test
   * can show that it would catch such a bug. */
  bool leaky_scope;
};

/* Opens the store. Returns 0, or a KEEL_E* status with a message in err. */
int store_open(const struct store_options *opt, struct store **out, char *err, size_t errlen);
/* Drains the writer (every queued write is committed), closes everything. */
void store_close(struct store *s);
const char *store_backend(const struct store *s); /* "sqlite" | "postgres" */

/* Applies pending migrations; *applied (may be NULL) gets how many ran. */
int store_migrate(struct store *s, int *applied, char *err, size_t errlen);
/* Current and latest known schema versions. */
int store_schema_version(struct store *s, int *current, int *latest);
/* 0 when the store answers and the schema is at the latest version. */
int store_ready(struct store *s);

typedef int (*store_tx_fn)(struct store_tx *tx, void *arg);

int store_read(struct store *s, store_tx_fn fn, void *arg);
int store_write(struct store *s, store_tx_fn fn, void *arg);

/*
 * Queues fn like store_write but does not wait: done(arg, rc) is called
 * exactly once, on the writer thread, after the group holding the job
 * committed — rc is fn's status (its work rolled back when non-zero), or
 * KEEL_ESTORE when the group's COMMIT failed. arg must stay valid until
 * done is called; done must not block for long (it holds up the writer) and
 * may queue more work (store_write_async; never store_write, which would
 * run inline outside any transaction that commits before done). Returns 0
 * when queued, or KEEL_EBUSY when the store is closing (done is then never
 * called). store_close drains queued async jobs, calling their callbacks.
 * Thread-safe; never blocks on the writer (only on the queue's mutex).
 */
int store_write_async(struct store *s, store_tx_fn fn, void *arg, void (*done)(void *arg, int rc));

/*
 * The write generation: a counter that moves on after every successful
 * commit of a write by this process (store_write's group commits, nested
 * writes, migrations). It moves before store_write returns, so a caller
 * that noted it before reading and finds it unchanged afterwards knows no
 * write of this process has committed since its read began. Writes by other
 * processes on the same database do not move it. Starts at 1; never 0.
 * Thread-safe, lock-free, never blocks: callable on an HTTP I/O thread.
 */
uint64_t store_write_generation(struct store *s);

/* Writes waiting for the writer, synchronous and asynchronous (for /metrics
 * and backpressure). */
size_t store_write_queue_depth(struct store *s);

/* Test hook (test builds and --dev only): the next n write jobs fail with
 * KEEL_ESTORE as if the disk failed. */
void store_fail_next_writes(struct store *s, unsigned n);

#endif
