/*
 * deadletters.c — the dead-letters area (R-ING-6; docs/dead-letters.md):
 *
 *   GET    /v1/dead-letters              the org's dead letters, newest first, paged
 *   GET    /v1/dead-letters/{id}         one, with its event
 *   POST   /v1/dead-letters/{id}/replay  append the event again; the row goes on success
 *   DELETE /v1/dead-letters/{id}         drop it (204)
 *
 * Data-plane routes (AUTH_ANY): an API key with the admin scope, or a
 * session with data.admin (owner, admin) in the org of X-Keel-Org or the
 * active org. A foreign or unknown id is 404. Replays and deletions are
 * audited in the same write as the change; a failed replay is audited
 * (result failure) with the attempt it records.
 *
 * Also here, the area's server-wide state (api/deadletters.h): the depth
 * gauge shown by /readyz and /metrics, and the expiry job, a thread that
 * deletes rows older than LIMIT_DEAD_LETTER_TTL_US every
 * dead_letters.expiry_interval_s seconds.
 *
 * The gauge is adjusted by this process after each commit that adds or
 * removes rows (ingest.c, the handlers below, the expiry) and refreshed from
 * the store on every expiry run, which also brings in the changes of other
 * processes (the CLI, other nodes). A refresh adds (count − the gauge as it
 * was before the count was read) rather than storing the count, so an
 * adjustment made while the count is read is kept; the gauge can only be
 * off by a commit whose adjustment lands between the two reads, until the
 * next run.
 *
 * Development routes (--dev): POST /v1/dev/dead-letters/expire (a platform
 * administrator: the expiry is platform-wide) runs the expiry now;
 * POST /v1/dev/dead-letters/fail-replays {n} (as the routes above) makes
 * the org's next n replays fail as a store failure would (after the row is
 * read and the event parsed, in place of the append), so tests reach the
 * failure path deterministically. Both take credentials like any other
 * private route, so they need no exemption from the isolation suite's
 * "every route answers 401 without credentials".
 */
#include "api/deadletters.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/events.h"
#include "store/deadletters.h"
#include "store/events.h"

#define CURSOR_KIND_DEAD_LETTERS 'D'
/* Cursor payload: received_at (8 bytes, big-endian) and the id (16 bytes). */
#define CURSOR_PAYLOAD_LEN (8 + 16)
/* Rows deleted per expiry transaction: the single writer is held for a few
 * milliseconds at most, so ingestion never waits behind a large expiry. */
#define EXPIRY_CHUNK_ROWS 500

enum replay_outcome { REPLAY_ACCEPTED, REPLAY_DUPLICATE, REPLAY_FAILED, REPLAY_OUTCOMES };
static const char *const replay_outcome_names[REPLAY_OUTCOMES] = {"accepted", "duplicate",
                                                                  "failed"};

struct deadletters {
  struct api *api;
  atomic_llong depth;
  atomic_ullong expired_total;
  atomic_ullong expiry_runs_ok, expiry_runs_failed;
  atomic_ullong replays[REPLAY_OUTCOMES];
  atomic_ullong deleted_total;

  /* Test hook: the next fail_replays replays of fail_org fail (under mu). */
  char fail_org[ID_STR_SIZE];
  unsigned fail_replays;

  pthread_mutex_t run_mu; /* one expiry run at a time (the job or the dev route) */

  pthread_t job;
  bool job_started;
  int64_t interval_us;
  pthread_mutex_t mu; /* stopping (the job's wait), the test hook */
  pthread_cond_t cv;
  bool stopping;
  atomic_bool closing; /* read between expiry chunks */
};

/* --- the gauge ------------------------------------------------------------- */

struct count_job {
  int64_t count;
};

static int count_tx(struct store_tx *tx, void *arg) {
  struct count_job *j = arg;
  return store_dead_letters_count(tx, &j->count);
}

