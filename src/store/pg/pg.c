/*
 * pg.c — the PostgreSQL backend of the store adapter (libpq).
 *
 * The design mirrors store/sqlite/sqlite.c, so both backends give callers
 * the same guarantees:
 *  - one writer connection, used only by the writer thread. store_write
 *    queues a job; the writer takes every job waiting (up to 1 024), runs
 *    each in its own SAVEPOINT inside one BEGIN … COMMIT, and commits once
 *    (group commit). A job that calls store_write again runs inline.
 *  - a pool of reader connections (postgres.pool_size, opened lazily),
 *    borrowed for one store_read: a REPEATABLE READ READ ONLY transaction,
 *    so the function sees one snapshot, as on SQLite.
 * Prepared statements are cached per connection, keyed by the address of
 * the SQL text (a string literal, see db.h), under generated names.
 *
 * Row-level security (docs/internals/postgres.md): db_scope, db_as_user and
 * db_as_system set the app.* settings with set_config(…, true), which lasts
 * until the transaction (or the savepoint it was set in) ends. The writer's
 * jobs share one transaction, so each job starts with the settings cleared.
 *
 * Invariants: a connection is used by one thread at a time; parameter
 * values are never logged (they can be secrets); neither is the URL's
 * password.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/embedded.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "store/backend.h"
#include "store/db.h"
#include "store/pg/pg.h"
#include "store/store.h"
#include "store/writeq.h"

#define STMT_CACHE_SLOTS 512 /* power of two; more statements than this is a bug */
#define TX_STMTS_MAX     64  /* statements one transaction function may use */
/* Jobs grouped into one transaction. Each job runs in a SAVEPOINT, and a
 * savepoint that writes is a subtransaction with an xid of its own. A
 * backend caches at most 64 subtransaction xids (PGPROC_MAX_CACHED_SUBXIDS);
 * past that its snapshot "overflows" and every visibility check in the
 * cluster goes to pg_subtrans (measured at 64 concurrent batches: 1 445
 * events/s with groups of up to 1 024 jobs, 1 795 with 32). 32 jobs leave
 * room for the jobs' own nested savepoints (the ingest retry path). */
#define WRITER_BATCH_MAX 32
#define POOL_DEFAULT     8
/* Bind buffers above this are freed when the transaction ends, not kept. */
#define PARAM_KEEP_MAX (64 * 1024)
/* pg_advisory_xact_lock key serialising migrators ("keel" in ASCII). */
#define MIGRATION_LOCK_KEY 0x6b65656cLL
#define CTX_ID_MAX         64 /* the longest context id the cache remembers */

/* Type OIDs (pg_type.h, stable across versions). */
#define OID_BOOL    16
#define OID_BYTEA   17
#define OID_NAME    19
#define OID_TEXT    25
#define OID_JSON    114
#define OID_BPCHAR  1042
#define OID_VARCHAR 1043

/* One bound parameter. Small values (integers, UUIDs) live in num; longer
 * copies in owned, which is kept between binds to spare an allocation per
 * row. */
struct param {
  const char *value; /* NULL: SQL NULL */
  int length;
  int format; /* 0 text, 1 binary */
  char num[40];
  char *owned;
  size_t owned_cap;
};

/* A decoded bytea column of the current row. */
struct blob_col {
  unsigned char *p;
  size_t cap;
  long len;
  int row; /* the row it was decoded for; -1: none */
};

struct conn;

struct db_stmt {
  const struct store_backend *be; /* first: store/backend.h */
  const char *key;                /* the caller's SQL text address */
  char name[24];                  /* the server-side prepared statement */
  char *sql;                      /* the rewritten text, for logs */
  struct conn *conn;
  struct store_tx *tx; /* the transaction that last prepared it */
  int nparams;
  struct param *params;
  Oid *types; /* as the server inferred them */
  const char **values;
  int *lengths, *formats;
  PGresult *res;
  int row, nrows;
  int status; /* the failed execution's KEEL_E*, returned again */
  bool executed;
  bool adhoc;             /* db_prepare_adhoc: never prepared, run with PQexecParams */
  struct blob_col *blobs; /* per column, allocated on first use */
  int nblobs;
};

/* The RLS settings of the connection's current transaction, as last set
 * (store/db.h). Known only within a transaction: cleared when it ends. */
struct ctx_cache {
  char org[CTX_ID_MAX];
  char user[CTX_ID_MAX];
  bool has_org, has_user, system;
  bool dirty; /* something was set since the last reset */
};

struct conn {
  PGconn *pg;
  struct db_stmt *cache[STMT_CACHE_SLOTS];
  size_t ncached;
  unsigned next_name;
  struct ctx_cache ctx;
};

struct store_tx {
  const struct store_backend *be; /* first: store/backend.h */
  struct store *s;
  struct conn *conn;
  struct db_stmt *used[TX_STMTS_MAX];
  size_t nused;
  int64_t changes;
};

struct store {
  const struct store_backend *be; /* first: store/backend.h */
  char *url;
  char *app_role;
  bool leaky_scope;
  bool no_prepare; /* store_options.no_prepare: every statement adhoc */
  int latest_version;

  struct conn *writer;
  struct writeq q; /* the writer thread, its queue, the write generation */

  pthread_mutex_t pool_mu;
  pthread_cond_t pool_cv;
  struct conn **pool; /* pool_size slots, NULL until first needed */
  bool *pool_taken;   /* a slot is in use (its connection may be opening) */
  int pool_size;
};

/* The reader connection this thread holds inside store_read (a nested
 * store_read reuses it instead of waiting on a pool it may have drained). */
static __thread struct store *reading_store;
static __thread struct conn *reading_conn;

/* The server's message of a failed result, or libpq's own (connection
 * lost: no server fields) cut at its first newline, into out[n]. */
