/*
 * test_config.c — the settings table, defaults, validation at the bounds,
 * bool spellings, the file parser (with line numbers in errors), the
 * environment, precedence default < file < env < set, and the docs table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/xmalloc.h"

/* --- helpers ---------------------------------------------------------------- */

struct temp_file {
  char path[64];
};

static void temp_write(struct temp_file *t, const char *content, size_t len) {
  int fd;
  snprintf(t->path, sizeof(t->path), "/tmp/keel-test-config-XXXXXX");
  fd = mkstemp(t->path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, len), (ssize_t)len);
  close(fd);
}

static void temp_remove(struct temp_file *t) {
  unlink(t->path);
}

static const char *str_field(const struct config *cfg, const struct config_setting *s) {
  return *(char *const *)((const char *)cfg + s->offset);
}

static int64_t int_field(const struct config *cfg, const struct config_setting *s) {
  return *(const int64_t *)((const char *)cfg + s->offset);
}

static bool bool_field(const struct config *cfg, const struct config_setting *s) {
  return *(const bool *)((const char *)cfg + s->offset);
}

/* --- the table -------------------------------------------------------------- */

static const struct {
  const char *name;
  enum config_type type;
  const char *def;
  int64_t min, max;
} expected_settings[] = {
    {"listen", CONFIG_STRING, "127.0.0.1:8080", 0, 0},
    {"data_dir", CONFIG_STRING, "./keel-data", 0, 0},
    {"store.url", CONFIG_STRING, "", 0, 0},
    {"public_url", CONFIG_STRING, "http://127.0.0.1:8080", 0, 0},
    {"dev", CONFIG_BOOL, "false", 0, 0},
    {"log.level", CONFIG_STRING, "info", 0, 0},
    {"log.access", CONFIG_BOOL, "true", 0, 0},
    {"http.threads", CONFIG_INT, "0", 0, 256},
    {"http.workers", CONFIG_INT, "0", 0, 1024},
    {"http.max_connections", CONFIG_INT, "4096", 1, 1000000},
    {"http.per_ip_connections", CONFIG_INT, "256", 0, 100000},
    {"http.timeout_s", CONFIG_INT, "30", 1, 3600},
    {"http.body_max", CONFIG_INT, "65536", 1, 16777216},
    {"http.ingest_body_max", CONFIG_INT, "1048576", 1, 16777216},
    {"http.shutdown_grace_s", CONFIG_INT, "10", 0, 600},
    {"http.trust_proxy", CONFIG_BOOL, "false", 0, 0},
    {"sqlite.busy_timeout_ms", CONFIG_INT, "5000", 0, 600000},
    {"sqlite.cache_kib", CONFIG_INT, "16384", 256, 4194304},
    {"secret", CONFIG_STRING, "", 0, 0},
    {"plans.file", CONFIG_STRING, "", 0, 0},
    {"prices.file", CONFIG_STRING, "", 0, 0},
    {"http.allowed_origins", CONFIG_STRING, "", 0, 0},
    {"auth.login_per_ip_per_min", CONFIG_INT, "30", 1, 100000},
    {"ingest.queue_max", CONFIG_INT, "100000", 1, 100000000},
    {"dead_letters.expiry_interval_s", CONFIG_INT, "60", 1, 86400},
    {"metering.enabled", CONFIG_BOOL, "true", 0, 0},
    {"postgres.pool_size", CONFIG_INT, "8", 1, 256},
    {"postgres.app_role", CONFIG_STRING, "keel_app", 0, 0},
    {"postgres.prepared_statements", CONFIG_BOOL, "true", 0, 0},
    {"postgres.test_leaky_scope", CONFIG_BOOL, "false", 0, 0},
    {"usage.job_interval_s", CONFIG_INT, "300", 1, 86400},
};
#define EXPECTED_COUNT (sizeof(expected_settings) / sizeof(expected_settings[0]))