/* Brings the gauge to the store's count (see the file comment). Returns 0
 * or a store status (the gauge is then left as it was). */
static int refresh_depth(struct deadletters *d) {
  long long before = atomic_load(&d->depth);
  struct count_job j = {0};
  int rc = store_read(api_store(d->api), count_tx, &j);
  if (rc) return rc;
  atomic_fetch_add(&d->depth, (long long)j.count - before);
  return 0;
}

void deadletters_adjust(struct deadletters *d, int64_t delta) {
  if (d) atomic_fetch_add(&d->depth, (long long)delta);
}

int64_t deadletters_depth(const struct deadletters *cd) {
  if (!cd) return 0;
  long long v = atomic_load(&((struct deadletters *)cd)->depth);
  return v < 0 ? 0 : (int64_t)v; /* a transient race never shows below zero */
}

/* --- the expiry -------------------------------------------------------------- */

struct expire_job {
  int64_t cutoff_us;
  int64_t deleted;
};

static int expire_tx(struct store_tx *tx, void *arg) {
  struct expire_job *j = arg;
  return store_dead_letters_expire(tx, j->cutoff_us, EXPIRY_CHUNK_ROWS, &j->deleted);
}

/*
 * One expiry run: deletes every row received more than the TTL before now
 * (the test clock under --dev), in chunks, then refreshes the gauge.
 * *expired gets the rows deleted (also on failure: those committed).
 * Returns 0 or a store status.
 */
static int expire_run(struct deadletters *d, int64_t *expired) {
  pthread_mutex_lock(&d->run_mu);
  int64_t cutoff = time_now_us() - LIMIT_DEAD_LETTER_TTL_US;
  int64_t total = 0;
  int rc = 0;
  while (!atomic_load(&d->closing)) {
    struct expire_job j = {.cutoff_us = cutoff};
    rc = store_write(api_store(d->api), expire_tx, &j);
    if (rc) break;
    total += j.deleted;
    if (j.deleted < EXPIRY_CHUNK_ROWS) break;
  }
  if (total) {
    deadletters_adjust(d, -total);
    atomic_fetch_add(&d->expired_total, (unsigned long long)total);
  }
  int refresh_rc = refresh_depth(d);
  if (!rc) rc = refresh_rc;
  atomic_fetch_add(rc ? &d->expiry_runs_failed : &d->expiry_runs_ok, 1);
  if (total) {
    char before[RFC3339_MAX];
    time_format_rfc3339(cutoff, before);
    log_info("dead_letters.expired", LI("rows", total), LS("received_before", before),
             LI("depth", deadletters_depth(d)));
  }
  if (rc) {
    log_error("dead_letters.expiry_failed", LS("status", keel_strerror(rc)), LI("rows", total));
  }
  pthread_mutex_unlock(&d->run_mu);
  *expired = total;
  return rc;
}

static void *job_main(void *arg) {
  struct deadletters *d = arg;
  pthread_setname_np(pthread_self(), "keel-deadletter");
  pthread_mutex_lock(&d->mu);
  while (!d->stopping) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(d->interval_us / US_PER_SEC);
    /* Spurious wake-ups wait again for the rest of the interval. */
    while (!d->stopping && pthread_cond_timedwait(&d->cv, &d->mu, &until) == 0) {
    }
    if (d->stopping) break;
    pthread_mutex_unlock(&d->mu);
    int64_t expired;
    expire_run(d, &expired);
    pthread_mutex_lock(&d->mu);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

struct deadletters *deadletters_start(struct api *api) {
  struct deadletters *d = xcalloc(1, sizeof(*d));
  d->api = api;
  atomic_init(&d->depth, 0);
  atomic_init(&d->closing, false);
  pthread_mutex_init(&d->run_mu, NULL);
  pthread_mutex_init(&d->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&d->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (!api_store(api)) return d;
  int rc = refresh_depth(d);
  if (rc) log_error("dead_letters.count_failed", LS("status", keel_strerror(rc)));
  d->interval_us = api_config(api)->dead_letters_expiry_interval_s * US_PER_SEC;
  if (d->interval_us < US_PER_SEC) d->interval_us = US_PER_SEC;
  d->job_started = pthread_create(&d->job, NULL, job_main, d) == 0;
  if (!d->job_started) log_error0("dead_letters.job_start_failed");
  return d;
}

void deadletters_stop(struct deadletters *d) {
  if (!d) return;
  atomic_store(&d->closing, true);
  if (d->job_started) {
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->job, NULL); /* after a run in progress ends */
  }
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->mu);
  pthread_mutex_destroy(&d->run_mu);
  xfree(d);
}

