/*
 * usage.c — metering, quotas and the usage API (R-MTR-2..5, R-MTR-7;
 * docs/usage.md is the contract, docs/internals/usage.md the design).
 *
 *   GET  /v1/orgs/{org}/usage                  the current period
 *   GET  /v1/orgs/{org}/usage/timeseries       ?bucket=hour|day&from&to
 *   GET  /v1/orgs/{org}/usage/breakdown        ?by=api_key|agent|model&from&to&limit
 *   GET  /v1/orgs/{org}/usage/reconcile        ?day=YYYY-MM-DD (admin)
 *   GET  /v1/orgs/{org}/notifications          quota notifications (banner)
 *   POST /v1/dev/jobs/{job}/run                runs a periodic job now (--dev)
 *
 * Server-wide state: the quota counters (domain/quota.h) that ingest.c
 * consults through usage_admit / usage_settle, and the periodic jobs.
 */
#include "api/usage.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/arena.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/plans.h"
#include "domain/quota.h"
#include "jobs/jobs.h"
#include "store/maintenance.h"
#include "store/outbox.h"
#include "store/rollups.h"
#include "store/usage.h"

#define USAGE_RECONCILE_INTERVAL_US US_PER_DAY
#define USAGE_TEMPLATE              "usage_threshold"
#define USAGE_BREAKDOWN_DEFAULT     50
#define USAGE_BREAKDOWN_MAX         200
#define USAGE_SERIES_MAX_BUCKETS    2232 /* 93 days of hours */

struct usage_area {
  struct api *api;
  struct quota *quota;
  struct jobs *jobs; /* NULL without a store */
  bool metering;
  atomic_ullong admitted, refused_events, blocked_requests, notifications_queued;
  atomic_ullong reconcile_differences;
};

/* --- money and numbers ----------------------------------------------------- */

/* nano-USD as a decimal string: at least 2 decimals, up to 9. */
static void usd(int64_t nano, char out[64]) {
  const char *sign = nano < 0 ? "-" : "";
  uint64_t v = nano < 0 ? (uint64_t)0 - (uint64_t)nano : (uint64_t)nano;
  char frac[24];
  snprintf(frac, sizeof(frac), "%09llu", (unsigned long long)(v % 1000000000u));
  int len = 9;
  while (len > 2 && frac[len - 1] == '0') len--;
  frac[len] = '\0';
  snprintf(out, 64, "%s%llu.%s", sign, (unsigned long long)(v / 1000000000u), frac);
}

static json_t *usd_json(int64_t nano) {
  char t[64];
  usd(nano, t);
  return json_string(t);
}

static json_t *time_json(int64_t us) {
  char t[RFC3339_MAX];
  time_format_rfc3339(us, t);
  return json_string(t);
}

static int64_t overage_cost_nano(const struct plan *p, int64_t overage_events) {
  if (!p || overage_events <= 0) return 0;
  /* events × nano per 1 000 / 1 000; split to stay in 64 bits */
  int64_t per = p->overage_nano_usd_per_1000;
  return overage_events / 1000 * per + overage_events % 1000 * per / 1000;
}

/* --- the quota decision (ingestion) ------------------------------------------ */

struct load_job {
  struct org_scope scope;
  int64_t from, to;
  struct usage_totals t;
};

static int load_tx(struct store_tx *tx, void *arg) {
  struct load_job *j = arg;
  return store_usage_totals(tx, &j->scope, j->from, j->to, &j->t);
}

static int load_counter(struct usage_area *u, const char *org_id, int64_t period_start,
                        int64_t period_end) {
  struct load_job j = {.from = period_start, .to = period_end};
  memcpy(j.scope.org_id, org_id, sizeof(j.scope.org_id));
  int rc = store_read(api_store(u->api), load_tx, &j);
  if (rc) return rc;
  quota_install(u->quota, org_id, period_start, j.t.events);
  return 0;
}

static void audit_block(struct ctx *ctx, const struct quota_decision *d, const char *code,
                        int64_t n) {
  json_t *details =
      json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "code", code, "quota", (json_int_t)d->lim.quota,
                "limit", (json_int_t)d->lim.limit, "used", (json_int_t)d->used, "refused",
                (json_int_t)(n - d->granted), "plan", ctx->org.plan);
  ctx_audit_now(ctx, "usage.quota_blocked", "org", ctx->scope.org_id, false, details);
  json_decref(details);
}

