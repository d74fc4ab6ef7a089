/*
 * ingest.c — POST /v1/events and /v1/events/batch: the ingestion pipeline
 * (docs/events.md is the contract, docs/internals/ingest.md the design).
 *
 * A request's life:
 *  1. worker thread: backpressure check, events_parse (validation), the
 *     quota decision (api/usage.h: a reservation, or 402, or the events past
 *     the boundary refused one by one), events_enrich, the per-event errors
 *     rendered to JSON; the batch goes
 *     to the store writer with store_write_async and the handler returns
 *     API_DEFERRED (the connection stays suspended);
 *  2. writer thread, inside its group transaction: store_events_append
 *     (dedup, chain, pricing, session rows) for the whole batch in one
 *     SAVEPOINT;
 *  3. writer thread, after the group's COMMIT: append_done settles the
 *     quota reservation with the events accepted, writes the 202 answer
 *     into the request and resumes it.
 * If the batch's append fails, a second job appends its events one at a
 * time, each in its own SAVEPOINT, and writes every event that still fails
 * to the dead-letter table; the answer then counts them as dead_lettered.
 * Only when even that fails is the request answered 503 (nothing stored).
 */
#include "api/ingest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/deadletters.h"
#include "api/usage.h"
#include "core/arena.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/apikeys.h"
#include "domain/events.h"
#include "store/db.h"
#include "store/deadletters.h"
#include "store/events.h"

struct ingest_job;

struct ingest {
  struct api *api;
  atomic_llong pending_events; /* valid events handed to the writer, not yet done */
  atomic_bool closing;
  pthread_mutex_t mu; /* jobs_inflight, the drain's wait, the hold list */
  pthread_cond_t idle_cv;
  long jobs_inflight;

  /* Counters for /metrics. */
  atomic_ullong accepted, duplicates, rejected, dead_lettered, refused_overload, batches;

  /* Test hooks (POST /v1/dev/ingest, --dev only). */
  bool hold;                    /* park batches instead of handing them to the writer */
  struct ingest_job *held_head; /* under mu */
  atomic_uint fail_events;      /* the next n event appends fail (dead letters) */
};

struct ingest_job {
  struct ingest *in;
  struct ctx *ctx;
  struct ingest_batch batch;
  struct org_scope scope;
  const char *api_key_id; /* NULL or key_id below */
  char key_id[ID_STR_SIZE];
  bool single;
  size_t nvalid;
  enum store_append_outcome *outcomes; /* batch.count entries */
  struct store_append_result res;
  char *errors_json;         /* the per-event validation errors, rendered; xmalloc'd */
  size_t dead;               /* events written to the dead-letter table */
  bool *dead_at;             /* batch.count entries: which ones (pass 2 only) */
  struct usage_ticket quota; /* the quota reservation, settled once the batch is done */
  struct ingest_job *held_next;
};

struct ingest *ingest_start(struct api *api) {
  struct ingest *in = xcalloc(1, sizeof(*in));
  in->api = api;
  pthread_mutex_init(&in->mu, NULL);
  pthread_cond_init(&in->idle_cv, NULL);
  return in;
}

void ingest_stop(struct ingest *in) {
  if (!in) return;
  pthread_cond_destroy(&in->idle_cv);
  pthread_mutex_destroy(&in->mu);
  xfree(in);
}

int64_t ingest_pending_events(const struct ingest *in) {
  return in ? atomic_load(&((struct ingest *)in)->pending_events) : 0;
}

static void job_free(struct ingest_job *job) {
  events_batch_free(&job->batch);
  xfree(job->outcomes);
  xfree(job->dead_at);
  xfree(job->errors_json);
  xfree(job);
}

/* --- the writer side ---------------------------------------------------- */

/* Test hook: consumes one armed failure. */
static bool fail_one(struct ingest *in) {
  unsigned f = atomic_load(&in->fail_events);
  while (f > 0 && !atomic_compare_exchange_weak(&in->fail_events, &f, f - 1)) {
  }
  return f > 0;
}