int deadletters_render_metrics(const struct deadletters *cd, struct buf *out) {
  struct deadletters *d = (struct deadletters *)cd;
  if (!d) return 0;
  int rc = buf_printf(out,
                      "# HELP keel_dead_letters_depth Dead letters kept for replay, all orgs.\n"
                      "# TYPE keel_dead_letters_depth gauge\n"
                      "keel_dead_letters_depth %lld\n"
                      "# HELP keel_dead_letters_expired_total Dead letters deleted by the expiry "
                      "job (older than 7 days).\n"
                      "# TYPE keel_dead_letters_expired_total counter\n"
                      "keel_dead_letters_expired_total %llu\n"
                      "# HELP keel_dead_letters_expiry_runs_total Runs of the expiry job.\n"
                      "# TYPE keel_dead_letters_expiry_runs_total counter\n"
                      "keel_dead_letters_expiry_runs_total{result=\"ok\"} %llu\n"
                      "keel_dead_letters_expiry_runs_total{result=\"failed\"} %llu\n"
                      "# HELP keel_dead_letters_deleted_total Dead letters deleted by an "
                      "administrator.\n"
                      "# TYPE keel_dead_letters_deleted_total counter\n"
                      "keel_dead_letters_deleted_total %llu\n"
                      "# HELP keel_dead_letters_replays_total Replays by outcome.\n"
                      "# TYPE keel_dead_letters_replays_total counter\n",
                      (long long)deadletters_depth(d),
                      (unsigned long long)atomic_load(&d->expired_total),
                      (unsigned long long)atomic_load(&d->expiry_runs_ok),
                      (unsigned long long)atomic_load(&d->expiry_runs_failed),
                      (unsigned long long)atomic_load(&d->deleted_total));
  for (size_t i = 0; i < REPLAY_OUTCOMES; i++) {
    rc |= buf_printf(out, "keel_dead_letters_replays_total{outcome=\"%s\"} %llu\n",
                     replay_outcome_names[i], (unsigned long long)atomic_load(&d->replays[i]));
  }
  return rc ? -1 : 0;
}

/* --- rendering ----------------------------------------------------------------- */

static json_t *time_json(int64_t us) {
  char t[RFC3339_MAX];
  time_format_rfc3339(us, t);
  return json_string(t);
}

/* A string member from stored text: a JSON string, or null when the text
 * does not encode (db_col_copy keeps UTF-8 whole, so this is defensive). */
static json_t *str_or_null(const char *s) {
  json_t *j = s ? json_string(s) : NULL;
  return j ? j : json_null();
}

/* One dead letter as the API shows it; payload is its canonical JSON. */
static json_t *dead_letter_json(const struct dead_letter_row *r, const char *payload, size_t len) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(r->id));
  json_object_set_new(o, "event_id", str_or_null(r->event_id));
  json_object_set_new(o, "session_id", str_or_null(r->session_id));
  json_object_set_new(o, "type", str_or_null(r->type));
  json_object_set_new(o, "api_key_id", r->api_key_id[0] ? json_string(r->api_key_id) : json_null());
  json_object_set_new(o, "error", str_or_null(r->error));
  json_object_set_new(o, "received_at", time_json(r->received_at));
  json_object_set_new(o, "failed_at", time_json(r->failed_at));
  json_object_set_new(o, "attempts", json_integer((json_int_t)r->attempts));
  json_t *event = payload ? json_loadb(payload, len, 0, NULL) : NULL;
  json_object_set_new(o, "event", event ? event : json_null());
  return o;
}

