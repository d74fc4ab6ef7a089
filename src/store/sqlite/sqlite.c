/*
 * sqlite.c — the embedded SQLite backend of the store adapter.
 *
 * Connections:
 *  - one writer connection, used only by the writer thread. Writes are jobs
 *    queued by store_write; the writer takes every job waiting, runs each in
 *    its own SAVEPOINT inside one transaction, and commits once (group
 *    commit: one fsync for many writers; synchronous=FULL).
 *  - one reader connection per thread (created on first use, query_only).
 *    WAL lets readers run while the writer writes.
 * Prepared statements are cached per connection, keyed by the address of the
 * SQL text (always a string literal, see db.h).
 *
 * Invariants: a connection is used by one thread at a time (hence
 * SQLITE_OPEN_NOMUTEX); store_write returns only after its transaction
 * committed or was rolled back; store_write_async's callback runs exactly
 * once, on the writer thread, after the same point.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/embedded.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "store/backend.h"
#include "store/db.h"
#include "store/store.h"
#include "store/writeq.h"

#define STMT_CACHE_SLOTS 512  /* power of two; more statements than this is a bug */
#define TX_STMTS_MAX     64   /* statements one transaction function may use */
#define WRITER_BATCH_MAX 1024 /* jobs grouped into one transaction */
/* WAL frames (pages) after which the checkpointer is woken: 8 MiB of WAL. */
#define CHECKPOINT_FRAMES 2048
/* The WAL file is cut back to this size when it restarts. */
#define WAL_SIZE_LIMIT (64 * 1024 * 1024)

struct db_stmt {
  const struct store_backend *be; /* first: store/backend.h */
  sqlite3_stmt *st;
  const char *key; /* the caller's SQL text address */
};

struct conn {
  sqlite3 *db;
  struct db_stmt cache[STMT_CACHE_SLOTS];
  size_t ncached;
  sqlite3_stmt *sp_begin, *sp_rollback, *sp_release; /* the writer's per-job savepoint */
  struct conn *next;                                 /* in store->readers */
};

struct store_tx {
  const struct store_backend *be; /* first: store/backend.h */
  struct store *s;
  struct conn *conn;
  struct db_stmt *used[TX_STMTS_MAX];
  size_t nused;
};

struct store {
  const struct store_backend *be; /* first: store/backend.h */
  char *path;
  int busy_timeout_ms;
  int cache_kib;
  int latest_version;

  struct conn *writer;
  struct writeq q; /* the writer thread, its queue, the write generation */

  pthread_key_t reader_key;
  pthread_mutex_t readers_mu;
  struct conn *readers;

  /* The checkpointer: copies WAL frames back into the database on its own
   * connection and thread, so the writer never does (see wal_hook). */
  struct conn *checkpointer;
  pthread_t checkpoint_thread;
  pthread_mutex_t ckpt_mu;
  pthread_cond_t ckpt_cv;
  bool ckpt_wanted, ckpt_stopping, ckpt_started;
};

/* --- connections -------------------------------------------------------- */

static int conn_exec(struct conn *c, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    log_error("store.sqlite_exec_failed", LS("error", msg ? msg : sqlite3_errstr(rc)));
    sqlite3_free(msg);
    return KEEL_ESTORE;
  }
  return 0;
}

static struct conn *conn_open(struct store *s, bool reader, char *err, size_t errlen) {
  struct conn *c = xcalloc(1, sizeof(*c));
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(s->path, &c->db, flags, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", s->path,
             c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    sqlite3_close(c->db);
    xfree(c);
    return NULL;
  }
  sqlite3_busy_timeout(c->db, s->busy_timeout_ms);
  sqlite3_extended_result_codes(c->db, 1);
  char pragmas[256];
  snprintf(pragmas, sizeof(pragmas),
           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
           " PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%d;%s",
           s->cache_kib, reader ? " PRAGMA query_only=ON;" : "");
  if (conn_exec(c, pragmas) != 0) {
    snprintf(err, errlen, "cannot configure %s: %s", s->path, sqlite3_errmsg(c->db));
    sqlite3_close(c->db);
    xfree(c);
    return NULL;
  }
  return c;
}

