/*
 * test_telemetry.c — the query side of telemetry (store/telemetry.h) on a
 * real store: the scan budget (short pages that still continue), exact tag
 * matching on stored canonical arrays, the verifier's reasons for rows that
 * cannot be read back, and org scoping. Rows are written with SQL so that
 * each case is exactly the row it needs; the routes, ingestion and the
 * other verifier reasons are covered end to end by
 * tests/api/test_telemetry.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/errors.h"
#include "store/db.h"
#include "store/store.h"
#include "store/telemetry.h"

#define ORG_A "01900000-0000-7000-8000-00000000000a"
#define ORG_B "01900000-0000-7000-8000-00000000000b"
#define T0    INT64_C(1772366400000000) /* 2026-03-01T12:00:00Z */

static char dir[256];
static struct store *store;
static const struct org_scope org_a = {.org_id = ORG_A};
static const struct org_scope org_b = {.org_id = ORG_B};

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-telemetry-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char err[256];
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  return store_open(&o, &store, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  store_close(store);
  char path[512];
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

/* --- rows -------------------------------------------------------------------- */

struct event_spec {
  const char *org;
  const char *id;
  const char *session;
  const char *severity;
  int64_t ts;
  int64_t seq;
  const char *data;
};

static int insert_event(struct store_tx *tx, const struct event_spec *e) {
  static const char sql[] =
      "INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at, severity, data,"
      " metadata, tags, seq, hash) VALUES($1, $2, $3, 'agent', 'custom', @ts($4), @ts($4), $5,"
      " $6, '{}', '[]', $7, $8)";
  static const uint8_t hash[EVENT_HASH_LEN] = {1};
  struct db_stmt *st = db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, e->org);
  db_bind_text(st, 2, e->id);
  db_bind_text(st, 3, e->session);
  db_bind_i64(st, 4, e->ts);
  db_bind_text(st, 5, e->severity);
  db_bind_text(st, 6, e->data ? e->data : "{}");
  db_bind_i64(st, 7, e->seq);
  db_bind_blob(st, 8, hash, sizeof(hash));
  int rc = db_step(st);
  db_reset(st);
  return rc < 0 ? rc : 0;
}

static int insert_session(struct store_tx *tx, const char *org, const char *id, int64_t started,
                          const char *tags, int64_t chain_seq) {
  static const char sql[] =
      "INSERT INTO sessions(org_id, id, agent_id, started_at, tags, chain_seq, chain_head,"
      " updated_at) VALUES($1, $2, 'agent', @ts($3), $4, $5, $6, @ts($3))";
  static const uint8_t head[EVENT_HASH_LEN] = {0};
  struct db_stmt *st = db_prepare(tx, sql);
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, org);
  db_bind_text(st, 2, id);
  db_bind_i64(st, 3, started);
  db_bind_text(st, 4, tags);
  db_bind_i64(st, 5, chain_seq);
  db_bind_blob(st, 6, head, sizeof(head));
  int rc = db_step(st);
  db_reset(st);
  return rc < 0 ? rc : 0;
}

/* --- the scan budget ---------------------------------------------------------- */

#define BULK_EVENTS (2 * TELEMETRY_SCAN_MAX + 5)

static int bulk_fn(struct store_tx *tx, void *arg) {
  (void)arg;
  char id[32];
  for (int i = 0; i < BULK_EVENTS; i++) {
    snprintf(id, sizeof(id), "bulk-%05d", i);
    /* Two critical events: the oldest one and one in the middle. */
    bool critical = i == 0 || i == TELEMETRY_SCAN_MAX + 2;
    struct event_spec e = {.org = ORG_A,
                           .id = id,
                           .session = "bulk",
                           .severity = critical ? "critical" : "info",
                           .ts = T0 + i,
                           .seq = i + 1};
    int rc = insert_event(tx, &e);
    if (rc) return rc;
  }
  return 0;
}

struct list_job {
  const struct org_scope *scope;
  struct telemetry_event_filter f;
  struct telemetry_page page;
  char ids[8][32];
  size_t n;
};

static int collect_event(const struct telemetry_event *e, void *arg) {
  struct list_job *j = arg;
  if (j->n < 8) snprintf(j->ids[j->n++], sizeof(j->ids[0]), "%s", e->id);
  return 0;
}

static int list_fn(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  return store_telemetry_events_list(tx, j->scope, &j->f, &j->page, collect_event, j);
}