/* The {id} parameter as canonical lower-case text, when it is a UUID; else
 * answers 404 and returns NULL. */
static const char *dead_letter_id_param(struct ctx *ctx) {
  const char *raw = ctx_param(ctx, "id");
  struct id parsed;
  if (!raw || id_parse(slice_from_cstr(raw), &parsed) != 0) {
    api_problem(ctx, "not_found", "no such dead letter");
    return NULL;
  }
  char *id = arena_alloc(ctx->arena, ID_STR_SIZE);
  id_format(&parsed, id);
  return id;
}

static struct deadletters *area(struct ctx *ctx) {
  return api_deadletters(ctx->api);
}

/* --- GET /v1/dead-letters ------------------------------------------------------- */

struct list_job {
  const struct org_scope *scope;
  const struct dead_letter_pos *after;
  int64_t limit;
  json_t *data;
  int64_t rows;
  struct dead_letter_pos last;
};

static int list_row(const struct dead_letter_row *r, void *arg) {
  struct list_job *j = arg;
  j->rows++;
  if (j->rows > j->limit) return 0; /* the look-ahead row: more exist */
  json_array_append_new(j->data, dead_letter_json(r, r->payload, r->payload_len));
  j->last.received_at = r->received_at;
  memcpy(j->last.id, r->id, sizeof(j->last.id));
  return 0;
}

static int list_tx(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  return store_dead_letters_list(tx, j->scope, j->after, j->limit + 1, list_row, j);
}

/* ?cursor= into *pos. Returns 0 (absent: *has false), or 1 after a 400. */
static int cursor_parse(struct ctx *ctx, struct dead_letter_pos *pos, bool *has) {
  *has = false;
  const char *cursor = http_req_query(ctx->req, "cursor");
  if (!cursor) return 0;
  uint8_t raw[CURSOR_PAYLOAD_LEN];
  struct id last;
  if (api_cursor_decode(ctx, CURSOR_KIND_DEAD_LETTERS, ctx->scope.org_id, cursor, raw,
                        sizeof(raw)) != (long)sizeof(raw)) {
    api_param_problem(ctx, "cursor",
                      "cursor is not one this server issued for this list; start again "
                      "without it");
    return 1;
  }
  uint64_t at = 0;
  for (size_t i = 0; i < 8; i++) at = at << 8 | raw[i];
  memcpy(last.b, raw + 8, sizeof(last.b));
  pos->received_at = (int64_t)at;
  id_format(&last, pos->id);
  *has = true;
  return 0;
}

static json_t *cursor_after(struct ctx *ctx, const struct dead_letter_pos *pos) {
  uint8_t raw[CURSOR_PAYLOAD_LEN];
  uint64_t at = (uint64_t)pos->received_at;
  for (int i = 7; i >= 0; i--) {
    raw[i] = (uint8_t)(at & 0xff);
    at >>= 8;
  }
  struct id last;
  char enc[128];
  if (id_parse(slice_from_cstr(pos->id), &last) != 0) return json_null();
  memcpy(raw + 8, last.b, sizeof(last.b));
  if (api_cursor_encode(ctx, CURSOR_KIND_DEAD_LETTERS, ctx->scope.org_id, raw, sizeof(raw), enc,
                        sizeof(enc)) != 0) {
    return json_null();
  }
  return json_string(enc);
}