static void conn_close(struct conn *c) {
  if (!c) return;
  for (size_t i = 0; i < STMT_CACHE_SLOTS; i++) {
    if (c->cache[i].st) sqlite3_finalize(c->cache[i].st);
  }
  sqlite3_finalize(c->sp_begin);
  sqlite3_finalize(c->sp_rollback);
  sqlite3_finalize(c->sp_release);
  sqlite3_close(c->db);
  xfree(c);
}

static struct conn *reader_get(struct store *s) {
  struct conn *c = pthread_getspecific(s->reader_key);
  if (c) return c;
  char err[256];
  c = conn_open(s, true, err, sizeof(err));
  if (!c) {
    log_error("store.reader_open_failed", LS("error", err));
    return NULL;
  }
  pthread_mutex_lock(&s->readers_mu);
  c->next = s->readers;
  s->readers = c;
  pthread_mutex_unlock(&s->readers_mu);
  pthread_setspecific(s->reader_key, c);
  return c;
}

/* --- the statement layer (db.h) ---------------------------------------- */

/*
 * Rewrites keel's portable SQL for SQLite: "$N" → "?N", "@ts(x)" → "x",
 * "@us(x)" → "x" (timestamps are INTEGER µs here).
 */
static char *sql_for_sqlite(const char *sql) {
  struct buf b;
  buf_init(&b, 1 << 20);
  for (const char *p = sql; *p;) {
    if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
      buf_putc(&b, '?');
      p++;
    } else if ((strncmp(p, "@ts(", 4) == 0 || strncmp(p, "@us(", 4) == 0)) {
      /* Copy the argument, dropping the wrapper; arguments never nest. A
       * parameter inside is rewritten too: left as "$N" SQLite would take it
       * for a named parameter with an index of its own. */
      const char *close = strchr(p + 4, ')');
      KEEL_ASSERT(close != NULL);
      for (const char *a = p + 4; a < close; a++) {
        buf_putc(&b, *a == '$' && a[1] >= '0' && a[1] <= '9' ? '?' : *a);
      }
      p = close + 1;
    } else {
      buf_putc(&b, *p++);
    }
  }
  size_t len;
  return buf_steal(&b, &len);
}

static size_t slot_of(const char *key) {
  uintptr_t h = (uintptr_t)key;
  h ^= h >> 17;
  h *= UINT64_C(0x9E3779B97F4A7C15);
  return (size_t)(h >> 7) & (STMT_CACHE_SLOTS - 1);
}

static struct db_stmt *sq_db_prepare(struct store_tx *tx, const char *sql) {
  struct conn *c = tx->conn;
  size_t i = slot_of(sql);
  while (c->cache[i].key && c->cache[i].key != sql) i = (i + 1) & (STMT_CACHE_SLOTS - 1);
  struct db_stmt *st = &c->cache[i];
  if (!st->key) {
    KEEL_ASSERT(c->ncached < STMT_CACHE_SLOTS / 2);
    char *text = sql_for_sqlite(sql);
    int rc = sqlite3_prepare_v3(c->db, text, -1, SQLITE_PREPARE_PERSISTENT, &st->st, NULL);
    if (rc != SQLITE_OK) {
      log_error("store.prepare_failed", LS("error", sqlite3_errmsg(c->db)), LS("sql", text));
      xfree(text);
      return NULL;
    }
    xfree(text);
    st->key = sql;
    st->be = &store_backend_sqlite;
    c->ncached++;
  }
  /* Remember it so it is reset when the transaction function returns. */
  for (size_t k = 0; k < tx->nused; k++) {
    if (tx->used[k] == st) {
      sqlite3_reset(st->st);
      sqlite3_clear_bindings(st->st);
      return st;
    }
  }
  KEEL_ASSERT(tx->nused < TX_STMTS_MAX);
  tx->used[tx->nused++] = st;
  return st;
}

static int sq_db_bind_null(struct db_stmt *st, int idx);

