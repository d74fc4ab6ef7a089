/*
 * jobs.c — the periodic job scheduler (jobs/jobs.h).
 */
#include "jobs/jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "core/errors.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"

struct job {
  char name[32];
  int64_t interval_us, jitter_us;
  job_fn fn;
  void *arg;
  pthread_mutex_t run_mu; /* one run at a time */
  int64_t next_mono_us;   /* scheduler thread only */
  /* Shown in /metrics. */
  atomic_llong last_run_us, last_duration_us;
  atomic_ullong ok, failed;
};

struct jobs {
  struct job jobs[JOBS_MAX];
  size_t n;
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  bool stopping;
  uint64_t rng;
};

struct jobs *jobs_new(void) {
  struct jobs *js = xcalloc(1, sizeof(*js));
  pthread_mutex_init(&js->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&js->cv, &ca);
  pthread_condattr_destroy(&ca);
  js->rng = (uint64_t)time_mono_us() | 1u;
  return js;
}

static int64_t jitter(struct jobs *js, int64_t max_us) {
  if (max_us <= 0) return 0;
  js->rng ^= js->rng << 13; /* xorshift64: spreading runs, not security */
  js->rng ^= js->rng >> 7;
  js->rng ^= js->rng << 17;
  return (int64_t)(js->rng % (uint64_t)(max_us + 1));
}

int jobs_add(struct jobs *js, const char *name, int64_t interval_us, int64_t jitter_us, job_fn fn,
             void *arg) {
  if (js->started || js->n == JOBS_MAX || !fn || interval_us <= 0 ||
      strlen(name) >= sizeof(js->jobs[0].name)) {
    return KEEL_EINVAL;
  }
  struct job *j = &js->jobs[js->n++];
  memset(j, 0, sizeof(*j));
  memcpy(j->name, name, strlen(name) + 1);
  j->interval_us = interval_us;
  j->jitter_us = jitter_us;
  j->fn = fn;
  j->arg = arg;
  pthread_mutex_init(&j->run_mu, NULL);
  j->next_mono_us = time_mono_us() + interval_us + jitter(js, jitter_us);
  return 0;
}

static int run(struct job *j, int64_t *duration_us) {
  pthread_mutex_lock(&j->run_mu);
  int64_t t0 = time_mono_us();
  int rc = j->fn(j->arg);
  int64_t d = time_mono_us() - t0;
  atomic_store(&j->last_run_us, time_now_us());
  atomic_store(&j->last_duration_us, d);
  atomic_fetch_add(rc ? &j->failed : &j->ok, 1);
  pthread_mutex_unlock(&j->run_mu);
  if (rc) {
    log_error("job.failed", LS("job", j->name), LI("duration_us", d),
              LS("status", keel_strerror(rc)));
  } else {
    log_info("job.run", LS("job", j->name), LI("duration_us", d));
  }
  if (duration_us) *duration_us = d;
  return rc;
}

static void *scheduler(void *arg) {
  struct jobs *js = arg;
  pthread_setname_np(pthread_self(), "keel-jobs");
  pthread_mutex_lock(&js->mu);
  while (!js->stopping) {
    int64_t now = time_mono_us();
    int64_t next = INT64_MAX;
    struct job *due = NULL;
    for (size_t i = 0; i < js->n; i++) {
      if (js->jobs[i].next_mono_us <= now && !due) due = &js->jobs[i];
      if (js->jobs[i].next_mono_us < next) next = js->jobs[i].next_mono_us;
    }
    if (due) {
      due->next_mono_us = now + due->interval_us + jitter(js, due->jitter_us);
      pthread_mutex_unlock(&js->mu);
      run(due, NULL);
      pthread_mutex_lock(&js->mu);
      continue;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t wait_us = next == INT64_MAX ? 60 * US_PER_SEC : next - now;
    until.tv_sec += (time_t)(wait_us / US_PER_SEC);
    until.tv_nsec += (long)(wait_us % US_PER_SEC) * 1000;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&js->cv, &js->mu, &until);
  }
  pthread_mutex_unlock(&js->mu);
  return NULL;
}

int jobs_start(struct jobs *js) {
  js->started = pthread_create(&js->thread, NULL, scheduler, js) == 0;
  if (!js->started) {
    log_error0("jobs.start_failed");
    return KEEL_EINTERNAL;
  }
  return 0;
}

void jobs_stop(struct jobs *js) {
  if (!js) return;
  if (js->started) {
    pthread_mutex_lock(&js->mu);
    js->stopping = true;
    pthread_cond_signal(&js->cv);
    pthread_mutex_unlock(&js->mu);
    pthread_join(js->thread, NULL);
  }
  for (size_t i = 0; i < js->n; i++) pthread_mutex_destroy(&js->jobs[i].run_mu);
  pthread_cond_destroy(&js->cv);
  pthread_mutex_destroy(&js->mu);
  xfree(js);
}

int jobs_run_now(struct jobs *js, const char *name, int64_t *duration_us) {
  for (size_t i = 0; i < js->n; i++) {
    if (strcmp(js->jobs[i].name, name) == 0) return run(&js->jobs[i], duration_us);
  }
  return KEEL_ENOTFOUND;
}

int jobs_render_metrics(struct jobs *js, struct buf *out) {
  if (!js) return 0;
  int rc = buf_printf(out,
                      "# HELP keel_job_runs_total Runs of the periodic jobs by result.\n"
                      "# TYPE keel_job_runs_total counter\n");
  for (size_t i = 0; i < js->n; i++) {
    struct job *j = &js->jobs[i];
    rc |= buf_printf(out,
                     "keel_job_runs_total{job=\"%s\",result=\"ok\"} %llu\n"
                     "keel_job_runs_total{job=\"%s\",result=\"failed\"} %llu\n",
                     j->name, (unsigned long long)atomic_load(&j->ok), j->name,
                     (unsigned long long)atomic_load(&j->failed));
  }
  rc |= buf_printf(out,
                   "# HELP keel_job_last_run_timestamp_seconds When a job last ran (0: "
                   "never).\n"
                   "# TYPE keel_job_last_run_timestamp_seconds gauge\n");
  for (size_t i = 0; i < js->n; i++) {
    long long us = atomic_load(&js->jobs[i].last_run_us);
    rc |= buf_printf(out, "keel_job_last_run_timestamp_seconds{job=\"%s\"} %lld.%06lld\n",
                     js->jobs[i].name, us / 1000000, us % 1000000);
  }
  rc |= buf_printf(out,
                   "# HELP keel_job_last_duration_seconds How long a job's last run took.\n"
                   "# TYPE keel_job_last_duration_seconds gauge\n");
  for (size_t i = 0; i < js->n; i++) {
    long long us = atomic_load(&js->jobs[i].last_duration_us);
    rc |= buf_printf(out, "keel_job_last_duration_seconds{job=\"%s\"} %lld.%06lld\n",
                     js->jobs[i].name, us / 1000000, us % 1000000);
  }
  return rc ? -1 : 0;
}