static int h_list(struct ctx *ctx) {
  struct list_job j = {.scope = &ctx->scope};
  if (api_query_limit(ctx, LIMIT_PAGE_MAX, &j.limit)) return 0;
  struct dead_letter_pos after;
  bool has_after;
  if (cursor_parse(ctx, &after, &has_after)) return 0;
  j.after = has_after ? &after : NULL;
  j.data = json_array();
  int rc = store_read(api_store(ctx->api), list_tx, &j);
  if (rc) {
    json_decref(j.data);
    return api_status(ctx, rc);
  }
  json_t *next = j.rows > j.limit ? cursor_after(ctx, &j.last) : json_null();
  http_resp_header(ctx->req, "Cache-Control", "no-store");
  return api_json(ctx, 200, json_pack("{s:o, s:o}", "data", j.data, "next_cursor", next));
}

/* --- GET /v1/dead-letters/{id} ---------------------------------------------------- */

struct get_job {
  const struct org_scope *scope;
  const char *id;
  struct dead_letter_row row;
  struct buf payload;
};

static int get_tx(struct store_tx *tx, void *arg) {
  struct get_job *j = arg;
  return store_dead_letter_get(tx, j->scope, j->id, &j->row, &j->payload);
}

static int h_get(struct ctx *ctx) {
  struct get_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->scope = &ctx->scope;
  if (!(j->id = dead_letter_id_param(ctx))) return 0;
  buf_init(&j->payload, LIMIT_EVENT_CANONICAL_MAX);
  int rc = store_read(api_store(ctx->api), get_tx, j);
  if (rc == 0) {
    http_resp_header(ctx->req, "Cache-Control", "no-store");
    api_json(ctx, 200, dead_letter_json(&j->row, j->payload.data, j->payload.len));
  } else if (rc == KEEL_ENOTFOUND) {
    api_problem(ctx, "not_found", "no such dead letter");
  } else {
    api_status(ctx, rc);
  }
  buf_free(&j->payload);
  return 0;
}

/* --- audit details ------------------------------------------------------------------ */

static json_t *audit_details(const struct dead_letter_row *r) {
  json_t *d = json_object();
  json_object_set_new(d, "event_id", str_or_null(r->event_id));
  json_object_set_new(d, "session_id", str_or_null(r->session_id));
  json_object_set_new(d, "type", str_or_null(r->type));
  json_object_set_new(d, "attempts", json_integer((json_int_t)r->attempts));
  return d;
}

/* --- DELETE /v1/dead-letters/{id} ------------------------------------------------------ */

struct delete_job {
  struct ctx *ctx;
  const char *id;
  struct dead_letter_row row;
};

static int delete_tx(struct store_tx *tx, void *arg) {
  struct delete_job *j = arg;
  int rc = store_dead_letter_get(tx, &j->ctx->scope, j->id, &j->row, NULL);
  if (rc) return rc;
  if ((rc = store_dead_letter_delete(tx, &j->ctx->scope, j->id)) != 0) return rc;
  json_t *d = audit_details(&j->row);
  json_object_set_new(d, "error", str_or_null(j->row.error));
  rc = ctx_audit(j->ctx, tx, "dead_letter.deleted", "dead_letter", j->id, true, d);
  json_decref(d);
  return rc;
}

static int h_delete(struct ctx *ctx) {
  struct delete_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  if (!(j->id = dead_letter_id_param(ctx))) return 0;
  int rc = store_write(api_store(ctx->api), delete_tx, j);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such dead letter");
  if (rc) return api_status(ctx, rc);
  deadletters_adjust(area(ctx), -1);
  atomic_fetch_add(&area(ctx)->deleted_total, 1);
  http_resp_set(ctx->req, 204, NULL, NULL, 0);
  return 0;
}

/* --- POST /v1/dead-letters/{id}/replay ---------------------------------------------------- */

enum replay_failure {
  REPLAY_FAILURE_NONE,    /* the replay committed, or the store failed around it */
  REPLAY_FAILURE_INVALID, /* the stored event no longer passes validation */
  REPLAY_FAILURE_APPEND   /* the append failed (rolled back) */
};