static void test_budget_leaves_short_pages(void **state) {
  (void)state;
  assert_int_equal(store_write(store, bulk_fn, NULL), 0);
  struct list_job j = {.scope = &org_a, .f = {.severity = "critical"}, .page = {.limit = 50}};
  int pages = 0, empty = 0;
  for (;;) {
    size_t before = j.n;
    assert_int_equal(store_read(store, list_fn, &j), 0);
    pages++;
    empty += j.n == before;
    if (!j.page.more) break;
    assert_true(pages < 10);
    j.page.has_after = true;
    j.page.after = j.page.next;
  }
  /* 2 S + 5 rows, at most S examined a page: three pages, newest first. */
  assert_int_equal(pages, 3);
  assert_int_equal(empty, 1);
  assert_int_equal(j.n, 2);
  char want[32];
  snprintf(want, sizeof(want), "bulk-%05d", TELEMETRY_SCAN_MAX + 2);
  assert_string_equal(j.ids[0], want);
  assert_string_equal(j.ids[1], "bulk-00000");

  /* Without a filter the page is cut by its limit, not the budget. */
  struct list_job k = {.scope = &org_a, .f = {.session_id = "bulk"}, .page = {.limit = 2}};
  assert_int_equal(store_read(store, list_fn, &k), 0);
  assert_int_equal(k.page.rows, 2);
  assert_true(k.page.more);
  snprintf(want, sizeof(want), "bulk-%05d", BULK_EVENTS - 2);
  assert_string_equal(k.page.next.id, want);
  assert_int_equal(k.page.next.us, T0 + BULK_EVENTS - 2);
}

/* --- tags ---------------------------------------------------------------------- */

static const struct {
  const char *id;
  const char *tags; /* stored canonical text */
} tag_rows[] = {
    {"t-backslash", "[\"a\\\\\",\"b\"]"}, /* a\ and b */
    {"t-quote", "[\"x\\\"y\"]"},          /* x"y */
    {"t-newline", "[\"\\u000a\"]"},       /* a newline */
    {"t-utf8", "[\"\xc3\xa9\"]"},         /* é */
    {"t-damaged", "[\"b\""},
    {"t-empty", "[]"},
    {"t-text", "b"},
};

static int tags_fn(struct store_tx *tx, void *arg) {
  (void)arg;
  for (size_t i = 0; i < sizeof(tag_rows) / sizeof(tag_rows[0]); i++) {
    int rc = insert_session(tx, ORG_A, tag_rows[i].id, T0 + (int64_t)i, tag_rows[i].tags, 0);
    if (rc) return rc;
  }
  return 0;
}

struct session_job {
  struct telemetry_session_filter f;
  struct telemetry_page page;
  char found[256];
};

static int collect_session(const struct telemetry_session *s, void *arg) {
  struct session_job *j = arg;
  size_t n = strlen(j->found);
  snprintf(j->found + n, sizeof(j->found) - n, "%s%s", n ? " " : "", s->id);
  return 0;
}

static int sessions_fn(struct store_tx *tx, void *arg) {
  struct session_job *j = arg;
  return store_telemetry_sessions_list(tx, &org_a, &j->f, &j->page, collect_session, j);
}

static const char *sessions_with_tag(const char *tag) {
  static struct session_job j;
  memset(&j, 0, sizeof(j));
  j.f.tag = tag;
  j.f.has_from = true;
  j.f.from_us = T0; /* the tag rows only */
  j.page.limit = 50;
  assert_int_equal(store_read(store, sessions_fn, &j), 0);
  assert_false(j.page.more);
  return j.found;
}

static void test_tags_match_exactly(void **state) {
  (void)state;
  assert_int_equal(store_write(store, tags_fn, NULL), 0);
  assert_string_equal(sessions_with_tag("b"), "t-backslash");
  assert_string_equal(sessions_with_tag("a\\"), "t-backslash");
  assert_string_equal(sessions_with_tag("a"), "");
  assert_string_equal(sessions_with_tag("x\"y"), "t-quote");
  assert_string_equal(sessions_with_tag("y"), "");
  assert_string_equal(sessions_with_tag("\"y"), "");
  assert_string_equal(sessions_with_tag("\n"), "t-newline");
  assert_string_equal(sessions_with_tag("\xc3\xa9"), "t-utf8");
  assert_string_equal(sessions_with_tag("\xc3"), ""); /* not UTF-8: on no session */
}