static int bind_rc(struct db_stmt *st, int rc) {
  if (rc == SQLITE_OK) return 0;
  log_error("store.bind_failed", LS("error", sqlite3_errstr(rc)), LS("sql", sqlite3_sql(st->st)));
  return KEEL_ESTORE;
}

static int sq_db_bind_text(struct db_stmt *st, int idx, const char *s) {
  if (!s) return sq_db_bind_null(st, idx);
  return bind_rc(st, sqlite3_bind_text(st->st, idx, s, -1, SQLITE_TRANSIENT));
}

static int sq_db_bind_textn(struct db_stmt *st, int idx, const char *s, size_t n) {
  return bind_rc(st, sqlite3_bind_text64(st->st, idx, s, n, SQLITE_TRANSIENT, SQLITE_UTF8));
}

static int sq_db_bind_i64(struct db_stmt *st, int idx, int64_t v) {
  return bind_rc(st, sqlite3_bind_int64(st->st, idx, v));
}

static int sq_db_bind_textn_nocopy(struct db_stmt *st, int idx, const char *s, size_t n) {
  return bind_rc(st, sqlite3_bind_text64(st->st, idx, s, n, SQLITE_STATIC, SQLITE_UTF8));
}

static int sq_db_bind_blob(struct db_stmt *st, int idx, const void *p, size_t n) {
  return bind_rc(st, sqlite3_bind_blob64(st->st, idx, p, n, SQLITE_TRANSIENT));
}

static int sq_db_bind_null(struct db_stmt *st, int idx) {
  return bind_rc(st, sqlite3_bind_null(st->st, idx));
}

static int sq_db_bind_uuid(struct db_stmt *st, int idx, const char *text) {
  struct id id;
  if (!text || id_parse(slice_from_cstr(text), &id) != 0) return sq_db_bind_null(st, idx);
  return bind_rc(st, sqlite3_bind_blob(st->st, idx, id.b, sizeof(id.b), SQLITE_TRANSIENT));
}

static void sq_db_col_uuid(struct db_stmt *st, int col, char out[ID_STR_SIZE]) {
  out[0] = '\0';
  if (sqlite3_column_bytes(st->st, col) != 16) return;
  struct id id;
  memcpy(id.b, sqlite3_column_blob(st->st, col), sizeof(id.b));
  id_format(&id, out);
}

static int sq_db_step(struct db_stmt *st) {
  int rc = sqlite3_step(st->st);
  if (rc == SQLITE_ROW) return DB_ROW;
  if (rc == SQLITE_DONE) return DB_DONE;
  if ((rc & 0xff) == SQLITE_CONSTRAINT &&
      (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)) {
    return KEEL_ECONFLICT;
  }
  sqlite3 *db = sqlite3_db_handle(st->st);
  log_error("store.step_failed", LS("error", sqlite3_errmsg(db)), LI("code", rc),
            LS("sql", sqlite3_sql(st->st)));
  return (rc & 0xff) == SQLITE_BUSY ? KEEL_EBUSY : KEEL_ESTORE;
}

static const char *sq_db_col_text(struct db_stmt *st, int col) {
  return (const char *)sqlite3_column_text(st->st, col);
}

static size_t sq_db_col_len(struct db_stmt *st, int col) {
  return (size_t)sqlite3_column_bytes(st->st, col);
}

static int64_t sq_db_col_i64(struct db_stmt *st, int col) {
  return sqlite3_column_int64(st->st, col);
}

static const void *sq_db_col_blob(struct db_stmt *st, int col) {
  return sqlite3_column_blob(st->st, col);
}

static bool sq_db_col_is_null(struct db_stmt *st, int col) {
  return sqlite3_column_type(st->st, col) == SQLITE_NULL;
}

static void sq_db_reset(struct db_stmt *st) {
  sqlite3_reset(st->st);
  sqlite3_clear_bindings(st->st);
}

static int sq_db_exec(struct store_tx *tx, const char *sql) {
  struct db_stmt *st = sq_db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  int rc = sq_db_step(st);
  while (rc == DB_ROW) rc = sq_db_step(st);
  return rc;
}

