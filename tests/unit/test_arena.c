/*
 * test_arena.c — region allocator: alignment, block reuse, large blocks,
 * LIFO cleanups on reset and free, string helpers, overflow as OOM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/arena.h"
#include "core/xmalloc.h"

static void test_alignment_and_isolation(void **state) {
  (void)state;
  struct arena *a = arena_new(1024);
  unsigned char *ptrs[200];
  size_t sizes[200];
  for (size_t i = 0; i < 200; i++) {
    sizes[i] = i % 37; /* includes 0 */
    ptrs[i] = arena_alloc(a, sizes[i]);
    assert_non_null(ptrs[i]);
    assert_int_equal((uintptr_t)ptrs[i] % 16, 0);
    memset(ptrs[i], (int)i, sizes[i]);
  }
  /* No allocation overlaps another: each still holds its own pattern. */
  for (size_t i = 0; i < 200; i++) {
    for (size_t j = 0; j < sizes[i]; j++) assert_int_equal(ptrs[i][j], (unsigned char)i);
    for (size_t k = 0; k < i; k++) assert_ptr_not_equal(ptrs[i], ptrs[k]);
  }
  arena_free(a);
}

static void test_bump_is_contiguous(void **state) {
  (void)state;
  struct arena *a = arena_new(4096);
  char *p1 = arena_alloc(a, 1);
  char *p2 = arena_alloc(a, 17);
  char *p3 = arena_alloc(a, 16);
  assert_ptr_equal(p2, p1 + 16);
  assert_ptr_equal(p3, p2 + 32);
  arena_free(a);
}

static void test_large_gets_own_block(void **state) {
  (void)state;
  struct arena *a = arena_new(1024);
  char *small1 = arena_alloc(a, 16);
  /* Larger than a quarter block: served from a dedicated block... */
  char *big = arena_alloc(a, 100000);
  assert_int_equal((uintptr_t)big % 16, 0);
  memset(big, 0xab, 100000);
  /* ...so the current block keeps serving small allocations right after. */
  char *small2 = arena_alloc(a, 16);
  assert_ptr_equal(small2, small1 + 16);
  assert_int_equal(arena_used(a), 16 + 100000 + 16);
  arena_free(a);
}

static void test_many_blocks(void **state) {
  (void)state;
  struct arena *a = arena_new(256);
  size_t total = 0;
  for (int i = 0; i < 1000; i++) {
    char *p = arena_alloc(a, 48);
    memset(p, 'x', 48);
    total += 48;
  }
  assert_int_equal(arena_used(a), total);
  arena_free(a); /* ASan proves every block was released */
}

static void test_default_block_size(void **state) {
  (void)state;
  struct arena *a = arena_new(0);
  /* Well under a quarter of the 8 KiB default: contiguous in one block. */
  char *p1 = arena_alloc(a, 1000);
  char *p2 = arena_alloc(a, 1000);
  assert_ptr_equal(p2, p1 + 1008);
  arena_free(a);
}

static void test_reset_keeps_first_block(void **state) {
  (void)state;
  struct arena *a = arena_new(512);
  char *first = arena_alloc(a, 32);
  for (int i = 0; i < 100; i++) (void)arena_alloc(a, 100); /* spill into more blocks */
  (void)arena_alloc(a, 5000);
  assert_true(arena_used(a) > 10000);
  arena_reset(a);
  assert_int_equal(arena_used(a), 0);
  /* The first block is kept and bumped from its start again. */
  char *again = arena_alloc(a, 32);
  assert_ptr_equal(again, first);
  arena_reset(a);
  arena_reset(a);
  arena_free(a);
  arena_free(NULL);
}

#define CLEANUPS 5

struct cleanup_log {
  int order[CLEANUPS * 2];
  int count;
};

static struct cleanup_log cleanup_log;

static void record_cleanup(void *arg) {
  cleanup_log.order[cleanup_log.count++] = (int)(intptr_t)arg;
}