/* Pass 1: the whole batch in the job's SAVEPOINT. */
static int append_fn(struct store_tx *tx, void *arg) {
  struct ingest_job *job = arg;
  if (atomic_load(&job->in->fail_events) > 0) return KEEL_ESTORE; /* to pass 2 */
  job->res = (struct store_append_result){.api_key_id = job->api_key_id, .outcomes = job->outcomes};
  return store_events_append(tx, &job->scope, job->batch.events, job->batch.count, &job->res);
}

/* Pass 2: one event at a time; those that fail become dead letters. */
static int retry_fn(struct store_tx *tx, void *arg) {
  struct ingest_job *job = arg;
  struct ingest_batch *b = &job->batch;
  job->res.accepted = job->res.duplicates = 0;
  job->dead = 0;
  struct buf canon;
  buf_init(&canon, LIMIT_EVENT_CANONICAL_MAX);
  int rc = 0;
  for (size_t i = 0; i < b->count && rc == 0; i++) {
    struct ingest_event *e = &b->events[i];
    job->dead_at[i] = false;
    if (!e->valid) continue;
    if ((rc = db_exec(tx, "SAVEPOINT ingest_event")) != 0) break;
    struct store_append_result r1 = {.api_key_id = job->api_key_id, .outcomes = &job->outcomes[i]};
    int arc = fail_one(job->in) ? KEEL_ESTORE : store_events_append(tx, &job->scope, e, 1, &r1);
    if (arc == 0) {
      rc = db_exec(tx, "RELEASE ingest_event");
      job->res.accepted += r1.accepted;
      job->res.duplicates += r1.duplicates;
      continue;
    }
    if ((rc = db_exec(tx, "ROLLBACK TO ingest_event")) != 0) break;
    if ((rc = db_exec(tx, "RELEASE ingest_event")) != 0) break;
    buf_reset(&canon);
    if (e->prepared ? buf_append(&canon, e->canon, e->canon_len) : events_canonical(e, &canon)) {
      rc = KEEL_EINTERNAL; /* validated events always have a canonical form */
      break;
    }
    const char *error = arc == KEEL_ESTORE   ? "the store failed while writing the event"
                        : arc == KEEL_EINVAL ? "the event has no canonical form"
                                             : "the event could not be stored";
    struct dead_letter_in dl = {
        .event_id = e->id,
        .session_id = e->session_id,
        .type = event_type_name(e->type),
        .api_key_id = job->api_key_id,
        .received_at = e->received_us,
        .error = error,
        .payload = canon.data,
        .payload_len = canon.len,
    };
    rc = store_dead_letter_put(tx, &job->scope, &dl, NULL);
    if (rc == 0) {
      job->dead_at[i] = true;
      job->dead++;
    }
  }
  buf_free(&canon);
  return rc;
}

/* The job's last step on the writer: the job itself (the parsed batch) is
 * freed with the request's arena, on the I/O thread, once the answer is
 * sent — not here, where every microsecond holds up the next group. */
static void job_finished(struct ingest *in, struct ingest_job *job, size_t accepted) {
  /* Only accepted (stored) events count: duplicates and a failed batch give
   * their share of the reservation back. */
  usage_settle(api_usage(in->api), &job->scope, &job->quota, (int64_t)accepted);
  atomic_fetch_sub(&in->pending_events, (long long)job->nvalid);
  pthread_mutex_lock(&in->mu);
  if (--in->jobs_inflight == 0) pthread_cond_broadcast(&in->idle_cv);
  pthread_mutex_unlock(&in->mu);
  ctx_resume(job->ctx); /* last: the request, and the job with it, may go at once */
}

static void job_release(void *arg) {
  job_free(arg);
}

/* The 202 answer, formatted without a JSON library: the counts, the
 * pre-rendered errors, and the request id (a checked token). */
