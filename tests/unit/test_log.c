/*
 * test_log.c — every line is one valid JSON object whatever the fields hold;
 * context is per thread; levels filter; long lines are cut, marked and stay
 * under the line limit; keel_panic logs and aborts.
 *
 * Output is captured by pointing the log fd at a pipe drained by a reader
 * thread (so a test can write more than the pipe buffer holds).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"

/* Must match LOG_LINE_MAX in log.c: the contract under test. */
#define LINE_MAX_BYTES 8192

/* --- capture ---------------------------------------------------------------- */

struct capture {
  int rfd, wfd;
  pthread_t reader;
  char *data;
  size_t len, cap;
};

static void *capture_reader(void *arg) {
  struct capture *c = arg;
  for (;;) {
    if (c->cap - c->len < 4096) {
      c->cap = c->cap ? c->cap * 2 : 65536;
      c->data = xrealloc(c->data, c->cap + 1);
    }
    ssize_t n = read(c->rfd, c->data + c->len, c->cap - c->len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    c->len += (size_t)n;
  }
  if (c->data == NULL) c->data = xmalloc(1);
  c->data[c->len] = '\0';
  return NULL;
}

static void capture_start(struct capture *c) {
  int fds[2];
  memset(c, 0, sizeof(*c));
  assert_int_equal(pipe(fds), 0);
  c->rfd = fds[0];
  c->wfd = fds[1];
  assert_int_equal(pthread_create(&c->reader, NULL, capture_reader, c), 0);
  log_set_fd(c->wfd);
}

static void capture_stop(struct capture *c) {
  log_set_fd(2);
  close(c->wfd);
  assert_int_equal(pthread_join(c->reader, NULL), 0);
  close(c->rfd);
}

static void capture_free(struct capture *c) {
  xfree(c->data);
  c->data = NULL;
}

/*
 * Splits captured output into lines and parses each; fails the test when a
 * line is not a JSON object, is too long, or output does not end in '\n'.
 * Returns the number of lines; out[] receives up to max parsed lines.
 */
static size_t capture_lines(const struct capture *c, json_t **out, size_t max) {
  size_t count = 0, pos = 0;
  if (c->len > 0) assert_int_equal(c->data[c->len - 1], '\n');
  while (pos < c->len) {
    const char *nl = memchr(c->data + pos, '\n', c->len - pos);
    size_t len;
    json_error_t err;
    json_t *v;
    assert_non_null(nl);
    len = (size_t)(nl - (c->data + pos));
    if (len + 1 > LINE_MAX_BYTES) fail_msg("line of %zu bytes exceeds the limit", len + 1);
    v = json_loadb(c->data + pos, len, 0, &err);
    if (v == NULL)
      fail_msg("line %zu does not parse: %s: %.*s", count, err.text, (int)len, c->data + pos);
    assert_true(json_is_object(v));
    if (count < max) {
      out[count] = v;
    } else {
      json_decref(v);
    }
    count++;
    pos += len + 1;
  }
  return count;
}

static void lines_free(json_t **lines, size_t n) {
  for (size_t i = 0; i < n; i++) json_decref(lines[i]);
}

static const char *member_str(const json_t *o, const char *key) {
  json_t *m = json_object_get(o, key);
  if (m == NULL) fail_msg("member %s missing", key);
  assert_true(json_is_string(m));
  return json_string_value(m);
}

static int setup(void **state) {
  (void)state;
  log_set_level(LOG_INFO);
  log_set_fd(2);
  log_clear_context();
  return 0;
}

/* --- members ---------------------------------------------------------------- */

static void test_basic_members(void **state) {
  struct capture c;
  json_t *line[2];
  int64_t us;
  (void)state;

  capture_start(&c);
  log_info("test.basic", LS("s", "v"), LI("i", -42), LB("b", true), LB("f", false), LD("d", 0.1),
           LJ("j", "{\"a\":[1,2]}"), LS("nul", NULL), LJ("rawnul", NULL));
  log_warn0("test.nofields");
  capture_stop(&c);

  assert_int_equal(capture_lines(&c, line, 2), 2);
  assert_int_equal(time_parse_rfc3339(slice_from_cstr(member_str(line[0], "ts")), &us), 0);
  assert_true(llabs(us - time_now_us()) < 60 * US_PER_SEC);
  assert_string_equal(member_str(line[0], "level"), "info");
  assert_string_equal(member_str(line[0], "event"), "test.basic");
  assert_null(json_object_get(line[0], "request_id"));
  assert_null(json_object_get(line[0], "org_id"));
  assert_null(json_object_get(line[0], "truncated"));
  assert_string_equal(member_str(line[0], "s"), "v");
  assert_int_equal(json_integer_value(json_object_get(line[0], "i")), -42);
  assert_true(json_is_true(json_object_get(line[0], "b")));
  assert_true(json_is_false(json_object_get(line[0], "f")));
  assert_true(json_number_value(json_object_get(line[0], "d")) == 0.1);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(json_object_get(line[0], "j"), "a"), 1)),
      2);
  assert_true(json_is_null(json_object_get(line[0], "nul")));
  assert_true(json_is_null(json_object_get(line[0], "rawnul")));
  /* ts, level, event come first, in that order */
  assert_true(strncmp(c.data, "{\"ts\":\"", 7) == 0);
  assert_non_null(strstr(c.data, "\",\"level\":\"info\",\"event\":\"test.basic\","));

  assert_string_equal(member_str(line[1], "level"), "warn");
  assert_string_equal(member_str(line[1], "event"), "test.nofields");
  assert_int_equal(json_object_size(line[1]), 3);
  lines_free(line, 2);
  capture_free(&c);
}

