/*
 * raw_sqlite.c — the raw SQLite ceiling for keel's ingestion benchmark.
 *
 * How fast can SQLite itself store keel's events, with keel's schema and
 * keel's durability settings, and nothing else? bench/bench.py runs this
 * next to the ingest_batch scenario and divides keel's events/s by it.
 *
 * Schema: the real migration files (src/store/migrations/sqlite/NNNN_*.sql),
 * read and executed in order at run time, so the ceiling cannot drift from
 * the schema keel runs. The events table's columns are read back with
 * PRAGMA table_info and each is given a value by its name (an org or key id
 * as text or as 16 raw bytes, depending on its declared type; hashes of 32
 * bytes); a NOT NULL column this program does not know stops it, so a schema
 * change is noticed rather than half-measured.
 *
 * Connection: what keel's writer uses (store/sqlite/sqlite.c): opened
 * SQLITE_OPEN_NOMUTEX, journal_mode=WAL, synchronous=FULL, foreign_keys=ON,
 * temp_store=MEMORY, cache_size=-<sqlite.cache_kib> (default 16384), the
 * default WAL auto-checkpoint. One transaction (BEGIN IMMEDIATE … COMMIT)
 * per --tx events (default 1 000), so one WAL fsync per 1 000 events.
 *
 * Rows: what the ingest scenarios send, as keel stores it: --data,
 * --metadata and --tags are the canonical JSON columns (bench.py passes
 * those of its ~600-byte event), ids shaped like the benchmark's
 * ("raw-1-<request>-<n>"), events spread round-robin over --sessions
 * sessions (default 1 000) with their seq, a timestamp that moves on 25 µs
 * per event. The hashes are 32 pseudo-random bytes, not SHA-256: hashing,
 * JSON, validation and HTTP are keel's work, not SQLite's.
 *
 * Modes:
 *   inserts   the event INSERTs alone; the chain position (seq, head) of
 *             each session is kept in memory. The honest ceiling.
 *   sessions  per event, also the session upkeep: read the session row
 *             (chain_seq, chain_head, tags; the row inserted on its first
 *             event), INSERT the event, UPDATE the session's counters and
 *             chain head. That is a read and an update per event, the most
 *             session work an append can do (keel's store/events.c reads
 *             and writes each session once per batch, which is less).
 *
 *     bench_raw_sqlite --migrations DIR --db PATH [--mode inserts|sessions]
 *                      [--events N] [--tx N] [--sessions N] [--cache-kib N]
 *                      [--wal-autocheckpoint PAGES] [--data JSON] [--metadata JSON]
 *                      [--tags JSON] [--org-id UUID] [--key-id UUID]
 *
 * --tx, --cache-kib and --wal-autocheckpoint (default 1 000 pages, SQLite's
 * and keel's) are knobs for exploring; the harness uses the defaults.
 *
 * PATH must not exist (a fresh database). Prints one JSON object: the mode,
 * events, seconds, events_per_sec, and the database's bytes after a
 * checkpoint (db_bytes, wal_bytes, bytes_per_event). Links SQLite only.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define HASH_LEN     32
#define MAX_COLUMNS  64
#define MAX_SESSIONS 100000

struct opts {
  const char *migrations, *db, *mode;
  long long events, tx, sessions, cache_kib, autocheckpoint;
  const char *data, *metadata, *tags, *org_id, *key_id;
};

/* What a column of the events table is given. */
enum gen {
  GEN_ORG,
  GEN_ID,
  GEN_SESSION,
  GEN_AGENT,
  GEN_TYPE,
  GEN_TS,
  GEN_RECEIVED,
  GEN_SEVERITY,
  GEN_DATA,
  GEN_METADATA,
  GEN_TAGS,
  GEN_KEY,
  GEN_COST_NANO,
  GEN_COST_FLAGS,
  GEN_SEQ,
  GEN_PREV_HASH,
  GEN_HASH,
};

static const struct {
  const char *name;
  enum gen gen;
} known_columns[] = {
    {"org_id", GEN_ORG},
    {"id", GEN_ID},
    {"session_id", GEN_SESSION},
    {"agent_id", GEN_AGENT},
    {"type", GEN_TYPE},
    {"ts", GEN_TS},
    {"received_at", GEN_RECEIVED},
    {"severity", GEN_SEVERITY},
    {"data", GEN_DATA},
    {"metadata", GEN_METADATA},
    {"tags", GEN_TAGS},
    {"api_key_id", GEN_KEY},
    {"cost_nano", GEN_COST_NANO},
    {"cost_flags", GEN_COST_FLAGS},
    {"seq", GEN_SEQ},
    {"prev_hash", GEN_PREV_HASH},
    {"hash", GEN_HASH},
};

