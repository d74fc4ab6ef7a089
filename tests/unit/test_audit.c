/*
 * test_audit.c — the audit log: appending to per-org hash chains, the
 * canonical form byte for byte, verification, tampering behind the store's
 * back (a raw SQLite connection that first drops the append-only triggers),
 * the triggers themselves, and the list filters the API is built on.
 *
 * Every test gets a fresh data directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/time.h"
#include "domain/audit.h"
#include "store/audit.h"
#include "store/db.h"
#include "store/store.h"

#define ORG_A "0190a000-0000-7000-8000-00000000000a"
#define ORG_B "0190b000-0000-7000-8000-00000000000b"

static char dir[256];

static struct store *open_store(void) {
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  struct store *s = NULL;
  char err[256];
  if (store_open(&o, &s, err, sizeof(err)) != 0) fail_msg("store_open: %s", err);
  return s;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-audit-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
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

/* --- appending ---------------------------------------------------------- */

struct append_job {
  const char *org_id; /* NULL: the platform chain */
  int count;
  const char *action_fmt; /* "%d" gets the entry's index */
  const char *actor_id;
};

static int append_tx(struct store_tx *tx, void *arg) {
  struct append_job *j = arg;
  for (int i = 0; i < j->count; i++) {
    char action[64];
    snprintf(action, sizeof(action), j->action_fmt, i % 3);
    json_t *d = json_pack("{s:i, s:s, s:{s:b}}", "n", i, "note", "caf\xc3\xa9 \"quoted\"", "nested",
                          "flag", i % 2 == 0);
    struct audit_entry e = {
        .org_id = j->org_id,
        .actor_type = j->actor_id ? "user" : "system",
        .actor_id = j->actor_id,
        .action = action,
        .resource_type = "thing",
        .resource_id = "r-1",
        .ip = "192.0.2.7",
        .user_agent = i == 0 ? NULL : "test-agent/1.0",
        .success = i % 4 != 3,
        .details = d,
    };
    char id[ID_STR_SIZE] = {0};
    int rc = audit_append(tx, &e, id);
    json_decref(d);
    if (rc) return rc;
    if (strlen(id) != ID_STR_LEN) return KEEL_EINTERNAL;
  }
  return 0;
}

static void append(struct store *s, const char *org, int count, const char *action_fmt,
                   const char *actor) {
  struct append_job j = {org, count, action_fmt, actor};
  assert_int_equal(store_write(s, append_tx, &j), 0);
}

static struct audit_verify_result verify(struct store *s, const char *org) {
  struct audit_verify_result r;
  assert_int_equal(audit_verify(s, org, &r), 0);
  return r;
}

static void assert_valid(struct store *s, const char *org, int64_t entries) {
  struct audit_verify_result r = verify(s, org);
  if (!r.valid) fail_msg("%s: invalid at %lld: %s", org, (long long)r.failed_seq, r.reason);
  assert_int_equal(r.entries, entries);
  assert_int_equal(r.failed_seq, 0);
  assert_null(r.reason);
}

static void assert_invalid(struct store *s, const char *org, int64_t seq, const char *reason) {
  struct audit_verify_result r = verify(s, org);
  assert_false(r.valid);
  assert_int_equal(r.failed_seq, seq);
  assert_non_null(r.reason);
  assert_string_equal(r.reason, reason);
}

static const char reason_content[] = "the entry's content does not match its hash";
static const char reason_gap[] = "an entry is missing (sequence gap)";
static const char reason_prev[] = "prev_hash does not match the previous entry's hash";

static void test_chains_per_org_verify(void **state) {
  (void)state;
  struct store *s = open_store();
  append(s, ORG_A, 7, "member.a%d", "u-1");
  append(s, ORG_B, 4, "key.b%d", NULL);
  append(s, ORG_A, 2, "org.c%d", "u-2");
  append(s, NULL, 3, "auth.login%d", "u-1");
  assert_valid(s, ORG_A, 9);
  assert_valid(s, ORG_B, 4);
  assert_valid(s, AUDIT_PLATFORM_ORG, 3);
  assert_valid(s, "0190c000-0000-7000-8000-00000000000c", 0); /* no entries: trivially valid */
  store_close(s);
}

/* --- rows as stored ----------------------------------------------------- */

struct rows {
  struct audit_row r[64];
  char strings[64][4][256]; /* action, details, actor_id, user_agent copies */
  int n;
};