static void test_numbers(void **state) {
  static const struct {
    double d;
    int is_null;
  } doubles[] = {
      {0.1, 0}, {-2.5, 0}, {1e300, 0},    {5e-324, 0},    {123456789.123456789, 0},
      {1.0, 0}, {NAN, 1},  {INFINITY, 1}, {-INFINITY, 1},
  };
  static const int64_t ints[] = {0, 1, -1, INT64_MAX, INT64_MIN};
  (void)state;

  for (size_t i = 0; i < sizeof(doubles) / sizeof(doubles[0]); i++) {
    struct capture c;
    json_t *line;
    capture_start(&c);
    log_info("test.double", LD("d", doubles[i].d));
    capture_stop(&c);
    assert_int_equal(capture_lines(&c, &line, 1), 1);
    json_t *d = json_object_get(line, "d");
    if (doubles[i].is_null) {
      assert_true(json_is_null(d));
    } else {
      assert_true(json_is_number(d));
      /* %.17g round-trips exactly */
      assert_true(json_number_value(d) == doubles[i].d);
    }
    json_decref(line);
    capture_free(&c);
  }
  for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
    struct capture c;
    json_t *line;
    capture_start(&c);
    log_info("test.int", LI("n", ints[i]));
    capture_stop(&c);
    assert_int_equal(capture_lines(&c, &line, 1), 1);
    assert_true(json_is_integer(json_object_get(line, "n")));
    assert_true(json_integer_value(json_object_get(line, "n")) == ints[i]);
    json_decref(line);
    capture_free(&c);
  }
}

/* Strings that must survive escaping; want NULL means "unchanged". */
static void test_nasty_strings(void **state) {
  static char all_controls[40];
  static const struct {
    const char *in;
    const char *want;
  } cases[] = {
      {"plain", NULL},
      {"", NULL},
      {"\"quoted\"", NULL},
      {"back\\slash\\", NULL},
      {"line\nbreak\r\n", NULL},
      {"tab\tbell\a\bform\fvt\v", NULL},
      {"esc\x1b[31mred\x1b[0m", NULL},
      {"del\x7f", NULL},
      {"}\"],\"level\":\"error", NULL},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xe2\x80\xa8", NULL},
      {"\xff", "\xef\xbf\xbd"},
      {"a\xc3", "a\xef\xbf\xbd"},
      {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd"},
      {all_controls, NULL},
  };
  (void)state;

  for (int i = 1; i < 0x20; i++) all_controls[i - 1] = (char)i;
  all_controls[31] = '\0';

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct capture c;
    json_t *line;
    const char *want = cases[i].want ? cases[i].want : cases[i].in;
    capture_start(&c);
    /* nasty in the value, in the key and in the event */
    log_info(cases[i].in, LS("v", cases[i].in), LS(cases[i].in[0] ? cases[i].in : "k", "x"));
    capture_stop(&c);
    assert_int_equal(capture_lines(&c, &line, 1), 1);
    /* one physical line: raw control bytes never reach the output */
    for (size_t b = 0; b + 1 < c.len; b++) {
      unsigned char ch = (unsigned char)c.data[b];
      if (ch < 0x20 || ch == 0x7f) fail_msg("raw control byte 0x%02x in case %zu", ch, i);
    }
    json_t *v = json_object_get(line, "v");
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), strlen(want));
    assert_memory_equal(json_string_value(v), want, strlen(want));
    assert_string_equal(member_str(line, "event"), want);
    if (cases[i].in[0]) assert_non_null(json_object_get(line, want));
    assert_null(json_object_get(line, "truncated"));
    assert_string_equal(member_str(line, "level"), "info");
    json_decref(line);
    capture_free(&c);
  }
}