/* --- verification of unreadable rows ---------------------------------------------- */

static int damaged_fn(struct store_tx *tx, void *arg) {
  (void)arg;
  struct event_spec bad_json = {.org = ORG_A,
                                .id = "m-1",
                                .session = "malformed",
                                .severity = "info",
                                .ts = T0,
                                .seq = 1,
                                .data = "{\"a\":"};
  struct event_spec bad_severity = {
      .org = ORG_A, .id = "m-2", .session = "bad-severity", .severity = "loud", .ts = T0, .seq = 1};
  struct event_spec seq_zero = {
      .org = ORG_A, .id = "z-0", .session = "seq-zero", .severity = "info", .ts = T0, .seq = 0};
  int rc = insert_event(tx, &bad_json);
  if (rc == 0) rc = insert_event(tx, &bad_severity);
  if (rc == 0) rc = insert_event(tx, &seq_zero);
  if (rc == 0) rc = insert_session(tx, ORG_A, "malformed", T0 - 10, "[]", 1);
  if (rc == 0) rc = insert_session(tx, ORG_A, "bad-severity", T0 - 10, "[]", 1);
  if (rc == 0) rc = insert_session(tx, ORG_A, "seq-zero", T0 - 10, "[]", 1);
  if (rc == 0) rc = insert_session(tx, ORG_A, "no-events", T0 - 10, "[]", 0);
  return rc;
}

struct verify_job {
  const struct org_scope *scope;
  const char *session;
  struct telemetry_verify v;
};

static int verify_fn(struct store_tx *tx, void *arg) {
  struct verify_job *j = arg;
  return store_telemetry_session_verify(tx, j->scope, j->session, &j->v);
}

static struct telemetry_verify verify(const struct org_scope *scope, const char *session,
                                      int want_rc) {
  struct verify_job j = {.scope = scope, .session = session};
  assert_int_equal(store_read(store, verify_fn, &j), want_rc);
  return j.v;
}

static void test_verify_unreadable_rows(void **state) {
  (void)state;
  assert_int_equal(store_write(store, damaged_fn, NULL), 0);
  struct telemetry_verify v = verify(&org_a, "malformed", 0);
  assert_false(v.valid);
  assert_string_equal(v.reason, "malformed_event");
  assert_int_equal(v.failed_at_index, 0);
  v = verify(&org_a, "bad-severity", 0);
  assert_string_equal(v.reason, "malformed_event");
  v = verify(&org_a, "seq-zero", 0);
  assert_string_equal(v.reason, "seq_mismatch");
  assert_int_equal(v.events, 1);
  v = verify(&org_a, "no-events", 0);
  assert_true(v.valid);
  assert_int_equal(v.events, 0);
  assert_null(v.reason);
  verify(&org_a, "nobody", KEEL_ENOTFOUND);
  verify(&org_b, "malformed", KEEL_ENOTFOUND); /* another org's session */
}

/* --- scoping -------------------------------------------------------------------- */

static int noop_event(const struct telemetry_event *e, void *arg) {
  (void)e;
  (*(int *)arg)++;
  return 0;
}

struct get_job {
  const struct org_scope *scope;
  const char *id;
  int calls;
};

static int get_fn(struct store_tx *tx, void *arg) {
  struct get_job *j = arg;
  return store_telemetry_event_get(tx, j->scope, j->id, noop_event, &j->calls);
}

static void test_rows_stay_in_their_org(void **state) {
  (void)state;
  struct get_job j = {.scope = &org_a, .id = "bulk-00001"};
  assert_int_equal(store_read(store, get_fn, &j), 0);
  assert_int_equal(j.calls, 1);
  j = (struct get_job){.scope = &org_b, .id = "bulk-00001"};
  assert_int_equal(store_read(store, get_fn, &j), KEEL_ENOTFOUND);
  assert_int_equal(j.calls, 0);
  struct list_job l = {.scope = &org_b, .page = {.limit = 50}};
  assert_int_equal(store_read(store, list_fn, &l), 0);
  assert_int_equal(l.page.rows, 0);
  assert_false(l.page.more);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_budget_leaves_short_pages),
      cmocka_unit_test(test_tags_match_exactly),
      cmocka_unit_test(test_verify_unreadable_rows),
      cmocka_unit_test(test_rows_stay_in_their_org),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