struct column {
  enum gen gen;
  bool blob; /* declared BLOB: ids as 16 raw bytes */
};

struct session {
  char id[32];
  int64_t seq;
  uint8_t head[HASH_LEN];
};

static void die(const char *what, sqlite3 *db) {
  fprintf(stderr, "bench_raw_sqlite: %s%s%s\n", what, db ? ": " : "", db ? sqlite3_errmsg(db) : "");
  exit(2);
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "bench_raw_sqlite: %s\n  in: %.200s\n", msg ? msg : "?", sql);
    exit(2);
  }
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "bench_raw_sqlite: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
    exit(2);
  }
  return st;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st) {
  if (sqlite3_step(st) != SQLITE_DONE) die("step", db);
  sqlite3_reset(st);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "bench_raw_sqlite: %s: %s\n", path, strerror(errno));
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)n + 1);
  if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) die("cannot read a migration", NULL);
  text[n] = '\0';
  fclose(f);
  return text;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Executes every NNNN_*.sql of dir, in name order, in one transaction (as
 * keel's migrator does). */
static int apply_migrations(sqlite3 *db, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "bench_raw_sqlite: %s: %s\n", dir, strerror(errno));
    exit(2);
  }
  char *names[256];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 9 || strcmp(e->d_name + len - 4, ".sql") != 0) continue;
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || n == 256) continue;
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n == 0) die("no migration files found", NULL);
  qsort(names, (size_t)n, sizeof(names[0]), by_name);
  exec(db, "BEGIN IMMEDIATE");
  for (int i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    char *sql = read_file(path);
    exec(db, sql);
    free(sql);
    free(names[i]);
  }
  exec(db, "COMMIT");
  return n;
}

/* A UUID's text as its 16 bytes. */
static void uuid_bytes(const char *text, uint8_t out[16]) {
  int k = 0;
  for (const char *p = text; *p && k < 32; p++) {
    if (*p == '-') continue;
    int v = (*p >= '0' && *p <= '9')   ? *p - '0'
            : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
            : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10
                                       : -1;
    if (v < 0) die("an id is not a UUID", NULL);
    if (k % 2 == 0)
      out[k / 2] = (uint8_t)(v << 4);
    else
      out[k / 2] |= (uint8_t)v;
    k++;
  }
  if (k != 32) die("an id is not a UUID", NULL);
}

/* The columns of table: their generators, or exit on one we cannot fill. */
static int table_columns(sqlite3 *db, const char *table, struct column *cols, char names[][64]) {
  char sql[128];
  snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
  sqlite3_stmt *st = prepare(db, sql);
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 1);
    const char *type = (const char *)sqlite3_column_text(st, 2);
    bool notnull = sqlite3_column_int(st, 3) != 0;
    bool has_default = sqlite3_column_type(st, 4) != SQLITE_NULL;
    int g = -1;
    for (size_t i = 0; i < sizeof(known_columns) / sizeof(known_columns[0]); i++) {
      if (strcmp(known_columns[i].name, name) == 0) g = (int)known_columns[i].gen;
    }
    if (g < 0) {
      if (notnull && !has_default) {
        fprintf(stderr,
                "bench_raw_sqlite: %s.%s is NOT NULL and unknown here; teach "
                "bench/raw_sqlite.c its value\n",
                table, name);
        exit(2);
      }
      continue; /* nullable or defaulted: left to SQLite */
    }
    if (n == MAX_COLUMNS) die("too many columns", NULL);
    cols[n].gen = (enum gen)g;
    cols[n].blob = type && strcasecmp(type, "BLOB") == 0;
    snprintf(names[n], 64, "%s", name);
    n++;
  }
  sqlite3_finalize(st);
  return n;
}

static bool column_is_blob(sqlite3 *db, const char *table, const char *column) {
  char sql[160];
  snprintf(sql, sizeof(sql), "SELECT type FROM pragma_table_info('%s') WHERE name = '%s'", table,
           column);
  sqlite3_stmt *st = prepare(db, sql);
  bool blob = false;
  if (sqlite3_step(st) == SQLITE_ROW) {
    blob = strcasecmp((const char *)sqlite3_column_text(st, 0), "BLOB") == 0;
  }
  sqlite3_finalize(st);
  return blob;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static long long arg_ll(const char *v, const char *name) {
  char *end;
  long long n = strtoll(v, &end, 10);
  if (*end || n <= 0) {
    fprintf(stderr, "bench_raw_sqlite: --%s wants a positive integer\n", name);
    exit(2);
  }
  return n;
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_raw_sqlite --migrations DIR --db PATH [--mode inserts|sessions]\n"
          "         [--events N] [--tx N] [--sessions N] [--cache-kib N]\n"
          "         [--wal-autocheckpoint PAGES] [--data JSON] [--metadata JSON] [--tags JSON]\n"
          "         [--org-id UUID] [--key-id UUID]\n");
  exit(2);
}