static void test_table(void **state) {
  size_t n = 0;
  const struct config_setting *t = config_settings(&n);
  (void)state;
  assert_int_equal(n, EXPECTED_COUNT);
  for (size_t i = 0; i < EXPECTED_COUNT; i++) {
    const struct config_setting *s = config_setting_find(expected_settings[i].name);
    if (s == NULL) fail_msg("setting %s missing", expected_settings[i].name);
    assert_true(s >= t && s < t + n);
    assert_int_equal(s->type, expected_settings[i].type);
    assert_string_equal(s->default_str, expected_settings[i].def);
    assert_non_null(s->help);
    assert_true(strlen(s->help) > 0);
    if (s->type == CONFIG_INT) {
      assert_true(s->min == expected_settings[i].min);
      assert_true(s->max == expected_settings[i].max);
    }
  }
  /* every field has its own slot */
  for (size_t i = 0; i < n; i++) {
    assert_true(t[i].offset < sizeof(struct config));
    for (size_t j = i + 1; j < n; j++) {
      assert_true(t[i].offset != t[j].offset);
      assert_string_not_equal(t[i].name, t[j].name);
    }
  }
  assert_null(config_setting_find("nope"));
  assert_null(config_setting_find(""));
  assert_null(config_setting_find("HTTP.THREADS"));
  assert_null(config_setting_find(NULL));
}

static void test_defaults(void **state) {
  struct config cfg;
  (void)state;
  config_defaults(&cfg);
  assert_string_equal(cfg.listen, "127.0.0.1:8080");
  assert_string_equal(cfg.data_dir, "./keel-data");
  assert_string_equal(cfg.store_url, "");
  assert_string_equal(cfg.public_url, "http://127.0.0.1:8080");
  assert_false(cfg.dev);
  assert_string_equal(cfg.log_level, "info");
  assert_true(cfg.log_access);
  assert_int_equal(cfg.http_threads, 0);
  assert_int_equal(cfg.http_workers, 0);
  assert_int_equal(cfg.http_max_connections, LIMIT_CONNECTIONS_DEFAULT);
  assert_int_equal(cfg.http_per_ip_connections, LIMIT_CONNECTIONS_PER_IP_DEFAULT);
  assert_int_equal(cfg.http_timeout_s, LIMIT_CONNECTION_TIMEOUT_S);
  assert_int_equal(cfg.http_body_max, LIMIT_BODY_DEFAULT);
  assert_int_equal(cfg.http_ingest_body_max, LIMIT_BODY_INGEST);
  assert_int_equal(cfg.http_shutdown_grace_s, LIMIT_SHUTDOWN_GRACE_S);
  assert_false(cfg.http_trust_proxy);
  assert_int_equal(cfg.sqlite_busy_timeout_ms, 5000);
  assert_int_equal(cfg.sqlite_cache_kib, 16384);
  assert_int_equal(config_setting_find("http.body_max")->max, LIMIT_BODY_CEILING);
  config_free(&cfg);
  config_free(&cfg); /* twice is fine */
}