#define REPLAY_REASON_MAX 200

struct replay_job {
  struct ctx *ctx;
  const char *id;
  bool found; /* the row was read */
  struct dead_letter_row row;
  struct buf payload;
  struct ingest_batch batch;
  enum store_append_outcome outcome;
  enum replay_failure failure;
  int append_rc;
  char reason[REPLAY_REASON_MAX];
};

/* Test hook: consumes one failure armed for the org. */
static bool fail_one(struct deadletters *d, const struct org_scope *scope) {
  pthread_mutex_lock(&d->mu);
  bool fail = d->fail_replays > 0 && strcmp(d->fail_org, scope->org_id) == 0;
  if (fail) d->fail_replays--;
  pthread_mutex_unlock(&d->mu);
  return fail;
}

/* Why a stored event was refused by events_parse, into j->reason. */
static void describe_invalid(struct replay_job *j) {
  const struct ingest_batch *b = &j->batch;
  if (b->problem) {
    snprintf(j->reason, sizeof(j->reason), "the event no longer passes validation: %s",
             b->problem_detail[0] ? b->problem_detail : b->problem);
  } else if (b->error_count > 0) {
    snprintf(j->reason, sizeof(j->reason), "the event no longer passes validation: %s %s",
             b->errors[0].field[0] ? b->errors[0].field : "(event)", b->errors[0].code);
  } else {
    snprintf(j->reason, sizeof(j->reason), "the event no longer passes validation");
  }
}

/* Reads the row, parses its event as the single-event route would (with the
 * original received time), appends it and deletes the row: one write job,
 * so the event is stored exactly when the row goes. */
static int replay_work(struct store_tx *tx, struct replay_job *j) {
  const struct org_scope *scope = &j->ctx->scope;
  int rc = store_dead_letter_get(tx, scope, j->id, &j->row, &j->payload);
  if (rc) return rc;
  j->found = true;
  struct events_parse_opts o = {.entry = EVENTS_ENTRY_SINGLE,
                                .received_us = j->row.received_at,
                                .body_max = LIMIT_EVENT_CANONICAL_MAX};
  rc = events_parse(buf_slice(&j->payload), &o, &j->batch);
  if (rc != 0 || j->batch.count != 1 || j->batch.rejected) {
    j->failure = REPLAY_FAILURE_INVALID;
    describe_invalid(j);
    return KEEL_EINVAL;
  }
  events_enrich(&j->batch);
  struct store_append_result res = {.api_key_id = j->row.api_key_id[0] ? j->row.api_key_id : NULL,
                                    .outcomes = &j->outcome};
  rc = fail_one(api_deadletters(j->ctx->api), scope)
           ? KEEL_ESTORE
           : store_events_append(tx, scope, j->batch.events, 1, &res);
  if (rc) {
    j->failure = rc == KEEL_EINVAL ? REPLAY_FAILURE_INVALID : REPLAY_FAILURE_APPEND;
    j->append_rc = rc;
    if (rc == KEEL_EINVAL) snprintf(j->reason, sizeof(j->reason), "the event cannot be stored");
    return rc;
  }
  if ((rc = store_dead_letter_delete(tx, scope, j->id)) != 0) return rc;
  json_t *d = audit_details(&j->row);
  json_object_set_new(
      d, "outcome",
      json_string(j->outcome == STORE_APPEND_DUPLICATE ? replay_outcome_names[REPLAY_DUPLICATE]
                                                       : replay_outcome_names[REPLAY_ACCEPTED]));
  rc = ctx_audit(j->ctx, tx, "dead_letter.replayed", "dead_letter", j->id, true, d);
  json_decref(d);
  return rc;
}

static int replay_tx(struct store_tx *tx, void *arg) {
  struct replay_job *j = arg;
  int rc = replay_work(tx, j);
  events_batch_free(&j->batch); /* the events borrow from it; nothing needs them past here */
  return rc;
}