static int collect_row(const struct audit_row *row, void *arg) {
  struct rows *rs = arg;
  if (rs->n == 64) return 1;
  struct audit_row *r = &rs->r[rs->n];
  *r = *row;
  const char *src[4] = {row->action, row->details, row->actor_id, row->user_agent};
  const char **dst[4] = {&r->action, &r->details, &r->actor_id, &r->user_agent};
  for (int i = 0; i < 4; i++) {
    if (!src[i]) continue;
    snprintf(rs->strings[rs->n][i], 256, "%s", src[i]);
    *dst[i] = rs->strings[rs->n][i];
  }
  r->actor_type = row->actor_type && strcmp(row->actor_type, "user") == 0 ? "user" : "system";
  r->resource_type = row->resource_type ? "thing" : NULL;
  r->resource_id = row->resource_id ? "r-1" : NULL;
  r->ip = row->ip ? "192.0.2.7" : NULL;
  r->result = strcmp(row->result, "success") == 0 ? "success" : "failure";
  rs->n++;
  return 0;
}

struct list_args {
  const char *org;
  struct audit_filter f;
  struct rows *out;
};

static int list_tx(struct store_tx *tx, void *arg) {
  struct list_args *a = arg;
  struct org_scope scope;
  snprintf(scope.org_id, sizeof(scope.org_id), "%s", a->org);
  int rc = store_audit_list(tx, &scope, &a->f, collect_row, a->out);
  return rc == 1 ? 0 : rc;
}

static struct rows *list(struct store *s, const char *org, struct audit_filter f) {
  static struct rows rs;
  memset(&rs, 0, sizeof(rs));
  struct list_args a = {org, f, &rs};
  assert_int_equal(store_read(s, list_tx, &a), 0);
  return &rs;
}

/* The chain's links: seq from 1, prev_hash = the previous hash (zeros
 * first), hash = SHA-256(prev_hash || canonical). */
static void test_links_and_hashes(void **state) {
  (void)state;
  struct store *s = open_store();
  append(s, ORG_A, 5, "member.a%d", "u-1");
  struct rows *rs = list(s, ORG_A, (struct audit_filter){.ascending = true});
  assert_int_equal(rs->n, 5);
  uint8_t prev[AUDIT_HASH_LEN] = {0};
  for (int i = 0; i < rs->n; i++) {
    const struct audit_row *r = &rs->r[i];
    assert_int_equal(r->seq, i + 1);
    assert_memory_equal(r->prev_hash, prev, AUDIT_HASH_LEN);
    struct buf canon;
    buf_init(&canon, 1 << 16);
    assert_int_equal(audit_canonical(ORG_A, r, &canon), 0);
    size_t n = AUDIT_HASH_LEN + canon.len;
    uint8_t msg[2048];
    assert_true(n <= sizeof(msg));
    memcpy(msg, prev, AUDIT_HASH_LEN);
    memcpy(msg + AUDIT_HASH_LEN, canon.data, canon.len);
    uint8_t h[AUDIT_HASH_LEN];
    crypto_sha256(msg, n, h);
    assert_memory_equal(r->hash, h, AUDIT_HASH_LEN);
    buf_free(&canon);
    memcpy(prev, r->hash, AUDIT_HASH_LEN);
  }
  /* Details are stored canonically: keys sorted, compact, ASCII only. */
  assert_string_equal(
      rs->r[1].details,
      "{\"n\":1,\"nested\":{\"flag\":false},\"note\":\"caf\\u00E9 \\\"quoted\\\"\"}");
  store_close(s);
}