enum usage_admit_result usage_admit(struct ctx *ctx, int64_t received_us, int64_t n,
                                    int64_t *admitted, const char **code, struct usage_ticket *t) {
  struct usage_area *u = api_usage(ctx->api);
  memset(t, 0, sizeof(*t));
  *admitted = n;
  *code = NULL;
  if (!u || !u->metering || n <= 0 || !api_store(ctx->api)) return USAGE_ADMIT_ALL;
  const struct plan *plan = plans_get(ctx->org.plan);
  if (!plan) plan = plans_get(PLAN_DEFAULT);
  struct quota_decision d;
  for (int attempt = 0;; attempt++) {
    quota_reserve(u->quota, ctx->scope.org_id, plan, received_us, n, &d);
    if (d.verdict != QUOTA_NEED_LOAD) break;
    int rc = attempt < 3 ? load_counter(u, ctx->scope.org_id, d.period_start, d.period_end)
                         : KEEL_EINTERNAL;
    if (rc) { /* cannot count: admit, as the store would refuse the batch anyway */
      log_error("usage.counter_load_failed", LS("org_id", ctx->scope.org_id),
                LS("status", keel_strerror(rc)));
      return USAGE_ADMIT_ALL;
    }
  }
  t->active = true;
  t->period_start = d.period_start;
  t->reserved = d.granted;
  t->quota = d.lim.quota;
  atomic_fetch_add(&u->admitted, (unsigned long long)d.granted);
  if (d.warn) {
    http_resp_header(ctx->req, "Keel-Quota-Warning",
                     arena_printf(ctx->arena, "grace; used=%lld; quota=%lld; limit=%lld",
                                  (long long)(d.used + d.granted), (long long)d.lim.quota,
                                  (long long)d.lim.limit));
  }
  if (d.verdict == QUOTA_OK) return USAGE_ADMIT_ALL;
  *code = d.lim.block;
  atomic_fetch_add(&u->refused_events, (unsigned long long)(n - d.granted));
  if (d.audit) audit_block(ctx, &d, d.lim.block, n);
  if (d.verdict == QUOTA_PARTIAL) {
    *admitted = d.granted;
    return USAGE_ADMIT_PARTIAL;
  }
  /* Nothing admitted: nothing reserved, nothing to settle. */
  t->active = false;
  atomic_fetch_add(&u->blocked_requests, 1);
  const struct config *cfg = api_config(ctx->api);
  char *url = arena_printf(ctx->arena, "%s/billing", cfg->public_url);
  char end[RFC3339_MAX];
  time_format_rfc3339(d.period_end, end);
  const char *detail =
      d.lim.overage
          ? arena_printf(ctx->arena,
                         "the %s plan's overage cap of %lld events this period is reached;"
                         " upgrade the plan or wait for the period to end",
                         plan->id, (long long)d.lim.limit)
          : arena_printf(ctx->arena,
                         "the %s plan's quota of %lld events this period is used up;"
                         " upgrade the plan or wait for the period to end",
                         plan->id, (long long)d.lim.quota);
  api_problem_ext(ctx, d.lim.block, detail,
                  json_pack("{s:I, s:I, s:I, s:s, s:s, s:s}", "quota", (json_int_t)d.lim.quota,
                            "limit", (json_int_t)d.lim.limit, "used", (json_int_t)d.used,
                            "period_end", end, "plan", plan->id, "upgrade_url", url));
  return USAGE_ADMIT_REFUSED;
}

/* --- notifications ----------------------------------------------------------- */

/* Raised after a commit (usage_settle), written by an asynchronous job on
 * the writer: the notification row and, only when the row is new, one mail
 * per owner — in one transaction, so the mail goes out at most once. The job
 * owns everything it uses: it may complete while the store closes, after
 * the API is gone. */
struct notify_job {
  struct org_scope scope;
  int64_t period_start, quota, used, now;
  unsigned thresholds;
  char public_url[512];
  struct store_tx *tx;
  int threshold; /* the one being written */
  struct buf body;
};

static int mail_owner(void *arg, const char *email) {
  struct notify_job *j = arg;
  char subject[160];
  snprintf(subject, sizeof(subject), "keel: your organization has used %d%% of its monthly events",
           j->threshold);
  int64_t ps, pe;
  quota_period(j->period_start, &ps, &pe);
  char end[RFC3339_MAX];
  time_format_rfc3339(pe, end);
  buf_reset(&j->body);
  if (buf_printf(&j->body,
                 "Your keel organization has used %lld of its %lld events this period "
                 "(%d%% of the quota). The period ends %s.\n\nUsage and plans: %s/billing\n",
                 (long long)j->used, (long long)j->quota, j->threshold, end, j->public_url)) {
    return KEEL_ENOMEM;
  }
  struct outbox_mail om = {.org_id = j->scope.org_id,
                           .to_email = email,
                           .template_name = USAGE_TEMPLATE,
                           .subject = subject,
                           .body = j->body.data,
                           .created_at = j->now};
  id_new_str(om.id);
  return store_outbox_insert(j->tx, &om);
}

static int notify_tx(struct store_tx *tx, void *arg) {
  struct notify_job *j = arg;
  j->tx = tx;
  static const int thresholds[] = {80, 100};
  for (int i = 0; i < 2; i++) {
    if (!(j->thresholds & (1u << i))) continue;
    struct usage_notification n = {.period_start = j->period_start,
                                   .threshold = thresholds[i],
                                   .quota = j->quota,
                                   .used = j->used,
                                   .created_at = j->now};
    id_new_str(n.id);
    bool inserted;
    int rc = store_usage_notification_put(tx, &j->scope, &n, &inserted);
    if (rc) return rc;
    if (!inserted) continue;
    j->threshold = thresholds[i];
    rc = store_usage_owner_emails(tx, &j->scope, mail_owner, j);
    if (rc) return rc;
    log_info("usage.threshold_reached", LS("org_id", j->scope.org_id), LI("threshold", n.threshold),
             LI("used", j->used), LI("quota", j->quota));
  }
  return 0;
}

