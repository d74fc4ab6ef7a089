/*
 * analytics_load.c — loads a keel data directory with realistic agent
 * telemetry for the analytics benchmark (bench/bench.py, analytics_*
 * scenarios; bench/README.md "Analytics").
 *
 * Every event goes the way the ingestion route takes it, minus HTTP: a JSON
 * batch body of 100 events is parsed and validated (events_parse), enriched
 * (generated UUIDv7 ids) and prepared (canonical form, cost), then appended
 * by store_events_append on the store's single writer, ten bodies per write
 * job (store_write_async, a few jobs in flight so that generation overlaps
 * the writer). So every row is real: events, sessions and their hash chains,
 * usage records and the analytics rollups.
 *
 * Shape: --orgs orgs; the largest holds --largest-share of --events, the
 * others share the rest with weights 1/2, 1/3, ... Each org has 20 agents,
 * a pool of end users (metadata.user_id; new users keep arriving, so weekly
 * cohorts fill), four models of two providers, and sessions of about 10 to
 * 50 events: session_start, llm_call, then rounds of tool_call followed by
 * tool_result or tool_error and another llm_call, and session_end (most
 * sessions), an error event (a few) or nothing (abandoned). Event timestamps
 * run from --days days ago to one hour ago, in the order the events are
 * generated, so a 7-day window holds about 7/days of each org.
 *
 * Orgs: --org SLUG[:KEY_ID] (repeatable) names existing orgs (made with
 * `keel org create`) and, optionally, the API key recorded on their events
 * (`keel key create` prints its id); the first is the largest. Without
 * --org, the loader inserts orgs load-00 .. load-NN itself (no owner, plan
 * "bench") and events carry no key.
 *
 *     bench_analytics_load --data-dir DIR [--events 10000000] [--orgs 20]
 *         [--largest-share 0.5] [--days 35] [--org SLUG[:KEY_ID]]... [--seed N]
 *
 * After the load, the funnel marks of every hour that ended over an hour ago
 * are compacted, as keel's job analytics.marks_compact keeps them on a
 * running server (compact_seconds: how long that took).
 *
 * Prints progress to stderr and, on stdout, one JSON object: events, seconds,
 * events_per_sec, compact_seconds, db_bytes (keel.db after a TRUNCATE checkpoint),
 * bytes_per_event, and the orgs with their ids and event counts.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/slice.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/events.h"
#include "domain/plans.h"
#include "domain/pricing.h"
#include "store/db.h"
#include "store/events.h"
#include "store/rollups.h"
#include "store/store.h"

#define BODY_EVENTS   100 /* events per body: the batch route's limit */
#define JOB_BODIES    10  /* bodies per write job: 1 000 events per append */
#define IN_FLIGHT     3   /* write jobs queued at once */
#define OPEN_SESSIONS 64  /* sessions interleaved per org */
#define AGENTS        20
#define MAX_ORGS      1000
#define BODY_MAX      (1u << 20)

static const char *const MODELS[][2] = {
    {"anthropic", "claude-sonnet-4-5"},
    {"openai", "gpt-4.1"},
    {"openai", "gpt-5-mini"},
    {"anthropic", "claude-opus-4-1"},
};
static const char *const TOOLS[] = {"search",     "fetch_url", "sql_query",  "send_email",
                                    "calculator", "read_file", "write_file", "crm_lookup"};
#define N_MODELS ((int)(sizeof(MODELS) / sizeof(MODELS[0])))
#define N_TOOLS  ((int)(sizeof(TOOLS) / sizeof(TOOLS[0])))

/* --- a small deterministic generator (splitmix64) ------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int64_t rnd_range(int64_t lo, int64_t hi) { /* [lo, hi] */
  return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static bool chance(unsigned permille) {
  return rnd() % 1000 < permille;
}

/* --- sessions ------------------------------------------------------------- */

enum step { ST_START, ST_LLM, ST_TOOL, ST_TOOL_DONE, ST_END, ST_DONE };