/* --- truncation ------------------------------------------------------------- */

static char *repeat(const char *unit, size_t times) {
  size_t ulen = strlen(unit);
  char *s = xmalloc(ulen * times + 1);
  for (size_t i = 0; i < times; i++) memcpy(s + i * ulen, unit, ulen);
  s[ulen * times] = '\0';
  return s;
}

static void test_long_values_truncated(void **state) {
  /* 10 KiB and more of units whose escaped forms are 1, 2, 6, 2..4 bytes */
  static const struct {
    const char *unit;
    size_t times;
  } cases[] = {
      {"a", 10 * 1024},   {"\"", 10 * 1024},      {"\x01", 10 * 1024},
      {"\xc3\xa9", 6000}, {"\xe2\x82\xac", 4000}, {"\xf0\x9d\x84\x9e", 3000},
      {"ab\n", 5000},     {"\xff", 5000},         {"a", 8100},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct capture c;
    json_t *line;
    char *big = repeat(cases[i].unit, cases[i].times);
    capture_start(&c);
    log_info("test.big", LS("big", big), LI("status", 200), LS("after", "kept"));
    capture_stop(&c);
    assert_int_equal(capture_lines(&c, &line, 1), 1);
    assert_true(c.len <= LINE_MAX_BYTES);
    /* the space is used, not given away */
    if (c.len < LINE_MAX_BYTES - 16) fail_msg("case %zu: line of only %zu bytes", i, c.len);
    assert_true(json_is_true(json_object_get(line, "truncated")));
    /* the cut value is a prefix (in whole units) of the original */
    json_t *v = json_object_get(line, "big");
    assert_true(json_is_string(v));
    if (strcmp(cases[i].unit, "\xff") != 0) {
      size_t got = json_string_length(v);
      if (got <= 1000) fail_msg("case %zu kept only %zu bytes", i, got);
      assert_true(got < strlen(big));
      assert_memory_equal(json_string_value(v), big, got);
    }
    /* small members after a huge one survive */
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
    assert_string_equal(member_str(line, "after"), "kept");
    json_decref(line);
    capture_free(&c);
    xfree(big);
  }
}

static void test_many_fields_truncated(void **state) {
  struct capture c;
  json_t *line;
  char *kib = repeat("x", 1024);
  char *big_raw;
  (void)state;

  /* a raw JSON array of 3000 elements (6 KiB) cannot be cut, only dropped */
  big_raw = xmalloc(2 * 3000 + 3);
  size_t n = 0;
  big_raw[n++] = '[';
  for (int i = 0; i < 3000; i++) {
    memcpy(big_raw + n, "1,", 2);
    n += 2;
  }
  big_raw[n - 1] = ']';
  big_raw[n] = '\0';

  capture_start(&c);
  log_error("test.many", LS("a", kib), LS("b", kib), LS("c", kib), LS("d", kib), LS("e", kib),
            LS("f", kib), LS("g", kib), LS("h", kib), LS("i", kib), LS("j", kib),
            LJ("raw", big_raw), LS("k", kib), LI("last", 7));
  log_error("test.fine", LJ("raw", big_raw));
  capture_stop(&c);

  json_t *lines[2];
  assert_int_equal(capture_lines(&c, lines, 2), 2);
  line = lines[0];
  assert_true(json_is_true(json_object_get(line, "truncated")));
  assert_string_equal(member_str(line, "event"), "test.many");
  /* every string member kept is a prefix of the original */
  static const char *const keys[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    json_t *v = json_object_get(line, keys[i]);
    if (v == NULL) continue;
    assert_true(json_is_string(v));
    assert_memory_equal(json_string_value(v), kib, json_string_length(v));
  }
  /* no key was cut to fit: every member is one we passed */
  static const char *const all[] = {"ts", "level", "event", "truncated", "a",   "b",
                                    "c",  "d",     "e",     "f",         "g",   "h",
                                    "i",  "j",     "k",     "raw",       "last"};
  const char *key;
  json_t *value;
  json_object_foreach(line, key, value) {
    bool known = false;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) known |= strcmp(all[i], key) == 0;
    if (!known) fail_msg("unexpected member \"%s\"", key);
  }
  /* a raw member that fits alone is written whole */
  assert_null(json_object_get(lines[1], "truncated"));
  assert_int_equal(json_array_size(json_object_get(lines[1], "raw")), 3000);
  lines_free(lines, 2);
  capture_free(&c);
  xfree(kib);
  xfree(big_raw);
}