static void parse_args(int argc, char **argv, struct opts *o) {
  const struct {
    const char *name;
    const char **text; /* a string option, or */
    long long *number; /* a positive integer option */
  } options[] = {
      {"migrations", &o->migrations, NULL},
      {"db", &o->db, NULL},
      {"mode", &o->mode, NULL},
      {"events", NULL, &o->events},
      {"tx", NULL, &o->tx},
      {"sessions", NULL, &o->sessions},
      {"cache-kib", NULL, &o->cache_kib},
      {"wal-autocheckpoint", NULL, &o->autocheckpoint},
      {"data", &o->data, NULL},
      {"metadata", &o->metadata, NULL},
      {"tags", &o->tags, NULL},
      {"org-id", &o->org_id, NULL},
      {"key-id", &o->key_id, NULL},
  };
  for (int i = 1; i < argc; i += 2) {
    if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) usage();
    size_t k = 0;
    while (k < sizeof(options) / sizeof(options[0]) && strcmp(options[k].name, argv[i] + 2) != 0) {
      k++;
    }
    if (k == sizeof(options) / sizeof(options[0])) usage();
    if (options[k].text)
      *options[k].text = argv[i + 1];
    else
      *options[k].number = arg_ll(argv[i + 1], options[k].name);
  }
  if (!o->migrations || !o->db) usage();
  if (strcmp(o->mode, "inserts") != 0 && strcmp(o->mode, "sessions") != 0) usage();
  if (o->sessions > MAX_SESSIONS) die("too many sessions", NULL);
}

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