static const char *result_message(const PGresult *r, char *out, size_t n) {
  const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (!m) m = r ? PQresultErrorMessage(r) : "";
  if (!m[0]) m = "no result (connection lost?)";
  snprintf(out, n, "%.*s", (int)strcspn(m, "\n"), m);
  return out;
}

static void result_log(const char *event, const PGresult *r, const char *sql) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  char msg[512];
  log_error(event, LS("error", result_message(r, msg, sizeof(msg))),
            LS("sqlstate", state ? state : ""), LS("sql", sql));
}

/* Maps a failed result to a status, logging what is not a conflict or a
 * retryable contention. */
static int result_status(const PGresult *r, const char *sql) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  int rc = pg_sqlstate_status(state);
  if (rc == KEEL_ESTORE) result_log("store.step_failed", r, sql);
  return rc;
}

static bool result_ok(const PGresult *r) {
  ExecStatusType t = PQresultStatus(r);
  return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

/* Runs parameterless SQL (one or several statements) on c. */
static int conn_exec(struct conn *c, const char *sql) {
  PGresult *r = PQexec(c->pg, sql);
  int rc = result_ok(r) ? 0 : result_status(r, sql);
  PQclear(r);
  return rc;
}

/* COMMIT. PostgreSQL answers a COMMIT of a failed transaction with a
 * successful "ROLLBACK": only the COMMIT tag means the work is durable. */
static int conn_commit(struct conn *c) {
  PGresult *r = PQexec(c->pg, "COMMIT");
  int rc = 0;
  if (!result_ok(r)) {
    rc = result_status(r, "COMMIT");
  } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
    log_error("store.commit_failed", LS("error", "the transaction had failed: rolled back"));
    rc = KEEL_ESTORE;
  }
  PQclear(r);
  return rc;
}

/* The first line of libpq's error text (it ends with a newline). */
static void conn_error(PGconn *pg, char *out, size_t n) {
  const char *m = pg ? PQerrorMessage(pg) : "out of memory";
  size_t len = strcspn(m, "\n");
  snprintf(out, n, "%.*s", (int)len, m);
}

/* --- connections -------------------------------------------------------- */

static void stmt_free(struct db_stmt *st);

static void cache_drop(struct conn *c) {
  for (size_t i = 0; i < STMT_CACHE_SLOTS; i++) {
    stmt_free(c->cache[i]);
    c->cache[i] = NULL;
  }
  c->ncached = 0;
  memset(&c->ctx, 0, sizeof(c->ctx));
}

/* Server notices ("relation already exists, skipping") are not errors:
 * logged at debug level instead of libpq's default print to stderr. */
static void notice_log(void *arg, const char *message) {
  (void)arg;
  log_debug("store.notice", LS("message", message));
}

static struct conn *conn_open(struct store *s, char *err, size_t errlen) {
  PGconn *pg = PQconnectdb(s->url);
  if (!pg || PQstatus(pg) != CONNECTION_OK) {
    char msg[384], url[256];
    conn_error(pg, msg, sizeof(msg));
    pg_url_redact(s->url, url, sizeof(url));
    snprintf(err, errlen, "cannot connect to PostgreSQL at %s: %s", url, msg);
    PQfinish(pg);
    return NULL;
  }
  PQsetNoticeProcessor(pg, notice_log, NULL);
  struct conn *c = xcalloc(1, sizeof(*c));
  c->pg = pg;
  return c;
}

static void conn_close(struct conn *c) {
  if (!c) return;
  cache_drop(c);
  PQfinish(c->pg);
  xfree(c);
}

/* A connection found broken (the server restarted, the network dropped it)
 * is re-established once; its prepared statements died with the session. */
static bool conn_check(struct conn *c) {
  if (PQstatus(c->pg) == CONNECTION_OK) return true;
  cache_drop(c);
  PQreset(c->pg);
  if (PQstatus(c->pg) != CONNECTION_OK) {
    char msg[384];
    conn_error(c->pg, msg, sizeof(msg));
    log_error("store.reconnect_failed", LS("error", msg));
    return false;
  }
  log_warn("store.reconnected", LS("backend", "postgres"));
  return true;
}

static struct conn *pool_get(struct store *s) {
  pthread_mutex_lock(&s->pool_mu);
  int slot = -1;
  for (;;) {
    /* An open idle connection first; an unopened slot next. */
    for (int i = 0; i < s->pool_size && slot < 0; i++) {
      if (!s->pool_taken[i] && s->pool[i]) slot = i;
    }
    for (int i = 0; i < s->pool_size && slot < 0; i++) {
      if (!s->pool_taken[i]) slot = i;
    }
    if (slot >= 0) break;
    pthread_cond_wait(&s->pool_cv, &s->pool_mu);
  }
  s->pool_taken[slot] = true;
  struct conn *c = s->pool[slot];
  pthread_mutex_unlock(&s->pool_mu);

  if (!c) {
    char err[512];
    c = conn_open(s, err, sizeof(err)); /* outside the lock: it takes a while */
    if (!c) log_error("store.reader_open_failed", LS("error", err));
  } else if (!conn_check(c)) {
    c = NULL; /* kept in its slot: the next borrower tries again */
  }
  pthread_mutex_lock(&s->pool_mu);
  if (c) {
    s->pool[slot] = c;
  } else {
    s->pool_taken[slot] = false;
    pthread_cond_signal(&s->pool_cv);
  }
  pthread_mutex_unlock(&s->pool_mu);
  return c;
}

static void pool_put(struct store *s, struct conn *c) {
  /* Never hand out a connection inside a transaction. */
  if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
    PGresult *r = PQexec(c->pg, "ROLLBACK");
    PQclear(r);
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
      cache_drop(c);
      PQreset(c->pg);
    }
  }
  pthread_mutex_lock(&s->pool_mu);
  for (int i = 0; i < s->pool_size; i++) {
    if (s->pool[i] == c) s->pool_taken[i] = false;
  }
  pthread_cond_signal(&s->pool_cv);
  pthread_mutex_unlock(&s->pool_mu);
}

