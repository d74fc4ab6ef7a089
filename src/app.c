/*
 * app.c — process lifecycle: configuration, logging, store, and the server
 * loop with graceful shutdown.
 *
 * Shutdown (SIGTERM or SIGINT): readiness turns false, the listening socket
 * closes (no new connections), in-flight requests get
 * http.shutdown_grace_s to finish, the worker pool drains, the store writer
 * commits everything queued, then the process exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/ingest.h"
#include "app.h"
#include "core/crypto.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/workers.h"
#include "core/xmalloc.h"
#include "domain/password.h"
#include "domain/plans.h"
#include "domain/pricing.h"
#include "http/http.h"
#include "keel_build.h"

int app_config(const struct app_flags *flags, char *const *envp, struct config *cfg) {
  char err[512];
  config_defaults(cfg);
  const char *file = flags->config_file;
  if (!file) file = getenv("KEEL_CONFIG");
  if (file && file[0] && config_load_file(cfg, file, err, sizeof(err)) != 0) {
    fprintf(stderr, "keel: %s\n", err);
    return -1;
  }
  if (config_load_env(cfg, envp, err, sizeof(err), NULL) != 0) {
    fprintf(stderr, "keel: %s\n", err);
    return -1;
  }
  struct {
    const char *name, *value;
  } direct[] = {
      {"listen", flags->listen},
      {"data_dir", flags->data_dir},
      {"store.url", flags->store_url},
      {"dev", flags->dev ? "true" : NULL},
  };
  for (size_t i = 0; i < sizeof(direct) / sizeof(direct[0]); i++) {
    if (!direct[i].value) continue;
    if (config_set(cfg, direct[i].name, direct[i].value, err, sizeof(err)) != 0) {
      fprintf(stderr, "keel: %s\n", err);
      return -1;
    }
  }
  for (int i = 0; i < flags->nsets; i++) {
    const char *eq = strchr(flags->sets[i], '=');
    if (!eq || eq == flags->sets[i]) {
      fprintf(stderr, "keel: --set expects name=value, got '%s'\n", flags->sets[i]);
      return -1;
    }
    char name[128];
    size_t n = (size_t)(eq - flags->sets[i]);
    if (n >= sizeof(name)) n = sizeof(name) - 1;
    memcpy(name, flags->sets[i], n);
    name[n] = '\0';
    if (config_set(cfg, name, eq + 1, err, sizeof(err)) != 0) {
      fprintf(stderr, "keel: %s\n", err);
      return -1;
    }
  }
  return 0;
}

void app_logging(const struct config *cfg) {
  enum log_level lvl = LOG_INFO;
  log_level_parse(cfg->log_level, &lvl);
  log_set_level(lvl);
}

int app_secret(const struct config *cfg, uint8_t out[APP_SECRET_MAX]) {
  if (cfg->secret && cfg->secret[0]) {
    size_t hexlen = strlen(cfg->secret);
    if (hexlen < 64 || hexlen > 2 * APP_SECRET_MAX || hexlen % 2 ||
        crypto_unhex(cfg->secret, hexlen, out, hexlen / 2) != 0) {
      fprintf(stderr, "keel: the secret setting must be 64 to 128 hex characters\n");
      return -1;
    }
    return (int)(hexlen / 2);
  }
  char path[4096];
  snprintf(path, sizeof(path), "%s/keel.secret", cfg->data_dir);
  char hex[2 * APP_SECRET_MAX + 2];
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, hex, sizeof(hex) - 1);
      close(fd);
      while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r')) n--;
      if (n < 64 || n % 2 || crypto_unhex(hex, (size_t)n, out, (size_t)n / 2) != 0) {
        fprintf(stderr, "keel: %s does not hold a hex secret of 32+ bytes\n", path);
        return -1;
      }
      crypto_wipe(hex, sizeof(hex));
      return (int)(n / 2);
    }
    if (errno != ENOENT) break;
    /* First start: create it. O_EXCL makes a concurrent creator lose and
     * read the winner's secret on the next attempt. */
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) break;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      break;
    }
    uint8_t raw[32];
    crypto_random(raw, sizeof(raw));
    crypto_hex(raw, sizeof(raw), hex);
    hex[64] = '\n';
    ssize_t w = write(fd, hex, 65);
    fsync(fd);
    close(fd);
    crypto_wipe(raw, sizeof(raw));
    if (w != 65) break;
  }
  fprintf(stderr, "keel: cannot read or create %s: %s\n", path, strerror(errno));
  return -1;
}

