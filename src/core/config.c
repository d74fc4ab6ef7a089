/*
 * config.c — the settings table and its four sources (defaults, file,
 * environment, flags).
 *
 * Invariants:
 *  - settings[] has exactly one row per field of struct config, and
 *    docs/configuration.md one row per setting (test_config checks the docs).
 *  - Every value, whatever its source, goes through setting_apply, so bounds
 *    and validators hold for defaults, files, variables and flags alike; a
 *    default that failed its own validation would abort in config_defaults.
 *  - On failure a setting keeps its previous value.
 *
 * Thread-safety: none needed; configuration is loaded before threads start.
 */
#include "core/config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/slice.h"
#include "core/xmalloc.h"

/* A config file is a few dozen lines; anything this large is the wrong file. */
#define CONFIG_FILE_MAX (1024 * 1024)
/* Longest setting name (the longest today is 23 bytes). */
#define CONFIG_NAME_MAX 64
/* Longest environment variable name reported to the warn callback. */
#define CONFIG_ENV_NAME_MAX 128

/* The int defaults below are text (the table holds text); these keep them in
 * step with limits.h at compile time. */
_Static_assert(LIMIT_CONNECTIONS_DEFAULT == 4096, "http.max_connections default");
_Static_assert(LIMIT_CONNECTIONS_PER_IP_DEFAULT == 256, "http.per_ip_connections default");
_Static_assert(LIMIT_CONNECTION_TIMEOUT_S == 30, "http.timeout_s default");
_Static_assert(LIMIT_BODY_DEFAULT == 65536, "http.body_max default");
_Static_assert(LIMIT_BODY_INGEST == 1048576, "http.ingest_body_max default");
_Static_assert(LIMIT_SHUTDOWN_GRACE_S == 10, "http.shutdown_grace_s default");

#define STR_ROW(n, field, def, help) \
  { (n), CONFIG_STRING, offsetof(struct config, field), (def), 0, 0, (help) }
#define INT_ROW(n, field, def, lo, hi, help) \
  { (n), CONFIG_INT, offsetof(struct config, field), (def), (lo), (hi), (help) }
#define BOOL_ROW(n, field, def, help) \
  { (n), CONFIG_BOOL, offsetof(struct config, field), (def), 0, 0, (help) }

static const struct config_setting settings[] = {
    STR_ROW("listen", listen, "127.0.0.1:8080", "address to listen on: host:port"),
    STR_ROW("data_dir", data_dir, "./keel-data",
            "directory holding the SQLite database and secrets"),
    STR_ROW("store.url", store_url, "",
            "storage URL: empty for SQLite in data_dir, or postgres://..."),
    STR_ROW("public_url", public_url, "http://127.0.0.1:8080",
            "base URL used in links sent to users (emails, upgrade pages)"),
    BOOL_ROW("dev", dev, "false", "development mode: test clock, mail printed to the log"),
    STR_ROW("log.level", log_level, "info", "minimum log level: debug, info, warn or error"),
    BOOL_ROW("log.access", log_access, "true", "log one line per HTTP request"),
    INT_ROW("http.threads", http_threads, "0", 0, 256, "HTTP I/O threads; 0 means one per core"),
    INT_ROW("http.workers", http_workers, "0", 0, 1024,
            "threads for blocking work; 0 means two per core"),
    INT_ROW("http.max_connections", http_max_connections, "4096", 1, 1000000,
            "concurrent connections accepted"),
    INT_ROW("http.per_ip_connections", http_per_ip_connections, "256", 0, 100000,
            "concurrent connections from one IP address; 0 means unlimited"),
    INT_ROW("http.timeout_s", http_timeout_s, "30", 1, 3600, "idle connection timeout in seconds"),
    INT_ROW("http.body_max", http_body_max, "65536", 1, LIMIT_BODY_CEILING,
            "request body limit in bytes for API routes"),
    INT_ROW("http.ingest_body_max", http_ingest_body_max, "1048576", 1, LIMIT_BODY_CEILING,
            "request body limit in bytes for ingestion routes"),
    INT_ROW("http.shutdown_grace_s", http_shutdown_grace_s, "10", 0, 600,
            "seconds in-flight requests get to finish on shutdown"),
    BOOL_ROW("http.trust_proxy", http_trust_proxy, "false",
             "trust X-Forwarded-For and X-Forwarded-Proto from the peer"),
    INT_ROW("sqlite.busy_timeout_ms", sqlite_busy_timeout_ms, "5000", 0, 600000,
            "how long SQLite waits for a lock, in milliseconds"),
    INT_ROW("sqlite.cache_kib", sqlite_cache_kib, "16384", 256, 4194304,
            "SQLite page cache per connection, in KiB"),
    STR_ROW("secret", secret, "",
            "server secret (64+ hex chars) for session and key MACs; empty: data_dir/keel.secret"),
    STR_ROW("plans.file", plans_file, "", "JSON file merged over the built-in plan registry"),
    STR_ROW("prices.file", prices_file, "",
            "model price file consulted before the built-in table; empty: data_dir/prices.json"),
    STR_ROW("http.allowed_origins", http_allowed_origins, "",
            "comma-separated origins allowed on cookie-authenticated changes; empty: public_url"),
    INT_ROW("auth.login_per_ip_per_min", auth_login_per_ip_per_min, "30", 1, 100000,
            "login and sign-up attempts per minute from one IP address"),
    INT_ROW("ingest.queue_max", ingest_queue_max, "100000", 1, 100000000,
            "events waiting for the store writer above which ingestion answers 503"),
    INT_ROW("dead_letters.expiry_interval_s", dead_letters_expiry_interval_s, "60", 1, 86400,
            "seconds between runs of the job that deletes dead letters older than 7 days"),
    BOOL_ROW("metering.enabled", metering_enabled, "true",
             "usage records and quota enforcement on ingestion (false: benchmark reference)"),
    INT_ROW("postgres.pool_size", postgres_pool_size, "8", 1, 256,
            "PostgreSQL connections for reads (the writer has one more)"),
    STR_ROW("postgres.app_role", postgres_app_role, "keel_app",
            "role `keel migrate` grants the server's privileges to"),
    BOOL_ROW("postgres.prepared_statements", postgres_prepared_statements, "true",
             "prepare statements once per connection; false behind a transaction-mode pooler"),
    BOOL_ROW("postgres.test_leaky_scope", postgres_test_leaky_scope, "false",
             "test builds with --dev only: session-level tenant setting (broken isolation)"),
    INT_ROW("usage.job_interval_s", usage_job_interval_s, "300", 1, 86400,
            "seconds between runs of the usage rollover and counter refresh jobs"),
};