static void answer_accepted(struct ingest_job *job, const char *errors_json) {
  struct ingest *in = job->in;
  struct ctx *ctx = job->ctx;
  struct http_req *req = ctx->req;
  atomic_fetch_add(&in->accepted, job->res.accepted);
  atomic_fetch_add(&in->duplicates, job->res.duplicates);
  atomic_fetch_add(&in->rejected, job->batch.rejected);
  atomic_fetch_add(&in->dead_lettered, job->dead);
  buf_reset(&req->resp_body);
  int rc = buf_printf(&req->resp_body, "{\"accepted\":%zu,\"duplicates\":%zu,\"rejected\":%zu,",
                      job->res.accepted, job->res.duplicates, job->batch.rejected);
  if (job->dead) rc |= buf_printf(&req->resp_body, "\"dead_lettered\":%zu,", job->dead);
  if (job->single && job->batch.count == 1 && job->batch.events[0].id) {
    rc |= buf_printf(&req->resp_body, "\"id\":\"%s\",", job->batch.events[0].id);
  }
  rc |= buf_printf(&req->resp_body, "\"errors\":%s,\"request_id\":\"%s\"}", errors_json,
                   ctx->request_id);
  if (rc) {
    api_problem(ctx, "internal_error", "the answer does not fit in a response");
    return;
  }
  req->status = 202;
  req->content_type = "application/json";
}

static void retry_done(void *arg, int rc) {
  struct ingest_job *job = arg;
  struct ingest *in = job->in;
  if (rc != 0) {
    log_error("ingest.store_failed", LS("status", keel_strerror(rc)),
              LI("events", (int64_t)job->nvalid), LS("org_id", job->scope.org_id));
    http_resp_header(job->ctx->req, "Retry-After", "1");
    api_problem(job->ctx, "service_unavailable",
                "the events could not be stored; nothing was stored, retry the request");
    job_finished(in, job, 0);
    return;
  }
  if (job->dead) {
    deadletters_adjust(api_deadletters(in->api), (int64_t)job->dead);
    log_warn("ingest.dead_lettered", LI("events", (int64_t)job->dead),
             LS("org_id", job->scope.org_id));
  }
  /* The validation errors and one entry per dead letter, in body order. */
  json_t *errors = json_loadb(job->errors_json, strlen(job->errors_json), 0, NULL);
  if (!json_is_array(errors)) {
    json_decref(errors);
    errors = json_array();
  }
  for (size_t i = 0; i < job->batch.count; i++) {
    if (!job->dead_at[i]) continue;
    char field[32] = "";
    if (!job->single) snprintf(field, sizeof(field), "events[%zu]", i);
    json_array_append_new(errors, json_pack("{s:I, s:s, s:s, s:s}", "index", (json_int_t)i, "code",
                                            "dead_lettered", "field", field, "message",
                                            "valid, but could not be stored: kept as a dead "
                                            "letter for replay"));
  }
  char *text = json_dumps(errors, JSON_COMPACT);
  json_decref(errors);
  answer_accepted(job, text ? text : "[]");
  xfree(text); /* jansson allocates with xmalloc (app_init) */
  job_finished(in, job, job->res.accepted);
}

static void append_done(void *arg, int rc) {
  struct ingest_job *job = arg;
  struct ingest *in = job->in;
  if (rc == 0) {
    answer_accepted(job, job->errors_json);
    job_finished(in, job, job->res.accepted);
    return;
  }
  /* The batch failed as a whole: try its events one by one. */
  if (!job->dead_at) job->dead_at = xcalloc(job->batch.count, sizeof(*job->dead_at));
  if (store_write_async(api_store(in->api), retry_fn, job, retry_done) != 0) retry_done(job, rc);
}

/* --- the handler side --------------------------------------------------- */

/* Hands the job to the writer (or parks it: test hook). */
static int submit(struct ingest *in, struct ingest_job *job) {
  pthread_mutex_lock(&in->mu);
  in->jobs_inflight++;
  if (in->hold) {
    job->held_next = in->held_head;
    in->held_head = job;
    pthread_mutex_unlock(&in->mu);
    return 0;
  }
  pthread_mutex_unlock(&in->mu);
  int rc = store_write_async(api_store(in->api), append_fn, job, append_done);
  if (rc != 0) {
    pthread_mutex_lock(&in->mu);
    if (--in->jobs_inflight == 0) pthread_cond_broadcast(&in->idle_cv);
    pthread_mutex_unlock(&in->mu);
  }
  return rc;
}