int app_init(const struct config *cfg) {
  if (crypto_init() != 0) {
    fprintf(stderr, "keel: libsodium failed to initialise\n");
    return -1;
  }
  json_set_alloc_funcs(xmalloc, xfree);
  char err[512];
  if (plans_load(cfg->plans_file, err, sizeof(err)) != 0) {
    fprintf(stderr, "keel: %s\n", err);
    return -1;
  }
  /* prices.file, else what `keel prices import` wrote into the data dir. */
  char prices_default[4096];
  const char *prices = cfg->prices_file;
  if (!prices[0]) {
    snprintf(prices_default, sizeof(prices_default), "%s/%s", cfg->data_dir, PRICING_DATA_DIR_FILE);
    if (access(prices_default, F_OK) == 0) prices = prices_default;
  }
  if (pricing_load(prices, err, sizeof(err)) != 0) {
    fprintf(stderr, "keel: %s\n", err);
    return -1;
  }
  return 0;
}

int app_store_open(const struct config *cfg, bool migrate, struct store **out) {
  char err[512];
  struct store_options so = {.data_dir = cfg->data_dir,
                             .url = cfg->store_url,
                             .busy_timeout_ms = (int)cfg->sqlite_busy_timeout_ms,
                             .cache_kib = (int)cfg->sqlite_cache_kib,
                             .migrate_on_open = migrate,
                             .pool_size = (int)cfg->postgres_pool_size,
                             .app_role = cfg->postgres_app_role,
                             .no_prepare = !cfg->postgres_prepared_statements,
#ifdef KEEL_TEST_HOOKS
                             /* the leakage test's control only: never in a release build */
                             .leaky_scope = cfg->dev && cfg->postgres_test_leaky_scope
#endif
  };
  if (store_open(&so, out, err, sizeof(err)) != 0) {
    fprintf(stderr, "keel: %s\n", err);
    log_error("store.open_failed", LS("error", err));
    return -1;
  }
  return 0;
}

static unsigned cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

int app_serve(const struct config *cfg) {
  /* Signals are taken by sigwait below; every thread started from here on
   * inherits the mask, so none of them is interrupted. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  signal(SIGPIPE, SIG_IGN);

  app_logging(cfg);
  if (app_init(cfg) != 0) return 1;
  uint8_t secret[APP_SECRET_MAX];
  int secret_len = app_secret(cfg, secret);
  if (secret_len < 0) return 1;
  if (password_init() != 0) {
    fprintf(stderr, "keel: cannot prepare password hashing (out of memory?)\n");
    return 1;
  }
  struct store *store = NULL;
  if (app_store_open(cfg, true, &store) != 0) return 1;

  unsigned nworkers = cfg->http_workers ? (unsigned)cfg->http_workers : 2 * cores();
  struct workers *workers = workers_start(nworkers, LIMIT_WORKER_QUEUE_MAX, "keel-worker");
  if (!workers) {
    fprintf(stderr, "keel: cannot start worker threads\n");
    store_close(store);
    return 1;
  }
  struct api_options ao = {.cfg = cfg,
                           .store = store,
                           .workers = workers,
                           .secret = secret,
                           .secret_len = (size_t)secret_len};
  struct api *api = api_new(&ao);
  crypto_wipe(secret, sizeof(secret));
  struct http_handler handler = api_http_handler(api);
  struct http_options ho = {
      .listen = cfg->listen,
      .threads = cfg->http_threads ? (unsigned)cfg->http_threads : cores(),
      .max_connections = (unsigned)cfg->http_max_connections,
      .per_ip_connections = (unsigned)cfg->http_per_ip_connections,
      .timeout_s = (unsigned)cfg->http_timeout_s,
      .trust_proxy = cfg->http_trust_proxy,
  };
  char err[512];
  struct http_server *http = http_start(&ho, &handler, err, sizeof(err));
  if (!http) {
    fprintf(stderr, "keel: %s\n", err);
    log_error("server.listen_failed", LS("error", err));
    workers_shutdown(workers);
    api_free(api);
    store_close(store);
    return 1;
  }
  api_set_ready(api, true);
  log_info("server.started", LS("listen", cfg->listen), LI("port", http_port(http)),
           LS("store", store_backend(store)), LS("data_dir", cfg->data_dir),
           LS("version", KEEL_VERSION), LB("dev", cfg->dev), LI("io_threads", ho.threads),
           LI("workers", nworkers));
  if (cfg->dev) log_warn0("server.dev_mode");

  int sig = 0;
  sigwait(&stop_signals, &sig);
  int64_t t0 = time_mono_us();
  log_info("server.stopping", LS("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
           LI("in_flight", http_inflight(http)));
  api_set_draining(api, true);
  http_quiesce(http);
  unsigned left = http_drain(http, t0 + cfg->http_shutdown_grace_s * US_PER_SEC);
  workers_shutdown(workers); /* runs what is queued; resumes their connections */
  /* Batches handed to the store writer are committed and answered before
   * the connections close: nothing acknowledged is lost, and no writer
   * callback outlives its request. */
  ingest_drain(api_ingest(api));
  left = http_drain(http, time_mono_us() + US_PER_SEC);
  http_stop(http);
  api_free(api); /* before the store closes: it flushes API keys' last_used_at */
  store_close(store);
  pricing_shutdown();
  log_info("server.stopped", LI("duration_ms", (time_mono_us() - t0) / 1000),
           LI("abandoned", left));
  return 0;
}