/* --- levels ----------------------------------------------------------------- */

static void test_level_filter(void **state) {
  static const struct {
    enum log_level set, emit;
    int written;
  } cases[] = {
      {LOG_DEBUG, LOG_DEBUG, 1}, {LOG_INFO, LOG_DEBUG, 0}, {LOG_INFO, LOG_INFO, 1},
      {LOG_WARN, LOG_INFO, 0},   {LOG_WARN, LOG_ERROR, 1}, {LOG_ERROR, LOG_WARN, 0},
      {LOG_ERROR, LOG_ERROR, 1},
  };
  static const char *const names[] = {"debug", "info", "warn", "error"};
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct capture c;
    json_t *line = NULL;
    log_set_level(cases[i].set);
    assert_int_equal(log_get_level(), cases[i].set);
    assert_int_equal(log_enabled(cases[i].emit), cases[i].written);
    capture_start(&c);
    log_emit(cases[i].emit, "test.level", NULL, 0);
    if (cases[i].emit == LOG_DEBUG) log_debug("test.level.macro", LI("x", 1));
    capture_stop(&c);
    size_t want = (size_t)cases[i].written * (cases[i].emit == LOG_DEBUG ? 2 : 1);
    json_t *lines[2];
    assert_int_equal(capture_lines(&c, lines, 2), want);
    if (want > 0) {
      line = lines[0];
      assert_string_equal(member_str(line, "level"), names[cases[i].emit]);
      lines_free(lines, want);
    }
    capture_free(&c);
  }
  log_set_level(LOG_INFO);
}

static void test_level_parse(void **state) {
  static const struct {
    const char *s;
    int rc;
    enum log_level want;
  } cases[] = {
      {"debug", 0, LOG_DEBUG}, {"info", 0, LOG_INFO}, {"warn", 0, LOG_WARN},
      {"error", 0, LOG_ERROR}, {"", -1, 0},           {"INFO", -1, 0},
      {"warning", -1, 0},      {"info ", -1, 0},      {"err", -1, 0},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    enum log_level got = LOG_ERROR;
    assert_int_equal(log_level_parse(cases[i].s, &got), cases[i].rc);
    if (cases[i].rc == 0) assert_int_equal(got, cases[i].want);
  }
  assert_int_equal(log_level_parse(NULL, NULL), -1);
}

/* --- context ---------------------------------------------------------------- */

#define THREADS          8
#define LINES_PER_THREAD 200

struct thread_arg {
  int index;
};

static void *context_thread(void *p) {
  const struct thread_arg *a = p;
  char rid[32], oid[32];
  snprintf(rid, sizeof(rid), "req-%d", a->index);
  snprintf(oid, sizeof(oid), "org-%d", a->index);
  /* thread 0 never sets a context */
  if (a->index != 0) {
    log_set_request_id(rid);
    log_set_org_id(oid);
  }
  for (int n = 0; n < LINES_PER_THREAD; n++) {
    log_info("test.thread", LI("t", a->index), LI("n", n),
             LS("pad", "................................................................"));
  }
  return NULL;
}

