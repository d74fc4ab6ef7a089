/*
 * test_buf.c — bounded buffers: growth, the max at N and N+1, failure leaving
 * the buffer unchanged, printf, JSON escaping, steal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/buf.h"
#include "core/xmalloc.h"

static void test_empty(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 100);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(buf_slice(&b).len, 0);
  /* Any successful append, even of nothing, leaves a C string. */
  assert_int_equal(buf_append(&b, "", 0), 0);
  assert_non_null(b.data);
  assert_string_equal(b.data, "");
  buf_free(&b);
  assert_null(b.data);
  buf_free(&b); /* twice is fine */
}

static void test_append_variants(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1024);
  assert_int_equal(buf_append_cstr(&b, "org"), 0);
  assert_int_equal(buf_putc(&b, '_'), 0);
  assert_int_equal(buf_append_slice(&b, slice_make("12345", 3)), 0);
  assert_int_equal(buf_append(&b, "\0x", 2), 0);
  assert_int_equal(buf_append_cstr(&b, NULL), 0);
  assert_int_equal(b.len, 9);
  assert_memory_equal(b.data, "org_123\0x", 10);
  assert_int_equal(b.data[b.len], '\0');
  struct slice s = buf_slice(&b);
  assert_ptr_equal(s.p, b.data);
  assert_int_equal(s.len, 9);
  buf_free(&b);
}

static void test_max_boundary(void **state) {
  (void)state;
  static const size_t maxes[] = {0, 1, 10, 63, 64, 65, 1000};
  for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
    size_t max = maxes[i];
    struct buf b;
    buf_init(&b, max);
    /* N+1 bytes in one go: refused, nothing allocated. */
    char big[1002];
    memset(big, 'x', sizeof big);
    assert_int_equal(buf_append(&b, big, max + 1), -1);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    /* Exactly N: accepted, and the NUL does not count against max. */
    assert_int_equal(buf_append(&b, big, max), 0);
    assert_int_equal(b.len, max);
    assert_true(b.cap <= max);
    assert_int_equal(b.data[max], '\0');
    /* One more byte: refused, content and length unchanged. */
    assert_int_equal(buf_putc(&b, 'y'), -1);
    assert_int_equal(buf_printf(&b, "%d", 7), -1);
    assert_int_equal(buf_append_json_escaped(&b, "z", 1), -1);
    assert_int_equal(b.len, max);
    assert_int_equal(b.data[max], '\0');
    for (size_t j = 0; j < max; j++) assert_int_equal(b.data[j], 'x');
    /* Appending nothing at the limit still succeeds. */
    assert_int_equal(buf_append(&b, "", 0), 0);
    buf_free(&b);
  }
}

static void test_growth_doubles_and_clamps(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 300);
  assert_int_equal(buf_putc(&b, 'a'), 0);
  assert_int_equal(b.cap, 64);
  char chunk[64];
  memset(chunk, 'b', sizeof chunk);
  assert_int_equal(buf_append(&b, chunk, 64), 0); /* 65 bytes */
  assert_int_equal(b.cap, 128);
  assert_int_equal(buf_append(&b, chunk, 64), 0); /* 129 */
  assert_int_equal(b.cap, 256);
  assert_int_equal(buf_append(&b, chunk, 64), 0); /* 193 */
  assert_int_equal(b.cap, 256);
  assert_int_equal(buf_append(&b, chunk, 64), 0); /* 257: 512 clamped to max */
  assert_int_equal(b.cap, 300);
  assert_int_equal(b.len, 257);
  /* A big first append jumps straight to a large enough power of two. */
  struct buf c;
  buf_init(&c, 1 << 20);
  char big[1000];
  memset(big, 'c', sizeof big);
  assert_int_equal(buf_append(&c, big, sizeof big), 0);
  assert_int_equal(c.cap, 1024);
  buf_free(&b);
  buf_free(&c);
}

static void test_reserve(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 100);
  assert_int_equal(buf_reserve(&b, 100), 0);
  assert_int_equal(b.cap, 100);
  assert_int_equal(b.len, 0);
  assert_int_equal(buf_reserve(&b, 101), -1);
  assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
  assert_int_equal(buf_append_cstr(&b, "abc"), 0);
  assert_int_equal(buf_reserve(&b, 97), 0);
  assert_int_equal(buf_reserve(&b, 98), -1);
  /* len + extra overflowing size_t is a refusal, not a wrap. */
  struct buf huge;
  buf_init(&huge, SIZE_MAX);
  assert_int_equal(buf_append_cstr(&huge, "ab"), 0);
  assert_int_equal(buf_reserve(&huge, SIZE_MAX - 1), -1);
  assert_string_equal(huge.data, "ab");
  buf_free(&huge);
  buf_free(&b);
}

static void test_reset(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 100);
  buf_reset(&b); /* before any allocation */
  assert_int_equal(buf_append_cstr(&b, "hello"), 0);
  char *mem = b.data;
  buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  assert_ptr_equal(b.data, mem); /* memory kept */
  assert_int_equal(buf_append_cstr(&b, "hi"), 0);
  assert_string_equal(b.data, "hi");
  buf_free(&b);
}