/* --- the statement layer (db.h) ---------------------------------------- */

static size_t slot_of(const char *key) {
  uintptr_t h = (uintptr_t)key;
  h ^= h >> 17;
  h *= UINT64_C(0x9E3779B97F4A7C15);
  return (size_t)(h >> 7) & (STMT_CACHE_SLOTS - 1);
}

/* Forgets the last execution; the bindings stay. */
static void stmt_rewind(struct db_stmt *st) {
  PQclear(st->res);
  st->res = NULL;
  st->executed = false;
  st->status = 0;
  st->row = -1;
  st->nrows = 0;
  for (int i = 0; i < st->nblobs; i++) st->blobs[i].row = -1;
}

/* db_reset: forgets the execution and the bindings. */
static void stmt_clear(struct db_stmt *st) {
  stmt_rewind(st);
  for (int i = 0; i < st->nparams; i++) {
    struct param *p = &st->params[i];
    p->value = NULL;
    p->length = 0;
    p->format = 0;
    if (p->owned_cap > PARAM_KEEP_MAX) {
      xfree(p->owned);
      p->owned = NULL;
      p->owned_cap = 0;
    }
  }
}

static void stmt_free(struct db_stmt *st) {
  if (!st) return;
  PQclear(st->res);
  for (int i = 0; i < st->nparams; i++) xfree(st->params[i].owned);
  for (int i = 0; i < st->nblobs; i++) xfree(st->blobs[i].p);
  xfree(st->blobs);
  xfree(st->params);
  xfree(st->types);
  xfree(st->values);
  xfree(st->lengths);
  xfree(st->formats);
  xfree(st->sql);
  xfree(st);
}

/* Prepares sql on c under a new name and learns the parameter types the
 * server inferred (they decide how text is sent, see bind_text_value). An
 * adhoc statement is only rewritten: it is sent with its values each time
 * (PQexecParams, the unnamed statement), its parameter types unknown, so
 * text goes in text format. */
static struct db_stmt *stmt_create(struct conn *c, const char *key, bool adhoc) {
  int n = 0;
  char *text = pg_sql_rewrite(key, &n);
  if (!text) {
    log_error("store.prepare_failed", LS("error", "unclosed @ts( or @us("), LS("sql", key));
    return NULL;
  }
  struct db_stmt *st = xcalloc(1, sizeof(*st));
  st->be = &store_backend_postgres;
  st->key = key;
  st->sql = text;
  st->conn = c;
  st->row = -1;
  st->adhoc = adhoc;
  if (adhoc) {
    st->nparams = n;
    st->params = xcalloc((size_t)n + 1, sizeof(*st->params));
    st->types = xcalloc((size_t)n + 1, sizeof(*st->types));
    st->values = xcalloc((size_t)n + 1, sizeof(*st->values));
    st->lengths = xcalloc((size_t)n + 1, sizeof(*st->lengths));
    st->formats = xcalloc((size_t)n + 1, sizeof(*st->formats));
    return st;
  }
  snprintf(st->name, sizeof(st->name), "keel_%u", ++c->next_name);
  PGresult *r = PQprepare(c->pg, st->name, text, 0, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    result_log("store.prepare_failed", r, text);
    PQclear(r);
    stmt_free(st);
    return NULL;
  }
  PQclear(r);
  r = PQdescribePrepared(c->pg, st->name);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    result_log("store.prepare_failed", r, text);
    PQclear(r);
    stmt_free(st);
    return NULL;
  }
  int server_n = PQnparams(r);
  if (server_n > n) n = server_n;
  st->nparams = n;
  st->params = xcalloc((size_t)n + 1, sizeof(*st->params));
  st->types = xcalloc((size_t)n + 1, sizeof(*st->types));
  st->values = xcalloc((size_t)n + 1, sizeof(*st->values));
  st->lengths = xcalloc((size_t)n + 1, sizeof(*st->lengths));
  st->formats = xcalloc((size_t)n + 1, sizeof(*st->formats));
  for (int i = 0; i < server_n; i++) st->types[i] = PQparamtype(r, i);
  PQclear(r);
  return st;
}

static struct db_stmt *stmt_get(struct store_tx *tx, const char *sql, bool adhoc) {
  struct conn *c = tx->conn;
  size_t i = slot_of(sql);
  while (c->cache[i] && c->cache[i]->key != sql) i = (i + 1) & (STMT_CACHE_SLOTS - 1);
  struct db_stmt *st = c->cache[i];
  if (!st) {
    KEEL_ASSERT(c->ncached < STMT_CACHE_SLOTS / 2);
    st = stmt_create(c, sql, adhoc);
    if (!st) return NULL;
    c->cache[i] = st;
    c->ncached++;
  }
  if (st->adhoc != adhoc) {
    log_error("store.prepare_failed", LS("error", "statement used both prepared and adhoc"),
              LS("sql", st->sql));
    return NULL;
  }
  st->tx = tx;
  /* Remember it so it is reset when the transaction function returns. */
  for (size_t k = 0; k < tx->nused; k++) {
    if (tx->used[k] == st) {
      stmt_clear(st);
      return st;
    }
  }
  KEEL_ASSERT(tx->nused < TX_STMTS_MAX);
  tx->used[tx->nused++] = st;
  return st;
}

static struct db_stmt *pg_db_prepare(struct store_tx *tx, const char *sql) {
  return stmt_get(tx, sql, tx->s->no_prepare);
}

/* db_prepare_adhoc: planned for its values at every run (store/db.h). */
static struct db_stmt *pg_db_prepare_adhoc(struct store_tx *tx, const char *sql) {
  return stmt_get(tx, sql, true);
}

static struct param *param_at(struct db_stmt *st, int idx) {
  if (idx < 1 || idx > st->nparams) {
    log_error("store.bind_failed", LS("error", "parameter index out of range"), LI("index", idx),
              LS("sql", st->sql));
    return NULL;
  }
  if (st->executed) stmt_rewind(st); /* rebinding after a run without db_reset */
  return &st->params[idx - 1];
}