static void test_env_name(void **state) {
  static const struct {
    const char *name;
    size_t outsize;
    const char *want;
  } cases[] = {
      {"http.threads", 64, "KEEL_HTTP_THREADS"},
      {"listen", 64, "KEEL_LISTEN"},
      {"data_dir", 64, "KEEL_DATA_DIR"},
      {"sqlite.busy_timeout_ms", 64, "KEEL_SQLITE_BUSY_TIMEOUT_MS"},
      {"http.threads", 8, "KEEL_HT"},
      {"http.threads", 1, ""},
      {"", 64, "KEEL_"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char out[64];
    memset(out, 'X', sizeof(out));
    config_env_name(cases[i].name, out, cases[i].outsize);
    assert_string_equal(out, cases[i].want);
  }
}

/* --- config_set ------------------------------------------------------------- */

static void test_int_bounds(void **state) {
  size_t n = 0;
  const struct config_setting *t = config_settings(&n);
  (void)state;
  for (size_t i = 0; i < n; i++) {
    const struct config_setting *s = &t[i];
    struct config cfg;
    char v[32], err[256], want_err[256];
    if (s->type != CONFIG_INT) continue;
    config_defaults(&cfg);

    const int64_t good[] = {s->min, s->max};
    for (size_t g = 0; g < 2; g++) {
      snprintf(v, sizeof(v), "%lld", (long long)good[g]);
      if (config_set(&cfg, s->name, v, err, sizeof(err)) != 0)
        fail_msg("%s=%s: %s", s->name, v, err);
      assert_true(int_field(&cfg, s) == good[g]);
    }
    const int64_t bad[] = {s->min - 1, s->max + 1};
    snprintf(want_err, sizeof(want_err), "%s: must be an integer between %lld and %lld", s->name,
             (long long)s->min, (long long)s->max);
    for (size_t b = 0; b < 2; b++) {
      snprintf(v, sizeof(v), "%lld", (long long)bad[b]);
      assert_int_equal(config_set(&cfg, s->name, v, err, sizeof(err)), -1);
      assert_string_equal(err, want_err);
      assert_true(int_field(&cfg, s) == s->max); /* unchanged */
    }
    static const char *const junk[] = {"",    " 1",  "1 ",  "+1",  "0x10",
                                       "1e3", "abc", "1.0", "--1", "99999999999999999999"};
    for (size_t j = 0; j < sizeof(junk) / sizeof(junk[0]); j++) {
      assert_int_equal(config_set(&cfg, s->name, junk[j], err, sizeof(err)), -1);
      assert_true(int_field(&cfg, s) == s->max);
    }
    config_free(&cfg);
  }
}

static void test_bool_spellings(void **state) {
  static const struct {
    const char *text;
    int rc;
    bool value;
  } cases[] = {
      {"true", 0, true},      {"1", 0, true},    {"yes", 0, true},     {"on", 0, true},
      {"TRUE", 0, true},      {"Yes", 0, true},  {"false", 0, false},  {"0", 0, false},
      {"no", 0, false},       {"off", 0, false}, {"Off", 0, false},    {"", -1, false},
      {"2", -1, false},       {"y", -1, false},  {"truee", -1, false}, {" true", -1, false},
      {"enabled", -1, false},
  };
  static const char *const names[] = {"dev", "log.access", "http.trust_proxy"};
  (void)state;
  for (size_t s = 0; s < sizeof(names) / sizeof(names[0]); s++) {
    const struct config_setting *def = config_setting_find(names[s]);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
      struct config cfg;
      char err[256] = "";
      config_defaults(&cfg);
      bool before = bool_field(&cfg, def);
      int rc = config_set(&cfg, names[s], cases[i].text, err, sizeof(err));
      if (rc != cases[i].rc) fail_msg("%s=\"%s\": rc %d", names[s], cases[i].text, rc);
      assert_true(bool_field(&cfg, def) == (rc == 0 ? cases[i].value : before));
      if (rc) assert_true(strncmp(err, names[s], strlen(names[s])) == 0);
      config_free(&cfg);
    }
  }
}