/* The canonical form, byte for byte, as docs/internals/audit.md states it. */
static void test_canonical_bytes(void **state) {
  (void)state;
  struct audit_row r = {
      .seq = 42,
      .at = INT64_C(1767225600123456),
      .actor_type = "user",
      .actor_id = "0190a000-0000-7000-8000-0000000000ff",
      .action = "member.role_changed",
      .resource_type = "user",
      .resource_id = NULL,
      .ip = "203.0.113.9",
      .user_agent = NULL,
      .result = "success",
      .details =
          "{\"to\":\"admin\",\"from\":\"viewer\",\"who\":\"Zo\xc3\xab\\/"
          "\\u00e9\\n\",\"n\":[1,2.5]}",
  };
  snprintf(r.id, sizeof(r.id), "%s", "0190a000-0000-7000-8000-000000000042");
  struct buf out;
  buf_init(&out, 4096);
  assert_int_equal(audit_canonical(ORG_A, &r, &out), 0);
  assert_string_equal(out.data,
                      "{\"action\":\"member.role_changed\","
                      "\"actor_id\":\"0190a000-0000-7000-8000-0000000000ff\","
                      "\"actor_type\":\"user\","
                      "\"at\":1767225600123456,"
                      "\"details\":{\"from\":\"viewer\",\"n\":[1,2.5],\"to\":\"admin\","
                      "\"who\":\"Zo\\u00EB/\\u00E9\\n\"},"
                      "\"id\":\"0190a000-0000-7000-8000-000000000042\","
                      "\"ip\":\"203.0.113.9\","
                      "\"org_id\":\"0190a000-0000-7000-8000-00000000000a\","
                      "\"resource_id\":null,"
                      "\"resource_type\":\"user\","
                      "\"result\":\"success\","
                      "\"seq\":42,"
                      "\"user_agent\":null}");
  /* Absent details are {}; the org id is part of the form, so the same
   * entry on another chain hashes differently. */
  r.details = NULL;
  struct buf other;
  buf_init(&other, 4096);
  assert_int_equal(audit_canonical(ORG_B, &r, &other), 0);
  assert_non_null(strstr(other.data, "\"details\":{},"));
  assert_non_null(strstr(other.data, "\"org_id\":\"" ORG_B "\""));
  buf_free(&out);
  buf_free(&other);
}

static void test_platform_chain_and_defaults(void **state) {
  (void)state;
  struct store *s = open_store();
  append(s, NULL, 2, "user.created%d", NULL);
  struct rows *rs = list(s, AUDIT_PLATFORM_ORG, (struct audit_filter){.ascending = true});
  assert_int_equal(rs->n, 2);
  assert_string_equal(rs->r[0].actor_type, "system");
  assert_null(rs->r[0].actor_id);
  assert_null(rs->r[0].user_agent);
  assert_string_equal(rs->r[1].user_agent, "test-agent/1.0");
  /* Nothing leaked onto an org chain. */
  assert_int_equal(list(s, ORG_A, (struct audit_filter){0})->n, 0);
  store_close(s);
}

/* --- tampering behind the store's back --------------------------------- */

/* Runs sql on a raw connection to the database file (the store closed).
 * The append-only triggers are dropped first: that is what an attacker
 * with the file would do. */
static void raw_exec(const char *sql) {
  char path[512];
  snprintf(path, sizeof(path), "%s/keel.db", dir);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *err = NULL;
  int rc = sqlite3_exec(db,
                        "DROP TRIGGER IF EXISTS audit_log_no_update;"
                        "DROP TRIGGER IF EXISTS audit_log_no_delete;",
                        NULL, NULL, &err);
  if (rc != SQLITE_OK) fail_msg("drop triggers: %s", err);
  rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK) fail_msg("%s: %s", sql, err);
  assert_int_equal(sqlite3_changes(db), 1);
  sqlite3_close(db);
}

/* Seven entries on A, three on B; closes the store so the file can be
 * edited. */
static void seed(void) {
  struct store *s = open_store();
  append(s, ORG_A, 7, "member.a%d", "u-1");
  append(s, ORG_B, 3, "key.b%d", "u-2");
  assert_valid(s, ORG_A, 7);
  store_close(s);
}

static void after_tamper(const char *sql, int64_t seq, const char *reason) {
  seed();
  raw_exec(sql);
  struct store *s = open_store();
  assert_invalid(s, ORG_A, seq, reason);
  assert_valid(s, ORG_B, 3); /* another org's chain is untouched */
  store_close(s);
}

static void test_tamper_details(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET details = '{\"n\":99}' WHERE org_id = '" ORG_A "' AND seq = 4",
               4, reason_content);
}

static void test_tamper_action(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET action = 'member.a9' WHERE org_id = '" ORG_A "' AND seq = 2",
               2, reason_content);
}

static void test_tamper_time(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET at = at - 1 WHERE org_id = '" ORG_A "' AND seq = 6", 6,
               reason_content);
}

static void test_tamper_result(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET result = 'success' WHERE org_id = '" ORG_A
               "' AND seq = 4 AND result = 'failure'",
               4, reason_content);
}