struct failure_job {
  struct ctx *ctx;
  const char *id;
  const char *error;
  int64_t now;
  struct dead_letter_row row;
};

/* Records the failed attempt on the row, audited in the same write. */
static int failure_tx(struct store_tx *tx, void *arg) {
  struct failure_job *j = arg;
  int rc = store_dead_letter_record_failure(tx, &j->ctx->scope, j->id, j->error, j->now);
  if (rc) return rc;
  if ((rc = store_dead_letter_get(tx, &j->ctx->scope, j->id, &j->row, NULL)) != 0) return rc;
  json_t *d = audit_details(&j->row);
  json_object_set_new(d, "error", json_string(j->error));
  rc = ctx_audit(j->ctx, tx, "dead_letter.replayed", "dead_letter", j->id, false, d);
  json_decref(d);
  return rc;
}

/* The replay failed (j->failure says how, rc is store_write's status):
 * records the attempt in its own write and answers. */
static int replay_failed(struct ctx *ctx, struct replay_job *j, int rc) {
  struct deadletters *d = area(ctx);
  atomic_fetch_add(&d->replays[REPLAY_FAILED], 1);
  bool invalid = j->failure == REPLAY_FAILURE_INVALID;
  const char *error = invalid                       ? j->reason
                      : j->append_rc == KEEL_ESTORE ? "replay: the store failed while writing "
                                                      "the event"
                      : j->failure == REPLAY_FAILURE_APPEND ? "replay: the event could not be "
                                                              "stored"
                                                            : "replay: the store failed";
  struct failure_job *f = arena_calloc(ctx->arena, 1, sizeof(*f));
  *f = (struct failure_job){.ctx = ctx, .id = j->id, .error = error, .now = time_now_us()};
  int frc = store_write(api_store(ctx->api), failure_tx, f);
  if (frc == KEEL_ENOTFOUND) {
    /* Gone (deleted meanwhile), or never in this org when the store failed
     * before it could say. */
    return api_problem(ctx, "not_found", "no such dead letter");
  }
  if (frc) {
    log_error("dead_letters.attempt_not_recorded", LS("id", j->id),
              LS("status", keel_strerror(frc)));
  }
  log_warn("dead_letters.replay_failed", LS("id", j->id), LS("status", keel_strerror(rc)),
           LS("error", error));
  if (invalid) {
    return api_problemf(ctx, "unprocessable",
                        "%s; replaying cannot succeed: delete the dead letter, or keep it to "
                        "inspect",
                        j->reason);
  }
  http_resp_header(ctx->req, "Retry-After", "1");
  if (frc) {
    return api_problem(ctx, "service_unavailable",
                       "the event could not be stored; the dead letter is kept, retry later");
  }
  return api_problemf(ctx, "service_unavailable",
                      "the event could not be stored; the dead letter is kept (%lld failed "
                      "attempts), retry later",
                      (long long)f->row.attempts);
}

static int h_replay(struct ctx *ctx) {
  struct replay_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  if (!(j->id = dead_letter_id_param(ctx))) return 0;
  buf_init(&j->payload, LIMIT_EVENT_CANONICAL_MAX);
  int rc = store_write(api_store(ctx->api), replay_tx, j);
  buf_free(&j->payload);
  if (rc == KEEL_ENOTFOUND && !j->found) {
    return api_problem(ctx, "not_found", "no such dead letter");
  }
  if (rc == KEEL_EBUSY) {
    http_resp_header(ctx->req, "Retry-After", "1");
    return api_problem(ctx, "service_unavailable", "the server is shutting down");
  }
  if (rc) return replay_failed(ctx, j, rc);
  struct deadletters *d = area(ctx);
  deadletters_adjust(d, -1);
  enum replay_outcome outcome =
      j->outcome == STORE_APPEND_DUPLICATE ? REPLAY_DUPLICATE : REPLAY_ACCEPTED;
  atomic_fetch_add(&d->replays[outcome], 1);
  log_info("dead_letters.replayed", LS("id", j->id), LS("outcome", replay_outcome_names[outcome]));
  return api_json(ctx, 200,
                  json_pack("{s:s, s:s, s:o, s:o}", "id", j->id, "outcome",
                            replay_outcome_names[outcome], "event_id", str_or_null(j->row.event_id),
                            "session_id", str_or_null(j->row.session_id)));
}