static void test_context_per_thread(void **state) {
  pthread_t threads[THREADS];
  struct thread_arg args[THREADS];
  struct capture c;
  static json_t *lines[THREADS * LINES_PER_THREAD];
  int seen[THREADS] = {0};
  (void)state;

  log_set_request_id("main-request");
  capture_start(&c);
  for (int i = 0; i < THREADS; i++) {
    args[i].index = i;
    assert_int_equal(pthread_create(&threads[i], NULL, context_thread, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
  capture_stop(&c);

  size_t n = capture_lines(&c, lines, THREADS * LINES_PER_THREAD);
  assert_int_equal(n, THREADS * LINES_PER_THREAD);
  for (size_t i = 0; i < n; i++) {
    int t = (int)json_integer_value(json_object_get(lines[i], "t"));
    assert_true(t >= 0 && t < THREADS);
    seen[t]++;
    if (t == 0) {
      /* the main thread's context does not leak into other threads */
      assert_null(json_object_get(lines[i], "request_id"));
      assert_null(json_object_get(lines[i], "org_id"));
    } else {
      char want[32];
      snprintf(want, sizeof(want), "req-%d", t);
      assert_string_equal(member_str(lines[i], "request_id"), want);
      snprintf(want, sizeof(want), "org-%d", t);
      assert_string_equal(member_str(lines[i], "org_id"), want);
    }
  }
  for (int i = 0; i < THREADS; i++) assert_int_equal(seen[i], LINES_PER_THREAD);
  lines_free(lines, n);
  capture_free(&c);
  log_clear_context();
}

static void test_context_set_clear(void **state) {
  static const struct {
    const char *rid, *oid;
    const char *want_rid, *want_oid; /* NULL: member absent */
  } cases[] = {
      {"r1", "o1", "r1", "o1"},
      {"r2", NULL, "r2", NULL},
      {NULL, "o3", NULL, "o3"},
      {"", "", NULL, NULL},
      {"0123456789012345678901234567890123456789012345678901234567890123456789",
       "quote\"and\\slash", "0123456789012345678901234567890123456789012345678901234567890123",
       "quote\"and\\slash"},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct capture c;
    json_t *lines[2];
    log_set_request_id(cases[i].rid);
    log_set_org_id(cases[i].oid);
    capture_start(&c);
    log_info0("test.ctx");
    log_clear_context();
    log_info0("test.ctx.cleared");
    capture_stop(&c);
    assert_int_equal(capture_lines(&c, lines, 2), 2);
    if (cases[i].want_rid) {
      assert_string_equal(member_str(lines[0], "request_id"), cases[i].want_rid);
    } else {
      assert_null(json_object_get(lines[0], "request_id"));
    }
    if (cases[i].want_oid) {
      assert_string_equal(member_str(lines[0], "org_id"), cases[i].want_oid);
    } else {
      assert_null(json_object_get(lines[0], "org_id"));
    }
    assert_null(json_object_get(lines[1], "request_id"));
    assert_null(json_object_get(lines[1], "org_id"));
    lines_free(lines, 2);
    capture_free(&c);
  }
}

/* --- misc ------------------------------------------------------------------- */

static void test_errno_preserved(void **state) {
  struct capture c;
  json_t *line;
  (void)state;
  capture_start(&c);
  errno = ENOENT;
  log_info("test.errno", LS("k", "v"));
  assert_int_equal(errno, ENOENT);
  capture_stop(&c);
  assert_int_equal(capture_lines(&c, &line, 1), 1);
  json_decref(line);
  capture_free(&c);
}

static void test_panic_logs_and_aborts(void **state) {
  int fds[2];
  pid_t pid;
  int status;
  char out[LINE_MAX_BYTES + 1];
  size_t len = 0;
  ssize_t n;
  json_t *line;
  json_error_t err;
  (void)state;

  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    signal(SIGABRT, SIG_DFL);
    log_set_fd(fds[1]);
    log_set_level(LOG_ERROR);
    log_set_request_id("req-panic");
    KEEL_PANIC("invariant \"x\" broken");
  }
  close(fds[1]);
  while ((n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0) len += (size_t)n;
  close(fds[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);

  assert_true(len > 0 && out[len - 1] == '\n');
  line = json_loadb(out, len - 1, 0, &err);
  if (line == NULL) fail_msg("panic line does not parse: %s", err.text);
  assert_string_equal(member_str(line, "level"), "error");
  assert_string_equal(member_str(line, "event"), "panic");
  assert_string_equal(member_str(line, "request_id"), "req-panic");
  assert_non_null(strstr(member_str(line, "file"), "test_log.c"));
  assert_true(json_integer_value(json_object_get(line, "line")) > 0);
  assert_string_equal(member_str(line, "what"), "invariant \"x\" broken");
  json_decref(line);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_basic_members, setup),
      cmocka_unit_test_setup(test_numbers, setup),
      cmocka_unit_test_setup(test_nasty_strings, setup),
      cmocka_unit_test_setup(test_long_values_truncated, setup),
      cmocka_unit_test_setup(test_many_fields_truncated, setup),
      cmocka_unit_test_setup(test_level_filter, setup),
      cmocka_unit_test_setup(test_level_parse, setup),
      cmocka_unit_test_setup(test_context_per_thread, setup),
      cmocka_unit_test_setup(test_context_set_clear, setup),
      cmocka_unit_test_setup(test_errno_preserved, setup),
      cmocka_unit_test_setup(test_panic_logs_and_aborts, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
