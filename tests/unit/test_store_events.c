/*
 * test_store_events.c — store_events_append (dedup, chain links, session
 * rows) and store_write_async (callbacks once, after the commit; a failing
 * job rolled back alone within its group).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/limits.h"
#include "core/slice.h"
#include "core/xmalloc.h"
#include "domain/events.h"
#include "domain/pricing.h"
#include "store/db.h"
#include "store/events.h"
#include "store/store.h"

#define RECEIVED_US INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */

static char dir[256];
static struct store *store;
static const struct org_scope org_a = {.org_id = "01a20000-0000-7000-8000-00000000000a"};
static const struct org_scope org_b = {.org_id = "01a20000-0000-7000-8000-00000000000b"};

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-store-events-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char err[256];
  if (pricing_load(NULL, err, sizeof(err)) != 0) return -1;
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  if (store_open(&o, &store, err, sizeof(err)) != 0) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  store_close(store);
  store = NULL;
  pricing_shutdown();
  char path[512];
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

/* --- appending a parsed batch ------------------------------------------ */

struct append_job {
  const struct org_scope *scope;
  struct ingest_batch batch;
  enum store_append_outcome outcomes[LIMIT_INGEST_BATCH_EVENTS];
  struct store_append_result res;
  bool fail_after; /* return an error after appending */
};

static int append_fn(struct store_tx *tx, void *arg) {
  struct append_job *j = arg;
  int rc = store_events_append(tx, j->scope, j->batch.events, j->batch.count, &j->res);
  if (rc == 0 && j->fail_after) rc = KEEL_EINVAL;
  return rc;
}

static void job_prepare(struct append_job *j, const struct org_scope *scope, const char *body) {
  memset(j, 0, sizeof(*j));
  j->scope = scope;
  struct events_parse_opts opts = {.entry = EVENTS_ENTRY_BATCH, .received_us = RECEIVED_US};
  if (events_parse(slice_from_cstr(body), &opts, &j->batch) != 0) fail_msg("parse: %s", body);
  if (j->batch.rejected) fail_msg("rejected: %s", j->batch.errors[0].code);
  events_enrich(&j->batch);
  j->res.outcomes = j->outcomes;
  j->res.api_key_id = "key-1";
}

static void append(const struct org_scope *scope, const char *body, size_t accepted,
                   size_t duplicates, struct append_job *out) {
  struct append_job local;
  struct append_job *j = out ? out : &local;
  job_prepare(j, scope, body);
  assert_int_equal(store_write(store, append_fn, j), 0);
  assert_int_equal(j->res.accepted, accepted);
  assert_int_equal(j->res.duplicates, duplicates);
  if (!out) events_batch_free(&j->batch);
}

/* --- reading back ------------------------------------------------------ */

struct count_q {
  const struct org_scope *scope;
  const char *session_id; /* NULL: every event of the org */
  int64_t n;
};

static int count_fn(struct store_tx *tx, void *arg) {
  struct count_q *q = arg;
  struct db_stmt *st = db_prepare(
      tx, "SELECT count(*) FROM events WHERE org_id = $1 AND ($2 IS NULL OR session_id = $2)");
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, q->scope->org_id); /* events.org_id is a compact UUID (0006) */
  db_bind_text(st, 2, q->session_id);
  if (db_step(st) != DB_ROW) return KEEL_ESTORE;
  q->n = db_col_i64(st, 0);
  return 0;
}

static int64_t count_events(const struct org_scope *scope, const char *session_id) {
  struct count_q q = {.scope = scope, .session_id = session_id};
  assert_int_equal(store_read(store, count_fn, &q), 0);
  return q.n;
}

static enum event_type type_of(const char *name) {
  for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
    if (strcmp(event_type_name((enum event_type)t), name) == 0) return (enum event_type)t;
  }
  fail_msg("type %s", name);
  return EVENT_CUSTOM;
}

static enum event_severity severity_of(const char *name) {
  for (int s = 0; s < EVENT_SEVERITY_COUNT; s++) {
    if (strcmp(event_severity_name((enum event_severity)s), name) == 0) {
      return (enum event_severity)s;
    }
  }
  fail_msg("severity %s", name);
  return EVENT_SEVERITY_INFO;
}

struct verify_q {
  const struct org_scope *scope;
  const char *session_id;
  int64_t events;
};