static void notify_done(void *arg, int rc) {
  struct notify_job *j = arg;
  if (rc) {
    log_error("usage.notification_failed", LS("org_id", j->scope.org_id),
              LS("status", keel_strerror(rc)));
  }
  buf_free(&j->body);
  xfree(j);
}

static void notify(struct usage_area *u, const struct org_scope *scope, int64_t period_start,
                   int64_t quota, int64_t used, unsigned thresholds) {
  struct notify_job *j = xcalloc(1, sizeof(*j));
  j->scope = *scope;
  j->period_start = period_start;
  j->quota = quota;
  j->used = used;
  j->now = time_now_us();
  j->thresholds = thresholds;
  snprintf(j->public_url, sizeof(j->public_url), "%s", api_config(u->api)->public_url);
  buf_init(&j->body, 4096);
  atomic_fetch_add(&u->notifications_queued, 1);
  if (store_write_async(api_store(u->api), notify_tx, j, notify_done) != 0) {
    notify_done(j, KEEL_EBUSY); /* closing: the next settle after a restart raises it */
  }
}

void usage_settle(struct usage_area *u, const struct org_scope *scope, struct usage_ticket *t,
                  int64_t accepted) {
  if (!u || !t->active) return;
  t->active = false;
  int64_t used = 0;
  unsigned fire = quota_settle(u->quota, scope->org_id, t->period_start, t->reserved, accepted,
                               t->quota, &used);
  if (fire) notify(u, scope, t->period_start, t->quota, used, fire);
}

/* --- jobs ---------------------------------------------------------------------- */

/* usage.rollover: drops the counters of past periods (the next request of
 * each org loads the new period's from the records). */
static int job_rollover(void *arg) {
  struct usage_area *u = arg;
  int64_t start, end;
  quota_period(time_now_us(), &start, &end);
  size_t dropped = quota_drop_before(u->quota, start);
  if (dropped) log_info("usage.rollover", LI("counters_dropped", (int64_t)dropped));
  return 0;
}

struct refresh_ctx {
  struct usage_area *u;
  int64_t start, end;
  int rc;
  int64_t changed;
};

/* usage.refresh: each counter of the period re-read from the records (which
 * also hold events stored by other paths, e.g. dead-letter replays), unless
 * a batch settled or is in flight meanwhile. */
static void refresh_one(void *arg, const char *org_id) {
  struct refresh_ctx *r = arg;
  uint64_t g = quota_generation(r->u->quota, org_id);
  struct load_job j = {.from = r->start, .to = r->end};
  memcpy(j.scope.org_id, org_id, sizeof(j.scope.org_id));
  int rc = store_read(api_store(r->u->api), load_tx, &j);
  if (rc) {
    r->rc = rc;
    return;
  }
  if (quota_refresh(r->u->quota, org_id, r->start, g, j.t.events)) r->changed++;
}

static int job_refresh(void *arg) {
  struct refresh_ctx r = {.u = arg};
  quota_period(time_now_us(), &r.start, &r.end);
  quota_each(r.u->quota, r.start, refresh_one, &r);
  if (r.changed) log_info("usage.counters_refreshed", LI("changed", r.changed));
  return r.rc;
}

/* Reconciliation of one org and day: the records against the raw events. */
struct recon {
  struct org_scope scope;
  int64_t from, to;
  struct usage_totals records, raw;
};

static int recon_tx(struct store_tx *tx, void *arg) {
  struct recon *r = arg;
  int rc = store_usage_totals(tx, &r->scope, r->from, r->to, &r->records);
  return rc ? rc : store_usage_recount(tx, &r->scope, r->from, r->to, &r->raw);
}

static bool recon_differs(const struct recon *r) {
  return r->records.events != r->raw.events || r->records.llm_calls != r->raw.llm_calls ||
         r->records.cost_nano != r->raw.cost_nano;
}

static void recon_log(struct usage_area *u, const struct recon *r) {
  if (!recon_differs(r)) return;
  atomic_fetch_add(&u->reconcile_differences, 1);
  char day[RFC3339_MAX];
  time_format_rfc3339(r->from, day);
  day[10] = '\0';
  log_warn("usage.reconcile_difference", LS("org_id", r->scope.org_id), LS("day", day),
           LI("events_records", r->records.events), LI("events_stored", r->raw.events),
           LI("llm_calls_records", r->records.llm_calls), LI("llm_calls_stored", r->raw.llm_calls),
           LI("cost_nano_records", r->records.cost_nano), LI("cost_nano_stored", r->raw.cost_nano));
}

struct daily_ctx {
  struct usage_area *u;
  int64_t from, to;
  int rc;
};