static void test_strings_and_unknown(void **state) {
  static const struct {
    const char *name, *value;
    int rc;
    const char *err;
  } cases[] = {
      {"listen", "0.0.0.0:9000", 0, NULL},
      {"store.url", "", 0, NULL},
      {"public_url", "https://keel.example.com", 0, NULL},
      {"log.level", "debug", 0, NULL},
      {"log.level", "error", 0, NULL},
      {"log.level", "verbose", -1, "log.level: must be one of debug, info, warn, error"},
      {"log.level", "", -1, "log.level: must be one of debug, info, warn, error"},
      {"nope", "1", -1, "nope: unknown setting"},
      {"listen", NULL, -1, "listen: needs a value"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct config cfg;
    char err[256] = "";
    config_defaults(&cfg);
    assert_int_equal(config_set(&cfg, cases[i].name, cases[i].value, err, sizeof(err)),
                     cases[i].rc);
    const struct config_setting *s = config_setting_find(cases[i].name);
    if (cases[i].rc == 0) {
      assert_string_equal(str_field(&cfg, s), cases[i].value);
    } else {
      assert_string_equal(err, cases[i].err);
      if (s) assert_string_equal(str_field(&cfg, s), s->default_str);
    }
    config_free(&cfg);
  }
  /* err may be NULL; a value may be the setting's current string */
  struct config cfg;
  config_defaults(&cfg);
  assert_int_equal(config_set(&cfg, "listen", cfg.listen, NULL, 0), 0);
  assert_string_equal(cfg.listen, "127.0.0.1:8080");
  assert_int_equal(config_set(&cfg, "nope", "1", NULL, 0), -1);
  config_free(&cfg);
}

/* --- config file ------------------------------------------------------------ */

static void test_file_ok(void **state) {
  static const char content[] =
      "\xEF\xBB\xBF# keel config\n"
      "\n"
      "listen = 0.0.0.0:9000\r\n"
      "   # indented comment\n"
      "\tdata_dir\t=\t/var/lib/keel  \n"
      "public_url = \"  https://x.example/a \\\"b\\\" \\\\c  \"\n"
      "store.url = \"\"\n"
      "log.level=warn\n"
      "http.threads = 12\n"
      "http.threads = 16\n" /* last wins */
      "dev = on\n"
      "log.access = no\n"
      "http.body_max = 16777216\n"
      "sqlite.cache_kib = 256\n"
      "data_dir = /srv/keel # not a comment"; /* no final newline */
  struct temp_file t;
  struct config cfg;
  char err[512] = "";
  (void)state;

  temp_write(&t, content, sizeof(content) - 1);
  config_defaults(&cfg);
  if (config_load_file(&cfg, t.path, err, sizeof(err)) != 0) fail_msg("%s", err);
  assert_string_equal(cfg.listen, "0.0.0.0:9000");
  assert_string_equal(cfg.public_url, "  https://x.example/a \"b\" \\c  ");
  assert_string_equal(cfg.store_url, "");
  assert_string_equal(cfg.log_level, "warn");
  assert_int_equal(cfg.http_threads, 16);
  assert_true(cfg.dev);
  assert_false(cfg.log_access);
  assert_int_equal(cfg.http_body_max, 16777216);
  assert_int_equal(cfg.sqlite_cache_kib, 256);
  assert_string_equal(cfg.data_dir, "/srv/keel # not a comment");
  assert_int_equal(cfg.http_workers, 0); /* untouched: default */
  config_free(&cfg);
  temp_remove(&t);
}

static void test_file_errors(void **state) {
  static const struct {
    const char *content;
    size_t len; /* 0: strlen */
    unsigned line;
    const char *msg_has;
  } cases[] = {
      {"listen = a:1\n# c\nnonsense\n", 0, 3, "expected"},
      {"listen = a:1\nnope = 1\n", 0, 2, "unknown setting 'nope'"},
      {"http.threads = 257\n", 0, 1, "http.threads: must be an integer between 0 and 256"},
      {"\n\n\n\nhttp.threads = -1\n", 0, 5, "between 0 and 256"},
      {"http.timeout_s = 0\n", 0, 1, "between 1 and 3600"},
      {"dev = maybe\n", 0, 1, "dev: must be a boolean"},
      {"log.level = loud\n", 0, 1, "log.level: must be one of"},
      {"listen = \"open\n", 0, 1, "missing closing quote"},
      {"listen = \"a\\nb\"\n", 0, 1, "may be escaped"},
      {"listen = \"a\" b\n", 0, 1, "after the closing quote"},
      {"listen = \"a\\\"\n", 0, 1, "missing closing quote"},
      {" = 1\n", 0, 1, "missing setting name"},
      {"listen = a\0b\n", 13, 1, "NUL"},
      {"ok = 1\r\n", 0, 1, "unknown setting 'ok'"},
      {"listen = x\r\nhttp.threads = x\r\n", 0, 2, "http.threads"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct temp_file t;
    struct config cfg;
    char err[512] = "", prefix[128];
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].content);
    temp_write(&t, cases[i].content, len);
    config_defaults(&cfg);
    assert_int_equal(config_load_file(&cfg, t.path, err, sizeof(err)), -1);
    snprintf(prefix, sizeof(prefix), "%s:%u: ", t.path, cases[i].line);
    if (strncmp(err, prefix, strlen(prefix)) != 0) {
      fail_msg("case %zu: \"%s\" does not start with \"%s\"", i, err, prefix);
    }
    if (strstr(err, cases[i].msg_has) == NULL) {
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].msg_has);
    }
    config_free(&cfg);
    temp_remove(&t);
  }
}