#define SETTINGS_COUNT (sizeof(settings) / sizeof(settings[0]))

/* Checks beyond the type: returns NULL when value is fine, else the reason. */
typedef const char *(*config_validate_fn)(const char *value);

static const char *validate_log_level(const char *value) {
  return log_level_parse(value, NULL) == 0 ? NULL : "must be one of debug, info, warn, error";
}

static const struct {
  const char *name;
  config_validate_fn validate;
} validators[] = {
    {"log.level", validate_log_level},
};

/* Environment variables that share the KEEL_ prefix but are not settings:
 * the config file path, the test suite's source root, and the SDK's. */
static const char *const env_not_settings[] = {
    "KEEL_CONFIG",
    "KEEL_SOURCE_ROOT",
    "KEEL_API_KEY",
    "KEEL_URL",
};

static const struct {
  const char *text;
  bool value;
} bool_spellings[] = {
    {"true", true},   {"1", true},  {"yes", true}, {"on", true},
    {"false", false}, {"0", false}, {"no", false}, {"off", false},
};

const struct config_setting *config_settings(size_t *count) {
  if (count != NULL) *count = SETTINGS_COUNT;
  return settings;
}

const struct config_setting *config_setting_find(const char *name) {
  if (name == NULL) return NULL;
  for (size_t i = 0; i < SETTINGS_COUNT; i++) {
    if (strcmp(settings[i].name, name) == 0) return &settings[i];
  }
  return NULL;
}

void config_env_name(const char *name, char *out, size_t outsize) {
  static const char prefix[] = "KEEL_";
  size_t n = 0;

  if (outsize == 0) return;
  for (size_t i = 0; prefix[i] != '\0' && n + 1 < outsize; i++) out[n++] = prefix[i];
  for (size_t i = 0; name != NULL && name[i] != '\0' && n + 1 < outsize; i++) {
    char c = name[i];
    if (c == '.') c = '_';
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    out[n++] = c;
  }
  out[n] = '\0';
}

/* --- applying one value ------------------------------------------------------ */

static void *setting_slot(struct config *cfg, const struct config_setting *s) {
  return (char *)cfg + s->offset;
}

static const char *validate_extra(const struct config_setting *s, const char *value) {
  for (size_t i = 0; i < sizeof(validators) / sizeof(validators[0]); i++) {
    if (strcmp(validators[i].name, s->name) == 0) return validators[i].validate(value);
  }
  return NULL;
}

static int parse_bool(const char *value, bool *out) {
  for (size_t i = 0; i < sizeof(bool_spellings) / sizeof(bool_spellings[0]); i++) {
    if (strcasecmp(value, bool_spellings[i].text) == 0) {
      *out = bool_spellings[i].value;
      return 0;
    }
  }
  return -1;
}

/*
 * Validates value and stores it. Returns 0, or -1 with the reason (without
 * the setting's name, which callers prefix as they see fit) in why.
 */