static void reconcile_one(void *arg, const char *org_id) {
  struct daily_ctx *c = arg;
  struct recon r = {.from = c->from, .to = c->to};
  memcpy(r.scope.org_id, org_id, sizeof(r.scope.org_id));
  int rc = store_read(api_store(c->u->api), recon_tx, &r);
  if (rc) {
    c->rc = rc;
    return;
  }
  recon_log(c->u, &r);
}

/* usage.reconcile: yesterday (UTC), for every org counted this period by
 * this process. */
static int job_reconcile(void *arg) {
  struct daily_ctx c = {.u = arg};
  int64_t now = time_now_us();
  c.to = time_day_start(now);
  c.from = c.to - US_PER_DAY;
  int64_t start, end;
  quota_period(c.from, &start, &end);
  quota_each(c.u->quota, start, reconcile_one, &c);
  if (start != time_month_start(now)) {
    quota_period(now, &start, &end);
    quota_each(c.u->quota, start, reconcile_one, &c);
  }
  return c.rc;
}

/* Keeps PostgreSQL's monthly partitions PARTITIONS_AHEAD months ahead of
 * the clock (the migration creates the first ones); SQLite: nothing. */
#define PARTITIONS_AHEAD 3

static int partitions_tx(struct store_tx *tx, void *arg) {
  (void)arg;
  return store_partitions_ensure(tx, PARTITIONS_AHEAD);
}

static int job_partitions(void *arg) {
  struct usage_area *u = arg;
  return store_write(api_store(u->api), partitions_tx, NULL);
}

/* funnel_marks (store/rollups.h): hours that ended over an hour ago are
 * compacted every MARKS_COMPACT_INTERVAL_US, MARKS_COMPACT_BATCH org-hours
 * per write job so that ingestion waits little behind one. */
#define MARKS_COMPACT_INTERVAL_US (5 * 60 * US_PER_SEC)
#define MARKS_COMPACT_BATCH       32

struct compact_job {
  int64_t before;
  int done;
};

static int marks_compact_tx(struct store_tx *tx, void *arg) {
  struct compact_job *c = arg;
  return rollup_marks_compact(tx, c->before, MARKS_COMPACT_BATCH, &c->done);
}

static int job_marks_compact(void *arg) {
  struct usage_area *u = arg;
  struct compact_job c = {.before = time_now_us() - US_PER_HOUR};
  int64_t total = 0;
  int rc;
  do {
    c.done = 0;
    rc = store_write(api_store(u->api), marks_compact_tx, &c);
    total += c.done;
  } while (rc == 0 && c.done == MARKS_COMPACT_BATCH);
  if (total > 0) log_info("analytics.marks_compacted", LI("hours", total));
  return rc;
}

struct usage_area *usage_start(struct api *api) {
  struct usage_area *u = xcalloc(1, sizeof(*u));
  const struct config *cfg = api_config(api);
  u->api = api;
  u->quota = quota_new();
  u->metering = cfg->metering_enabled;
  usage_set_enabled(cfg->metering_enabled);
  if (!api_store(api)) return u;
  int64_t every = cfg->usage_job_interval_s * US_PER_SEC;
  u->jobs = jobs_new();
  jobs_add(u->jobs, "usage.rollover", every, every / 10, job_rollover, u);
  jobs_add(u->jobs, "usage.refresh", every, every / 10, job_refresh, u);
  jobs_add(u->jobs, "usage.reconcile", USAGE_RECONCILE_INTERVAL_US, US_PER_HOUR, job_reconcile, u);
  jobs_add(u->jobs, "store.partitions", US_PER_DAY, US_PER_HOUR, job_partitions, u);
  jobs_add(u->jobs, "analytics.marks_compact", MARKS_COMPACT_INTERVAL_US,
           MARKS_COMPACT_INTERVAL_US / 10, job_marks_compact, u);
  jobs_start(u->jobs);
  return u;
}

void usage_stop(struct usage_area *u) {
  if (!u) return;
  jobs_stop(u->jobs);
  quota_free(u->quota);
  xfree(u);
}

int usage_render_metrics(struct usage_area *u, struct buf *out) {
  if (!u) return 0;
  int rc = buf_printf(
      out,
      "# HELP keel_usage_quota_events_total Events by quota decision.\n"
      "# TYPE keel_usage_quota_events_total counter\n"
      "keel_usage_quota_events_total{decision=\"admitted\"} %llu\n"
      "keel_usage_quota_events_total{decision=\"refused\"} %llu\n"
      "# HELP keel_usage_quota_blocked_total Ingestion requests refused whole (402).\n"
      "# TYPE keel_usage_quota_blocked_total counter\n"
      "keel_usage_quota_blocked_total %llu\n"
      "# HELP keel_usage_notifications_total Quota notifications raised (80 %%, 100 %%).\n"
      "# TYPE keel_usage_notifications_total counter\n"
      "keel_usage_notifications_total %llu\n"
      "# HELP keel_usage_reconcile_differences_total Reconciliations that found a difference.\n"
      "# TYPE keel_usage_reconcile_differences_total counter\n"
      "keel_usage_reconcile_differences_total %llu\n",
      (unsigned long long)atomic_load(&u->admitted),
      (unsigned long long)atomic_load(&u->refused_events),
      (unsigned long long)atomic_load(&u->blocked_requests),
      (unsigned long long)atomic_load(&u->notifications_queued),
      (unsigned long long)atomic_load(&u->reconcile_differences));
  rc |= jobs_render_metrics(u->jobs, out);
  return rc ? -1 : 0;
}