static void test_file_missing(void **state) {
  struct config cfg;
  char err[512] = "";
  (void)state;
  config_defaults(&cfg);
  assert_int_equal(config_load_file(&cfg, "/nonexistent/keel.conf", err, sizeof(err)), -1);
  assert_non_null(strstr(err, "/nonexistent/keel.conf"));
  config_free(&cfg);
}

/* --- environment ------------------------------------------------------------ */

static char warned[8][64];
static size_t nwarned;

static void record_warn(const char *var) {
  if (nwarned < 8) snprintf(warned[nwarned], sizeof(warned[0]), "%s", var);
  nwarned++;
}

static void test_env(void **state) {
  char *env[] = {
      "PATH=/usr/bin",         "KEEL_HTTP_THREADS=8",
      "KEEL_LOG_LEVEL=debug",  "KEEL_DEV=yes",
      "KEEL_STORE_URL=",       "KEEL_CONFIG=/etc/keel.conf",
      "KEEL_SOURCE_ROOT=/src", "KEEL_API_KEY=kl_live_secret",
      "KEEL_URL=http://x",     "KEEL_BOGUS=topsecretvalue",
      "keel_http_workers=3",   "KEEL_http_workers=3",
      "KEEL_NOEQUALS",         NULL,
  };
  struct config cfg;
  char err[256] = "";
  (void)state;

  nwarned = 0;
  config_defaults(&cfg);
  assert_int_equal(config_set(&cfg, "store.url", "postgres://db", err, sizeof(err)), 0);
  assert_int_equal(config_load_env(&cfg, env, err, sizeof(err), record_warn), 0);
  assert_int_equal(cfg.http_threads, 8);
  assert_string_equal(cfg.log_level, "debug");
  assert_true(cfg.dev);
  assert_string_equal(cfg.store_url, "");
  assert_int_equal(cfg.http_workers, 0);
  /* only unknown KEEL_* names are reported, and never their values */
  assert_int_equal(nwarned, 2);
  assert_string_equal(warned[0], "KEEL_BOGUS");
  assert_string_equal(warned[1], "KEEL_http_workers");

  /* a NULL warn callback is fine */
  assert_int_equal(config_load_env(&cfg, env, err, sizeof(err), NULL), 0);
  assert_int_equal(config_load_env(&cfg, NULL, err, sizeof(err), NULL), 0);
  config_free(&cfg);
}