static int overloaded(struct ctx *ctx, struct ingest *in) {
  atomic_fetch_add(&in->refused_overload, 1);
  http_resp_header(ctx->req, "Retry-After", "1");
  return api_problem(ctx, "overloaded",
                     "too many events are waiting to be stored; retry in a second");
}

/* Renders the per-event errors as the answer's "errors" array, in body
 * order: the validation errors, and one entry per event the quota refused
 * (refused[i], NULL when none, with code quota_code). */
static char *render_errors(const struct ingest_batch *b, const bool *refused,
                           const char *quota_code) {
  if (b->error_count == 0 && !refused) return xstrdup("[]");
  json_t *arr = json_array();
  size_t k = 0;
  for (size_t i = 0; i < b->count || k < b->error_count; i++) {
    for (; k < b->error_count && b->errors[k].index <= i; k++) {
      const struct ingest_error *e = &b->errors[k];
      json_array_append_new(
          arr, json_pack("{s:I, s:s, s:s, s:s}", "index", (json_int_t)e->index, "code", e->code,
                         "field", e->field, "message", e->message));
    }
    if (refused && i < b->count && refused[i]) {
      char field[32];
      snprintf(field, sizeof(field), "events[%zu]", i);
      json_array_append_new(
          arr, json_pack("{s:I, s:s, s:s, s:s}", "index", (json_int_t)i, "code", quota_code,
                         "field", field, "message",
                         strcmp(quota_code, "overage_cap_reached") == 0
                             ? "valid, but past the plan's overage cap for this period: not stored"
                             : "valid, but past the plan's event quota for this period: not "
                               "stored"));
    }
  }
  char *text = json_dumps(arr, JSON_COMPACT);
  json_decref(arr);
  char *out = xstrdup(text ? text : "[]");
  xfree(text);
  return out;
}

/* The quota decision (api/usage.h) for the batch's valid events: 0 to go
 * on (the events past the boundary, if any, are marked rejected and
 * *refused says which), or 1 when the answer is set (402). */
static int apply_quota(struct ctx *ctx, struct ingest_job *job, bool **refused, const char **code) {
  struct ingest_batch *b = &job->batch;
  int64_t admitted = 0;
  *refused = NULL;
  enum usage_admit_result r = usage_admit(ctx, b->received_us, (int64_t)(b->count - b->rejected),
                                          &admitted, code, &job->quota);
  if (r == USAGE_ADMIT_REFUSED) return 1;
  if (r == USAGE_ADMIT_ALL) return 0;
  /* A batch across the boundary: the first `admitted` valid events go on,
   * the rest are refused here, before the queue, and never stored. */
  *refused = arena_alloc(ctx->arena, b->count * sizeof(**refused));
  memset(*refused, 0, b->count * sizeof(**refused));
  for (size_t i = 0; i < b->count; i++) {
    if (!b->events[i].valid) continue;
    if (admitted > 0) {
      admitted--;
      continue;
    }
    b->events[i].valid = false;
    b->rejected++;
    (*refused)[i] = true;
  }
  return 0;
}

static int refuse_body(struct ctx *ctx, int rc, struct ingest_batch *b) {
  if (rc == KEEL_ETOOBIG) return api_problem(ctx, "payload_too_large", b->problem_detail);
  if (b->problem && strcmp(b->problem, "validation_failed") == 0) {
    return api_validation(ctx, &b->body_errors);
  }
  return api_problem(ctx, "invalid_json", b->problem_detail[0] ? b->problem_detail : NULL);
}

/* POST /v1/events (single event) with one invalid event: 400 with its
 * errors, paths relative to the event. */
static int refuse_single(struct ctx *ctx, const struct ingest_batch *b) {
  struct field_errors fe = {0};
  for (size_t i = 0; i < b->error_count; i++) {
    field_errors_add(&fe, b->errors[i].field, b->errors[i].code, b->errors[i].message);
  }
  return api_validation(ctx, &fe);
}