static void test_cleanups_lifo(void **state) {
  (void)state;
  memset(&cleanup_log, 0, sizeof cleanup_log);
  struct arena *a = arena_new(512);
  for (int i = 1; i <= CLEANUPS; i++) {
    arena_on_cleanup(a, record_cleanup, (void *)(intptr_t)i);
    /* Interleave allocations so cleanups span several blocks. */
    (void)arena_alloc(a, 100);
  }
  /* Cleanup nodes are not counted as the caller's memory. */
  assert_int_equal(arena_used(a), CLEANUPS * 100);
  arena_reset(a);
  assert_int_equal(cleanup_log.count, CLEANUPS);
  for (int i = 0; i < CLEANUPS; i++) assert_int_equal(cleanup_log.order[i], CLEANUPS - i);

  /* Cleanups run once: a second reset has none left; free runs new ones. */
  arena_reset(a);
  assert_int_equal(cleanup_log.count, CLEANUPS);
  arena_on_cleanup(a, record_cleanup, (void *)(intptr_t)10);
  arena_on_cleanup(a, record_cleanup, (void *)(intptr_t)20);
  arena_free(a);
  assert_int_equal(cleanup_log.count, CLEANUPS + 2);
  assert_int_equal(cleanup_log.order[CLEANUPS], 20);
  assert_int_equal(cleanup_log.order[CLEANUPS + 1], 10);
}

static void free_heap_object(void *arg) {
  xfree(arg);
}

static void test_cleanup_releases_heap(void **state) {
  (void)state;
  /* The intended use: tie a non-arena resource to the arena's lifetime.
   * ASan's leak check fails this test if the cleanup does not run. */
  struct arena *a = arena_new(0);
  arena_on_cleanup(a, free_heap_object, xstrdup("resource"));
  arena_free(a);
}

static void test_strings(void **state) {
  (void)state;
  struct arena *a = arena_new(128);
  char *s = arena_strdup(a, "org_123");
  assert_string_equal(s, "org_123");
  assert_int_equal((uintptr_t)s % 16, 0);
  assert_string_equal(arena_strndup(a, "abcdef", 3), "abc");
  assert_string_equal(arena_strndup(a, "ab", 10), "ab");
  assert_string_equal(arena_strndup(a, "abc", 0), "");
  const char raw[] = {'k', 'e', 'y', '=', 'v'};
  char *key = arena_slice_dup(a, slice_make(raw, 3));
  assert_string_equal(key, "key");
  assert_string_equal(arena_slice_dup(a, SLICE_NULL), "");
  char *p = arena_printf(a, "%s/%d/%05.2f", "v1", 42, 2.5);
  assert_string_equal(p, "v1/42/02.50");
  /* Longer than the block size: printf output goes to its own block. */
  char *long_text = arena_printf(a, "%0300d", 7);
  assert_int_equal(strlen(long_text), 300);
  assert_int_equal(long_text[299], '7');
  arena_free(a);
}

static void test_arena_calloc(void **state) {
  (void)state;
  struct arena *a = arena_new(1024);
  /* Dirty the first block, reset, then calloc must still give zeroes. */
  memset(arena_alloc(a, 200), 0xff, 200);
  arena_reset(a);
  unsigned char *z = arena_calloc(a, 25, 8);
  for (size_t i = 0; i < 200; i++) assert_int_equal(z[i], 0);
  assert_int_equal(arena_used(a), 200);
  arena_free(a);
}

static jmp_buf oom_jump;
static size_t oom_requested;

static void longjmp_oom_handler(size_t requested) {
  oom_requested = requested;
  longjmp(oom_jump, 1);
}

static void test_overflow_is_oom(void **state) {
  (void)state;
  struct arena *volatile a = arena_new(0);
  xmalloc_set_oom_handler(longjmp_oom_handler);
  volatile int reached = 0;
  if (setjmp(oom_jump) == 0) {
    (void)arena_calloc(a, SIZE_MAX / 4, 8);
    fail_msg("arena_calloc overflow returned");
  }
  reached++;
  assert_int_equal(oom_requested, SIZE_MAX);
  if (setjmp(oom_jump) == 0) {
    (void)arena_alloc(a, SIZE_MAX - 3);
    fail_msg("arena_alloc of SIZE_MAX - 3 returned");
  }
  reached++;
  assert_int_equal(reached, 2);
  xmalloc_set_oom_handler(NULL);
  /* The arena is still usable after the refused requests. */
  assert_string_equal(arena_strdup(a, "ok"), "ok");
  arena_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alignment_and_isolation),
      cmocka_unit_test(test_bump_is_contiguous),
      cmocka_unit_test(test_large_gets_own_block),
      cmocka_unit_test(test_many_blocks),
      cmocka_unit_test(test_default_block_size),
      cmocka_unit_test(test_reset_keeps_first_block),
      cmocka_unit_test(test_cleanups_lifo),
      cmocka_unit_test(test_cleanup_releases_heap),
      cmocka_unit_test(test_strings),
      cmocka_unit_test(test_arena_calloc),
      cmocka_unit_test(test_overflow_is_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