/* --- reading parameters ---------------------------------------------------------- */

static void query_time(struct ctx *ctx, struct field_errors *fe, const char *name, int64_t *us,
                       bool *has) {
  const char *s = http_req_query(ctx->req, name);
  *has = false;
  if (!s) return;
  if (time_parse_rfc3339(slice_from_cstr(s), us) != 0) {
    field_errors_add(fe, name, "invalid_format",
                     arena_printf(ctx->arena,
                                  "%s must be an RFC 3339 time, e.g. "
                                  "2026-03-01T00:00:00Z",
                                  name));
    return;
  }
  *has = true;
}

/* from/to, defaulting to the current period [start, end). */
static void query_range(struct ctx *ctx, struct field_errors *fe, int64_t *from, int64_t *to) {
  int64_t start, end;
  quota_period(time_now_us(), &start, &end);
  bool hf, ht;
  query_time(ctx, fe, "from", from, &hf);
  query_time(ctx, fe, "to", to, &ht);
  if (!hf) *from = start;
  if (!ht) *to = end;
  if (!fe->count && *from >= *to)
    field_errors_add(fe, "from", "out_of_range", "from must be before to");
}

static void totals_into(json_t *o, const struct usage_totals *t) {
  json_object_set_new(o, "events", json_integer(t->events));
  json_object_set_new(o, "llm_calls", json_integer(t->llm_calls));
  json_object_set_new(o, "input_tokens", json_integer(t->input_tokens));
  json_object_set_new(o, "output_tokens", json_integer(t->output_tokens));
  json_object_set_new(o, "reasoning_tokens", json_integer(t->reasoning_tokens));
  json_object_set_new(o, "cache_read_tokens", json_integer(t->cache_read_tokens));
  json_object_set_new(o, "cache_write_tokens", json_integer(t->cache_write_tokens));
  json_object_set_new(o, "cost_usd", usd_json(t->cost_nano));
  json_object_set_new(o, "stored_bytes", json_integer(t->stored_bytes));
}

/* --- GET /v1/orgs/{org}/usage ------------------------------------------------------ */

struct totals_job {
  struct org_scope scope;
  int64_t from, to;
  struct usage_totals t;
};

static int totals_tx(struct store_tx *tx, void *arg) {
  struct totals_job *j = arg;
  return store_usage_totals(tx, &j->scope, j->from, j->to, &j->t);
}

static int h_usage(struct ctx *ctx) {
  int64_t now = time_now_us();
  struct totals_job j = {.scope = ctx->scope};
  quota_period(now, &j.from, &j.to);
  int rc = store_read(api_store(ctx->api), totals_tx, &j);
  if (rc) return api_status(ctx, rc);
  const struct plan *p = plans_get(ctx->org.plan);
  if (!p) p = plans_get(PLAN_DEFAULT);
  struct quota_limits lim;
  quota_limits_of(p, &lim);
  bool unlimited = lim.quota == INT64_MAX;
  int64_t used = j.t.events;
  int64_t length = j.to - j.from;
  int64_t elapsed = now - j.from;
  if (elapsed < US_PER_HOUR) elapsed = US_PER_HOUR; /* no wild projection in the first hour */
  if (elapsed > length) elapsed = length;
  double rate = (double)used / (double)elapsed;
  int64_t projected = used + (int64_t)(rate * (double)(j.to - now > 0 ? j.to - now : 0) + 0.5);
  int64_t days_left = (j.to - now + US_PER_DAY - 1) / US_PER_DAY;
  if (days_left < 0) days_left = 0;

  json_t *period = json_pack("{s:o, s:o, s:I}", "start", time_json(j.from), "end", time_json(j.to),
                             "days_left", (json_int_t)days_left);
  json_t *events = json_object();
  json_object_set_new(events, "used", json_integer(used));
  json_object_set_new(events, "quota", unlimited ? json_null() : json_integer(lim.quota));
  json_object_set_new(events, "limit", unlimited ? json_null() : json_integer(lim.limit));
  json_object_set_new(
      events, "remaining",
      unlimited ? json_null() : json_integer(used < lim.limit ? lim.limit - used : 0));
  json_object_set_new(events, "percent",
                      unlimited || lim.quota == 0
                          ? json_null()
                          : json_real((double)(used * 10000 / lim.quota) / 100.0));
  int64_t over = !unlimited && lim.overage && used > lim.quota ? used - lim.quota : 0;
  int64_t over_proj = !unlimited && lim.overage && projected > lim.quota
                          ? (projected < lim.limit ? projected : lim.limit) - lim.quota
                          : 0;
  json_t *overage = json_object();
  json_object_set_new(overage, "allowed", json_boolean(lim.overage));
  json_object_set_new(overage, "events", json_integer(over));
  json_object_set_new(overage, "price_per_1000_events_usd",
                      usd_json(lim.overage ? p->overage_nano_usd_per_1000 : 0));
  json_object_set_new(overage, "cost_usd", usd_json(overage_cost_nano(p, over)));
  json_object_set_new(overage, "cap_events",
                      lim.overage && !unlimited ? json_integer(lim.limit) : json_null());
  json_t *projection = json_object();
  json_object_set_new(projection, "events", json_integer(projected));
  json_object_set_new(
      projection, "percent",
      unlimited || lim.quota == 0
          ? json_null()
          : json_real((double)(int64_t)((double)projected * 10000.0 / (double)lim.quota) / 100.0));
  json_object_set_new(projection, "overage_events", json_integer(over_proj));
  json_object_set_new(projection, "overage_cost_usd", usd_json(overage_cost_nano(p, over_proj)));
  json_object_set_new(projection, "exceeds_quota",
                      json_boolean(!unlimited && projected > lim.quota));
  json_t *totals = json_object();
  totals_into(totals, &j.t);
  json_t *body = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "org_id", ctx->scope.org_id,
                           "plan", p->id, "period", period, "events", events, "overage", overage,
                           "projection", projection, "totals", totals);
  return api_json(ctx, 200, body);
}