static int ingest(struct ctx *ctx, enum events_entry entry) {
  struct ingest *in = api_ingest(ctx->api);
  const struct config *cfg = api_config(ctx->api);
  if (atomic_load(&in->closing)) {
    http_resp_header(ctx->req, "Retry-After", "1");
    return api_problem(ctx, "service_unavailable", "the server is shutting down");
  }
  /* Backpressure before any work: the queue is the writer's backlog. */
  if (atomic_load(&in->pending_events) >= cfg->ingest_queue_max) return overloaded(ctx, in);

  struct ingest_job *job = xcalloc(1, sizeof(*job));
  arena_on_cleanup(ctx->arena, job_release, job);
  job->in = in;
  job->ctx = ctx;
  job->single = entry == EVENTS_ENTRY_SINGLE;
  struct events_parse_opts o = {
      .entry = entry, .received_us = time_now_us(), .body_max = (size_t)cfg->http_ingest_body_max};
  int rc = events_parse(buf_slice(&ctx->req->body), &o, &job->batch);
  if (rc != 0) {
    return refuse_body(ctx, rc, &job->batch);
  }
  struct ingest_batch *b = &job->batch;
  if (job->single && b->rejected) {
    atomic_fetch_add(&in->rejected, 1);
    return refuse_single(ctx, b);
  }
  /* The quota before any further work: a refused batch costs no more. */
  job->scope = ctx->scope;
  bool *quota_refused = NULL;
  const char *quota_code = NULL;
  if (b->count > b->rejected && apply_quota(ctx, job, &quota_refused, &quota_code)) return 0;
  events_enrich(b);
  events_prepare(b, ctx->scope.org_id); /* canonical forms and costs, off the writer */
  job->nvalid = b->count - b->rejected;
  job->errors_json = render_errors(b, quota_refused, quota_code);
  if (ctx->actor == ACTOR_KEY) {
    memcpy(job->key_id, ctx->key.id, sizeof(job->key_id));
    job->api_key_id = job->key_id;
  }
  atomic_fetch_add(&in->batches, 1);
  if (job->nvalid == 0) {
    /* Every event was rejected: nothing to store, answer at once. */
    answer_accepted(job, job->errors_json);
    return 0;
  }
  job->outcomes = xcalloc(b->count, sizeof(*job->outcomes));
  atomic_fetch_add(&in->pending_events, (long long)job->nvalid);
  if (submit(in, job) != 0) {
    usage_settle(api_usage(in->api), &job->scope, &job->quota, 0);
    atomic_fetch_sub(&in->pending_events, (long long)job->nvalid);
    http_resp_header(ctx->req, "Retry-After", "1");
    return api_problem(ctx, "service_unavailable", "the server is shutting down");
  }
  return API_DEFERRED; /* ctx belongs to the writer's callback now */
}

static int h_ingest_batch(struct ctx *ctx) {
  return ingest(ctx, EVENTS_ENTRY_BATCH);
}

static int h_ingest_single(struct ctx *ctx) {
  return ingest(ctx, EVENTS_ENTRY_SINGLE);
}

/* --- shutdown, test hooks, metrics -------------------------------------- */

/* Hands every parked batch to the writer. */
static void release_held(struct ingest *in) {
  pthread_mutex_lock(&in->mu);
  struct ingest_job *job = in->held_head;
  in->held_head = NULL;
  in->hold = false;
  pthread_mutex_unlock(&in->mu);
  while (job) {
    struct ingest_job *next = job->held_next;
    if (store_write_async(api_store(in->api), append_fn, job, append_done) != 0) {
      http_resp_header(job->ctx->req, "Retry-After", "1");
      api_problem(job->ctx, "service_unavailable", "the server is shutting down");
      job_finished(in, job, 0);
    }
    job = next;
  }
}

void ingest_drain(struct ingest *in) {
  if (!in) return;
  atomic_store(&in->closing, true);
  release_held(in);
  pthread_mutex_lock(&in->mu);
  while (in->jobs_inflight > 0) pthread_cond_wait(&in->idle_cv, &in->mu);
  pthread_mutex_unlock(&in->mu);
}

/* POST /v1/dev/ingest {hold?: bool, fail_events?: int} (--dev only):
 * hold parks batches before the writer (backpressure tests); releasing the
 * hold hands them over. fail_events makes the next n event appends fail
 * (dead-letter tests). Answers the pending count. */
