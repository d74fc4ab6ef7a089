/*
 * test_pg_sql.c — the PostgreSQL backend's pure helpers: the portable-SQL
 * rewrite, bytea decoding, SQLSTATE mapping, URL redaction and array
 * literals. No server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/xmalloc.h"
#include "store/pg/pg.h"

static void expect_rewrite(const char *in, const char *want, int want_n) {
  int n = -1;
  char *out = pg_sql_rewrite(in, &n);
  assert_non_null(out);
  assert_string_equal(out, want);
  assert_int_equal(n, want_n);
  xfree(out);
}

static void test_params_kept(void **state) {
  (void)state;
  expect_rewrite("SELECT 1", "SELECT 1", 0);
  expect_rewrite("SELECT a FROM t WHERE b = $1 AND c = $2",
                 "SELECT a FROM t WHERE b = $1 AND c = $2", 2);
  /* The highest number, not the count; two digits. */
  expect_rewrite("VALUES ($12, $3, $12)", "VALUES ($12, $3, $12)", 12);
  expect_rewrite("SELECT $", "SELECT $", 0);
}

static void test_ts(void **state) {
  (void)state;
  expect_rewrite("INSERT INTO t(at) VALUES (@ts($3))",
                 "INSERT INTO t(at) VALUES (('epoch'::timestamptz + ($3)::bigint * interval '1 "
                 "microsecond'))",
                 3);
  expect_rewrite("WHERE at < @ts($1 - 5)",
                 "WHERE at < ('epoch'::timestamptz + ($1 - 5)::bigint * interval '1 microsecond')",
                 1);
}

static void test_us(void **state) {
  (void)state;
  expect_rewrite("SELECT @us(created_at), @us(t.expires_at) FROM t",
                 "SELECT (extract(epoch from (created_at)) * 1000000)::bigint,"
                 " (extract(epoch from (t.expires_at)) * 1000000)::bigint FROM t",
                 0);
  /* Next to each other, and a parameter after. */
  expect_rewrite("@us(a)@ts($2)",
                 "(extract(epoch from (a)) * 1000000)::bigint('epoch'::timestamptz + ($2)::bigint *"
                 " interval '1 microsecond')",
                 2);
}

static void test_literals_untouched(void **state) {
  (void)state;
  expect_rewrite("SELECT '@ts($9)', 'it''s $7', \"@us(x)\" WHERE a = $1",
                 "SELECT '@ts($9)', 'it''s $7', \"@us(x)\" WHERE a = $1", 1);
  expect_rewrite("SELECT 1 -- @ts($4) is not here\nWHERE b = $2",
                 "SELECT 1 -- @ts($4) is not here\nWHERE b = $2", 2);
  /* An unterminated literal is copied as is. */
  expect_rewrite("SELECT '$3", "SELECT '$3", 0);
}

static void test_unclosed(void **state) {
  (void)state;
  int n = 0;
  assert_null(pg_sql_rewrite("SELECT @ts($1", &n));
  char *out = pg_sql_rewrite("SELECT @tsx", NULL);
  assert_string_equal(out, "SELECT @tsx");
  xfree(out);
}

static void test_bytea(void **state) {
  (void)state;
  unsigned char out[8];
  assert_int_equal(pg_bytea_decode("\\x", 2, out), 0);
  assert_int_equal(pg_bytea_decode("\\x00ff7Ab1", 10, out), 4);
  assert_memory_equal(out, "\x00\xff\x7a\xb1", 4);
  assert_int_equal(pg_bytea_decode("\\x0", 3, out), -1);
  assert_int_equal(pg_bytea_decode("\\x0g", 4, out), -1);
  assert_int_equal(pg_bytea_decode("ab", 2, out), -1); /* escape format */
  assert_int_equal(pg_bytea_decode("\\", 1, out), -1);
}

static void test_sqlstate(void **state) {
  (void)state;
  assert_int_equal(pg_sqlstate_status("23505"), KEEL_ECONFLICT);
  assert_int_equal(pg_sqlstate_status("40001"), KEEL_EBUSY);
  assert_int_equal(pg_sqlstate_status("40P01"), KEEL_EBUSY);
  assert_int_equal(pg_sqlstate_status("55P03"), KEEL_EBUSY);
  assert_int_equal(pg_sqlstate_status("23503"), KEEL_ESTORE);
  assert_int_equal(pg_sqlstate_status("42P01"), KEEL_ESTORE);
  assert_int_equal(pg_sqlstate_status(NULL), KEEL_ESTORE);
}

static void expect_redact(const char *in, const char *want) {
  char out[256];
  pg_url_redact(in, out, sizeof(out));
  assert_string_equal(out, want);
}

static void test_redact(void **state) {
  (void)state;
  expect_redact("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db");
  expect_redact("postgresql://u@h/db", "postgresql://u@h/db");
  expect_redact("postgres://h/db", "postgres://h/db");
  expect_redact("postgres://u:p@ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require");
  expect_redact("postgres://u@h/db?password=pw&sslmode=disable",
                "postgres://u@h/db?password=***&sslmode=disable");
  expect_redact("host=h password=pw dbname=d", "host=h password=*** dbname=d");
  /* Cut, never overflowing; the password never half-shown. */
  char small[16];
  pg_url_redact("postgres://u:secret@h/db", small, sizeof(small));
  assert_string_equal(small, "postgres://u:**");
  assert_null(strstr(small, "sec"));
}