static int64_t sq_db_changes(struct store_tx *tx) {
  return sqlite3_changes64(tx->conn->db);
}

static void tx_release(struct store_tx *tx) {
  for (size_t i = 0; i < tx->nused; i++) {
    sqlite3_reset(tx->used[i]->st);
    sqlite3_clear_bindings(tx->used[i]->st);
  }
  tx->nused = 0;
}

/* --- reads -------------------------------------------------------------- */

static int sq_read(struct store *s, store_tx_fn fn, void *arg) {
  struct conn *c = reader_get(s);
  if (!c) return KEEL_ESTORE;
  struct store_tx tx = {.be = &store_backend_sqlite, .s = s, .conn = c};
  if (conn_exec(c, "BEGIN") != 0) return KEEL_ESTORE;
  int rc = fn(&tx, arg);
  tx_release(&tx);
  conn_exec(c, rc ? "ROLLBACK" : "COMMIT");
  return rc;
}

/* --- the writer --------------------------------------------------------- */

static int run_job(struct store *s, struct write_job *j) {
  if (writeq_take_failure(&s->q)) return KEEL_ESTORE;
  struct store_tx tx = {.be = &store_backend_sqlite, .s = s, .conn = s->writer};
  int rc = j->fn(&tx, j->arg);
  tx_release(&tx);
  return rc;
}

static uint64_t sq_write_generation(struct store *s) {
  return writeq_generation(&s->q);
}

/* Runs one of the writer's own statements, prepared once (compiling
 * "SAVEPOINT job" for every job of every group would cost more than many
 * jobs' work). */
static int writer_exec(struct conn *w, sqlite3_stmt **st, const char *sql) {
  if (!*st && sqlite3_prepare_v2(w->db, sql, -1, st, NULL) != SQLITE_OK) {
    log_error("store.sqlite_exec_failed", LS("error", sqlite3_errmsg(w->db)), LS("sql", sql));
    return KEEL_ESTORE;
  }
  int rc = sqlite3_step(*st);
  sqlite3_reset(*st);
  if (rc != SQLITE_DONE) {
    log_error("store.sqlite_exec_failed", LS("error", sqlite3_errmsg(w->db)), LS("sql", sql));
    return KEEL_ESTORE;
  }
  return 0;
}

/* One group (writeq.h): BEGIN IMMEDIATE; per job SAVEPOINT … (RELEASE |
 * ROLLBACK TO, RELEASE); COMMIT. */
static int run_group(void *backend, struct write_job *batch) {
  struct store *s = backend;
  struct conn *w = s->writer;
  int rc = conn_exec(w, "BEGIN IMMEDIATE");
  if (rc == 0) {
    for (struct write_job *j = batch; j; j = j->next) {
      writer_exec(w, &w->sp_begin, "SAVEPOINT job");
      j->rc = run_job(s, j);
      if (j->rc) writer_exec(w, &w->sp_rollback, "ROLLBACK TO job");
      writer_exec(w, &w->sp_release, "RELEASE job");
    }
    rc = conn_exec(w, "COMMIT");
    if (rc) conn_exec(w, "ROLLBACK");
  }
  return rc;
}

/* --- the checkpointer ---------------------------------------------------- *
 *
 * SQLite's default is for the committing connection to checkpoint once the
 * WAL passes 1 000 pages: on keel's writer that copies pages and fsyncs the
 * database inside the ingestion path, several times a second under load.
 * Instead the writer's WAL hook only wakes this thread, which runs PASSIVE
 * checkpoints (never blocking the writer or readers) on its own connection.
 * A page rewritten by many commits is copied once per checkpoint. Once a
 * checkpoint has copied every frame, the writer's next transaction starts
 * the WAL over (cut back to WAL_SIZE_LIMIT).
 */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
  (void)db;
  (void)name;
  struct store *s = arg;
  if (frames >= CHECKPOINT_FRAMES) {
    pthread_mutex_lock(&s->ckpt_mu);
    s->ckpt_wanted = true;
    pthread_cond_signal(&s->ckpt_cv);
    pthread_mutex_unlock(&s->ckpt_mu);
  }
  return SQLITE_OK;
}