struct session {
  char id[48];
  int agent, model, tool;
  int64_t user;
  int rounds; /* llm/tool rounds left */
  enum step next;
  int64_t ts_us;
  unsigned call_no;
};

struct org_gen {
  int index;
  char slug[64];
  char key_id[ID_STR_SIZE]; /* "" when the events carry no key */
  struct org_scope scope;
  int64_t quota, emitted;
  int64_t users;
  uint64_t sessions_started;
  struct session open[OPEN_SESSIONS];
};

struct config {
  const char *data_dir;
  int64_t events;
  int orgs;
  double largest_share;
  int days;
  uint64_t seed;
  const char *org_args[MAX_ORGS];
  int n_org_args;
};

static int64_t g_t0, g_span; /* timestamps: [t0, t0 + span] */

static void session_new(struct org_gen *o, struct session *s) {
  o->sessions_started++;
  snprintf(s->id, sizeof(s->id), "s%03d-%08" PRIu64, o->index, o->sessions_started);
  /* Agents and models are skewed: a few agents do most of the work. */
  int a = (int)(rnd() % AGENTS), b = (int)(rnd() % AGENTS);
  s->agent = a < b ? a : b;
  s->model = chance(800) ? s->agent % N_MODELS : (int)(rnd() % N_MODELS);
  /* End users arrive over time: the pool open at this point grows from a
   * fifth of the org's users to all of them. */
  double progress = o->quota ? (double)o->emitted / (double)o->quota : 1.0;
  int64_t pool = 1 + (int64_t)((double)o->users * (0.2 + 0.8 * progress));
  s->user = (int64_t)(rnd() % (uint64_t)pool);
  s->rounds = (int)rnd_range(3, 16);
  s->next = ST_START;
  s->ts_us = g_t0 + (int64_t)(progress * (double)g_span) + rnd_range(0, 60000000);
  s->call_no = 0;
}