/* An array of the given texts (NULL: SQL NULL). */
static void expect_text_array(const char *const *items, size_t n, const char *want) {
  struct buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(pg_array_begin(&b), 0);
  for (size_t i = 0; i < n; i++) {
    if (items[i]) {
      assert_int_equal(pg_array_add_text(&b, items[i], strlen(items[i])), 0);
    } else {
      assert_int_equal(pg_array_add_null(&b), 0);
    }
  }
  assert_int_equal(pg_array_end(&b), 0);
  assert_string_equal(b.data, want);
  assert_int_equal(b.len, strlen(want));
  buf_free(&b);
}

static void test_array_text(void **state) {
  (void)state;
  expect_text_array(NULL, 0, "{}");
  const char *one[] = {"a"};
  expect_text_array(one, 1, "{\"a\"}");
  /* Quotes and backslashes escaped; commas, braces, spaces, the word NULL
   * and the empty string are plain text inside the quotes. */
  const char *edge[] = {"say \"hi\"", "C:\\dir\\", "a,b", "{x}", " sp ", "NULL", "", NULL};
  expect_text_array(
      edge, 8,
      "{\"say \\\"hi\\\"\",\"C:\\\\dir\\\\\",\"a,b\",\"{x}\",\" sp \",\"NULL\",\"\",NULL}");
  /* UTF-8 bytes go as they are. */
  const char *utf8[] = {"h\xc3\xa9llo", "\xe2\x9c\x93", "\xf0\x9f\x98\x80"};
  expect_text_array(utf8, 3, "{\"h\xc3\xa9llo\",\"\xe2\x9c\x93\",\"\xf0\x9f\x98\x80\"}");
  /* Canonical JSON, with its own escapes. */
  const char *json[] = {"{\"a\":[1,2],\"b\":\"x\\\"y\\\\n\"}", "[]", "{}"};
  expect_text_array(json, 3,
                    "{\"{\\\"a\\\":[1,2],\\\"b\\\":\\\"x\\\\\\\"y\\\\\\\\n\\\"}\",\"[]\",\"{}\"}");
  /* Only n bytes are taken. */
  struct buf b;
  buf_init(&b, 64);
  pg_array_begin(&b);
  assert_int_equal(pg_array_add_text(&b, "abcdef", 3), 0);
  pg_array_end(&b);
  assert_string_equal(b.data, "{\"abc\"}");
  buf_free(&b);
}

static void test_array_numbers_bytea(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1 << 10);
  pg_array_begin(&b);
  assert_int_equal(pg_array_add_i64(&b, 0), 0);
  assert_int_equal(pg_array_add_i64(&b, -42), 0);
  assert_int_equal(pg_array_add_i64(&b, INT64_MAX), 0);
  assert_int_equal(pg_array_add_i64(&b, INT64_MIN), 0);
  assert_int_equal(pg_array_add_null(&b), 0);
  pg_array_end(&b);
  assert_string_equal(b.data, "{0,-42,9223372036854775807,-9223372036854775808,NULL}");
  buf_reset(&b);
  const unsigned char bytes[] = {0x00, 0x0a, 0xff, 0x5c, 0x22};
  pg_array_begin(&b);
  assert_int_equal(pg_array_add_bytea(&b, bytes, sizeof(bytes)), 0);
  assert_int_equal(pg_array_add_bytea(&b, bytes, 0), 0);
  assert_int_equal(pg_array_add_null(&b), 0);
  pg_array_end(&b);
  /* Each element "\\x…": the array literal's escape of bytea's \x. */
  assert_string_equal(b.data, "{\"\\\\x000aff5c22\",\"\\\\x\",NULL}");
  buf_free(&b);
}

static void test_array_max(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 16);
  assert_int_equal(pg_array_begin(&b), 0);
  assert_int_equal(pg_array_add_text(&b, "abc", 3), 0); /* {"abc" */
  assert_int_equal(pg_array_add_text(&b, "0123456789", 10), -1);
  assert_string_equal(b.data, "{\"abc\""); /* unchanged */
  unsigned char blob[32] = {0};
  assert_int_equal(pg_array_add_bytea(&b, blob, sizeof(blob)), -1);
  assert_string_equal(b.data, "{\"abc\"");
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_params_kept), cmocka_unit_test(test_ts),
      cmocka_unit_test(test_us),          cmocka_unit_test(test_literals_untouched),
      cmocka_unit_test(test_unclosed),    cmocka_unit_test(test_bytea),
      cmocka_unit_test(test_sqlstate),    cmocka_unit_test(test_redact),
      cmocka_unit_test(test_array_text),  cmocka_unit_test(test_array_numbers_bytea),
      cmocka_unit_test(test_array_max),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