/* --- development routes (--dev) ---------------------------------------------------------- */

/* POST /v1/dev/dead-letters/expire: one expiry run now. */
static int h_dev_expire(struct ctx *ctx) {
  struct deadletters *d = area(ctx);
  if (!d) return api_problem(ctx, "service_unavailable", "no store");
  int64_t expired = 0;
  int rc = expire_run(d, &expired);
  if (rc) return api_status(ctx, rc);
  return api_json(ctx, 200,
                  json_pack("{s:I, s:I}", "expired", (json_int_t)expired, "depth",
                            (json_int_t)deadletters_depth(d)));
}

/* POST /v1/dev/dead-letters/fail-replays {n}: the org's next n replays
 * fail (0 disarms; arming replaces what another org armed). */
static int h_dev_fail_replays(struct ctx *ctx) {
  struct deadletters *d = area(ctx);
  if (!d) return api_problem(ctx, "service_unavailable", "no store");
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  struct field_errors fe = {0};
  static const char *const allowed[] = {"n"};
  json_reject_unknown(body, NULL, allowed, 1, &fe);
  int64_t n = 0;
  json_get_int(body, "n", NULL, JSON_REQUIRED, 0, 1000000, &n, &fe);
  if (fe.count) return api_validation(ctx, &fe);
  pthread_mutex_lock(&d->mu);
  memcpy(d->fail_org, ctx->scope.org_id, sizeof(d->fail_org));
  d->fail_replays = (unsigned)n;
  pthread_mutex_unlock(&d->mu);
  return api_json(ctx, 200, json_pack("{s:I}", "fail_replays", (json_int_t)n));
}

/* --- routes ------------------------------------------------------------------------------ */

static const struct route deadletters_routes[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/dead-letters",
     .handler = h_list,
     .auth = AUTH_ANY,
     .permission = PERM_DATA_ADMIN,
     .scope = SCOPE_ADMIN},
    {.method = HTTP_GET,
     .pattern = "/v1/dead-letters/{id}",
     .handler = h_get,
     .auth = AUTH_ANY,
     .permission = PERM_DATA_ADMIN,
     .scope = SCOPE_ADMIN},
    {.method = HTTP_POST,
     .pattern = "/v1/dead-letters/{id}/replay",
     .handler = h_replay,
     .auth = AUTH_ANY,
     .permission = PERM_DATA_ADMIN,
     .scope = SCOPE_ADMIN},
    {.method = HTTP_DELETE,
     .pattern = "/v1/dead-letters/{id}",
     .handler = h_delete,
     .auth = AUTH_ANY,
     .permission = PERM_DATA_ADMIN,
     .scope = SCOPE_ADMIN},
    {.method = HTTP_POST,
     .pattern = "/v1/dev/dead-letters/expire",
     .handler = h_dev_expire,
     .auth = AUTH_PLATFORM,
     .flags = ROUTE_DEV},
    {.method = HTTP_POST,
     .pattern = "/v1/dev/dead-letters/fail-replays",
     .handler = h_dev_fail_replays,
     .auth = AUTH_ANY,
     .permission = PERM_DATA_ADMIN,
     .scope = SCOPE_ADMIN,
     .body = ROUTE_BODY_DEFAULT,
     .flags = ROUTE_DEV},
};

const struct route *routes_deadletters(size_t *count) {
  *count = sizeof(deadletters_routes) / sizeof(deadletters_routes[0]);
  return deadletters_routes;
}