/* --- GET /v1/orgs/{org}/usage/timeseries --------------------------------------------- */

struct series_job {
  struct org_scope scope;
  int64_t from, to, bucket;
  size_t nbuckets;
  struct usage_totals *b; /* nbuckets */
};

static int series_row(void *arg, int64_t hour, const char *key, const struct usage_totals *t) {
  (void)key;
  struct series_job *j = arg;
  if (hour < j->from) return 0;
  size_t i = (size_t)((hour - j->from) / j->bucket);
  if (i >= j->nbuckets) return 0;
  struct usage_totals *d = &j->b[i];
  d->events += t->events;
  d->llm_calls += t->llm_calls;
  d->input_tokens += t->input_tokens;
  d->output_tokens += t->output_tokens;
  d->reasoning_tokens += t->reasoning_tokens;
  d->cache_read_tokens += t->cache_read_tokens;
  d->cache_write_tokens += t->cache_write_tokens;
  d->cost_nano += t->cost_nano;
  d->stored_bytes += t->stored_bytes;
  return 0;
}

static int series_tx(struct store_tx *tx, void *arg) {
  struct series_job *j = arg;
  return store_usage_hours(tx, &j->scope, j->from, j->to, series_row, j);
}

static int h_timeseries(struct ctx *ctx) {
  struct field_errors fe = {0};
  const char *bucket = http_req_query(ctx->req, "bucket");
  int64_t size = US_PER_HOUR;
  if (bucket && strcmp(bucket, "day") == 0) {
    size = US_PER_DAY;
  } else if (bucket && strcmp(bucket, "hour") != 0) {
    field_errors_add(&fe, "bucket", "not_allowed", "bucket must be hour or day");
  }
  struct series_job j = {.scope = ctx->scope, .bucket = size};
  query_range(ctx, &fe, &j.from, &j.to);
  if (fe.count) return api_validation(ctx, &fe);
  j.from -= j.from % size; /* buckets start on UTC hours / days */
  if (j.to % size) j.to += size - j.to % size;
  j.nbuckets = (size_t)((j.to - j.from) / size);
  if (j.nbuckets > USAGE_SERIES_MAX_BUCKETS) {
    field_errors_add(&fe, "to", "out_of_range",
                     "the range holds too many buckets (at most 2232: 93 days of hours)");
    return api_validation(ctx, &fe);
  }
  j.b = arena_alloc(ctx->arena, j.nbuckets * sizeof(*j.b));
  memset(j.b, 0, j.nbuckets * sizeof(*j.b));
  int rc = store_read(api_store(ctx->api), series_tx, &j);
  if (rc) return api_status(ctx, rc);
  json_t *data = json_array();
  for (size_t i = 0; i < j.nbuckets; i++) {
    json_t *o = json_pack("{s:o}", "start", time_json(j.from + (int64_t)i * size));
    totals_into(o, &j.b[i]);
    json_array_append_new(data, o);
  }
  return api_json(ctx, 200,
                  json_pack("{s:s, s:o, s:o, s:o}", "bucket", size == US_PER_DAY ? "day" : "hour",
                            "from", time_json(j.from), "to", time_json(j.to), "data", data));
}

/* --- GET /v1/orgs/{org}/usage/breakdown ------------------------------------------------ */

struct breakdown_job {
  struct org_scope scope;
  enum usage_by by;
  int64_t from, to;
  int limit;
  json_t *data;
};

