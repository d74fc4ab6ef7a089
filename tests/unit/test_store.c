/*
 * test_store.c — the SQLite store: migrations, the statement layer, group
 * commit with per-job savepoints, failure injection, concurrent writers.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "store/db.h"
#include "store/store.h"

static char dir[256];

static struct store *open_store(bool migrate) {
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = migrate};
  struct store *s = NULL;
  char err[256];
  int rc = store_open(&o, &s, err, sizeof(err));
  if (rc) fail_msg("store_open: %s", err);
  return s;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-store-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char path[512];
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

struct kv {
  const char *name;
  const char *value;
  int64_t at;
  char out[128];
  int64_t out_at;
  bool fail_after_insert;
};

static int put_fn(struct store_tx *tx, void *arg) {
  struct kv *kv = arg;
  struct db_stmt *st = db_prepare(
      tx, "INSERT INTO server_settings(name, value, updated_at) VALUES($1, $2, @ts($3))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, kv->name);
  db_bind_text(st, 2, kv->value);
  db_bind_i64(st, 3, kv->at);
  int rc = db_step(st);
  if (rc < 0) return rc;
  return kv->fail_after_insert ? KEEL_EINVAL : 0;
}

static int get_fn(struct store_tx *tx, void *arg) {
  struct kv *kv = arg;
  /* Parameters out of textual order: $2 appears before $1. */
  struct db_stmt *st = db_prepare(
      tx,
      "SELECT value, @us(updated_at) FROM server_settings WHERE updated_at >= $2 AND name = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, kv->name);
  db_bind_i64(st, 2, 0);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc;
  snprintf(kv->out, sizeof(kv->out), "%s", db_col_text(st, 0));
  kv->out_at = db_col_i64(st, 1);
  return 0;
}

static int count_fn(struct store_tx *tx, void *arg) {
  int64_t *n = arg;
  struct db_stmt *st = db_prepare(tx, "SELECT count(*) FROM server_settings");
  if (!st || db_step(st) != DB_ROW) return KEEL_ESTORE;
  *n = db_col_i64(st, 0);
  return 0;
}

static void test_migrate_idempotent(void **state) {
  (void)state;
  struct store *s = open_store(false);
  int cur = -1, latest = -1;
  assert_int_equal(store_schema_version(s, &cur, &latest), 0);
  assert_int_equal(cur, 0);
  assert_true(latest >= 1);
  assert_int_not_equal(store_ready(s), 0); /* not migrated → not ready */
  char err[256];
  int applied = -1;
  assert_int_equal(store_migrate(s, &applied, err, sizeof(err)), 0);
  assert_int_equal(applied, latest);
  assert_int_equal(store_migrate(s, &applied, err, sizeof(err)), 0);
  assert_int_equal(applied, 0);
  assert_int_equal(store_ready(s), 0);
  assert_string_equal(store_backend(s), "sqlite");
  store_close(s);
}

static void test_write_read_roundtrip(void **state) {
  (void)state;
  struct store *s = open_store(true);
  struct kv a = {.name = "alpha", .value = "one", .at = 1700000000123456};
  assert_int_equal(store_write(s, put_fn, &a), 0);
  struct kv r = {.name = "alpha"};
  assert_int_equal(store_read(s, get_fn, &r), 0);
  assert_string_equal(r.out, "one");
  assert_int_equal(r.out_at, 1700000000123456);
  struct kv missing = {.name = "nope"};
  assert_int_equal(store_read(s, get_fn, &missing), KEEL_ENOTFOUND);
  /* Unique violation → KEEL_ECONFLICT, nothing stored twice. */
  struct kv dup = {.name = "alpha", .value = "two", .at = 1};
  assert_int_equal(store_write(s, put_fn, &dup), KEEL_ECONFLICT);
  assert_int_equal(store_read(s, get_fn, &r), 0);
  assert_string_equal(r.out, "one");
  store_close(s);
}

static void test_failed_job_rolled_back(void **state) {
  (void)state;
  struct store *s = open_store(true);
  struct kv bad = {.name = "beta", .value = "x", .at = 5, .fail_after_insert = true};
  assert_int_equal(store_write(s, put_fn, &bad), KEEL_EINVAL);
  struct kv r = {.name = "beta"};
  assert_int_equal(store_read(s, get_fn, &r), KEEL_ENOTFOUND);
  store_close(s);
}