/* A private NUL-terminated copy of n bytes in p->owned. */
static const char *param_copy(struct param *p, const void *s, size_t n) {
  if (n + 1 > p->owned_cap) {
    xfree(p->owned);
    p->owned_cap = n + 1 < 64 ? 64 : n + 1;
    p->owned = xmalloc(p->owned_cap);
  }
  if (n) memcpy(p->owned, s, n);
  p->owned[n] = '\0';
  return p->owned;
}

/* Whether the binary wire format of the parameter's type is the text's own
 * bytes, so it can go without a terminating NUL (and without a copy). */
static bool raw_text_type(Oid t) {
  return t == OID_TEXT || t == OID_VARCHAR || t == OID_BPCHAR || t == OID_NAME || t == OID_JSON;
}

static int bind_text_value(struct db_stmt *st, int idx, const char *s, size_t n, bool copy) {
  struct param *p = param_at(st, idx);
  if (!p) return KEEL_ESTORE;
  if (!s) {
    p->value = NULL;
    return 0;
  }
  if (n > INT32_MAX) return KEEL_ETOOBIG;
  if (!copy && raw_text_type(st->types[idx - 1])) {
    p->value = s;
    p->format = 1;
  } else {
    /* Text format (the server parses it into e.g. jsonb or uuid): libpq
     * wants it NUL-terminated. */
    p->value = param_copy(p, s, n);
    p->format = 0;
  }
  p->length = (int)n;
  return 0;
}

static int pg_db_bind_text(struct db_stmt *st, int idx, const char *s) {
  return bind_text_value(st, idx, s, s ? strlen(s) : 0, true);
}

static int pg_db_bind_textn(struct db_stmt *st, int idx, const char *s, size_t n) {
  return bind_text_value(st, idx, s, n, true);
}

static int pg_db_bind_textn_nocopy(struct db_stmt *st, int idx, const char *s, size_t n) {
  return bind_text_value(st, idx, s, n, false);
}

static int pg_db_bind_i64(struct db_stmt *st, int idx, int64_t v) {
  struct param *p = param_at(st, idx);
  if (!p) return KEEL_ESTORE;
  snprintf(p->num, sizeof(p->num), "%lld", (long long)v);
  p->value = p->num;
  p->format = 0;
  return 0;
}

static int pg_db_bind_blob(struct db_stmt *st, int idx, const void *b, size_t n) {
  struct param *p = param_at(st, idx);
  if (!p) return KEEL_ESTORE;
  if (n > INT32_MAX) return KEEL_ETOOBIG;
  /* bytea's binary format is the raw bytes: no hex encoding. */
  p->value = param_copy(p, b, n);
  p->length = (int)n;
  p->format = 1;
  return 0;
}

static int pg_db_bind_null(struct db_stmt *st, int idx) {
  struct param *p = param_at(st, idx);
  if (!p) return KEEL_ESTORE;
  p->value = NULL;
  return 0;
}

static int pg_db_bind_uuid(struct db_stmt *st, int idx, const char *text) {
  struct param *p = param_at(st, idx);
  if (!p) return KEEL_ESTORE;
  struct id id;
  if (!text || id_parse(slice_from_cstr(text), &id) != 0) {
    p->value = NULL; /* matches no row, as on SQLite */
    return 0;
  }
  id_format(&id, p->num);
  p->value = p->num;
  p->format = 0;
  return 0;
}

static bool row_ready(struct db_stmt *st, int col) {
  return st->res && st->row >= 0 && st->row < st->nrows && col >= 0 && col < PQnfields(st->res);
}

static void pg_db_col_uuid(struct db_stmt *st, int col, char out[ID_STR_SIZE]) {
  out[0] = '\0';
  if (!row_ready(st, col) || PQgetisnull(st->res, st->row, col)) return;
  snprintf(out, ID_STR_SIZE, "%s", PQgetvalue(st->res, st->row, col));
}

static int64_t affected_rows(const PGresult *r) {
  /* Only data-changing commands count, as sqlite3_changes does (a SELECT
   * leaves the count of the last INSERT/UPDATE/DELETE). */
  const char *tag = PQcmdStatus((PGresult *)r);
  if (strncmp(tag, "INSERT", 6) != 0 && strncmp(tag, "UPDATE", 6) != 0 &&
      strncmp(tag, "DELETE", 6) != 0 && strncmp(tag, "MERGE", 5) != 0) {
    return -1;
  }
  return strtoll(PQcmdTuples((PGresult *)r), NULL, 10);
}

static int pg_db_step(struct db_stmt *st) {
  if (st->status) return st->status;
  if (!st->executed) {
    for (int i = 0; i < st->nparams; i++) {
      st->values[i] = st->params[i].value;
      st->lengths[i] = st->params[i].length;
      st->formats[i] = st->params[i].format;
    }
    st->executed = true;
    st->res = st->adhoc ? PQexecParams(st->conn->pg, st->sql, st->nparams, NULL, st->values,
                                       st->lengths, st->formats, 0)
                        : PQexecPrepared(st->conn->pg, st->name, st->nparams, st->values,
                                         st->lengths, st->formats, 0);
    if (!result_ok(st->res)) {
      st->status = result_status(st->res, st->sql);
      PQclear(st->res);
      st->res = NULL;
      return st->status;
    }
    int64_t n = affected_rows(st->res);
    if (n >= 0 && st->tx) st->tx->changes = n;
    st->nrows = PQresultStatus(st->res) == PGRES_TUPLES_OK ? PQntuples(st->res) : 0;
    st->row = -1;
  }
  if (st->row < st->nrows) st->row++;
  return st->row < st->nrows ? DB_ROW : DB_DONE;
}

static const char *pg_db_col_text(struct db_stmt *st, int col) {
  if (!row_ready(st, col) || PQgetisnull(st->res, st->row, col)) return NULL;
  return PQgetvalue(st->res, st->row, col);
}