static void test_tamper_actor_to_null(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET actor_id = NULL WHERE org_id = '" ORG_A "' AND seq = 1", 1,
               reason_content);
}

static void test_tamper_deleted_row(void **state) {
  (void)state;
  /* Deleting entry 3: entry 4 now follows entry 2. */
  after_tamper("DELETE FROM audit_log WHERE org_id = '" ORG_A "' AND seq = 3", 4, reason_gap);
}

static void test_tamper_first_row_deleted(void **state) {
  (void)state;
  after_tamper("DELETE FROM audit_log WHERE org_id = '" ORG_A "' AND seq = 1", 2, reason_gap);
}

static void test_tamper_hash(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET hash = zeroblob(32) WHERE org_id = '" ORG_A "' AND seq = 5", 5,
               reason_content);
}

static void test_tamper_prev_hash(void **state) {
  (void)state;
  after_tamper("UPDATE audit_log SET prev_hash = randomblob(32) WHERE org_id = '" ORG_A
               "' AND seq = 3",
               3, reason_prev);
}

static void test_tamper_damaged_hash_length(void **state) {
  (void)state;
  /* A hash of the wrong length reads as zeros for both hashes. */
  after_tamper("UPDATE audit_log SET hash = x'00' WHERE org_id = '" ORG_A "' AND seq = 7", 7,
               reason_prev);
}

/* Moving an entry to another org: it leaves a gap behind and breaks the
 * chain it lands in (prev_hash, and the org id is hashed). */
static void test_tamper_moved_to_other_org(void **state) {
  (void)state;
  seed();
  raw_exec("UPDATE audit_log SET org_id = '" ORG_B "', seq = 4 WHERE org_id = '" ORG_A
           "' AND seq = 5");
  struct store *s = open_store();
  assert_invalid(s, ORG_A, 6, reason_gap);
  assert_invalid(s, ORG_B, 4, reason_prev);
  store_close(s);
}

/* The chain alone cannot tell a deleted newest entry from one never
 * written (docs/internals/audit.md: what verification does not prove). */
static void test_tail_truncation_is_not_detected(void **state) {
  (void)state;
  seed();
  raw_exec("DELETE FROM audit_log WHERE org_id = '" ORG_A "' AND seq = 7");
  struct store *s = open_store();
  assert_valid(s, ORG_A, 6);
  store_close(s);
}

/* An attacker who rewrites one entry and recomputes its own hash is still
 * caught by the next entry, whose prev_hash no longer matches. */
struct rehash_job {
  int64_t seq;
  uint8_t hash[AUDIT_HASH_LEN];
};

static int rehash_tx(struct store_tx *tx, void *arg) {
  struct rehash_job *j = arg;
  struct rows rs;
  memset(&rs, 0, sizeof(rs));
  struct org_scope scope;
  snprintf(scope.org_id, sizeof(scope.org_id), "%s", ORG_A);
  struct audit_filter f = {.ascending = true};
  int rc = store_audit_list(tx, &scope, &f, collect_row, &rs);
  if (rc) return rc;
  struct audit_row *r = &rs.r[j->seq - 1];
  r->details = "{\"forged\":true}";
  struct buf canon;
  buf_init(&canon, 1 << 16);
  audit_canonical(ORG_A, r, &canon);
  audit_hash(r->prev_hash, &canon, j->hash);
  buf_free(&canon);
  return 0;
}

static void test_tamper_with_recomputed_hash(void **state) {
  (void)state;
  seed();
  struct store *s = open_store();
  struct rehash_job j = {.seq = 3};
  assert_int_equal(store_read(s, rehash_tx, &j), 0);
  store_close(s);
  char hex[SHA256_HEX_SIZE];
  crypto_hex(j.hash, AUDIT_HASH_LEN, hex);
  char sql[512];
  snprintf(sql, sizeof(sql),
           "UPDATE audit_log SET details = '{\"forged\":true}', hash = x'%s'"
           " WHERE org_id = '" ORG_A "' AND seq = 3",
           hex);
  raw_exec(sql);
  s = open_store();
  assert_invalid(s, ORG_A, 4, reason_prev);
  store_close(s);
}

/* --- the triggers ------------------------------------------------------- */

static int update_tx(struct store_tx *tx, void *arg) {
  (void)arg;
  return db_exec(tx, "UPDATE audit_log SET action = 'rewritten'");
}