static void test_fail_hook(void **state) {
  (void)state;
#ifdef KEEL_TEST_HOOKS
  struct store *s = open_store(true);
  store_fail_next_writes(s, 2);
  struct kv a = {.name = "h1", .value = "v", .at = 1};
  struct kv b = {.name = "h2", .value = "v", .at = 1};
  struct kv c = {.name = "h3", .value = "v", .at = 1};
  assert_int_equal(store_write(s, put_fn, &a), KEEL_ESTORE);
  assert_int_equal(store_write(s, put_fn, &b), KEEL_ESTORE);
  assert_int_equal(store_write(s, put_fn, &c), 0);
  struct kv r = {.name = "h1"};
  assert_int_equal(store_read(s, get_fn, &r), KEEL_ENOTFOUND);
  store_close(s);
#else
  skip();
#endif
}

/* Many threads write at once; every other job fails after inserting. The
 * writer groups them into shared transactions; each failure must undo only
 * its own insert. */
#define NTHREADS   8
#define PER_THREAD 100

struct writer_arg {
  struct store *s;
  int id;
  int ok, failed;
};

static void *writer_thread(void *p) {
  struct writer_arg *w = p;
  for (int i = 0; i < PER_THREAD; i++) {
    char name[64];
    snprintf(name, sizeof(name), "t%d-%d", w->id, i);
    struct kv kv = {.name = name, .value = "v", .at = i, .fail_after_insert = (i % 2) == 1};
    int rc = store_write(w->s, put_fn, &kv);
    if (rc == 0) w->ok++;
    if (rc == KEEL_EINVAL) w->failed++;
  }
  return NULL;
}

static void test_concurrent_group_commit(void **state) {
  (void)state;
  struct store *s = open_store(true);
  int64_t before = 0;
  assert_int_equal(store_read(s, count_fn, &before), 0);
  pthread_t th[NTHREADS];
  struct writer_arg args[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    args[i] = (struct writer_arg){.s = s, .id = i};
    pthread_create(&th[i], NULL, writer_thread, &args[i]);
  }
  int ok = 0, failed = 0;
  for (int i = 0; i < NTHREADS; i++) {
    pthread_join(th[i], NULL);
    ok += args[i].ok;
    failed += args[i].failed;
  }
  assert_int_equal(ok, NTHREADS * PER_THREAD / 2);
  assert_int_equal(failed, NTHREADS * PER_THREAD / 2);
  int64_t after = 0;
  assert_int_equal(store_read(s, count_fn, &after), 0);
  assert_int_equal(after - before, ok);
  /* A failed job's row is absent; a good one's present. */
  struct kv r = {.name = "t3-1"};
  assert_int_equal(store_read(s, get_fn, &r), KEEL_ENOTFOUND);
  r = (struct kv){.name = "t3-2"};
  assert_int_equal(store_read(s, get_fn, &r), 0);
  assert_int_equal(store_write_queue_depth(s), 0);
  store_close(s);
}

/* Data survives close and reopen. */
static void test_durable_across_reopen(void **state) {
  (void)state;
  struct store *s = open_store(true);
  struct kv a = {.name = "persist", .value = "yes", .at = 42};
  assert_int_equal(store_write(s, put_fn, &a), 0);
  store_close(s);
  s = open_store(true);
  struct kv r = {.name = "persist"};
  assert_int_equal(store_read(s, get_fn, &r), 0);
  assert_string_equal(r.out, "yes");
  store_close(s);
}

static void test_unknown_url_refused_clearly(void **state) {
  (void)state;
  struct store_options o = {.data_dir = dir, .url = "mysql://x@localhost/db"};
  struct store *s = NULL;
  char err[256] = "";
  assert_int_not_equal(store_open(&o, &s, err, sizeof(err)), 0);
  assert_null(s);
  assert_non_null(strstr(err, "postgres://"));
}

int main(void) {
  crypto_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_migrate_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_read_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_job_rolled_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fail_hook, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_group_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_durable_across_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_url_refused_clearly, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