/* The decoded bytes of a bytea column of the current row (NULL when it is
 * not bytea, is NULL, or is not in hex format), kept per column until the
 * next step so that several blob columns of a row can be read together. */
static struct blob_col *blob_of(struct db_stmt *st, int col) {
  if (!row_ready(st, col) || PQftype(st->res, col) != OID_BYTEA) return NULL;
  if (PQgetisnull(st->res, st->row, col)) return NULL;
  int nf = PQnfields(st->res);
  if (st->nblobs < nf) {
    st->blobs = xreallocarray(st->blobs, (size_t)nf, sizeof(*st->blobs));
    for (int i = st->nblobs; i < nf; i++) st->blobs[i] = (struct blob_col){.row = -1};
    st->nblobs = nf;
  }
  struct blob_col *b = &st->blobs[col];
  if (b->row != st->row) {
    const char *text = PQgetvalue(st->res, st->row, col);
    size_t n = (size_t)PQgetlength(st->res, st->row, col);
    size_t need = n / 2 + 1;
    if (need > b->cap) {
      xfree(b->p);
      b->p = xmalloc(need);
      b->cap = need;
    }
    b->len = pg_bytea_decode(text, n, b->p);
    b->row = st->row;
  }
  return b->len < 0 ? NULL : b;
}

static size_t pg_db_col_len(struct db_stmt *st, int col) {
  if (!row_ready(st, col) || PQgetisnull(st->res, st->row, col)) return 0;
  if (PQftype(st->res, col) == OID_BYTEA) {
    struct blob_col *b = blob_of(st, col);
    return b ? (size_t)b->len : 0;
  }
  return (size_t)PQgetlength(st->res, st->row, col);
}

static int64_t pg_db_col_i64(struct db_stmt *st, int col) {
  if (!row_ready(st, col) || PQgetisnull(st->res, st->row, col)) return 0;
  const char *v = PQgetvalue(st->res, st->row, col);
  if (PQftype(st->res, col) == OID_BOOL) return v[0] == 't';
  return strtoll(v, NULL, 10);
}

static const void *pg_db_col_blob(struct db_stmt *st, int col) {
  if (!row_ready(st, col) || PQgetisnull(st->res, st->row, col)) return NULL;
  if (PQftype(st->res, col) != OID_BYTEA) return PQgetvalue(st->res, st->row, col);
  struct blob_col *b = blob_of(st, col);
  return b ? b->p : NULL;
}

static bool pg_db_col_is_null(struct db_stmt *st, int col) {
  if (!row_ready(st, col)) return true;
  return PQgetisnull(st->res, st->row, col);
}

static void pg_db_reset(struct db_stmt *st) {
  stmt_clear(st);
}

static int pg_db_exec(struct store_tx *tx, const char *sql) {
  /* Simple protocol: these are transaction control ("SAVEPOINT x") and
   * other one-off statements without parameters. */
  char *text = NULL;
  if (strchr(sql, '@')) {
    text = pg_sql_rewrite(sql, NULL);
    if (!text) return KEEL_ESTORE;
  }
  if (strncasecmp(sql, "ROLLBACK", 8) == 0) {
    /* A job rolling back to its own savepoint undoes the settings made
     * since: what the cache holds may be gone. Forgotten, so the next
     * db_scope sets it again; still dirty, so the next job starts clean. */
    struct ctx_cache *cc = &tx->conn->ctx;
    cc->has_org = cc->has_user = cc->system = false;
  }
  PGresult *r = PQexec(tx->conn->pg, text ? text : sql);
  int rc = 0;
  if (result_ok(r)) {
    int64_t n = affected_rows(r);
    if (n >= 0) tx->changes = n;
  } else {
    rc = result_status(r, text ? text : sql);
  }
  PQclear(r);
  xfree(text);
  return rc;
}

static int64_t pg_db_changes(struct store_tx *tx) {
  return tx->changes;
}

static void tx_release(struct store_tx *tx) {
  for (size_t i = 0; i < tx->nused; i++) {
    stmt_clear(tx->used[i]);
    tx->used[i]->tx = NULL;
  }
  tx->nused = 0;
}

/* --- row-level security contexts ---------------------------------------- */

/* String literals: the statement cache is keyed by their addresses. */
static const char SQL_SET_ORG[] = "SELECT set_config('app.org_id', $1, true)";
static const char SQL_SET_USER[] = "SELECT set_config('app.user_id', $1, true)";
static const char SQL_SET_SYSTEM[] = "SELECT set_config('app.system', 'on', true)";
static const char SQL_LEAK_ORG[] = "SELECT set_config('app.org_id', $1, false)";
static const char SQL_LEAK_USER[] = "SELECT set_config('app.user_id', $1, false)";
static const char SQL_LEAK_SYSTEM[] = "SELECT set_config('app.system', 'on', false)";
static const char SQL_CTX_RESET[] =
    "SELECT set_config('app.org_id', '', true), set_config('app.user_id', '', true),"
    " set_config('app.system', '', true)";

static bool leaky(const struct store *s) {
#ifdef KEEL_TEST_HOOKS
  return s->leaky_scope;
#else
  (void)s;
  return false;
#endif
}

static int run_set(struct store_tx *tx, const char *sql, const char *value) {
  struct db_stmt *st = pg_db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  if (value && pg_db_bind_text(st, 1, value) != 0) return KEEL_ESTORE;
  int rc = pg_db_step(st);
  pg_db_reset(st);
  return rc < 0 ? KEEL_ESTORE : 0;
}