static void put_ts(struct buf *b, int64_t us) {
  time_t secs = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

/* Appends the session's next event to b (a member of the events array). */
static void session_event(struct org_gen *o, struct session *s, struct buf *b) {
  const char *type = "session_start", *severity = "info";
  int64_t gap_ms = 0;
  enum step after = ST_LLM;
  struct buf data;
  buf_init(&data, 4096);
  switch (s->next) {
    case ST_START:
      buf_printf(&data, "{\"channel\":\"%s\",\"locale\":\"en-GB\"}", chance(600) ? "web" : "api");
      break;
    case ST_LLM: {
      type = "llm_call";
      int64_t in = rnd_range(300, 6000), cached = chance(500) ? rnd_range(0, in / 2) : 0;
      int64_t out = rnd_range(40, 900), reasoning = s->model == 2 ? rnd_range(0, out / 3) : 0;
      double latency = (double)rnd_range(250, 2500) + (double)out * 1.5 + (double)(rnd() % 100) / 4;
      bool failed = chance(15);
      if (chance(3)) latency *= 8; /* the slow tail */
      buf_printf(&data,
                 "{\"provider\":\"%s\",\"model\":\"%s\",\"input_tokens\":%" PRId64
                 ",\"output_tokens\":%" PRId64 ",\"reasoning_tokens\":%" PRId64
                 ",\"cache_read_tokens\":%" PRId64
                 ",\"latency_ms\":%.2f,\"status\":\"%s\",\"finish_reason\":\"%s\"}",
                 MODELS[s->model][0], MODELS[s->model][1], in, out, reasoning, cached, latency,
                 failed ? "error" : "ok", s->rounds > 0 ? "tool_use" : "end_turn");
      if (failed) severity = "error";
      gap_ms = (int64_t)latency;
      if (s->rounds <= 0) {
        after = ST_END;
      } else {
        s->rounds--;
        after = chance(750) ? ST_TOOL : ST_LLM;
      }
      break;
    }
    case ST_TOOL:
      type = "tool_call";
      s->tool = (int)(rnd() % N_TOOLS);
      s->call_no++;
      buf_printf(&data,
                 "{\"tool_name\":\"%s\",\"call_id\":\"c%u\",\"arguments\":{\"q\":\"%s %u\"}}",
                 TOOLS[s->tool], s->call_no, TOOLS[s->tool], (unsigned)(rnd() % 1000));
      gap_ms = rnd_range(5, 50);
      after = ST_TOOL_DONE;
      break;
    case ST_TOOL_DONE: {
      double duration = (double)rnd_range(20, 1500) * (s->tool == 1 ? 3 : 1);
      if (chance(60)) {
        type = "tool_error";
        severity = "warn";
        buf_printf(&data,
                   "{\"tool_name\":\"%s\",\"call_id\":\"c%u\",\"duration_ms\":%.1f,"
                   "\"status\":\"%s\",\"error\":\"upstream answered 503\"}",
                   TOOLS[s->tool], s->call_no, duration, chance(300) ? "timeout" : "error");
      } else {
        type = "tool_result";
        buf_printf(&data,
                   "{\"tool_name\":\"%s\",\"call_id\":\"c%u\",\"duration_ms\":%.1f,"
                   "\"status\":\"ok\",\"result_bytes\":%" PRId64 "}",
                   TOOLS[s->tool], s->call_no, duration, rnd_range(100, 20000));
      }
      gap_ms = (int64_t)duration;
      break;
    }
    case ST_END:
    case ST_DONE:
      if (chance(40)) {
        type = "error";
        severity = "error";
        buf_append_cstr(&data, "{\"message\":\"the run was aborted\",\"kind\":\"crash\"}");
      } else if (chance(50)) {
        type = "feedback"; /* an abandoned session: a rating, no end */
        buf_printf(&data, "{\"rating\":%d}", (int)rnd_range(1, 5));
      } else {
        type = "session_end";
        buf_append_cstr(&data, "{\"reason\":\"completed\"}");
      }
      after = ST_DONE;
      break;
  }
  s->ts_us += gap_ms * 1000 + rnd_range(100000, 4000000);
  if (b->data[b->len - 1] != '[') buf_putc(b, ',');
  buf_printf(b, "{\"session_id\":\"%s\",\"agent_id\":\"agent-%02d\",\"type\":\"%s\",", s->id,
             s->agent, type);
  buf_append_cstr(b, "\"timestamp\":\"");
  put_ts(b, s->ts_us);
  buf_printf(b, "\",\"severity\":\"%s\",\"data\":", severity);
  buf_append(b, data.data, data.len);
  buf_printf(b,
             ",\"metadata\":{\"user_id\":\"u-%" PRId64 "\",\"trace_id\":\"%016" PRIx64
             "\",\"sdk\":\"keel-python/0.4.2\"},\"tags\":[\"prod\",\"%s\"]}",
             s->user, rnd(), s->agent % 2 ? "eu-west" : "us-east");
  buf_free(&data);
  s->next = after;
  o->emitted++;
}

/* One body of n events for org o. */
static void org_body(struct org_gen *o, int n, struct buf *b) {
  buf_reset(b);
  buf_append_cstr(b, "{\"events\":[");
  for (int i = 0; i < n; i++) {
    struct session *s = &o->open[rnd() % OPEN_SESSIONS];
    if (s->next == ST_DONE) session_new(o, s);
    session_event(o, s, b);
  }
  buf_append_cstr(b, "]}");
}

/* --- the write pipeline --------------------------------------------------- */

struct body {
  struct org_gen *org;
  struct ingest_batch batch;
};

struct job {
  struct body bodies[JOB_BODIES];
  int n;
  int64_t accepted, duplicates;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int in_flight;
static int64_t total_accepted, total_duplicates;
static int write_failures;

static int append_tx(struct store_tx *tx, void *arg) {
  struct job *j = arg;
  j->accepted = j->duplicates = 0;
  for (int i = 0; i < j->n; i++) {
    struct body *bd = &j->bodies[i];
    struct store_append_result res = {.api_key_id = bd->org->key_id[0] ? bd->org->key_id : NULL};
    int rc = store_events_append(tx, &bd->org->scope, bd->batch.events, bd->batch.count, &res);
    if (rc) return rc;
    j->accepted += (int64_t)res.accepted;
    j->duplicates += (int64_t)res.duplicates;
  }
  return 0;
}

static void job_done(void *arg, int rc) {
  struct job *j = arg;
  pthread_mutex_lock(&mu);
  if (rc) {
    write_failures++;
  } else {
    total_accepted += j->accepted;
    total_duplicates += j->duplicates;
  }
  in_flight--;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < j->n; i++) events_batch_free(&j->bodies[i].batch);
  xfree(j);
}

/* --- orgs ----------------------------------------------------------------- */

struct org_job {
  struct org_gen *orgs;
  int n;
  bool create;
  const char *missing;
};

static int orgs_tx(struct store_tx *tx, void *arg) {
  struct org_job *j = arg;
  for (int i = 0; i < j->n; i++) {
    struct org_gen *o = &j->orgs[i];
    struct db_stmt *st = db_prepare(tx, "SELECT id FROM orgs WHERE slug = $1");
    if (!st) return KEEL_ESTORE;
    db_bind_text(st, 1, o->slug);
    int rc = db_step(st);
    if (rc == DB_ROW) {
      db_col_copy(st, 0, o->scope.org_id, sizeof(o->scope.org_id));
      db_reset(st);
      continue;
    }
    db_reset(st);
    if (rc < 0) return rc;
    if (!j->create) {
      j->missing = o->slug;
      return KEEL_ENOTFOUND;
    }
    id_new_str(o->scope.org_id);
    st = db_prepare(tx,
                    "INSERT INTO orgs(id, name, slug, plan, created_at, updated_at)"
                    " VALUES($1, $2, $2, 'bench', @ts($3), @ts($3))");
    if (!st) return KEEL_ESTORE;
    db_bind_text(st, 1, o->scope.org_id);
    db_bind_text(st, 2, o->slug);
    db_bind_i64(st, 3, time_now_us());
    rc = db_step(st);
    db_reset(st);
    if (rc < 0) return rc;
  }
  return 0;
}

/* --- main ----------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: bench_analytics_load --data-dir DIR [--events N] [--orgs N] "
          "[--largest-share F] [--days N] [--org SLUG[:KEY_ID]]... [--seed N]\n");
}

static int parse(int argc, char **argv, struct config *c) {
  *c = (struct config){
      .events = 10000000, .orgs = 20, .largest_share = 0.5, .days = 35, .seed = 20240917};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    i++;
    if (strcmp(a, "--data-dir") == 0) {
      c->data_dir = v;
    } else if (strcmp(a, "--events") == 0) {
      c->events = strtoll(v, NULL, 10);
    } else if (strcmp(a, "--orgs") == 0) {
      c->orgs = (int)strtol(v, NULL, 10);
    } else if (strcmp(a, "--largest-share") == 0) {
      c->largest_share = strtod(v, NULL);
    } else if (strcmp(a, "--days") == 0) {
      c->days = (int)strtol(v, NULL, 10);
    } else if (strcmp(a, "--seed") == 0) {
      c->seed = strtoull(v, NULL, 10);
    } else if (strcmp(a, "--org") == 0 && c->n_org_args < MAX_ORGS) {
      c->org_args[c->n_org_args++] = v;
    } else {
      return -1;
    }
  }
  if (c->n_org_args) c->orgs = c->n_org_args;
  if (!c->data_dir || c->events < 1 || c->orgs < 1 || c->orgs > MAX_ORGS || c->largest_share <= 0 ||
      c->largest_share > 1 || c->days < 2 || c->days > 365) {
    return -1;
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Checkpoints (TRUNCATE) and returns keel.db's size in bytes, or -1. */
struct compact_arg {
  int64_t before, total;
  int done;
};

static int compact_tx(struct store_tx *tx, void *arg) {
  struct compact_arg *c = arg;
  return rollup_marks_compact(tx, c->before, 64, &c->done);
}

static int64_t checkpoint_size(const char *dir) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/keel.db", dir);
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    return -1;
  }
  sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
  sqlite3_close(db);
  struct stat st;
  int64_t size = stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
  snprintf(path, sizeof(path), "%s/keel.db-wal", dir);
  if (size >= 0 && stat(path, &st) == 0) size += (int64_t)st.st_size;
  return size;
}