int main(int argc, char **argv) {
  struct opts o = {
      .mode = "inserts",
      .events = 500000,
      .tx = 1000,
      .sessions = 1000,
      .cache_kib = 16384,
      .autocheckpoint = 1000,
      .data =
          "{\"input_tokens\":1200,\"model\":\"claude-sonnet-4-5\",\"output_tokens\":350,"
          "\"provider\":\"anthropic\"}",
      .metadata = "{}",
      .tags = "[]",
      .org_id = "0190f5c8-2c1a-7d3e-9b7a-1f2e3d4c5b6a",
      .key_id = "0190f5c8-3b44-7aa0-8c1d-5e6f7a8b9c0d",
  };
  parse_args(argc, argv, &o);
  bool with_sessions = strcmp(o.mode, "sessions") == 0;
  if (file_size(o.db) > 0) die("--db must name a new file", NULL);

  sqlite3 *db = NULL;
  if (sqlite3_open_v2(o.db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    die("cannot open the database", db);
  }
  sqlite3_busy_timeout(db, 5000);
  char pragmas[256];
  snprintf(pragmas, sizeof(pragmas),
           "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
           " PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%lld; PRAGMA wal_autocheckpoint=%lld;",
           o.cache_kib, o.autocheckpoint);
  exec(db, pragmas);
  int migrations = apply_migrations(db, o.migrations);

  /* INSERT INTO events(<every column we fill>) VALUES(?1, …). */
  struct column cols[MAX_COLUMNS];
  char names[MAX_COLUMNS][64];
  int ncols = table_columns(db, "events", cols, names);
  char insert_sql[4096];
  size_t off = (size_t)snprintf(insert_sql, sizeof(insert_sql), "INSERT INTO events(");
  for (int i = 0; i < ncols; i++) {
    off += (size_t)snprintf(insert_sql + off, sizeof(insert_sql) - off, "%s%s", i ? ", " : "",
                            names[i]);
  }
  off += (size_t)snprintf(insert_sql + off, sizeof(insert_sql) - off, ") VALUES(");
  for (int i = 0; i < ncols; i++) {
    off +=
        (size_t)snprintf(insert_sql + off, sizeof(insert_sql) - off, "%s?%d", i ? ", " : "", i + 1);
  }
  snprintf(insert_sql + off, sizeof(insert_sql) - off, ")");
  sqlite3_stmt *insert = prepare(db, insert_sql);

  /* The session statements (mode sessions), after keel's store/events.c. */
  bool sessions_org_blob = column_is_blob(db, "sessions", "org_id");
  sqlite3_stmt *sel = NULL, *ins_sess = NULL, *upd = NULL;
  if (with_sessions) {
    sel = prepare(db,
                  "SELECT chain_seq, chain_head, tags FROM sessions WHERE org_id = ?1 AND id = ?2");
    ins_sess = prepare(db,
                       "INSERT INTO sessions(org_id, id, agent_id, started_at, status, chain_head,"
                       " updated_at) VALUES(?1, ?2, ?3, ?4, 'active', ?5, ?6)");
    upd = prepare(db,
                  "UPDATE sessions SET event_count = event_count + 1, tool_count = tool_count + ?3,"
                  " error_count = error_count + ?4, llm_count = llm_count + ?5,"
                  " input_tokens = input_tokens + ?6, output_tokens = output_tokens + ?7,"
                  " reasoning_tokens = reasoning_tokens + ?8,"
                  " cache_read_tokens = cache_read_tokens + ?9,"
                  " cache_write_tokens = cache_write_tokens + ?10, cost_nano = cost_nano + ?11,"
                  " started_at = min(started_at, ?12), tags = ?13, chain_seq = ?14,"
                  " chain_head = ?15, updated_at = ?16 WHERE org_id = ?1 AND id = ?2");
  }

  uint8_t org16[16], key16[16];
  uuid_bytes(o.org_id, org16);
  uuid_bytes(o.key_id, key16);
  struct session *sessions = calloc((size_t)o.sessions, sizeof(*sessions));
  if (!sessions) die("out of memory", NULL);
  for (long long i = 0; i < o.sessions; i++) {
    snprintf(sessions[i].id, sizeof(sessions[i].id), "sess-%04lld", i);
  }
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  int64_t t0_us = (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000;
  uint64_t rng = 42;
  size_t data_len = strlen(o.data), meta_len = strlen(o.metadata), tags_len = strlen(o.tags);

  double start = now_s();
  for (long long n = 0; n < o.events; n++) {
    if (n % o.tx == 0) exec(db, "BEGIN IMMEDIATE");
    struct session *s = &sessions[n % o.sessions];
    int64_t ts = t0_us + n * 25;
    if (with_sessions) {
      if (sessions_org_blob)
        sqlite3_bind_blob(sel, 1, org16, 16, SQLITE_STATIC);
      else
        sqlite3_bind_text(sel, 1, o.org_id, -1, SQLITE_STATIC);
      sqlite3_bind_text(sel, 2, s->id, -1, SQLITE_STATIC);
      int rc = sqlite3_step(sel);
      if (rc == SQLITE_ROW) {
        s->seq = sqlite3_column_int64(sel, 0);
        memcpy(s->head, sqlite3_column_blob(sel, 1), HASH_LEN);
        sqlite3_reset(sel);
      } else if (rc == SQLITE_DONE) {
        sqlite3_reset(sel);
        s->seq = 0;
        memset(s->head, 0, HASH_LEN);
        if (sessions_org_blob)
          sqlite3_bind_blob(ins_sess, 1, org16, 16, SQLITE_STATIC);
        else
          sqlite3_bind_text(ins_sess, 1, o.org_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_sess, 2, s->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_sess, 3, "support-bot", -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_sess, 4, ts);
        sqlite3_bind_blob(ins_sess, 5, s->head, HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(ins_sess, 6, ts);
        step_done(db, ins_sess);
      } else {
        die("session read", db);
      }
    }
    uint8_t prev[HASH_LEN], hash[HASH_LEN];
    memcpy(prev, s->head, HASH_LEN);
    for (int k = 0; k < HASH_LEN; k += 8) {
      uint64_t r = splitmix(&rng);
      memcpy(hash + k, &r, 8);
    }
    s->seq++;
    memcpy(s->head, hash, HASH_LEN);
    char id[64];
    snprintf(id, sizeof(id), "raw-1-%lld-%lld", n / 100 + 1, n % 100 + 1);
    int64_t cost = 4200000 + (int64_t)(n % 1000);
    for (int i = 0; i < ncols; i++) {
      int p = i + 1;
      switch (cols[i].gen) {
        case GEN_ORG:
          if (cols[i].blob)
            sqlite3_bind_blob(insert, p, org16, 16, SQLITE_STATIC);
          else
            sqlite3_bind_text(insert, p, o.org_id, -1, SQLITE_STATIC);
          break;
        case GEN_KEY:
          if (cols[i].blob)
            sqlite3_bind_blob(insert, p, key16, 16, SQLITE_STATIC);
          else
            sqlite3_bind_text(insert, p, o.key_id, -1, SQLITE_STATIC);
          break;
        case GEN_ID:
          sqlite3_bind_text(insert, p, id, -1, SQLITE_TRANSIENT);
          break;
        case GEN_SESSION:
          sqlite3_bind_text(insert, p, s->id, -1, SQLITE_STATIC);
          break;
        case GEN_AGENT:
          sqlite3_bind_text(insert, p, "support-bot", -1, SQLITE_STATIC);
          break;
        case GEN_TYPE:
          sqlite3_bind_text(insert, p, "llm_call", -1, SQLITE_STATIC);
          break;
        case GEN_TS:
        case GEN_RECEIVED:
          sqlite3_bind_int64(insert, p, ts);
          break;
        case GEN_SEVERITY:
          sqlite3_bind_text(insert, p, "info", -1, SQLITE_STATIC);
          break;
        case GEN_DATA:
          sqlite3_bind_text(insert, p, o.data, (int)data_len, SQLITE_STATIC);
          break;
        case GEN_METADATA:
          sqlite3_bind_text(insert, p, o.metadata, (int)meta_len, SQLITE_STATIC);
          break;
        case GEN_TAGS:
          sqlite3_bind_text(insert, p, o.tags, (int)tags_len, SQLITE_STATIC);
          break;
        case GEN_COST_NANO:
          sqlite3_bind_int64(insert, p, cost);
          break;
        case GEN_COST_FLAGS:
          sqlite3_bind_int64(insert, p, 0);
          break;
        case GEN_SEQ:
          sqlite3_bind_int64(insert, p, s->seq);
          break;
        case GEN_PREV_HASH:
          sqlite3_bind_blob(insert, p, prev, HASH_LEN, SQLITE_TRANSIENT);
          break;
        case GEN_HASH:
          sqlite3_bind_blob(insert, p, hash, HASH_LEN, SQLITE_TRANSIENT);
          break;
      }
    }
    step_done(db, insert);
    if (with_sessions) {
      if (sessions_org_blob)
        sqlite3_bind_blob(upd, 1, org16, 16, SQLITE_STATIC);
      else
        sqlite3_bind_text(upd, 1, o.org_id, -1, SQLITE_STATIC);
      sqlite3_bind_text(upd, 2, s->id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(upd, 3, 0);
      sqlite3_bind_int64(upd, 4, 0);
      sqlite3_bind_int64(upd, 5, 1);
      sqlite3_bind_int64(upd, 6, 1200);
      sqlite3_bind_int64(upd, 7, 350);
      sqlite3_bind_int64(upd, 8, 100);
      sqlite3_bind_int64(upd, 9, 1000);
      sqlite3_bind_int64(upd, 10, 0);
      sqlite3_bind_int64(upd, 11, cost);
      sqlite3_bind_int64(upd, 12, ts);
      sqlite3_bind_text(upd, 13, o.tags, (int)tags_len, SQLITE_STATIC);
      sqlite3_bind_int64(upd, 14, s->seq);
      sqlite3_bind_blob(upd, 15, s->head, HASH_LEN, SQLITE_STATIC);
      sqlite3_bind_int64(upd, 16, ts);
      step_done(db, upd);
    }
    if ((n + 1) % o.tx == 0 || n + 1 == o.events) exec(db, "COMMIT");
  }
  double seconds = now_s() - start;

  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  char wal[4200];
  snprintf(wal, sizeof(wal), "%s-wal", o.db);
  long long db_bytes = file_size(o.db), wal_bytes = file_size(wal);
  printf(
      "{\"mode\":\"%s\",\"events\":%lld,\"tx\":%lld,\"sessions\":%lld,\"cache_kib\":%lld,"
      "\"migrations\":%d,\"seconds\":%.3f,\"events_per_sec\":%.1f,\"db_bytes\":%lld,"
      "\"wal_bytes\":%lld,\"bytes_per_event\":%.1f,\"sqlite\":\"%s\"}\n",
      o.mode, o.events, o.tx, o.sessions, o.cache_kib, migrations, seconds,
      (double)o.events / seconds, db_bytes, wal_bytes,
      (double)(db_bytes + wal_bytes) / (double)o.events, sqlite3_libversion());

  sqlite3_finalize(insert);
  sqlite3_finalize(sel);
  sqlite3_finalize(ins_sess);
  sqlite3_finalize(upd);
  sqlite3_close(db);
  free(sessions);
  return 0;
}