static int delete_tx(struct store_tx *tx, void *arg) {
  (void)arg;
  return db_exec(tx, "DELETE FROM audit_log WHERE seq = 1");
}

static void test_store_refuses_update_and_delete(void **state) {
  (void)state;
  struct store *s = open_store();
  append(s, ORG_A, 3, "member.a%d", "u-1");
  int rc = store_write(s, update_tx, NULL);
  assert_true(rc < 0);
  rc = store_write(s, delete_tx, NULL);
  assert_true(rc < 0);
  assert_valid(s, ORG_A, 3);
  assert_int_equal(list(s, ORG_A, (struct audit_filter){0})->n, 3);
  /* Appending still works after the refusals. */
  append(s, ORG_A, 1, "member.z%d", "u-1");
  assert_valid(s, ORG_A, 4);
  store_close(s);
}

/* --- the list filters --------------------------------------------------- */

static void test_list_filters(void **state) {
  (void)state;
  struct store *s = open_store();
  /* seq 1..6: member.a0 a1 a2 a0 a1 a2 by u-1; then 7..9 key.b0..2 by u-2,
   * an hour later. */
  append(s, ORG_A, 6, "member.a%d", "u-1");
  time_offset_add_us(US_PER_HOUR);
  int64_t later = time_now_us() - 1;
  append(s, ORG_A, 3, "key.b%d", "u-2");
  append(s, ORG_B, 5, "member.a%d", "u-1");

  struct rows *rs = list(s, ORG_A, (struct audit_filter){0});
  assert_int_equal(rs->n, 9);
  assert_int_equal(rs->r[0].seq, 9); /* newest first */
  assert_int_equal(rs->r[8].seq, 1);

  rs = list(s, ORG_A, (struct audit_filter){.action = "member.a1"});
  assert_int_equal(rs->n, 2);
  assert_int_equal(rs->r[0].seq, 5);
  assert_int_equal(rs->r[1].seq, 2);

  rs = list(s, ORG_A, (struct audit_filter){.action = "member."});
  assert_int_equal(rs->n, 6);
  /* A prefix without the trailing dot is an exact name: nothing. */
  assert_int_equal(list(s, ORG_A, (struct audit_filter){.action = "member"})->n, 0);
  assert_int_equal(list(s, ORG_A, (struct audit_filter){.action = "member.a"})->n, 0);

  rs = list(s, ORG_A, (struct audit_filter){.actor = "u-2"});
  assert_int_equal(rs->n, 3);
  for (int i = 0; i < rs->n; i++) assert_string_equal(rs->r[i].actor_id, "u-2");

  rs = list(s, ORG_A, (struct audit_filter){.from_us = later});
  assert_int_equal(rs->n, 3);
  rs = list(s, ORG_A, (struct audit_filter){.to_us = later});
  assert_int_equal(rs->n, 6);

  /* Pages: newest first below a cursor; oldest first above one. */
  rs = list(s, ORG_A, (struct audit_filter){.after_seq = 5, .limit = 2});
  assert_int_equal(rs->n, 2);
  assert_int_equal(rs->r[0].seq, 4);
  assert_int_equal(rs->r[1].seq, 3);
  rs = list(s, ORG_A, (struct audit_filter){.after_seq = 5, .limit = 2, .ascending = true});
  assert_int_equal(rs->n, 2);
  assert_int_equal(rs->r[0].seq, 6);
  assert_int_equal(rs->r[1].seq, 7);

  /* Combined, and scoped: B's rows never appear in A's list. */
  rs = list(s, ORG_A, (struct audit_filter){.action = "member.", .actor = "u-2"});
  assert_int_equal(rs->n, 0);
  rs = list(s, ORG_B, (struct audit_filter){.actor = "u-2"});
  assert_int_equal(rs->n, 0);
  time_offset_add_us(-US_PER_HOUR);
  store_close(s);
}

int main(void) {
  crypto_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_chains_per_org_verify, setup, teardown),
      cmocka_unit_test_setup_teardown(test_links_and_hashes, setup, teardown),
      cmocka_unit_test(test_canonical_bytes),
      cmocka_unit_test_setup_teardown(test_platform_chain_and_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_details, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_action, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_result, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_actor_to_null, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_deleted_row, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_first_row_deleted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_hash, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_prev_hash, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_damaged_hash_length, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_moved_to_other_org, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tail_truncation_is_not_detected, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tamper_with_recomputed_hash, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_refuses_update_and_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