int main(int argc, char **argv) {
  struct config c;
  if (parse(argc, argv, &c) != 0) {
    usage();
    return 2;
  }
  rng_state = c.seed;
  char err[512];
  log_set_level(LOG_WARN);
  json_set_alloc_funcs(xmalloc, xfree);
  if (crypto_init() != 0 || plans_load(NULL, err, sizeof(err)) != 0 ||
      pricing_load(NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "bench_analytics_load: start-up failed\n");
    return 2;
  }
  if (mkdir(c.data_dir, 0700) != 0 && errno != EEXIST) {
    perror(c.data_dir);
    return 2;
  }
  struct store_options so = {
      .data_dir = c.data_dir, .busy_timeout_ms = 5000, .cache_kib = 65536, .migrate_on_open = true};
  struct store *store = NULL;
  if (store_open(&so, &store, err, sizeof(err)) != 0) {
    fprintf(stderr, "bench_analytics_load: %s\n", err);
    return 2;
  }

  /* Orgs and their shares: the largest first, then weights 1/2, 1/3, ... */
  struct org_gen *orgs = xcalloc((size_t)c.orgs, sizeof(*orgs));
  double rest = 0;
  for (int i = 1; i < c.orgs; i++) rest += 1.0 / (i + 1);
  int64_t assigned = 0;
  for (int i = 0; i < c.orgs; i++) {
    struct org_gen *o = &orgs[i];
    o->index = i;
    if (c.n_org_args) {
      const char *colon = strchr(c.org_args[i], ':');
      size_t n = colon ? (size_t)(colon - c.org_args[i]) : strlen(c.org_args[i]);
      snprintf(o->slug, sizeof(o->slug), "%.*s", (int)n, c.org_args[i]);
      if (colon) snprintf(o->key_id, sizeof(o->key_id), "%s", colon + 1);
    } else {
      snprintf(o->slug, sizeof(o->slug), "load-%02d", i);
    }
    if (i == 0) {
      o->quota = c.orgs == 1 ? c.events : (int64_t)((double)c.events * c.largest_share);
    } else if (i == c.orgs - 1) {
      o->quota = c.events - assigned;
    } else {
      o->quota = (int64_t)((double)(c.events - orgs[0].quota) * (1.0 / (i + 1)) / rest);
    }
    assigned += o->quota;
    o->users = o->quota / 200 > 50 ? o->quota / 200 : 50;
    for (int k = 0; k < OPEN_SESSIONS; k++) o->open[k].next = ST_DONE;
  }
  struct org_job oj = {.orgs = orgs, .n = c.orgs, .create = c.n_org_args == 0};
  int rc = store_write(store, orgs_tx, &oj);
  if (rc) {
    fprintf(stderr, "bench_analytics_load: orgs: %s\n",
            oj.missing ? "an --org slug does not exist" : "store error");
    store_close(store);
    return 2;
  }

  g_span = (int64_t)c.days * 86400 * 1000000 - 3600 * (int64_t)1000000;
  g_t0 = time_now_us() - (int64_t)c.days * 86400 * 1000000;
  fprintf(stderr,
          "bench_analytics_load: %" PRId64 " events, %d orgs (largest %" PRId64 ") into %s\n",
          c.events, c.orgs, orgs[0].quota, c.data_dir);

  struct buf body;
  buf_init(&body, BODY_MAX);
  double t_start = now_s(), t_report = t_start;
  int64_t generated = 0, rejected = 0;
  struct job *job = NULL;
  while (generated < c.events) {
    /* An org, by what it has left: every org finishes at about the same
     * time, so each one's timestamps advance together. */
    int64_t left = c.events - generated, pick = (int64_t)(rnd() % (uint64_t)left);
    struct org_gen *o = orgs;
    for (int i = 0; i < c.orgs; i++) {
      int64_t l = orgs[i].quota - orgs[i].emitted;
      if (pick < l) {
        o = &orgs[i];
        break;
      }
      pick -= l;
    }
    int64_t n = o->quota - o->emitted;
    if (n > BODY_EVENTS) n = BODY_EVENTS;
    org_body(o, (int)n, &body);
    generated += n;
    if (!job) job = xcalloc(1, sizeof(*job));
    struct body *bd = &job->bodies[job->n++];
    bd->org = o;
    struct events_parse_opts po = {.entry = EVENTS_ENTRY_BATCH, .received_us = time_now_us()};
    if (events_parse(buf_slice(&body), &po, &bd->batch) != 0) {
      fprintf(stderr, "bench_analytics_load: a generated body was refused (%s: %s)\n",
              bd->batch.problem ? bd->batch.problem : "?", bd->batch.problem_detail);
      return 2;
    }
    if (bd->batch.rejected) {
      rejected += (int64_t)bd->batch.rejected;
      if (rejected == (int64_t)bd->batch.rejected && bd->batch.error_count) {
        fprintf(stderr, "bench_analytics_load: rejected event: %s %s\n", bd->batch.errors[0].field,
                bd->batch.errors[0].code);
      }
    }
    events_enrich(&bd->batch);
    events_prepare(&bd->batch, o->scope.org_id);
    if (job->n == JOB_BODIES || generated == c.events) {
      pthread_mutex_lock(&mu);
      while (in_flight >= IN_FLIGHT) pthread_cond_wait(&cv, &mu);
      in_flight++;
      pthread_mutex_unlock(&mu);
      if (store_write_async(store, append_tx, job, job_done) != 0) {
        fprintf(stderr, "bench_analytics_load: the store is closing\n");
        return 2;
      }
      job = NULL;
    }
    double t = now_s();
    if (t - t_report >= 10) {
      t_report = t;
      fprintf(stderr, "  %" PRId64 " events generated, %.0f events/s\n", generated,
              (double)generated / (t - t_start));
    }
  }
  pthread_mutex_lock(&mu);
  while (in_flight > 0) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  double seconds = now_s() - t_start;
  double t_compact = now_s();
  struct compact_arg ca = {.before = time_now_us() - US_PER_HOUR};
  do {
    ca.done = 0;
    if (store_write(store, compact_tx, &ca) != 0) {
      fprintf(stderr, "bench_analytics_load: compacting the funnel marks failed\n");
      return 2;
    }
    ca.total += ca.done;
  } while (ca.done > 0);
  double compact_seconds = now_s() - t_compact;
  fprintf(stderr, "  funnel marks of %" PRId64 " org-hours compacted in %.1f s\n", ca.total,
          compact_seconds);
  buf_free(&body);
  store_close(store);
  int64_t bytes = checkpoint_size(c.data_dir);

  printf("{\"events\":%" PRId64 ",\"accepted\":%" PRId64 ",\"duplicates\":%" PRId64
         ",\"rejected\":%" PRId64
         ",\"write_failures\":%d,\"seconds\":%.1f,\"events_per_sec\":%.0f"
         ",\"compact_seconds\":%.1f"
         ",\"db_bytes\":%" PRId64 ",\"bytes_per_event\":%.1f,\"orgs\":[",
         generated, total_accepted, total_duplicates, rejected, write_failures, seconds,
         (double)total_accepted / seconds, compact_seconds, bytes,
         total_accepted ? (double)bytes / (double)total_accepted : 0.0);
  for (int i = 0; i < c.orgs; i++) {
    printf("%s{\"slug\":\"%s\",\"id\":\"%s\",\"events\":%" PRId64 ",\"sessions\":%" PRIu64 "}",
           i ? "," : "", orgs[i].slug, orgs[i].scope.org_id, orgs[i].emitted,
           orgs[i].sessions_started);
  }
  printf("]}\n");
  xfree(orgs);
  bool ok = write_failures == 0 && rejected == 0 && total_accepted == generated;
  if (!ok) fprintf(stderr, "bench_analytics_load: not every event was stored\n");
  return ok ? 0 : 1;
}