/* Sets one kind of context unless the transaction already has it. */
static int pg_context(struct store_tx *tx, enum db_context kind, const char *id) {
  struct ctx_cache *cc = &tx->conn->ctx;
  bool lk = leaky(tx->s);
  const char *v = id ? id : "";
  bool cacheable = strlen(v) < CTX_ID_MAX;
  int rc;
  switch (kind) {
    case DB_CTX_ORG:
      if (cc->has_org && strcmp(cc->org, v) == 0) return 0;
      rc = run_set(tx, lk ? SQL_LEAK_ORG : SQL_SET_ORG, v);
      if (rc == 0 && cacheable) snprintf(cc->org, sizeof(cc->org), "%s", v);
      cc->has_org = rc == 0 && cacheable;
      break;
    case DB_CTX_USER:
      if (cc->has_user && strcmp(cc->user, v) == 0) return 0;
      rc = run_set(tx, lk ? SQL_LEAK_USER : SQL_SET_USER, v);
      if (rc == 0 && cacheable) snprintf(cc->user, sizeof(cc->user), "%s", v);
      cc->has_user = rc == 0 && cacheable;
      break;
    case DB_CTX_SYSTEM:
      if (cc->system) return 0;
      rc = run_set(tx, lk ? SQL_LEAK_SYSTEM : SQL_SET_SYSTEM, NULL);
      cc->system = rc == 0;
      break;
    default:
      return KEEL_EINVAL;
  }
  cc->dirty = true; /* even on failure: the server state is unknown */
  return rc;
}

/* Clears the settings a previous job of the writer's group left, so each
 * job starts with no context (as each store_read does). */
static int ctx_reset(struct store *s, struct conn *c) {
  if (!c->ctx.dirty || leaky(s)) return 0;
  struct store_tx tx = {.be = &store_backend_postgres, .s = s, .conn = c};
  struct db_stmt *st = pg_db_prepare(&tx, SQL_CTX_RESET);
  int rc = st ? pg_db_step(st) : KEEL_ESTORE;
  tx_release(&tx);
  if (rc < 0) return rc;
  memset(&c->ctx, 0, sizeof(c->ctx));
  return 0;
}

/* --- reads -------------------------------------------------------------- */

static const char SQL_BEGIN_READ[] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

static int pg_read(struct store *s, store_tx_fn fn, void *arg) {
  if (reading_store == s) {
    /* Nested: already in a read transaction on this thread. */
    struct store_tx tx = {.be = &store_backend_postgres, .s = s, .conn = reading_conn};
    int rc = fn(&tx, arg);
    tx_release(&tx);
    return rc;
  }
  struct conn *c = pool_get(s);
  if (!c) return KEEL_ESTORE;
  memset(&c->ctx, 0, sizeof(c->ctx));
  int rc = conn_exec(c, SQL_BEGIN_READ);
  if (rc && PQstatus(c->pg) != CONNECTION_OK && conn_check(c)) {
    rc = conn_exec(c, SQL_BEGIN_READ); /* the server dropped it while idle */
  }
  if (rc) {
    pool_put(s, c);
    return KEEL_ESTORE;
  }
  struct store_tx tx = {.be = &store_backend_postgres, .s = s, .conn = c};
  reading_store = s;
  reading_conn = c;
  rc = fn(&tx, arg);
  reading_store = NULL;
  reading_conn = NULL;
  tx_release(&tx);
  conn_exec(c, rc ? "ROLLBACK" : "COMMIT");
  memset(&c->ctx, 0, sizeof(c->ctx));
  pool_put(s, c);
  return rc;
}

/* --- the writer --------------------------------------------------------- */

static uint64_t pg_write_generation(struct store *s) {
  return writeq_generation(&s->q);
}

static int run_job(struct store *s, struct write_job *j) {
  if (writeq_take_failure(&s->q)) return KEEL_ESTORE;
  struct store_tx tx = {.be = &store_backend_postgres, .s = s, .conn = s->writer};
  int rc = j->fn(&tx, j->arg);
  tx_release(&tx);
  /* A job that swallowed a statement error leaves the transaction aborted:
   * it failed, whatever it returned (only its savepoint can save the
   * group). */
  if (rc == 0 && PQtransactionStatus(s->writer->pg) == PQTRANS_INERROR) {
    log_error("store.job_aborted", LS("error", "a write job ignored a failed statement"));
    rc = KEEL_ESTORE;
  }
  return rc;
}

/*
 * One group: BEGIN; per job SAVEPOINT job … (RELEASE | ROLLBACK TO); COMMIT.
 * A savepoint rolled back to stays established, so the next job reuses it;
 * after a success the release and the next savepoint go in one round trip.
 */
static int run_group(void *backend, struct write_job *batch) {
  struct store *s = backend;
  struct conn *w = s->writer;
  int rc = conn_check(w) ? 0 : KEEL_ESTORE;
  memset(&w->ctx, 0, sizeof(w->ctx));
  if (rc == 0) rc = conn_exec(w, "BEGIN; SAVEPOINT job");
  if (rc && PQstatus(w->pg) != CONNECTION_OK && conn_check(w)) {
    rc = conn_exec(w, "BEGIN; SAVEPOINT job"); /* the server dropped it while idle */
  }
  struct write_job *j = batch;
  for (; rc == 0 && j; j = j->next) {
    rc = ctx_reset(s, w);
    if (rc) break;
    j->rc = run_job(s, j);
    if (j->rc) {
      rc = conn_exec(w, "ROLLBACK TO SAVEPOINT job");
      /* PostgreSQL restored the settings of the savepoint: none. */
      memset(&w->ctx, 0, sizeof(w->ctx));
    } else if (j->next) {
      rc = conn_exec(w, "RELEASE SAVEPOINT job; SAVEPOINT job");
    }
  }
  if (rc == 0) rc = conn_commit(w);
  if (rc && PQtransactionStatus(w->pg) != PQTRANS_IDLE) conn_exec(w, "ROLLBACK");
  memset(&w->ctx, 0, sizeof(w->ctx));
  return rc;
}