static int setting_apply(struct config *cfg, const struct config_setting *s, const char *value,
                         char *why, size_t whylen) {
  const char *reason;
  int64_t n;
  bool b;

  switch (s->type) {
    case CONFIG_STRING: {
      char **slot = setting_slot(cfg, s);
      reason = validate_extra(s, value);
      if (reason != NULL) {
        snprintf(why, whylen, "%s", reason);
        return -1;
      }
      /* Copy before freeing: value may be the current string itself. */
      char *copy = xstrdup(value);
      xfree(*slot);
      *slot = copy;
      return 0;
    }
    case CONFIG_INT:
      if (slice_to_i64(slice_from_cstr(value), &n) != 0 || n < s->min || n > s->max) {
        snprintf(why, whylen, "must be an integer between %lld and %lld", (long long)s->min,
                 (long long)s->max);
        return -1;
      }
      *(int64_t *)setting_slot(cfg, s) = n;
      return 0;
    case CONFIG_BOOL:
      if (parse_bool(value, &b) != 0) {
        snprintf(why, whylen, "must be a boolean (true/false, 1/0, yes/no, on/off)");
        return -1;
      }
      *(bool *)setting_slot(cfg, s) = b;
      return 0;
  }
  snprintf(why, whylen, "has an unknown type");
  return -1;
}

static void set_err(char *err, size_t errlen, const char *prefix, const char *why) {
  if (err != NULL && errlen > 0) snprintf(err, errlen, "%s: %s", prefix, why);
}

void config_defaults(struct config *cfg) {
  char why[128];

  memset(cfg, 0, sizeof(*cfg));
  for (size_t i = 0; i < SETTINGS_COUNT; i++) {
    int rc = setting_apply(cfg, &settings[i], settings[i].default_str, why, sizeof(why));
    /* A default that fails its own validation is a bug in the table. */
    KEEL_ASSERT(rc == 0);
  }
}

void config_free(struct config *cfg) {
  if (cfg == NULL) return;
  for (size_t i = 0; i < SETTINGS_COUNT; i++) {
    if (settings[i].type != CONFIG_STRING) continue;
    char **slot = setting_slot(cfg, &settings[i]);
    xfree(*slot);
    *slot = NULL;
  }
}

int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen) {
  const struct config_setting *s = config_setting_find(name);
  char why[128];

  if (s == NULL) {
    set_err(err, errlen, name != NULL ? name : "(null)", "unknown setting");
    return -1;
  }
  if (value == NULL) {
    set_err(err, errlen, s->name, "needs a value");
    return -1;
  }
  if (setting_apply(cfg, s, value, why, sizeof(why)) != 0) {
    set_err(err, errlen, s->name, why);
    return -1;
  }
  return 0;
}

/* --- config file ----------------------------------------------------------- */

/* Reads the whole file into a NUL-terminated heap buffer. */
static int file_read_all(const char *path, char **out, size_t *len_out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *data = NULL;
  size_t len = 0;
  int rc = -1;

  if (f == NULL) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  data = xmalloc(CONFIG_FILE_MAX + 1);
  len = fread(data, 1, CONFIG_FILE_MAX + 1, f);
  if (ferror(f)) {
    if (err != NULL && errlen > 0) snprintf(err, errlen, "%s: cannot read", path);
    goto fail;
  }
  if (len > CONFIG_FILE_MAX) {
    if (err != NULL && errlen > 0) {
      snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
    }
    goto fail;
  }
  data[len] = '\0';
  *out = data;
  *len_out = len;
  data = NULL;
  rc = 0;

fail:
  xfree(data);
  fclose(f);
  return rc;
}

/*
 * Decodes a double-quoted value: v starts at the opening quote. \" and \\ are
 * the only escapes; nothing but blanks may follow the closing quote. Writes
 * the decoded bytes into out (at least v.len bytes). Returns the decoded
 * length, or -1 with a reason.
 */
static long unquote(struct slice v, char *out, const char **reason) {
  size_t n = 0;

  for (size_t i = 1; i < v.len; i++) {
    char c = v.p[i];
    if (c == '"') {
      if (slice_trim(slice_make(v.p + i + 1, v.len - i - 1)).len != 0) {
        *reason = "unexpected text after the closing quote";
        return -1;
      }
      return (long)n;
    }
    if (c == '\\') {
      if (i + 1 >= v.len || (v.p[i + 1] != '"' && v.p[i + 1] != '\\')) {
        *reason = "only \\\" and \\\\ may be escaped";
        return -1;
      }
      c = v.p[++i];
    }
    out[n++] = c;
  }
  *reason = "missing closing quote";
  return -1;
}

