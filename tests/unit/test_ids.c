/*
 * test_ids.c — UUIDv7: layout (version, variant, timestamp), monotonic order
 * within and across threads, counter exhaustion, canonical text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/ids.h"
#include "core/time.h"
#include "core/xmalloc.h"

static int setup(void **state) {
  (void)state;
  return crypto_init();
}

static unsigned id_counter_bits(const struct id *id) {
  return ((unsigned)(id->b[6] & 0x0f) << 8) | id->b[7];
}

static void assert_v7_layout(const struct id *id) {
  assert_int_equal(id->b[6] >> 4, 7); /* version */
  assert_int_equal(id->b[8] >> 6, 2); /* variant 0b10 */
  char text[ID_STR_SIZE];
  id_format(id, text);
  assert_int_equal(strlen(text), ID_STR_LEN);
  assert_int_equal(text[14], '7');
  assert_non_null(strchr("89ab", text[19]));
}

static void test_layout_and_time(void **state) {
  (void)state;
  for (int i = 0; i < 100; i++) {
    int64_t before_ms = time_now_us() / 1000;
    struct id id;
    id_new(&id);
    int64_t after_ms = time_now_us() / 1000;
    assert_v7_layout(&id);
    /* Borrowing a millisecond on counter exhaustion may put the id slightly
     * ahead of the clock, never behind it. */
    assert_true(id_unix_ms(&id) >= before_ms);
    assert_true(id_unix_ms(&id) <= after_ms + 2);
  }
}

static void test_new_at(void **state) {
  (void)state;
  /* 2023-11-14T22:13:20.123456Z */
  struct id id;
  id_new_at(&id, 1700000000123456);
  assert_v7_layout(&id);
  assert_int_equal(id_unix_ms(&id), 1700000000123);
  char text[ID_STR_SIZE];
  id_format(&id, text);
  /* 1700000000123 = 0x018bcfe5687b */
  assert_memory_equal(text, "018bcfe5-687b-7", 15);
  /* Times before the epoch clamp to 0 rather than wrapping. */
  id_new_at(&id, -5000);
  assert_int_equal(id_unix_ms(&id), 0);
  assert_v7_layout(&id);
  /* A far-future id does not drag later ids into the future. */
  id_new_at(&id, INT64_C(4102444800000000)); /* 2100-01-01 */
  struct id now;
  id_new(&now);
  assert_true(id_unix_ms(&now) <= time_now_us() / 1000 + 2);
}

static void test_monotonic(void **state) {
  (void)state;
  enum { COUNT = 10000 };
  struct id *ids = xcalloc(COUNT, sizeof *ids);
  for (int i = 0; i < COUNT; i++) id_new(&ids[i]);
  for (int i = 1; i < COUNT; i++) {
    if (memcmp(ids[i - 1].b, ids[i].b, 16) >= 0) fail_msg("id %d does not sort after %d", i, i - 1);
    /* Within one millisecond, the counter goes up by exactly one. */
    if (id_unix_ms(&ids[i]) == id_unix_ms(&ids[i - 1])) {
      assert_int_equal(id_counter_bits(&ids[i]), id_counter_bits(&ids[i - 1]) + 1);
    } else {
      assert_int_equal(id_counter_bits(&ids[i]), 0);
    }
  }
  /* The text form sorts the same way as the bytes. */
  char a[ID_STR_SIZE], b[ID_STR_SIZE];
  id_format(&ids[0], a);
  id_format(&ids[COUNT - 1], b);
  assert_true(strcmp(a, b) < 0);
  xfree(ids);
}

static void test_counter_exhaustion_borrows_next_ms(void **state) {
  (void)state;
  /* id_new_at on the generator's current millisecond continues its counter,
   * so 4096 of them must exhaust it and move to the next millisecond. */
  struct id prev;
  id_new(&prev);
  int64_t ms = id_unix_ms(&prev);
  bool borrowed = false;
  for (int i = 0; i < 4096 && !borrowed; i++) {
    struct id id;
    id_new_at(&id, ms * 1000 + 999);
    assert_true(memcmp(prev.b, id.b, 16) < 0);
    if (id_unix_ms(&id) == ms) {
      assert_int_equal(id_counter_bits(&id), id_counter_bits(&prev) + 1);
    } else {
      assert_int_equal(id_unix_ms(&id), ms + 1);
      assert_int_equal(id_counter_bits(&prev), 0x0fff);
      assert_int_equal(id_counter_bits(&id), 0);
      borrowed = true;
    }
    prev = id;
  }
  assert_true(borrowed);
  /* id_new continues after the borrowed millisecond, still in order. */
  struct id next;
  id_new(&next);
  assert_true(memcmp(prev.b, next.b, 16) < 0);
}

#define THREADS        4
#define IDS_PER_THREAD 5000

static struct id thread_ids[THREADS][IDS_PER_THREAD];