static void *checkpoint_main(void *arg) {
  struct store *s = arg;
  pthread_setname_np(pthread_self(), "keel-checkpoint");
  pthread_mutex_lock(&s->ckpt_mu);
  for (;;) {
    while (!s->ckpt_wanted && !s->ckpt_stopping) pthread_cond_wait(&s->ckpt_cv, &s->ckpt_mu);
    if (s->ckpt_stopping) break;
    s->ckpt_wanted = false;
    pthread_mutex_unlock(&s->ckpt_mu);
    int log_frames = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->checkpointer->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                       &log_frames, &copied);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      log_warn("store.checkpoint_failed", LS("error", sqlite3_errmsg(s->checkpointer->db)));
    }
    pthread_mutex_lock(&s->ckpt_mu);
  }
  pthread_mutex_unlock(&s->ckpt_mu);
  return NULL;
}

/* Starts the checkpointer; without it (no connection or thread) the writer
 * keeps SQLite's own automatic checkpoints. */
static void checkpointer_start(struct store *s) {
  char err[256];
  pthread_mutex_init(&s->ckpt_mu, NULL);
  pthread_cond_init(&s->ckpt_cv, NULL);
  s->checkpointer = conn_open(s, false, err, sizeof(err));
  if (!s->checkpointer) {
    log_warn("store.checkpointer_unavailable", LS("error", err));
    return;
  }
  if (pthread_create(&s->checkpoint_thread, NULL, checkpoint_main, s) != 0) {
    conn_close(s->checkpointer);
    s->checkpointer = NULL;
    return;
  }
  s->ckpt_started = true;
  char pragma[96];
  snprintf(pragma, sizeof(pragma), "PRAGMA journal_size_limit=%d", WAL_SIZE_LIMIT);
  conn_exec(s->writer, pragma);
  sqlite3_wal_hook(s->writer->db, wal_hook, s); /* replaces the automatic checkpoint */
}

static void checkpointer_stop(struct store *s) {
  if (s->ckpt_started) {
    pthread_mutex_lock(&s->ckpt_mu);
    s->ckpt_stopping = true;
    pthread_cond_signal(&s->ckpt_cv);
    pthread_mutex_unlock(&s->ckpt_mu);
    pthread_join(s->checkpoint_thread, NULL);
    sqlite3_wal_hook(s->writer->db, NULL, NULL);
    s->ckpt_started = false;
  }
  conn_close(s->checkpointer);
  s->checkpointer = NULL;
  pthread_mutex_destroy(&s->ckpt_mu);
  pthread_cond_destroy(&s->ckpt_cv);
}

static int sq_write(struct store *s, store_tx_fn fn, void *arg) {
  if (writeq_on_writer(&s->q)) {
    /* Nested write from inside a write job: already in the transaction,
     * whose commit moves the generation on (writeq). Moving it here as
     * well costs nothing and keeps "every write moves it" true locally. */
    struct store_tx tx = {.be = &store_backend_sqlite, .s = s, .conn = s->writer};
    int rc = fn(&tx, arg);
    tx_release(&tx);
    if (rc == 0) writeq_generation_bump(&s->q);
    return rc;
  }
  return writeq_write(&s->q, fn, arg);
}

static int sq_write_async(struct store *s, store_tx_fn fn, void *arg,
                          void (*done)(void *arg, int rc)) {
  return writeq_write_async(&s->q, fn, arg, done);
}

static size_t sq_write_queue_depth(struct store *s) {
  return writeq_depth(&s->q);
}

static void sq_fail_next_writes(struct store *s, unsigned n) {
  writeq_fail_next(&s->q, n);
}

/* --- migrations --------------------------------------------------------- */

static int migration_version(const char *name) {
  int v = 0;
  for (const char *p = name; *p >= '0' && *p <= '9'; p++) v = v * 10 + (*p - '0');
  return v;
}