/* Applies one line. Returns 0, or -1 with the reason in why. */
static int file_apply_line(struct config *cfg, struct slice line, char *why, size_t whylen) {
  struct slice name, value;
  char name_buf[CONFIG_NAME_MAX + 1];
  char inner[128];
  const struct config_setting *s;
  const char *reason = NULL;
  char *text = NULL;
  long n;
  int rc = -1;

  if (!slice_cut(line, '=', &name, &value)) {
    snprintf(why, whylen, "expected \"name = value\"");
    return -1;
  }
  name = slice_trim(name);
  value = slice_trim(value);
  if (name.len == 0) {
    snprintf(why, whylen, "missing setting name before '='");
    return -1;
  }
  s = NULL;
  if (name.len <= CONFIG_NAME_MAX) {
    memcpy(name_buf, name.p, name.len);
    name_buf[name.len] = '\0';
    s = config_setting_find(name_buf);
  }
  if (s == NULL) {
    snprintf(why, whylen, "unknown setting '%.*s'", (int)(name.len > 64 ? 64 : name.len), name.p);
    return -1;
  }
  if (memchr(value.p, '\0', value.len) != NULL) {
    snprintf(why, whylen, "%s: value contains a NUL byte", s->name);
    return -1;
  }

  text = xmalloc(value.len + 1);
  if (value.len > 0 && value.p[0] == '"') {
    n = unquote(value, text, &reason);
    if (n < 0) {
      snprintf(why, whylen, "%s: %s", s->name, reason);
      goto fail;
    }
  } else {
    memcpy(text, value.p, value.len);
    n = (long)value.len;
  }
  text[n] = '\0';
  if (setting_apply(cfg, s, text, inner, sizeof(inner)) != 0) {
    snprintf(why, whylen, "%s: %s", s->name, inner);
    goto fail;
  }
  rc = 0;

fail:
  xfree(text);
  return rc;
}

int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen) {
  char *data = NULL;
  size_t len = 0;
  struct slice rest;
  unsigned long lineno = 0;
  int rc;

  rc = file_read_all(path, &data, &len, err, errlen);
  if (rc) return -1;

  rest = slice_make(data, len);
  /* Editors on some systems start UTF-8 files with a byte-order mark. */
  if (slice_starts_with(rest, SLICE_LIT("\xEF\xBB\xBF"))) rest = slice_make(data + 3, len - 3);

  while (rest.len > 0) {
    struct slice line;
    char why[256];

    slice_cut(rest, '\n', &line, &rest);
    lineno++;
    if (line.len > 0 && line.p[line.len - 1] == '\r') line.len--;
    line = slice_trim(line);
    if (line.len == 0 || line.p[0] == '#') continue;
    rc = file_apply_line(cfg, line, why, sizeof(why));
    if (rc) {
      if (err != NULL && errlen > 0) snprintf(err, errlen, "%s:%lu: %s", path, lineno, why);
      goto fail;
    }
  }
  rc = 0;

fail:
  xfree(data);
  return rc;
}

/* --- environment ----------------------------------------------------------- */

static bool env_is_excluded(struct slice var) {
  for (size_t i = 0; i < sizeof(env_not_settings) / sizeof(env_not_settings[0]); i++) {
    if (slice_eq_cstr(var, env_not_settings[i])) return true;
  }
  return false;
}

static const struct config_setting *env_setting_find(struct slice var) {
  for (size_t i = 0; i < SETTINGS_COUNT; i++) {
    char env[CONFIG_ENV_NAME_MAX];
    config_env_name(settings[i].name, env, sizeof(env));
    if (slice_eq_cstr(var, env)) return &settings[i];
  }
  return NULL;
}

int config_load_env(struct config *cfg, char *const *envp, char *err, size_t errlen,
                    void (*warn)(const char *unknown_var)) {
  if (envp == NULL) return 0;
  for (size_t i = 0; envp[i] != NULL; i++) {
    const char *entry = envp[i];
    const char *eq = strchr(entry, '=');
    struct slice var;
    const struct config_setting *s;
    char why[128];

    if (eq == NULL || strncmp(entry, "KEEL_", 5) != 0) continue;
    var = slice_make(entry, (size_t)(eq - entry));
    if (env_is_excluded(var)) continue;
    s = env_setting_find(var);
    if (s == NULL) {
      /* Only the name is reported: the value may be a secret. */
      if (warn != NULL) {
        char name[CONFIG_ENV_NAME_MAX];
        size_t n = var.len < sizeof(name) - 1 ? var.len : sizeof(name) - 1;
        memcpy(name, var.p, n);
        name[n] = '\0';
        warn(name);
      }
      continue;
    }
    if (setting_apply(cfg, s, eq + 1, why, sizeof(why)) != 0) {
      if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%.*s (%s): %s", (int)var.len, var.p, s->name, why);
      }
      return -1;
    }
  }
  return 0;
}