static int pg_write(struct store *s, store_tx_fn fn, void *arg) {
  if (writeq_on_writer(&s->q)) {
    /* Nested write from inside a write job: already in the transaction. */
    struct store_tx tx = {.be = &store_backend_postgres, .s = s, .conn = s->writer};
    int rc = fn(&tx, arg);
    tx_release(&tx);
    if (rc == 0) writeq_generation_bump(&s->q);
    return rc;
  }
  return writeq_write(&s->q, fn, arg);
}

static int pg_write_async(struct store *s, store_tx_fn fn, void *arg,
                          void (*done)(void *arg, int rc)) {
  return writeq_write_async(&s->q, fn, arg, done);
}

static size_t pg_write_queue_depth(struct store *s) {
  return writeq_depth(&s->q);
}

static void pg_fail_next_writes(struct store *s, unsigned n) {
  writeq_fail_next(&s->q, n);
}

/* --- migrations --------------------------------------------------------- */

static int migration_version(const char *name) {
  int v = 0;
  for (const char *p = name; *p >= '0' && *p <= '9'; p++) v = v * 10 + (*p - '0');
  return v;
}

/* The highest applied version; 0 when schema_migrations does not exist. */
static int current_version(struct conn *c, int *out) {
  *out = 0;
  PGresult *r = PQexec(c->pg, "SELECT coalesce(max(version), 0) FROM schema_migrations");
  int rc = 0;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    *out = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
  } else {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (!state || strcmp(state, "42P01") != 0) { /* 42P01: undefined_table */
      result_log("store.schema_version_failed", r, "SELECT … FROM schema_migrations");
      rc = KEEL_ESTORE;
    }
  }
  PQclear(r);
  return rc;
}

static const char *app_role(const struct store *s) {
  return s->app_role && s->app_role[0] ? s->app_role : "keel_app";
}

/* Runs a parameterised one-row statement; fills msg with the server's error
 * on failure. */
static PGresult *exec_params(struct conn *c, const char *sql, int n, const char *const *values,
                             char *msg, size_t msglen) {
  PGresult *r = PQexecParams(c->pg, sql, n, NULL, values, NULL, NULL, 0);
  if (!result_ok(r)) {
    result_message(r, msg, msglen);
    PQclear(r);
    return NULL;
  }
  return r;
}

static int apply_migrations(struct store *s, struct conn *c, int *applied, char *err,
                            size_t errlen) {
  char msg[512];
  const char *role = app_role(s);
  /* Everything in one transaction under an advisory lock: concurrent
   * migrators (keel migrate beside starting servers) take turns, and the
   * second one sees the first one's work. The table is created under the
   * lock too (two CREATE TABLE IF NOT EXISTS can collide). */
  char lock[320];
  snprintf(lock, sizeof(lock),
           "BEGIN; SELECT pg_advisory_xact_lock(%lld);"
           " CREATE TABLE IF NOT EXISTS schema_migrations(version integer PRIMARY KEY,"
           " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
           MIGRATION_LOCK_KEY);
  PGresult *r = PQexec(c->pg, lock);
  if (!result_ok(r)) {
    snprintf(err, errlen, "cannot prepare migrations: %s", result_message(r, msg, sizeof(msg)));
    PQclear(r);
    conn_exec(c, "ROLLBACK");
    return KEEL_ESTORE;
  }
  PQclear(r);

  const char *rv[1] = {role};
  r = exec_params(c, "SELECT 1 FROM pg_roles WHERE rolname = $1", 1, rv, msg, sizeof(msg));
  if (!r || PQntuples(r) != 1) {
    if (r) {
      snprintf(err, errlen,
               "the application role \"%s\" does not exist: create it (CREATE ROLE %s LOGIN)"
               " or name another with postgres.app_role",
               role, role);
    } else {
      snprintf(err, errlen, "cannot look up role \"%s\": %s", role, msg);
    }
    PQclear(r);
    conn_exec(c, "ROLLBACK");
    return KEEL_ESTORE;
  }
  PQclear(r);

  int cur = 0, n = 0;
  if (current_version(c, &cur) != 0) {
    snprintf(err, errlen, "cannot read schema_migrations");
    conn_exec(c, "ROLLBACK");
    return KEEL_ESTORE;
  }
  for (size_t i = 0; i < migrations_postgres_count; i++) {
    const struct embedded_file *m = &migrations_postgres_files[i];
    int v = migration_version(m->name);
    if (v <= cur) continue;
    /* Simple protocol: a file holds many statements (and $$ bodies). */
    r = PQexec(c->pg, m->data);
    if (!result_ok(r)) {
      const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      snprintf(err, errlen, "migration %s failed: %s (SQLSTATE %s)", m->name,
               result_message(r, msg, sizeof(msg)), state ? state : "?");
      PQclear(r);
      conn_exec(c, "ROLLBACK");
      return KEEL_ESTORE;
    }
    PQclear(r);
    char vs[16];
    snprintf(vs, sizeof(vs), "%d", v);
    const char *vals[2] = {vs, m->name};
    r = exec_params(c, "INSERT INTO schema_migrations(version, name) VALUES ($1::integer, $2)", 2,
                    vals, msg, sizeof(msg));
    if (!r) {
      snprintf(err, errlen, "cannot record migration %s: %s", m->name, msg);
      conn_exec(c, "ROLLBACK");
      return KEEL_ESTORE;
    }
    PQclear(r);
    n++;
  }

  /* Every time, not only after a migration: the role may be new. */
  r = exec_params(c, "SELECT keel_grant_app($1)", 1, rv, msg, sizeof(msg));
  if (!r) {
    snprintf(err, errlen, "cannot grant the application role \"%s\" its privileges: %s", role, msg);
    conn_exec(c, "ROLLBACK");
    return KEEL_ESTORE;
  }
  PQclear(r);

  if (conn_commit(c) != 0) {
    snprintf(err, errlen, "cannot commit migrations (see the log)");
    conn_exec(c, "ROLLBACK");
    return KEEL_ESTORE;
  }
  writeq_generation_bump(&s->q);
  if (applied) *applied = n;
  if (n > 0) log_info("store.migrated", LI("applied", n), LI("version", s->latest_version));
  return 0;
}

