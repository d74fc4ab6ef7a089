/*
 * config.h — keel's settings: one table, four sources.
 *
 * Precedence, lowest to highest: built-in defaults < config file (--config
 * FILE or KEEL_CONFIG) < environment variables (KEEL_<NAME>, the setting name
 * upper-cased with '.' → '_', e.g. http.threads → KEEL_HTTP_THREADS) < command
 * line flags (--listen, --data-dir, --store, --dev, and --set name=value for
 * any setting).
 *
 * The config file is UTF-8 text, one "name = value" per line; '#' starts a
 * comment line; values may be double-quoted (then \" and \\ escape); blank
 * lines are ignored. An unknown name or a bad value is an error naming the
 * file and line.
 *
 * Every setting is a row of the table in config.c and a row of
 * docs/configuration.md (a unit test keeps the two in step).
 *
 * Ownership: struct config owns its strings; config_free releases them.
 * Thread-safety: load before starting threads; read-only afterwards.
 */
#ifndef KEEL_CORE_CONFIG_H
#define KEEL_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
  char *listen;                      /* listen: "host:port" (IPv4, [IPv6] or a name) */
  char *data_dir;                    /* data_dir: directory of the SQLite database and secrets */
  char *store_url;                   /* store.url: "" (SQLite in data_dir) or postgres://… */
  char *public_url;                  /* public_url: base URL used in links (emails, upgrade) */
  bool dev;                          /* dev: development mode (test clock, mail in logs) */
  char *log_level;                   /* log.level: debug | info | warn | error */
  bool log_access;                   /* log.access: one line per HTTP request */
  int64_t http_threads;              /* http.threads: I/O threads (0: one per core) */
  int64_t http_workers;              /* http.workers: blocking-work threads (0: 2 per core) */
  int64_t http_max_connections;      /* http.max_connections */
  int64_t http_per_ip_connections;   /* http.per_ip_connections */
  int64_t http_timeout_s;            /* http.timeout_s: idle connection timeout */
  int64_t http_body_max;             /* http.body_max: default request body limit */
  int64_t http_ingest_body_max;      /* http.ingest_body_max: ingestion body limit */
  int64_t http_shutdown_grace_s;     /* http.shutdown_grace_s */
  bool http_trust_proxy;             /* http.trust_proxy: honour X-Forwarded-For/-Proto */
  int64_t sqlite_busy_timeout_ms;    /* sqlite.busy_timeout_ms */
  int64_t sqlite_cache_kib;          /* sqlite.cache_kib: page cache per connection */
  char *secret;                      /* secret: hex server secret ("" → data_dir/keel.secret) */
  char *plans_file;                  /* plans.file: override of the plan registry */
  char *prices_file;                 /* prices.file: override of the model price table */
  char *http_allowed_origins;        /* http.allowed_origins: CSRF Origin allow-list */
  int64_t auth_login_per_ip_per_min; /* auth.login_per_ip_per_min */
  int64_t ingest_queue_max;          /* ingest.queue_max: backpressure threshold (events) */
  int64_t dead_letters_expiry_interval_s; /* dead_letters.expiry_interval_s */
  bool metering_enabled;                  /* metering.enabled: usage records and quotas */
  int64_t postgres_pool_size;             /* postgres.pool_size: reader connections */
  char *postgres_app_role;                /* postgres.app_role: granted by keel migrate */
  bool postgres_prepared_statements;      /* postgres.prepared_statements */
  bool postgres_test_leaky_scope;         /* postgres.test_leaky_scope: control test hook */
  int64_t usage_job_interval_s;           /* usage.job_interval_s: rollover/refresh jobs */
};

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL };

enum config_source { CONFIG_SRC_DEFAULT, CONFIG_SRC_FILE, CONFIG_SRC_ENV, CONFIG_SRC_FLAG };

struct config_setting {
  const char *name; /* "http.threads" */
  enum config_type type;
  size_t offset;           /* offsetof(struct config, field) */
  const char *default_str; /* the default, as text */
  int64_t min, max;        /* bounds for CONFIG_INT */
  const char *help;        /* one line for --help and docs */
};

/* The table (for docs, --help and tests). */
const struct config_setting *config_settings(size_t *count);
const struct config_setting *config_setting_find(const char *name);
/* "http.threads" → "KEEL_HTTP_THREADS" into out. */
void config_env_name(const char *name, char *out, size_t outsize);

/* Fills cfg with the defaults (all strings owned). */
void config_defaults(struct config *cfg);
void config_free(struct config *cfg);

/*
 * Sets one setting from text, validating it (bounds for ints; true/false/1/0/
 * yes/no/on/off for bools). Returns 0, or -1 with a message in err
 * ("http.threads: must be an integer between 0 and 256").
 */
int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen);
/* Reads a config file. Returns 0, or -1 with "FILE:LINE: message" in err. */
int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);
/* Applies KEEL_* variables from envp (NULL-terminated). KEEL_CONFIG and
 * variables that name no setting are ignored... except that an unknown
 * KEEL_* name is reported through warn (may be NULL). Returns 0 or -1. */
int config_load_env(struct config *cfg, char *const *envp, char *err, size_t errlen,
                    void (*warn)(const char *unknown_var));

#endif