static int breakdown_row(void *arg, int64_t hour, const char *key, const struct usage_totals *t) {
  (void)hour;
  struct breakdown_job *j = arg;
  json_t *o = json_object();
  json_object_set_new(o, "key", key[0] ? json_string(key) : json_null());
  totals_into(o, t);
  json_array_append_new(j->data, o);
  return 0;
}

static int breakdown_tx(struct store_tx *tx, void *arg) {
  struct breakdown_job *j = arg;
  json_array_clear(j->data);
  return store_usage_breakdown(tx, &j->scope, j->by, j->from, j->to, j->limit, breakdown_row, j);
}

static int h_breakdown(struct ctx *ctx) {
  struct field_errors fe = {0};
  static const char *const names[] = {
      [USAGE_BY_API_KEY] = "api_key", [USAGE_BY_AGENT] = "agent", [USAGE_BY_MODEL] = "model"};
  struct breakdown_job j = {.scope = ctx->scope, .limit = USAGE_BREAKDOWN_DEFAULT};
  const char *by = http_req_query(ctx->req, "by");
  bool found = by == NULL; /* default: by API key */
  for (int i = 0; by && i < 3; i++) {
    if (strcmp(by, names[i]) == 0) {
      j.by = (enum usage_by)i;
      found = true;
    }
  }
  if (!found) field_errors_add(&fe, "by", "not_allowed", "by must be api_key, agent or model");
  const char *limit = http_req_query(ctx->req, "limit");
  if (limit) {
    char *end = NULL;
    long v = strtol(limit, &end, 10);
    if (!*limit || *end || v < 1 || v > USAGE_BREAKDOWN_MAX) {
      field_errors_add(&fe, "limit", "out_of_range", "limit must be an integer from 1 to 200");
    } else {
      j.limit = (int)v;
    }
  }
  query_range(ctx, &fe, &j.from, &j.to);
  if (fe.count) return api_validation(ctx, &fe);
  j.data = json_array();
  int rc = store_read(api_store(ctx->api), breakdown_tx, &j);
  if (rc) {
    json_decref(j.data);
    return api_status(ctx, rc);
  }
  return api_json(ctx, 200,
                  json_pack("{s:s, s:o, s:o, s:o}", "by", names[j.by], "from", time_json(j.from),
                            "to", time_json(j.to), "data", j.data));
}

/* --- GET /v1/orgs/{org}/usage/reconcile ------------------------------------------------- */

/* "YYYY-MM-DD" → the day's start (µs), or -1. */
static int64_t parse_day(const char *s) {
  if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return -1;
  for (int i = 0; i < 10; i++) {
    if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return -1;
  }
  int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
  unsigned m = (unsigned)((s[5] - '0') * 10 + (s[6] - '0'));
  unsigned d = (unsigned)((s[8] - '0') * 10 + (s[9] - '0'));
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31) return -1;
  int64_t us = time_days_from_civil(y, m, d) * US_PER_DAY;
  char back[RFC3339_MAX];
  time_format_rfc3339(us, back);
  return strncmp(back, s, 10) == 0 ? us : -1; /* 2026-02-30 does not come back */
}

static json_t *recon_json(const struct usage_totals *t) {
  return json_pack("{s:I, s:I, s:I}", "events", (json_int_t)t->events, "llm_calls",
                   (json_int_t)t->llm_calls, "cost_nano_usd", (json_int_t)t->cost_nano);
}

static int h_reconcile(struct ctx *ctx) {
  struct field_errors fe = {0};
  const char *day = http_req_query(ctx->req, "day");
  char today[RFC3339_MAX];
  if (!day) { /* default: today (UTC) */
    time_format_rfc3339(time_now_us(), today);
    today[10] = '\0';
    day = today;
  }
  int64_t from = parse_day(day);
  if (from < 0) {
    field_errors_add(&fe, "day", "invalid_format", "day must be a UTC date, YYYY-MM-DD");
    return api_validation(ctx, &fe);
  }
  struct recon r = {.scope = ctx->scope, .from = from, .to = from + US_PER_DAY};
  int rc = store_read(api_store(ctx->api), recon_tx, &r);
  if (rc) return api_status(ctx, rc);
  recon_log(api_usage(ctx->api), &r);
  struct usage_totals diff = {.events = r.records.events - r.raw.events,
                              .llm_calls = r.records.llm_calls - r.raw.llm_calls,
                              .cost_nano = r.records.cost_nano - r.raw.cost_nano};
  return api_json(ctx, 200,
                  json_pack("{s:s, s:o, s:o, s:o, s:b}", "day", day, "records",
                            recon_json(&r.records), "events_table", recon_json(&r.raw),
                            "difference", recon_json(&diff), "consistent", !recon_differs(&r)));
}

/* --- GET /v1/orgs/{org}/notifications ---------------------------------------------------- */

struct notes_job {
  struct org_scope scope;
  json_t *data;
};