static int current_version(struct conn *c, int *out) {
  sqlite3_stmt *st = NULL;
  *out = 0;
  int rc = sqlite3_prepare_v2(c->db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1,
                              &st, NULL);
  if (rc != SQLITE_OK) {
    /* No table yet: version 0. */
    sqlite3_finalize(st);
    return 0;
  }
  if (sqlite3_step(st) == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return 0;
}

static int apply_migrations(struct store *s, struct conn *c, int *applied, char *err,
                            size_t errlen) {
  int n = 0;
  /* BEGIN IMMEDIATE serialises concurrent migrators (keel migrate beside a
   * starting server): the second one sees the first one's work. */
  if (conn_exec(c, "BEGIN IMMEDIATE") != 0) {
    snprintf(err, errlen, "cannot lock the database for migration: %s", sqlite3_errmsg(c->db));
    return KEEL_ESTORE;
  }
  if (conn_exec(c,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at INTEGER NOT NULL)") != 0) {
    conn_exec(c, "ROLLBACK");
    snprintf(err, errlen, "cannot create schema_migrations");
    return KEEL_ESTORE;
  }
  int cur = 0;
  current_version(c, &cur);
  for (size_t i = 0; i < migrations_sqlite_count; i++) {
    const struct embedded_file *m = &migrations_sqlite_files[i];
    int v = migration_version(m->name);
    if (v <= cur) continue;
    char *msg = NULL;
    if (sqlite3_exec(c->db, m->data, NULL, NULL, &msg) != SQLITE_OK) {
      snprintf(err, errlen, "migration %s failed: %s", m->name, msg ? msg : "?");
      sqlite3_free(msg);
      conn_exec(c, "ROLLBACK");
      return KEEL_ESTORE;
    }
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(c->db,
                       "INSERT INTO schema_migrations(version, name, applied_at) VALUES(?,?,?)", -1,
                       &st, NULL);
    sqlite3_bind_int(st, 1, v);
    sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, time_now_us());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
      snprintf(err, errlen, "cannot record migration %s", m->name);
      conn_exec(c, "ROLLBACK");
      return KEEL_ESTORE;
    }
    n++;
  }
  if (conn_exec(c, "COMMIT") != 0) {
    snprintf(err, errlen, "cannot commit migrations: %s", sqlite3_errmsg(c->db));
    conn_exec(c, "ROLLBACK");
    return KEEL_ESTORE;
  }
  writeq_generation_bump(&s->q); /* a direct write on its own connection */
  if (applied) *applied = n;
  if (n > 0) log_info("store.migrated", LI("applied", n), LI("version", s->latest_version));
  return 0;
}

static int sq_migrate(struct store *s, int *applied, char *err, size_t errlen) {
  /* A dedicated connection: migrations may run beside a live writer (another
   * process's, or ours); BEGIN IMMEDIATE orders them. */
  char e2[256];
  struct conn *c = conn_open(s, false, e2, sizeof(e2));
  if (!c) {
    snprintf(err, errlen, "%s", e2);
    return KEEL_ESTORE;
  }
  int rc = apply_migrations(s, c, applied, err, errlen);
  conn_close(c);
  return rc;
}

static int sq_schema_version(struct store *s, int *current, int *latest) {
  *latest = s->latest_version;
  *current = 0;
  struct conn *c = reader_get(s);
  if (!c) return KEEL_ESTORE;
  return current_version(c, current);
}

static int sq_ready(struct store *s) {
  int cur = 0, latest = 0;
  if (sq_schema_version(s, &cur, &latest) != 0) return KEEL_ESTORE;
  return cur == latest ? 0 : KEEL_EBUSY;
}

/* --- open / close ------------------------------------------------------- */

static int mkdir_p(const char *dir) {
  char tmp[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(tmp)) return -1;
  memcpy(tmp, dir, n + 1);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
  return 0;
}

/* Process-wide SQLite settings, before the library initialises: no memory
 * statistics (they take a global mutex on every allocation, which the writer
 * makes thousands of per batch). */
static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;

static void sqlite_configure(void) {
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  sqlite3_initialize();
}