static void test_env_bad_value(void **state) {
  static const struct {
    const char *entry;
    const char *err;
  } cases[] = {
      {"KEEL_HTTP_THREADS=many",
       "KEEL_HTTP_THREADS (http.threads): must be an integer between 0 and 256"},
      {"KEEL_HTTP_TRUST_PROXY=perhaps", "KEEL_HTTP_TRUST_PROXY (http.trust_proxy): must be a"},
      {"KEEL_LOG_LEVEL=INFO", "KEEL_LOG_LEVEL (log.level): must be one of"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *env[] = {(char *)cases[i].entry, NULL};
    struct config cfg;
    char err[256] = "";
    config_defaults(&cfg);
    assert_int_equal(config_load_env(&cfg, env, err, sizeof(err), NULL), -1);
    if (strncmp(err, cases[i].err, strlen(cases[i].err)) != 0) fail_msg("got \"%s\"", err);
    config_free(&cfg);
  }
}

/* --- precedence ------------------------------------------------------------- */

/* default < file < env < set, applied in that order as keel serve does. */
static void test_precedence(void **state) {
  static const char file[] =
      "http.threads = 4\n"
      "http.workers = 3\n"
      "listen = file:1\n"
      "log.level = warn\n";
  char *env[] = {"KEEL_HTTP_THREADS=8", "KEEL_HTTP_WORKERS=5", "KEEL_LOG_LEVEL=error", NULL};
  static const struct {
    const char *name;
    const char *want;
  } expect[] = {
      {"http.threads", "16"},      /* file, env, set: set wins */
      {"http.workers", "5"},       /* file, env: env wins */
      {"listen", "file:1"},        /* file only */
      {"log.level", "debug"},      /* file, env, set */
      {"http.timeout_s", "30"},    /* default */
      {"data_dir", "./keel-data"}, /* default */
  };
  struct temp_file t;
  struct config cfg;
  char err[256] = "";
  (void)state;

  temp_write(&t, file, sizeof(file) - 1);
  config_defaults(&cfg);
  assert_int_equal(config_load_file(&cfg, t.path, err, sizeof(err)), 0);
  assert_int_equal(config_load_env(&cfg, env, err, sizeof(err), NULL), 0);
  assert_int_equal(config_set(&cfg, "http.threads", "16", err, sizeof(err)), 0);
  assert_int_equal(config_set(&cfg, "log.level", "debug", err, sizeof(err)), 0);

  for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
    const struct config_setting *s = config_setting_find(expect[i].name);
    char got[64];
    if (s->type == CONFIG_INT) {
      snprintf(got, sizeof(got), "%lld", (long long)int_field(&cfg, s));
    } else {
      snprintf(got, sizeof(got), "%s", str_field(&cfg, s));
    }
    if (strcmp(got, expect[i].want) != 0) {
      fail_msg("%s = %s, want %s", expect[i].name, got, expect[i].want);
    }
  }
  config_free(&cfg);
  temp_remove(&t);
}

/* --- docs ------------------------------------------------------------------- */

/* docs/configuration.md has a row for every setting, naming its env var. */
static void test_docs_cover_settings(void **state) {
  const char *root = getenv("KEEL_SOURCE_ROOT");
  char path[4096];
  FILE *f;
  char *doc;
  size_t len, n = 0;
  const struct config_setting *t = config_settings(&n);
  (void)state;

#ifdef KEEL_SOURCE_ROOT
  if (root == NULL) root = KEEL_SOURCE_ROOT;
#endif
  assert_non_null(root);
  snprintf(path, sizeof(path), "%s/docs/configuration.md", root);
  f = fopen(path, "rb");
  if (f == NULL) fail_msg("cannot open %s", path);
  doc = xmalloc(1024 * 1024);
  len = fread(doc, 1, 1024 * 1024 - 1, f);
  fclose(f);
  doc[len] = '\0';
  for (size_t i = 0; i < n; i++) {
    char env[128], row[256];
    config_env_name(t[i].name, env, sizeof(env));
    snprintf(row, sizeof(row), "| `%s` | `%s` |", t[i].name, env);
    if (strstr(doc, row) == NULL) fail_msg("docs/configuration.md lacks the row %s", row);
    if (t[i].default_str[0] != '\0') {
      snprintf(row, sizeof(row), "| `%s` |", t[i].default_str);
      if (strstr(doc, row) == NULL) fail_msg("docs lack the default of %s", t[i].name);
    }
  }
  xfree(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_env_name),
      cmocka_unit_test(test_int_bounds),
      cmocka_unit_test(test_bool_spellings),
      cmocka_unit_test(test_strings_and_unknown),
      cmocka_unit_test(test_file_ok),
      cmocka_unit_test(test_file_errors),
      cmocka_unit_test(test_file_missing),
      cmocka_unit_test(test_env),
      cmocka_unit_test(test_env_bad_value),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_docs_cover_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