static int h_dev_ingest(struct ctx *ctx) {
  struct ingest *in = api_ingest(ctx->api);
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  static const char *const allowed[] = {"hold", "fail_events"};
  json_reject_unknown(body, NULL, allowed, 2, &fe);
  bool hold = false;
  int64_t fail = 0;
  int hold_rc = json_get_bool(body, "hold", NULL, JSON_OPTIONAL, &hold, &fe);
  int fail_rc = json_get_int(body, "fail_events", NULL, JSON_OPTIONAL, 0, 1000000, &fail, &fe);
  if (fe.count) return api_validation(ctx, &fe);
  if (fail_rc == 0) atomic_store(&in->fail_events, (unsigned)fail);
  if (hold_rc == 0) {
    if (hold) {
      pthread_mutex_lock(&in->mu);
      in->hold = true;
      pthread_mutex_unlock(&in->mu);
    } else {
      release_held(in);
    }
  }
  pthread_mutex_lock(&in->mu);
  bool held = in->hold;
  pthread_mutex_unlock(&in->mu);
  return api_json(ctx, 200,
                  json_pack("{s:b, s:I, s:I}", "hold", held, "fail_events",
                            (json_int_t)atomic_load(&in->fail_events), "pending_events",
                            (json_int_t)atomic_load(&in->pending_events)));
}

int ingest_render_metrics(const struct ingest *cin, struct buf *out) {
  struct ingest *in = (struct ingest *)cin;
  if (!in) return 0;
  int rc = buf_printf(out,
                      "# HELP keel_ingest_queue_events Events waiting for the store writer.\n"
                      "# TYPE keel_ingest_queue_events gauge\n"
                      "keel_ingest_queue_events %lld\n"
                      "# HELP keel_ingest_events_total Ingested events by outcome.\n"
                      "# TYPE keel_ingest_events_total counter\n"
                      "keel_ingest_events_total{outcome=\"accepted\"} %llu\n"
                      "keel_ingest_events_total{outcome=\"duplicate\"} %llu\n"
                      "keel_ingest_events_total{outcome=\"rejected\"} %llu\n"
                      "keel_ingest_events_total{outcome=\"dead_lettered\"} %llu\n"
                      "# HELP keel_ingest_batches_total Ingestion requests that reached the "
                      "pipeline.\n"
                      "# TYPE keel_ingest_batches_total counter\n"
                      "keel_ingest_batches_total %llu\n"
                      "# HELP keel_ingest_overloaded_total Ingestion requests refused by "
                      "backpressure (503).\n"
                      "# TYPE keel_ingest_overloaded_total counter\n"
                      "keel_ingest_overloaded_total %llu\n",
                      (long long)atomic_load(&in->pending_events),
                      (unsigned long long)atomic_load(&in->accepted),
                      (unsigned long long)atomic_load(&in->duplicates),
                      (unsigned long long)atomic_load(&in->rejected),
                      (unsigned long long)atomic_load(&in->dead_lettered),
                      (unsigned long long)atomic_load(&in->batches),
                      (unsigned long long)atomic_load(&in->refused_overload));
  return rc ? -1 : 0;
}

static const struct route ingest_routes[] = {
    {.method = HTTP_POST,
     .pattern = "/v1/events/batch",
     .handler = h_ingest_batch,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_WRITE,
     .scope = SCOPE_INGEST,
     .body = ROUTE_BODY_INGEST},
    {.method = HTTP_POST,
     .pattern = "/v1/events",
     .handler = h_ingest_single,
     .auth = AUTH_ANY,
     .permission = PERM_TELEMETRY_WRITE,
     .scope = SCOPE_INGEST,
     .body = ROUTE_BODY_INGEST},
    {.method = HTTP_POST,
     .pattern = "/v1/dev/ingest",
     .handler = h_dev_ingest,
     .body = ROUTE_BODY_DEFAULT,
     .flags = ROUTE_DEV},
};

const struct route *routes_ingest(size_t *count) {
  *count = sizeof(ingest_routes) / sizeof(ingest_routes[0]);
  return ingest_routes;
}