static int pg_migrate(struct store *s, int *applied, char *err, size_t errlen) {
  /* A dedicated connection, as on SQLite: never the writer's, which its
   * thread owns. */
  struct conn *c = conn_open(s, err, errlen);
  if (!c) return KEEL_ESTORE;
  int rc = apply_migrations(s, c, applied, err, errlen);
  conn_close(c);
  return rc;
}

static int pg_schema_version(struct store *s, int *current, int *latest) {
  *latest = s->latest_version;
  *current = 0;
  struct conn *c = pool_get(s);
  if (!c) return KEEL_ESTORE;
  int rc = current_version(c, current);
  if (rc && PQstatus(c->pg) != CONNECTION_OK && conn_check(c)) {
    rc = current_version(c, current); /* the server dropped it while idle */
  }
  pool_put(s, c);
  return rc;
}

static int pg_ready(struct store *s) {
  int cur = 0, latest = 0;
  if (pg_schema_version(s, &cur, &latest) != 0) return KEEL_ESTORE;
  return cur == latest ? 0 : KEEL_EBUSY;
}

/* --- open / close ------------------------------------------------------- */

static void store_free(struct store *s) {
  conn_close(s->writer);
  for (int i = 0; i < s->pool_size; i++) conn_close(s->pool[i]);
  xfree(s->pool);
  xfree(s->pool_taken);
  pthread_mutex_destroy(&s->pool_mu);
  pthread_cond_destroy(&s->pool_cv);
  xfree(s->url);
  xfree(s->app_role);
  xfree(s);
}

/* Brings the schema up to date at start, when the role can: the
 * application role cannot create tables, so a current schema is left alone
 * and a stale one is reported with the command that fixes it. */
static int migrate_on_open(struct store *s, char *err, size_t errlen) {
  int cur = 0;
  if (current_version(s->writer, &cur) != 0) {
    snprintf(err, errlen, "cannot read the schema version (is schema_migrations readable?)");
    return KEEL_ESTORE;
  }
  if (cur >= s->latest_version) {
    if (cur > s->latest_version) {
      log_warn("store.schema_newer", LI("current", cur), LI("latest", s->latest_version));
    }
    return 0;
  }
  char why[512];
  if (pg_migrate(s, NULL, why, sizeof(why)) == 0) return 0;
  snprintf(err, errlen, "schema at version %d of %d: run `keel migrate --store <owner's URL>` (%s)",
           cur, s->latest_version, why);
  return KEEL_ESTORE;
}

static int pg_open(const struct store_options *opt, struct store **out, char *err, size_t errlen) {
  *out = NULL;
  struct store *s = xcalloc(1, sizeof(*s));
  s->be = &store_backend_postgres;
  s->url = xstrdup(opt->url);
  s->app_role = xstrdup(opt->app_role ? opt->app_role : "");
  s->no_prepare = opt->no_prepare;
#ifdef KEEL_TEST_HOOKS
  s->leaky_scope = opt->leaky_scope;
  if (s->leaky_scope)
    log_warn("store.leaky_scope", LS("warning", "RLS isolation deliberately broken"));
#endif
  s->pool_size = opt->pool_size > 0 ? opt->pool_size : POOL_DEFAULT;
  s->pool = xcalloc((size_t)s->pool_size, sizeof(*s->pool));
  s->pool_taken = xcalloc((size_t)s->pool_size, sizeof(*s->pool_taken));
  for (size_t i = 0; i < migrations_postgres_count; i++) {
    int v = migration_version(migrations_postgres_files[i].name);
    if (v > s->latest_version) s->latest_version = v;
  }
  writeq_init(&s->q, WRITER_BATCH_MAX, run_group, s);
  pthread_mutex_init(&s->pool_mu, NULL);
  pthread_cond_init(&s->pool_cv, NULL);

  int rc = 0;
  s->writer = conn_open(s, err, errlen);
  if (!s->writer) {
    rc = KEEL_ESTORE;
    goto fail;
  }
  if (opt->migrate_on_open) {
    rc = migrate_on_open(s, err, errlen);
    if (rc) goto fail;
  }
  if (writeq_start(&s->q) != 0) {
    snprintf(err, errlen, "cannot start the writer thread");
    rc = KEEL_EINTERNAL;
    goto fail;
  }
  *out = s;
  return 0;
fail:
  writeq_stop(&s->q);
  store_free(s);
  return rc;
}

static void pg_close(struct store *s) {
  if (!s) return;
  writeq_stop(&s->q); /* every queued job runs first */
  store_free(s);
}

const struct store_backend store_backend_postgres = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .migrate = pg_migrate,
    .schema_version = pg_schema_version,
    .ready = pg_ready,
    .read = pg_read,
    .write = pg_write,
    .write_async = pg_write_async,
    .write_generation = pg_write_generation,
    .write_queue_depth = pg_write_queue_depth,
    .fail_next_writes = pg_fail_next_writes,
    .prepare = pg_db_prepare,
    .prepare_adhoc = pg_db_prepare_adhoc,
    .bind_text = pg_db_bind_text,
    .bind_textn = pg_db_bind_textn,
    .bind_textn_nocopy = pg_db_bind_textn_nocopy,
    .bind_i64 = pg_db_bind_i64,
    .bind_blob = pg_db_bind_blob,
    .bind_null = pg_db_bind_null,
    .bind_uuid = pg_db_bind_uuid,
    .col_uuid = pg_db_col_uuid,
    .step = pg_db_step,
    .col_text = pg_db_col_text,
    .col_len = pg_db_col_len,
    .col_i64 = pg_db_col_i64,
    .col_blob = pg_db_col_blob,
    .col_is_null = pg_db_col_is_null,
    .reset = pg_db_reset,
    .exec = pg_db_exec,
    .changes = pg_db_changes,
    .context = pg_context,
};