static int note_row(void *arg, const struct usage_notification *n) {
  struct notes_job *j = arg;
  int64_t ps, pe;
  quota_period(n->period_start, &ps, &pe);
  json_t *o =
      json_pack("{s:s, s:s, s:i, s:o, s:o, s:I, s:I, s:o}", "id", n->id, "kind", "usage_threshold",
                "threshold", n->threshold, "period_start", time_json(n->period_start), "period_end",
                time_json(pe), "quota", (json_int_t)n->quota, "used", (json_int_t)n->used,
                "created_at", time_json(n->created_at));
  char msg[200];
  snprintf(msg, sizeof(msg), "%d%% of this period's %lld events used", n->threshold,
           (long long)n->quota);
  json_object_set_new(o, "message", json_string(msg));
  json_array_append_new(j->data, o);
  return 0;
}

static int notes_tx(struct store_tx *tx, void *arg) {
  struct notes_job *j = arg;
  json_array_clear(j->data);
  return store_usage_notifications(tx, &j->scope, USAGE_BREAKDOWN_MAX, note_row, j);
}

static int h_notifications(struct ctx *ctx) {
  struct notes_job j = {.scope = ctx->scope, .data = json_array()};
  int rc = store_read(api_store(ctx->api), notes_tx, &j);
  if (rc) {
    json_decref(j.data);
    return api_status(ctx, rc);
  }
  return api_json(ctx, 200, json_pack("{s:o, s:n}", "data", j.data, "next_cursor"));
}

/* --- POST /v1/dev/jobs/{job}/run (--dev only) ------------------------------------------- */

static int h_dev_job_run(struct ctx *ctx) {
  struct usage_area *u = api_usage(ctx->api);
  const char *name = ctx_param(ctx, "job");
  if (!u || !u->jobs || !name) return api_problem(ctx, "not_found", "no such job");
  int64_t d = 0;
  int rc = jobs_run_now(u->jobs, name, &d);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such job");
  return api_json(ctx, 200,
                  json_pack("{s:s, s:s, s:I}", "job", name, "status", rc ? keel_strerror(rc) : "ok",
                            "duration_us", (json_int_t)d));
}

/* --- GET /v1/dev/store/rls-probe (--dev only) --------------------------------------------- */

/* The leakage test's probe: reads every tenant table with no org condition
 * of its own, under the caller's org (or, with ?unscoped=1, no org at
 * all), and lists each (table, org) seen. On PostgreSQL row-level security
 * must confine it to the caller's org. */
struct probe_job {
  struct org_scope scope;
  bool unscoped;
  json_t *rows;
};

static int probe_row(void *arg, const char *table, const char *org_id) {
  struct probe_job *j = arg;
  json_array_append_new(j->rows, json_pack("{s:s, s:s}", "table", table, "org_id", org_id));
  return 0;
}

static int probe_tx(struct store_tx *tx, void *arg) {
  struct probe_job *j = arg;
  return store_rls_probe(tx, j->unscoped ? NULL : &j->scope, probe_row, j);
}

static int h_dev_rls_probe(struct ctx *ctx) {
  if (strcmp(store_backend(api_store(ctx->api)), "postgres") != 0) {
    return api_problem(ctx, "not_found", "the isolation probe needs the PostgreSQL backend");
  }
  const char *u = http_req_query(ctx->req, "unscoped");
  struct probe_job j = {
      .scope = ctx->scope, .unscoped = u && strcmp(u, "1") == 0, .rows = json_array()};
  int rc = store_read(api_store(ctx->api), probe_tx, &j);
  if (rc) {
    json_decref(j.rows);
    return api_status(ctx, rc);
  }
  return api_json(
      ctx, 200,
      json_pack("{s:s, s:o}", "org_id", j.unscoped ? "" : ctx->scope.org_id, "rows", j.rows));
}

static const struct route usage_routes[] = {
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/usage",
     .handler = h_usage,
     .auth = AUTH_ANY,
     .permission = PERM_USAGE_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/usage/timeseries",
     .handler = h_timeseries,
     .auth = AUTH_ANY,
     .permission = PERM_USAGE_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/usage/breakdown",
     .handler = h_breakdown,
     .auth = AUTH_ANY,
     .permission = PERM_USAGE_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/usage/reconcile",
     .handler = h_reconcile,
     .auth = AUTH_ANY,
     .permission = PERM_USAGE_ADMIN,
     .scope = SCOPE_ADMIN},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/notifications",
     .handler = h_notifications,
     .auth = AUTH_ANY,
     .permission = PERM_USAGE_READ,
     .scope = SCOPE_READ},
    {.method = HTTP_POST,
     .pattern = "/v1/dev/jobs/{job}/run",
     .handler = h_dev_job_run,
     .flags = ROUTE_DEV},
    {.method = HTTP_GET,
     .pattern = "/v1/dev/store/rls-probe",
     .handler = h_dev_rls_probe,
     .auth = AUTH_KEY,
     .scope = SCOPE_READ,
     .flags = ROUTE_DEV},
};

const struct route *routes_usage(size_t *count) {
  *count = sizeof(usage_routes) / sizeof(usage_routes[0]);
  return usage_routes;
}