static int sq_open(const struct store_options *opt, struct store **out, char *err, size_t errlen) {
  *out = NULL;
  pthread_once(&sqlite_config_once, sqlite_configure);
  if (opt->url && opt->url[0]) {
    snprintf(err, errlen,
             "store URL '%.32s…': only the embedded SQLite store is available in this build",
             opt->url);
    return KEEL_EINVAL;
  }
  if (mkdir_p(opt->data_dir) != 0) {
    snprintf(err, errlen, "cannot create data directory %s: %s", opt->data_dir, strerror(errno));
    return KEEL_EIO;
  }
  struct store *s = xcalloc(1, sizeof(*s));
  s->be = &store_backend_sqlite;
  struct buf path;
  buf_init(&path, 8192);
  buf_printf(&path, "%s/keel.db", opt->data_dir);
  size_t len;
  s->path = buf_steal(&path, &len);
  s->busy_timeout_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
  s->cache_kib = opt->cache_kib > 0 ? opt->cache_kib : 16384;
  for (size_t i = 0; i < migrations_sqlite_count; i++) {
    int v = migration_version(migrations_sqlite_files[i].name);
    if (v > s->latest_version) s->latest_version = v;
  }
  writeq_init(&s->q, WRITER_BATCH_MAX, run_group, s);
  pthread_mutex_init(&s->readers_mu, NULL);
  /* Reader connections stay on s->readers until store_close: keel's threads
   * live as long as the store. */
  pthread_key_create(&s->reader_key, NULL);

  int rc = 0;
  if (opt->migrate_on_open) {
    rc = sq_migrate(s, NULL, err, errlen);
    if (rc) goto fail;
  }
  s->writer = conn_open(s, false, err, errlen);
  if (!s->writer) {
    rc = KEEL_ESTORE;
    goto fail;
  }
  checkpointer_start(s); /* before the writer thread owns its connection */
  if (writeq_start(&s->q) != 0) {
    checkpointer_stop(s);
    snprintf(err, errlen, "cannot start the writer thread");
    rc = KEEL_EINTERNAL;
    goto fail;
  }
  *out = s;
  return 0;
fail:
  writeq_stop(&s->q);
  conn_close(s->writer);
  pthread_key_delete(s->reader_key);
  xfree(s->path);
  xfree(s);
  return rc;
}

static void sq_close(struct store *s) {
  if (!s) return;
  writeq_stop(&s->q); /* every queued job runs first */
  checkpointer_stop(s);
  conn_close(s->writer); /* the last connection to close checkpoints the rest */
  pthread_key_delete(s->reader_key);
  pthread_mutex_lock(&s->readers_mu);
  struct conn *c = s->readers;
  while (c) {
    struct conn *next = c->next;
    conn_close(c);
    c = next;
  }
  s->readers = NULL;
  pthread_mutex_unlock(&s->readers_mu);
  pthread_mutex_destroy(&s->readers_mu);
  xfree(s->path);
  xfree(s);
}

const struct store_backend store_backend_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .migrate = sq_migrate,
    .schema_version = sq_schema_version,
    .ready = sq_ready,
    .read = sq_read,
    .write = sq_write,
    .write_async = sq_write_async,
    .write_generation = sq_write_generation,
    .write_queue_depth = sq_write_queue_depth,
    .fail_next_writes = sq_fail_next_writes,
    .prepare = sq_db_prepare,
    .prepare_adhoc = sq_db_prepare, /* SQLite plans with the values at every step */
    .bind_text = sq_db_bind_text,
    .bind_textn = sq_db_bind_textn,
    .bind_textn_nocopy = sq_db_bind_textn_nocopy,
    .bind_i64 = sq_db_bind_i64,
    .bind_blob = sq_db_bind_blob,
    .bind_null = sq_db_bind_null,
    .bind_uuid = sq_db_bind_uuid,
    .col_uuid = sq_db_col_uuid,
    .step = sq_db_step,
    .col_text = sq_db_col_text,
    .col_len = sq_db_col_len,
    .col_i64 = sq_db_col_i64,
    .col_blob = sq_db_col_blob,
    .col_is_null = sq_db_col_is_null,
    .reset = sq_db_reset,
    .exec = sq_db_exec,
    .changes = sq_db_changes,
    .context = NULL,
};
