/*
 * test_store_deadletters.c — the dead-letter rows (store/deadletters.h):
 * put, list order and pages (ties on received_at broken by id), org
 * isolation of get / delete / record_failure, the platform-wide expiry in
 * chunks (strictly older than the cutoff) and the count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/limits.h"
#include "store/deadletters.h"
#include "store/store.h"

#define T0 INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */

static char dir[256];
static struct store *store;
static const struct org_scope org_a = {.org_id = "org-a"};
static const struct org_scope org_b = {.org_id = "org-b"};

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-store-deadletters-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char err[256];
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  return store_open(&o, &store, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  store_close(store);
  store = NULL;
  char path[512];
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

/* --- helpers ----------------------------------------------------------- */

struct put_job {
  const struct org_scope *scope;
  int64_t received_at;
  const char *event_id;
  const char *api_key_id;
  char id[ID_STR_SIZE];
};

static int put_tx(struct store_tx *tx, void *arg) {
  struct put_job *j = arg;
  char payload[128];
  snprintf(payload, sizeof(payload), "{\"id\":\"%s\"}", j->event_id);
  struct dead_letter_in in = {.event_id = j->event_id,
                              .session_id = "s1",
                              .type = "custom",
                              .api_key_id = j->api_key_id,
                              .received_at = j->received_at,
                              .error = "the store failed while writing the event",
                              .payload = payload,
                              .payload_len = strlen(payload)};
  return store_dead_letter_put(tx, j->scope, &in, j->id);
}

/* Puts one row; its id into id_out (may be NULL). */
static void put(const struct org_scope *scope, int64_t received_at, const char *event_id,
                char *id_out) {
  struct put_job j = {.scope = scope, .received_at = received_at, .event_id = event_id};
  assert_int_equal(store_write(store, put_tx, &j), 0);
  if (id_out) memcpy(id_out, j.id, ID_STR_SIZE);
}

#define LIST_MAX 64

struct list_job {
  const struct org_scope *scope;
  const struct dead_letter_pos *after;
  int64_t limit;
  size_t n;
  struct dead_letter_pos pos[LIST_MAX];
  char event_ids[LIST_MAX][LIMIT_EVENT_ID_MAX + 1];
};

static int list_row(const struct dead_letter_row *r, void *arg) {
  struct list_job *j = arg;
  assert_true(j->n < LIST_MAX);
  j->pos[j->n].received_at = r->received_at;
  memcpy(j->pos[j->n].id, r->id, ID_STR_SIZE);
  snprintf(j->event_ids[j->n], sizeof(j->event_ids[0]), "%s", r->event_id);
  /* The payload is borrowed for the call. */
  assert_non_null(r->payload);
  assert_true(r->payload_len > 0 && strstr(r->payload, r->event_id) != NULL);
  j->n++;
  return 0;
}

static int list_tx(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  return store_dead_letters_list(tx, j->scope, j->after, j->limit, list_row, j);
}

static void list(struct list_job *j) {
  j->n = 0;
  assert_int_equal(store_read(store, list_tx, j), 0);
}

struct count_job {
  int64_t count;
};

static int count_tx(struct store_tx *tx, void *arg) {
  return store_dead_letters_count(tx, &((struct count_job *)arg)->count);
}

static int64_t count_all(void) {
  struct count_job j = {0};
  assert_int_equal(store_read(store, count_tx, &j), 0);
  return j.count;
}

struct expire_job {
  int64_t cutoff, max, deleted;
};

static int expire_tx(struct store_tx *tx, void *arg) {
  struct expire_job *j = arg;
  return store_dead_letters_expire(tx, j->cutoff, j->max, &j->deleted);
}

static int64_t expire(int64_t cutoff, int64_t max) {
  struct expire_job j = {.cutoff = cutoff, .max = max};
  assert_int_equal(store_write(store, expire_tx, &j), 0);
  return j.deleted;
}

struct row_job {
  const struct org_scope *scope;
  const char *id;
  struct dead_letter_row row;
  struct buf *payload;
  const char *error;
  int64_t at;
};

static int get_tx(struct store_tx *tx, void *arg) {
  struct row_job *j = arg;
  return store_dead_letter_get(tx, j->scope, j->id, &j->row, j->payload);
}

static int delete_tx(struct store_tx *tx, void *arg) {
  struct row_job *j = arg;
  return store_dead_letter_delete(tx, j->scope, j->id);
}

static int failure_tx(struct store_tx *tx, void *arg) {
  struct row_job *j = arg;
  return store_dead_letter_record_failure(tx, j->scope, j->id, j->error, j->at);
}

/* Deletes every row (between tests). */
static void clear(void) {
  expire(INT64_MAX, 1000000);
  assert_int_equal(count_all(), 0);
}

/* --- tests ----------------------------------------------------------------- */

static void test_list_order_and_pages(void **state) {
  (void)state;
  clear();
  /* Three at T0 (one batch: one received time), two later, one in org b. */
  put(&org_a, T0, "e1", NULL);
  put(&org_a, T0, "e2", NULL);
  put(&org_a, T0, "e3", NULL);
  put(&org_a, T0 + 5, "e4", NULL);
  put(&org_a, T0 + 9, "e5", NULL);
  put(&org_b, T0 + 7, "b1", NULL);

  struct list_job all = {.scope = &org_a, .limit = 100};
  list(&all);
  assert_int_equal(all.n, 5);
  assert_string_equal(all.event_ids[0], "e5");
  assert_string_equal(all.event_ids[1], "e4");
  for (size_t i = 1; i < all.n; i++) {
    const struct dead_letter_pos *p = &all.pos[i - 1], *q = &all.pos[i];
    assert_true(p->received_at > q->received_at ||
                (p->received_at == q->received_at && strcmp(p->id, q->id) > 0));
  }
  /* Pages of two, each starting after the last row of the one before,
   * walk the same rows. */
  struct dead_letter_pos after;
  size_t seen = 0;
  for (int page = 0; page < 4; page++) {
    struct list_job j = {.scope = &org_a, .after = page ? &after : NULL, .limit = 2};
    list(&j);
    for (size_t i = 0; i < j.n; i++) {
      assert_string_equal(j.pos[i].id, all.pos[seen + i].id);
    }
    seen += j.n;
    if (j.n < 2) break;
    after = j.pos[j.n - 1];
  }
  assert_int_equal(seen, 5);

  struct list_job b = {.scope = &org_b, .limit = 100};
  list(&b);
  assert_int_equal(b.n, 1);
  assert_string_equal(b.event_ids[0], "b1");
  assert_int_equal(count_all(), 6);
}

static void test_get_delete_failure_are_org_scoped(void **state) {
  (void)state;
  clear();
  char id[ID_STR_SIZE];
  struct put_job pj = {.scope = &org_a, .received_at = T0, .event_id = "ev-1", .api_key_id = "k1"};
  assert_int_equal(store_write(store, put_tx, &pj), 0);
  memcpy(id, pj.id, sizeof(id));

  struct buf payload;
  buf_init(&payload, LIMIT_EVENT_CANONICAL_MAX);
  struct row_job g = {.scope = &org_a, .id = id, .payload = &payload};
  assert_int_equal(store_read(store, get_tx, &g), 0);
  assert_string_equal(g.row.id, id);
  assert_string_equal(g.row.event_id, "ev-1");
  assert_string_equal(g.row.session_id, "s1");
  assert_string_equal(g.row.type, "custom");
  assert_string_equal(g.row.api_key_id, "k1");
  assert_int_equal(g.row.received_at, T0);
  assert_int_equal(g.row.attempts, 1);
  assert_null(g.row.payload);
  assert_int_equal(payload.len, strlen("{\"id\":\"ev-1\"}"));
  assert_memory_equal(payload.data, "{\"id\":\"ev-1\"}", payload.len);

  /* Another org sees nothing and changes nothing. */
  struct row_job other = {.scope = &org_b, .id = id, .error = "x", .at = T0};
  assert_int_equal(store_read(store, get_tx, &other), KEEL_ENOTFOUND);
  assert_int_equal(store_write(store, failure_tx, &other), KEEL_ENOTFOUND);
  assert_int_equal(store_write(store, delete_tx, &other), KEEL_ENOTFOUND);

  struct row_job f = {.scope = &org_a, .id = id, .error = "replay failed", .at = T0 + 42};
  assert_int_equal(store_write(store, failure_tx, &f), 0);
  assert_int_equal(store_write(store, failure_tx, &f), 0);
  struct row_job g2 = {.scope = &org_a, .id = id};
  assert_int_equal(store_read(store, get_tx, &g2), 0);
  assert_int_equal(g2.row.attempts, 3);
  assert_int_equal(g2.row.failed_at, T0 + 42);
  assert_string_equal(g2.row.error, "replay failed");

  struct row_job d = {.scope = &org_a, .id = id};
  assert_int_equal(store_write(store, delete_tx, &d), 0);
  assert_int_equal(store_write(store, delete_tx, &d), KEEL_ENOTFOUND);
  assert_int_equal(store_read(store, get_tx, &d), KEEL_ENOTFOUND);
  buf_free(&payload);
}

static void test_expire_in_chunks(void **state) {
  (void)state;
  clear();
  for (int i = 0; i < 7; i++) {
    char ev[16];
    snprintf(ev, sizeof(ev), "old-%d", i);
    put(i % 2 ? &org_a : &org_b, T0 + i, ev, NULL);
  }
  put(&org_a, T0 + 100, "young", NULL);
  /* The cutoff is strict: a row received at it stays. */
  put(&org_b, T0 + 100, "at-cutoff", NULL);
  assert_int_equal(count_all(), 9);
  assert_int_equal(expire(T0 + 100, 3), 3);
  assert_int_equal(expire(T0 + 100, 3), 3);
  assert_int_equal(expire(T0 + 100, 3), 1);
  assert_int_equal(expire(T0 + 100, 3), 0);
  assert_int_equal(count_all(), 2);
  struct list_job a = {.scope = &org_a, .limit = 10};
  list(&a);
  assert_int_equal(a.n, 1);
  assert_string_equal(a.event_ids[0], "young");
  struct list_job b = {.scope = &org_b, .limit = 10};
  list(&b);
  assert_int_equal(b.n, 1);
  assert_string_equal(b.event_ids[0], "at-cutoff");
  assert_int_equal(expire(T0 + 101, 100), 2);
  assert_int_equal(count_all(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_list_order_and_pages),
      cmocka_unit_test(test_get_delete_failure_are_org_scoped),
      cmocka_unit_test(test_expire_in_chunks),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