static void *make_ids(void *arg) {
  struct id *out = arg;
  for (int i = 0; i < IDS_PER_THREAD; i++) id_new(&out[i]);
  return NULL;
}

static int compare_ids(const void *a, const void *b) {
  return memcmp(a, b, sizeof(struct id));
}

static void test_threads_unique_and_ordered(void **state) {
  (void)state;
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) {
    assert_int_equal(pthread_create(&threads[t], NULL, make_ids, thread_ids[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  for (int t = 0; t < THREADS; t++) {
    for (int i = 1; i < IDS_PER_THREAD; i++) {
      assert_true(memcmp(thread_ids[t][i - 1].b, thread_ids[t][i].b, 16) < 0);
    }
  }
  /* Across threads the (ms, counter) pairs come from one generator, so even
   * the first 8 bytes are unique. */
  struct id *all = xcalloc(THREADS * IDS_PER_THREAD, sizeof *all);
  memcpy(all, thread_ids, sizeof thread_ids);
  qsort(all, THREADS * IDS_PER_THREAD, sizeof *all, compare_ids);
  for (int i = 1; i < THREADS * IDS_PER_THREAD; i++) {
    assert_true(memcmp(all[i - 1].b, all[i].b, 8) != 0);
  }
  xfree(all);
}

static void test_format_parse_round_trip(void **state) {
  (void)state;
  for (int i = 0; i < 1000; i++) {
    struct id id, back;
    char text[ID_STR_SIZE];
    id_new(&id);
    id_format(&id, text);
    assert_int_equal(id_parse(slice_make(text, ID_STR_LEN), &back), 0);
    assert_memory_equal(id.b, back.b, 16);
  }
  char text[ID_STR_SIZE];
  id_new_str(text);
  assert_true(id_valid(slice_from_cstr(text)));
  assert_int_equal(text[14], '7');
}

static void test_parse_known(void **state) {
  (void)state;
  static const uint8_t expected[16] = {0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, 0x7a, 0xbc,
                                       0x9d, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab};
  struct id id;
  /* Upper case is accepted; formatting gives it back in lower case. */
  assert_int_equal(id_parse(SLICE_LIT("018BCFE5-687B-7ABC-9DEF-0123456789AB"), &id), 0);
  assert_memory_equal(id.b, expected, 16);
  char text[ID_STR_SIZE];
  id_format(&id, text);
  assert_string_equal(text, "018bcfe5-687b-7abc-9def-0123456789ab");
  assert_int_equal(id_unix_ms(&id), 1700000000123);
}

struct valid_case {
  const char *text;
  bool valid;
};

static void test_valid(void **state) {
  (void)state;
  static const struct valid_case cases[] = {
      {"018bcfe5-687b-7abc-9def-0123456789ab", true},
      {"00000000-0000-0000-0000-000000000000", true}, /* nil UUID */
      {"ffffffff-ffff-ffff-ffff-ffffffffffff", true}, /* max UUID */
      {"123e4567-e89b-12d3-a456-426614174000", true}, /* v1: any version */
      {"018BCFE5-687B-7ABC-9DEF-0123456789AB", true},
      {"018bcfe5-687b-7abc-9def-0123456789a", false},
      {"018bcfe5-687b-7abc-9def-0123456789abc", false},
      {"018bcfe5687b-7abc-9def-0123456789ab-", false},
      {"018bcfe5-687b-7abc-9def_0123456789ab", false},
      {"018bcfe5-687b-7abc-9deg-0123456789ab", false},
      {"{18bcfe5-687b-7abc-9def-0123456789ab}", false},
      {"018bcfe5 687b 7abc 9def 0123456789ab", false},
      {"018bcfe5687b7abc9def0123456789ab", false},
      {"", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct slice s = slice_from_cstr(cases[i].text);
    if (id_valid(s) != cases[i].valid) fail_msg("\"%s\"", cases[i].text);
    struct id id;
    memset(&id, 0x5a, sizeof id);
    int rc = id_parse(s, &id);
    assert_int_equal(rc, cases[i].valid ? 0 : -1);
    if (rc) {
      for (int b = 0; b < 16; b++) assert_int_equal(id.b[b], 0x5a); /* untouched */
    }
  }
  /* Length comes from the slice: a valid prefix of a longer buffer. */
  const char longer[] = "018bcfe5-687b-7abc-9def-0123456789abXYZ";
  assert_true(id_valid(slice_make(longer, ID_STR_LEN)));
  assert_false(id_valid(slice_make(longer, ID_STR_LEN - 1)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout_and_time),
      cmocka_unit_test(test_new_at),
      cmocka_unit_test(test_monotonic),
      cmocka_unit_test(test_counter_exhaustion_borrows_next_ms),
      cmocka_unit_test(test_threads_unique_and_ordered),
      cmocka_unit_test(test_format_parse_round_trip),
      cmocka_unit_test(test_parse_known),
      cmocka_unit_test(test_valid),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