static void test_printf(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 64);
  assert_int_equal(buf_printf(&b, "%s=%d", "count", 42), 0);
  assert_int_equal(buf_printf(&b, ";%05.1f", 3.14159), 0);
  assert_string_equal(b.data, "count=42;003.1");
  assert_int_equal(b.len, strlen("count=42;003.1"));
  assert_int_equal(buf_printf(&b, "%s", ""), 0);
  assert_int_equal(b.len, 14);
  /* Exactly filling max works; one more is refused without a partial write. */
  assert_int_equal(buf_printf(&b, "%*s", 50, "z"), 0);
  assert_int_equal(b.len, 64);
  assert_int_equal(buf_printf(&b, "%c", 'q'), -1);
  assert_int_equal(b.len, 64);
  assert_int_equal(b.data[64], '\0');
  buf_free(&b);

  /* Long output: more than the initial capacity in one call. */
  buf_init(&b, 10000);
  assert_int_equal(buf_printf(&b, "%0500d", 1), 0);
  assert_int_equal(b.len, 500);
  assert_int_equal(b.data[499], '1');
  assert_int_equal(b.data[0], '0');
  buf_free(&b);
}

struct escape_case {
  const char *in;
  size_t in_len;
  const char *out;
};

#define ESC(lit, expected) \
  { lit, sizeof(lit) - 1, expected }

static void test_json_escape(void **state) {
  (void)state;
  static const struct escape_case cases[] = {
      ESC("", ""),
      ESC("plain text", "plain text"),
      ESC("say \"hi\"", "say \\\"hi\\\""),
      ESC("back\\slash", "back\\\\slash"),
      ESC("a\nb\rc\td", "a\\nb\\rc\\td"),
      ESC("\b\f", "\\b\\f"),
      ESC("\x01\x1f", "\\u0001\\u001f"),
      ESC("nul\0byte", "nul\\u0000byte"),
      ESC("\x7f", "\x7f"),
      ESC("/", "/"),
      /* UTF-8 passes through untouched: é, €, 😀 */
      ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(buf_append_cstr(&b, "["), 0);
    assert_int_equal(buf_append_json_escaped(&b, cases[i].in, cases[i].in_len), 0);
    assert_int_equal(buf_append_cstr(&b, "]"), 0);
    size_t out_len = strlen(cases[i].out);
    assert_int_equal(b.len, out_len + 2);
    assert_memory_equal(b.data + 1, cases[i].out, out_len);
    buf_free(&b);
  }
}

/* buf_json_escape_into writes what buf_append_json_escaped appends, within
 * BUF_JSON_ESCAPED_MAX. */
static void test_json_escape_into_an_array(void **state) {
  (void)state;
  static const struct escape_case cases[] = {
      ESC("", ""),
      ESC("plain text", "plain text"),
      ESC("say \"hi\" \\ \n", "say \\\"hi\\\" \\\\ \\n"),
      ESC("\x01\x1f\0", "\\u0001\\u001f\\u0000"),
      ESC("caf\xc3\xa9", "caf\xc3\xa9"),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[BUF_JSON_ESCAPED_MAX(16) + 1];
    memset(out, '#', sizeof(out));
    size_t n = buf_json_escape_into(out, cases[i].in, cases[i].in_len);
    assert_int_equal(n, strlen(cases[i].out));
    assert_true(n <= BUF_JSON_ESCAPED_MAX(cases[i].in_len));
    assert_memory_equal(out, cases[i].out, n);
    assert_int_equal(out[n], '#'); /* nothing past what it returned */
  }
  /* The bound is reached: every byte a \u00XX escape. */
  char out[BUF_JSON_ESCAPED_MAX(4)];
  assert_int_equal(buf_json_escape_into(out, "\x01\x02\x03\x04", 4), BUF_JSON_ESCAPED_MAX(4));
}

static void test_json_escape_all_or_nothing(void **state) {
  (void)state;
  /* "\n" becomes 2 bytes: 3 newlines need 6, max allows 5 → refused whole. */
  struct buf b;
  buf_init(&b, 5);
  assert_int_equal(buf_append_json_escaped(&b, "\n\n\n", 3), -1);
  assert_int_equal(b.len, 0);
  assert_int_equal(buf_append_cstr(&b, "ab"), 0);
  assert_int_equal(buf_append_json_escaped(&b, "\x01", 1), -1); /* needs 6 */
  assert_string_equal(b.data, "ab");
  assert_int_equal(buf_append_json_escaped(&b, "\"", 1), 0);
  assert_string_equal(b.data, "ab\\\"");
  buf_free(&b);
}

static void test_steal(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 100);
  size_t len = 99;
  char *empty = buf_steal(&b, &len);
  assert_non_null(empty);
  assert_string_equal(empty, "");
  assert_int_equal(len, 0);
  xfree(empty);

  assert_int_equal(buf_append_cstr(&b, "owned"), 0);
  char *s = buf_steal(&b, &len);
  assert_string_equal(s, "owned");
  assert_int_equal(len, 5);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  /* The buf is reusable after a steal, with the same max. */
  assert_int_equal(buf_append_cstr(&b, "again"), 0);
  assert_string_equal(b.data, "again");
  assert_ptr_not_equal(b.data, s);
  xfree(s);
  char *t = buf_steal(&b, NULL);
  assert_string_equal(t, "again");
  xfree(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_append_variants),
      cmocka_unit_test(test_max_boundary),
      cmocka_unit_test(test_growth_doubles_and_clamps),
      cmocka_unit_test(test_reserve),
      cmocka_unit_test(test_reset),
      cmocka_unit_test(test_printf),
      cmocka_unit_test(test_json_escape),
      cmocka_unit_test(test_json_escape_into_an_array),
      cmocka_unit_test(test_json_escape_all_or_nothing),
      cmocka_unit_test(test_steal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