/* Recomputes the session's chain from its stored rows alone. */
static int verify_fn(struct store_tx *tx, void *arg) {
  struct verify_q *q = arg;
  struct db_stmt *st = db_prepare(
      tx,
      "SELECT id, session_id, agent_id, type, @us(ts), severity, data, metadata, tags, seq,"
      " hash FROM events WHERE org_id = $1 AND session_id = $2 ORDER BY seq");
  if (!st) return KEEL_ESTORE;
  db_bind_uuid(st, 1, q->scope->org_id);
  db_bind_text(st, 2, q->session_id);
  uint8_t head[EVENT_HASH_LEN] = {0};
  struct buf canon;
  buf_init(&canon, LIMIT_EVENT_CANONICAL_MAX);
  int rc;
  while ((rc = db_step(st)) == DB_ROW) {
    struct ingest_event e = {.valid = true, .has_timestamp = true};
    e.id = db_col_text(st, 0);
    e.session_id = db_col_text(st, 1);
    e.agent_id = db_col_text(st, 2);
    e.type = type_of(db_col_text(st, 3));
    e.timestamp_us = db_col_i64(st, 4);
    e.severity = severity_of(db_col_text(st, 5));
    e.data = json_loads(db_col_text(st, 6), 0, NULL);
    e.metadata = json_loads(db_col_text(st, 7), 0, NULL);
    e.tags = json_loads(db_col_text(st, 8), 0, NULL);
    assert_int_equal(db_col_i64(st, 9), q->events + 1);
    buf_reset(&canon);
    assert_int_equal(events_canonical(&e, &canon), 0);
    events_chain_hash(head, &canon, head); /* head: the previous event's hash */
    assert_int_equal(db_col_len(st, 10), EVENT_HASH_LEN);
    assert_memory_equal(db_col_blob(st, 10), head, EVENT_HASH_LEN);
    json_decref(e.data);
    json_decref(e.metadata);
    json_decref(e.tags);
    q->events++;
  }
  buf_free(&canon);
  if (rc < 0) return rc;
  st = db_prepare(tx, "SELECT chain_seq, chain_head FROM sessions WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, q->scope->org_id);
  db_bind_text(st, 2, q->session_id);
  if (db_step(st) != DB_ROW) return KEEL_ENOTFOUND;
  assert_int_equal(db_col_i64(st, 0), q->events);
  assert_memory_equal(db_col_blob(st, 1), head, EVENT_HASH_LEN);
  return 0;
}

static int64_t verify_chain(const struct org_scope *scope, const char *session_id) {
  struct verify_q q = {.scope = scope, .session_id = session_id};
  assert_int_equal(store_read(store, verify_fn, &q), 0);
  return q.events;
}

struct session_q {
  const struct org_scope *scope;
  const char *id;
  char status[16];
  char tags[256];
  int64_t v[14]; /* the columns of session_cols, in order */
};

enum {
  S_EVENTS,
  S_TOOLS,
  S_ERRORS,
  S_LLM,
  S_INPUT,
  S_OUTPUT,
  S_REASONING,
  S_CACHE_READ,
  S_CACHE_WRITE,
  S_COST,
  S_STARTED,
  S_ENDED,
  S_SEQ,
  S_ENDED_NULL
};

static int session_fn(struct store_tx *tx, void *arg) {
  struct session_q *q = arg;
  struct db_stmt *st = db_prepare(
      tx,
      "SELECT event_count, tool_count, error_count, llm_count, input_tokens, output_tokens,"
      " reasoning_tokens, cache_read_tokens, cache_write_tokens, cost_nano, @us(started_at),"
      " @us(ended_at), chain_seq, ended_at IS NULL, status, tags"
      " FROM sessions WHERE org_id = $1 AND id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, q->scope->org_id);
  db_bind_text(st, 2, q->id);
  if (db_step(st) != DB_ROW) return KEEL_ENOTFOUND;
  for (int i = 0; i < 14; i++) q->v[i] = db_col_i64(st, i);
  db_col_copy(st, 14, q->status, sizeof(q->status));
  db_col_copy(st, 15, q->tags, sizeof(q->tags));
  return 0;
}

static void session_get(const struct org_scope *scope, const char *id, struct session_q *q) {
  memset(q, 0, sizeof(*q));
  q->scope = scope;
  q->id = id;
  assert_int_equal(store_read(store, session_fn, q), 0);
}

/* --- cases ------------------------------------------------------------- */

static const char batch5[] =
    "{\"events\":["
    "{\"id\":\"e1\",\"session_id\":\"s1\",\"type\":\"session_start\","
    "\"timestamp\":\"2025-12-31T23:59:00Z\",\"tags\":[\"prod\"]},"
    "{\"id\":\"e2\",\"session_id\":\"s1\",\"type\":\"tool_call\","
    "\"timestamp\":\"2025-12-31T23:59:01Z\",\"data\":{\"tool_name\":\"search\"}},"
    "{\"id\":\"e3\",\"session_id\":\"s1\",\"type\":\"custom\",\"data\":{\"x\":1.5,\"b\":[1,\"\\n\"]"
    "},"
    "\"metadata\":{\"k\":\"v\"},\"tags\":[\"prod\",\"beta\"]},"
    "{\"id\":\"e4\",\"session_id\":\"s1\",\"type\":\"agent_action\"},"
    "{\"id\":\"e5\",\"session_id\":\"s1\",\"type\":\"session_end\","
    "\"timestamp\":\"2025-12-31T23:59:30Z\"}]}";

static void test_append_then_reappend(void **state) {
  (void)state;
  struct append_job j;
  append(&org_a, batch5, 5, 0, &j);
  for (size_t i = 0; i < 5; i++) assert_int_equal(j.outcomes[i], STORE_APPEND_ACCEPTED);
  events_batch_free(&j.batch);
  assert_int_equal(verify_chain(&org_a, "s1"), 5);

  append(&org_a, batch5, 0, 5, &j);
  for (size_t i = 0; i < 5; i++) assert_int_equal(j.outcomes[i], STORE_APPEND_DUPLICATE);
  events_batch_free(&j.batch);
  assert_int_equal(count_events(&org_a, NULL), 5);
  assert_int_equal(verify_chain(&org_a, "s1"), 5);

  /* The same ids in another org are other events. */
  append(&org_b, batch5, 5, 0, NULL);
  assert_int_equal(count_events(&org_b, NULL), 5);

  struct session_q q;
  session_get(&org_a, "s1", &q);
  assert_int_equal(q.v[S_EVENTS], 5);
  assert_int_equal(q.v[S_TOOLS], 1);
  assert_int_equal(q.v[S_ERRORS], 0);
  assert_int_equal(q.v[S_SEQ], 5);
  assert_int_equal(q.v[S_STARTED], RECEIVED_US - INT64_C(60000000));
  assert_int_equal(q.v[S_ENDED], RECEIVED_US - INT64_C(30000000));
  assert_string_equal(q.status, "completed");
  assert_string_equal(q.tags, "[\"prod\",\"beta\"]");
}

static void test_in_batch_duplicate(void **state) {
  (void)state;
  struct append_job j;
  append(&org_a,
         "{\"events\":[{\"id\":\"d1\",\"session_id\":\"s\",\"type\":\"custom\"},"
         "{\"id\":\"d2\",\"session_id\":\"s\",\"type\":\"custom\"},"
         "{\"id\":\"d1\",\"session_id\":\"other\",\"type\":\"custom\"},"
         "{\"session_id\":\"s\",\"type\":\"custom\"}]}",
         3, 1, &j);
  assert_int_equal(j.outcomes[0], STORE_APPEND_ACCEPTED);
  assert_int_equal(j.outcomes[1], STORE_APPEND_ACCEPTED);
  assert_int_equal(j.outcomes[2], STORE_APPEND_DUPLICATE);
  assert_int_equal(j.outcomes[3], STORE_APPEND_ACCEPTED); /* a generated id */
  events_batch_free(&j.batch);
  assert_int_equal(verify_chain(&org_a, "s"), 3);
  /* The duplicate created no session of its own. */
  struct session_q q = {.scope = &org_a, .id = "other"};
  assert_int_equal(store_read(store, session_fn, &q), KEEL_ENOTFOUND);
}

static void test_interleaved_sessions(void **state) {
  (void)state;
  append(&org_a,
         "{\"events\":["
         "{\"id\":\"i1\",\"session_id\":\"a\",\"type\":\"session_start\"},"
         "{\"id\":\"i2\",\"session_id\":\"b\",\"type\":\"llm_call\",\"data\":{\"model\":"
         "\"no-such-model\",\"input_tokens\":1200,\"cache_read_tokens\":1000,"
         "\"cache_write_tokens\":100,\"output_tokens\":350,\"reasoning_tokens\":100}},"
         "{\"id\":\"i3\",\"session_id\":\"a\",\"type\":\"llm_call\",\"data\":{\"model\":\"m\","
         "\"input_tokens\":10,\"output_tokens\":5,\"cost_usd\":\"0.25\"}},"
         "{\"id\":\"i4\",\"session_id\":\"b\",\"type\":\"tool_error\",\"data\":{\"tool_name\":"
         "\"t\",\"error\":\"boom\"}},"
         "{\"id\":\"i5\",\"session_id\":\"a\",\"type\":\"llm_call\",\"data\":{\"model\":\"m\","
         "\"input_tokens\":7,\"output_tokens\":3,\"cost_usd\":\"0.000000001\"}},"
         "{\"id\":\"i6\",\"session_id\":\"b\",\"type\":\"error\",\"severity\":\"critical\"}]}",
         6, 0, NULL);
  /* A second batch continues both chains. */
  append(&org_a,
         "{\"events\":[{\"id\":\"i7\",\"session_id\":\"b\",\"type\":\"session_end\"},"
         "{\"id\":\"i8\",\"session_id\":\"a\",\"type\":\"tool_call\",\"data\":{\"tool_name\":"
         "\"t\"}}]}",
         2, 0, NULL);
  assert_int_equal(verify_chain(&org_a, "a"), 4);
  assert_int_equal(verify_chain(&org_a, "b"), 4);

  struct session_q q;
  session_get(&org_a, "a", &q);
  assert_int_equal(q.v[S_EVENTS], 4);
  assert_int_equal(q.v[S_LLM], 2);
  assert_int_equal(q.v[S_TOOLS], 1);
  assert_int_equal(q.v[S_ERRORS], 0);
  assert_int_equal(q.v[S_INPUT], 17);
  assert_int_equal(q.v[S_OUTPUT], 8);
  assert_int_equal(q.v[S_COST], INT64_C(250000001)); /* client-supplied costs */
  assert_int_equal(q.v[S_ENDED_NULL], 1);
  assert_string_equal(q.status, "active");

  session_get(&org_a, "b", &q);
  assert_int_equal(q.v[S_EVENTS], 4);
  assert_int_equal(q.v[S_LLM], 1);
  assert_int_equal(q.v[S_TOOLS], 0);
  assert_int_equal(q.v[S_ERRORS], 2); /* tool_error, error */
  assert_int_equal(q.v[S_INPUT], 1200);
  assert_int_equal(q.v[S_OUTPUT], 350);
  assert_int_equal(q.v[S_REASONING], 100);
  assert_int_equal(q.v[S_CACHE_READ], 1000);
  assert_int_equal(q.v[S_CACHE_WRITE], 100);
  assert_int_equal(q.v[S_COST], 0); /* unpriced */
  assert_int_equal(q.v[S_ENDED_NULL], 0);
  assert_string_equal(q.status, "error"); /* session_end does not clear it */
}

/* --- store_write_async ------------------------------------------------- */

#define ASYNC_THREADS 4
#define ASYNC_JOBS    1000

struct async_job {
  struct append_job append;
  atomic_int calls;
  atomic_int rc;
};

static atomic_int async_done;

static void async_done_cb(void *arg, int rc) {
  struct async_job *j = arg;
  atomic_store(&j->rc, rc);
  atomic_fetch_add(&j->calls, 1);
  atomic_fetch_add(&async_done, 1);
}

struct producer {
  struct async_job *jobs;
  size_t first, count;
};

static void *producer_main(void *arg) {
  struct producer *p = arg;
  for (size_t i = p->first; i < p->first + p->count; i++) {
    if (store_write_async(store, append_fn, &p->jobs[i], async_done_cb) != 0) abort();
  }
  return NULL;
}

static void wait_done(int n) {
  for (int spins = 0; atomic_load(&async_done) < n; spins++) {
    if (spins > 60000) fail_msg("only %d of %d done", atomic_load(&async_done), n);
    usleep(1000);
  }
}

static void test_async_many(void **state) {
  (void)state;
  struct async_job *jobs = xcalloc(ASYNC_JOBS, sizeof(*jobs));
  char body[256];
  for (size_t i = 0; i < ASYNC_JOBS; i++) {
    snprintf(body, sizeof(body),
             "{\"events\":[{\"id\":\"async-%zu\",\"session_id\":\"as-%zu\",\"type\":\"custom\"}]}",
             i, i % 7);
    job_prepare(&jobs[i].append, &org_a, body);
  }
  atomic_store(&async_done, 0);
  pthread_t th[ASYNC_THREADS];
  struct producer p[ASYNC_THREADS];
  for (size_t t = 0; t < ASYNC_THREADS; t++) {
    p[t] = (struct producer){jobs, t * (ASYNC_JOBS / ASYNC_THREADS), ASYNC_JOBS / ASYNC_THREADS};
    assert_int_equal(pthread_create(&th[t], NULL, producer_main, &p[t]), 0);
  }
  for (size_t t = 0; t < ASYNC_THREADS; t++) pthread_join(th[t], NULL);
  wait_done(ASYNC_JOBS);
  usleep(20000); /* a second call would show up here */
  for (size_t i = 0; i < ASYNC_JOBS; i++) {
    assert_int_equal(atomic_load(&jobs[i].calls), 1);
    assert_int_equal(atomic_load(&jobs[i].rc), 0);
    assert_int_equal(jobs[i].append.res.accepted, 1);
    events_batch_free(&jobs[i].append.batch);
  }
  xfree(jobs);
  assert_int_equal(store_write_queue_depth(store), 0);
  assert_int_equal(count_events(&org_a, NULL), ASYNC_JOBS);
  int64_t total = 0;
  char sid[16];
  for (int k = 0; k < 7; k++) {
    snprintf(sid, sizeof(sid), "as-%d", k);
    total += verify_chain(&org_a, sid);
  }
  assert_int_equal(total, ASYNC_JOBS);
}

/* Holds the writer until released, so the jobs queued meanwhile form one group. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_entered, gate_open;

static int gate_fn(struct store_tx *tx, void *arg) {
  (void)tx;
  (void)arg;
  pthread_mutex_lock(&gate_mu);
  gate_entered = true;
  pthread_cond_broadcast(&gate_cv);
  while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
  pthread_mutex_unlock(&gate_mu);
  return 0;
}

static void gate_done(void *arg, int rc) {
  (void)arg;
  (void)rc;
  atomic_fetch_add(&async_done, 1);
}

static void test_async_failing_job(void **state) {
  (void)state;
  atomic_store(&async_done, 0);
  assert_int_equal(store_write_async(store, gate_fn, NULL, gate_done), 0);
  pthread_mutex_lock(&gate_mu);
  while (!gate_entered) pthread_cond_wait(&gate_cv, &gate_mu);
  pthread_mutex_unlock(&gate_mu);

  static struct async_job jobs[3];
  const char *bodies[3] = {
      "{\"events\":[{\"id\":\"f1\",\"session_id\":\"fs\",\"type\":\"custom\"}]}",
      "{\"events\":[{\"id\":\"f2\",\"session_id\":\"fs\",\"type\":\"custom\"},"
      "{\"id\":\"f2b\",\"session_id\":\"fx\",\"type\":\"custom\"}]}",
      "{\"events\":[{\"id\":\"f3\",\"session_id\":\"fs\",\"type\":\"custom\"}]}",
  };
  for (size_t i = 0; i < 3; i++) {
    job_prepare(&jobs[i].append, &org_a, bodies[i]);
    atomic_store(&jobs[i].calls, 0);
  }
  jobs[1].append.fail_after = true;
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(store_write_async(store, append_fn, &jobs[i], async_done_cb), 0);
  }
  assert_true(store_write_queue_depth(store) >= 3);
  pthread_mutex_lock(&gate_mu);
  gate_open = true;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
  wait_done(4);

  assert_int_equal(atomic_load(&jobs[0].rc), 0);
  assert_int_equal(atomic_load(&jobs[1].rc), KEEL_EINVAL);
  assert_int_equal(atomic_load(&jobs[2].rc), 0);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(atomic_load(&jobs[i].calls), 1);
    events_batch_free(&jobs[i].append.batch);
  }
  assert_int_equal(count_events(&org_a, "fs"), 2);
  assert_int_equal(count_events(&org_a, "fx"), 0);
  assert_int_equal(verify_chain(&org_a, "fs"), 2); /* f1 then f3, no gap */
  struct session_q q = {.scope = &org_a, .id = "fx"};
  assert_int_equal(store_read(store, session_fn, &q), KEEL_ENOTFOUND);
}

/* Queued async jobs are drained by store_close, their callbacks called. */
static int drain_fn(struct store_tx *tx, void *arg) {
  (void)tx;
  (void)arg;
  return 0;
}

static void test_async_drained_on_close(void **state) {
  (void)state;
  atomic_store(&async_done, 0);
  for (int i = 0; i < 50; i++) {
    assert_int_equal(store_write_async(store, drain_fn, NULL, gate_done), 0);
  }
  store_close(store);
  store = NULL;
  assert_int_equal(atomic_load(&async_done), 50);
  char err[256];
  struct store_options o = {.data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024};
  assert_int_equal(store_open(&o, &store, err, sizeof(err)), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_append_then_reappend, setup, teardown),
      cmocka_unit_test_setup_teardown(test_in_batch_duplicate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_interleaved_sessions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_many, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_failing_job, setup, teardown),
      cmocka_unit_test_setup_teardown(test_async_drained_on_close, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
