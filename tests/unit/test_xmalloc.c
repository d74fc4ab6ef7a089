/*
 * test_xmalloc.c — the allocator wrapper: overflow checks, the OOM handler,
 * and the fail-after hook (single- and multi-threaded).
 *
 * OOM tests install a handler that records the requested size and longjmps
 * back into the test, which is the only way a handler may "not return"
 * without ending the process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/xmalloc.h"

static jmp_buf oom_jump;
static size_t oom_requested;
static int oom_calls;

static void longjmp_oom_handler(size_t requested) {
  oom_requested = requested;
  oom_calls++;
  longjmp(oom_jump, 1);
}

static int setup_handler(void **state) {
  (void)state;
  oom_calls = 0;
  oom_requested = 0;
  xmalloc_set_oom_handler(longjmp_oom_handler);
  return 0;
}

static int teardown_handler(void **state) {
  (void)state;
  xmalloc_fail_after(0);
  xmalloc_set_oom_handler(NULL);
  return 0;
}

struct size_case {
  size_t a, b;
  int rc;
  size_t result;
};

static void test_xmul_size(void **state) {
  (void)state;
  static const struct size_case cases[] = {
      {0, 0, 0, 0},
      {0, SIZE_MAX, 0, 0},
      {1, SIZE_MAX, 0, SIZE_MAX},
      {2, SIZE_MAX / 2, 0, SIZE_MAX - 1},
      {2, SIZE_MAX / 2 + 1, -1, 0},
      {SIZE_MAX, SIZE_MAX, -1, 0},
      {(size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), -1, 0},
      {1000, 1000, 0, 1000000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t out = 12345;
    assert_int_equal(xmul_size(cases[i].a, cases[i].b, &out), cases[i].rc);
    /* On overflow *out is left untouched. */
    assert_int_equal(out, cases[i].rc == 0 ? cases[i].result : 12345);
  }
}

static void test_xadd_size(void **state) {
  (void)state;
  static const struct size_case cases[] = {
      {0, 0, 0, 0},
      {SIZE_MAX, 0, 0, SIZE_MAX},
      {SIZE_MAX - 1, 1, 0, SIZE_MAX},
      {SIZE_MAX, 1, -1, 0},
      {SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 1, -1, 0},
      {40, 2, 0, 42},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t out = 12345;
    assert_int_equal(xadd_size(cases[i].a, cases[i].b, &out), cases[i].rc);
    assert_int_equal(out, cases[i].rc == 0 ? cases[i].result : 12345);
  }
}

static void test_zero_size_is_unique(void **state) {
  (void)state;
  void *a = xmalloc(0);
  void *b = xmalloc(0);
  void *c = xcalloc(0, 8);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_ptr_not_equal(a, b);
  assert_ptr_not_equal(a, c);
  /* realloc to 0 keeps a live block rather than freeing. */
  a = xrealloc(a, 0);
  assert_non_null(a);
  xfree(a);
  xfree(b);
  xfree(c);
  xfree(NULL);
}

static void test_calloc_zeroes(void **state) {
  (void)state;
  unsigned char *p = xcalloc(100, 7);
  for (size_t i = 0; i < 700; i++) assert_int_equal(p[i], 0);
  xfree(p);
}

static void test_realloc_keeps_content(void **state) {
  (void)state;
  char *p = xrealloc(NULL, 4);
  memcpy(p, "keel", 4);
  p = xrealloc(p, 1 << 20);
  assert_memory_equal(p, "keel", 4);
  p = xreallocarray(p, 3, 2);
  assert_memory_equal(p, "keel", 4);
  xfree(p);
}

static void test_string_copies(void **state) {
  (void)state;
  char *a = xstrdup("tenant");
  assert_string_equal(a, "tenant");
  /* xstrndup stops at n and at a NUL, whichever comes first. */
  char *b = xstrndup("tenant", 3);
  assert_string_equal(b, "ten");
  char *c = xstrndup("ab\0cd", 5);
  assert_string_equal(c, "ab");
  /* Not NUL-terminated source, exact length. */
  const char raw[4] = {'o', 'r', 'g', 's'};
  char *d = xstrndup(raw, sizeof raw);
  assert_string_equal(d, "orgs");
  /* xmemdup copies embedded NULs and adds one after. */
  char *e = xmemdup("x\0y", 3);
  assert_memory_equal(e, "x\0y\0", 4);
  char *f = xmemdup(NULL, 0);
  assert_string_equal(f, "");
  xfree(a);
  xfree(b);
  xfree(c);
  xfree(d);
  xfree(e);
  xfree(f);
}

static void test_free_secret(void **state) {
  (void)state;
  char *secret = xstrdup("sk_live_0123456789");
  xfree_secret(secret, strlen(secret));
  xfree_secret(NULL, 16);
}

static void test_overflow_calls_handler(void **state) {
  (void)state;
  if (setjmp(oom_jump) == 0) {
    (void)xcalloc(SIZE_MAX / 2, 3);
    fail_msg("xcalloc overflow returned");
  }
  assert_int_equal(oom_calls, 1);
  assert_int_equal(oom_requested, SIZE_MAX);

  /* A failed reallocarray leaves the original block alive. */
  char *volatile keep = xstrdup("still here");
  if (setjmp(oom_jump) == 0) {
    (void)xreallocarray(keep, SIZE_MAX, 2);
    fail_msg("xreallocarray overflow returned");
  }
  assert_int_equal(oom_calls, 2);
  assert_string_equal(keep, "still here");
  xfree(keep);

  if (setjmp(oom_jump) == 0) {
    (void)xmemdup("", SIZE_MAX);
    fail_msg("xmemdup overflow returned");
  }
  assert_int_equal(oom_calls, 3);
}

static void test_fail_after_nth(void **state) {
  (void)state;
#ifndef KEEL_TEST_HOOKS
  skip();
#endif
  void *volatile first = NULL;
  void *volatile second = NULL;
  volatile int reached_third = 0;
  xmalloc_fail_after(3);
  if (setjmp(oom_jump) == 0) {
    first = xmalloc(10);
    second = xcalloc(2, 10);
    reached_third = 1;
    (void)xmalloc(77);
    fail_msg("third allocation did not fail");
  }
  assert_int_equal(oom_calls, 1);
  assert_int_equal(oom_requested, 77);
  assert_true(reached_third);
  assert_non_null(first);
  assert_non_null(second);

  /* One-shot: the hook disarms itself after firing. */
  void *after = xmalloc(10);
  assert_non_null(after);
  assert_int_equal(oom_calls, 1);
  xfree(after);
  xfree(first);
  xfree(second);
}

static void test_fail_after_each_entry_point(void **state) {
  (void)state;
#ifndef KEEL_TEST_HOOKS
  skip();
#endif
  /* Every allocating function counts, so a test can fail any of them. */
  static const int entry_points = 6;
  for (volatile int which = 0; which < entry_points; which++) {
    xmalloc_fail_after(1);
    if (setjmp(oom_jump) == 0) {
      switch (which) {
        case 0:
          (void)xmalloc(8);
          break;
        case 1:
          (void)xcalloc(1, 8);
          break;
        case 2:
          (void)xrealloc(NULL, 8);
          break;
        case 3:
          (void)xstrdup("abc");
          break;
        case 4:
          (void)xstrndup("abc", 2);
          break;
        default:
          (void)xmemdup("abc", 3);
          break;
      }
      fail_msg("entry point %d did not fail", which);
    }
    assert_int_equal(oom_calls, which + 1);
  }
}

static void test_fail_after_disabled(void **state) {
  (void)state;
  xmalloc_fail_after(2);
  xmalloc_fail_after(0);
  for (int i = 0; i < 10; i++) xfree(xmalloc(16));
  assert_int_equal(oom_calls, 0);
}

/* --- thread safety: exactly one of many concurrent allocations fails ---- */

#define THREADS           4
#define ALLOCS_PER_THREAD 1000

static _Thread_local jmp_buf thread_jump;
static atomic_int thread_oom_calls;

static void thread_oom_handler(size_t requested) {
  (void)requested;
  atomic_fetch_add(&thread_oom_calls, 1);
  longjmp(thread_jump, 1);
}

static void *alloc_loop(void *arg) {
  (void)arg;
  for (volatile int i = 0; i < ALLOCS_PER_THREAD; i++) {
    if (setjmp(thread_jump) == 0) xfree(xmalloc(32));
  }
  return NULL;
}

static void test_fail_after_threads(void **state) {
  (void)state;
#ifndef KEEL_TEST_HOOKS
  skip();
#endif
  atomic_store(&thread_oom_calls, 0);
  xmalloc_set_oom_handler(thread_oom_handler);
  xmalloc_fail_after(THREADS * ALLOCS_PER_THREAD / 2);
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(pthread_create(&threads[i], NULL, alloc_loop, NULL), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
  assert_int_equal(atomic_load(&thread_oom_calls), 1);
}

/* --- the default handler: one line on stderr, then abort() -------------- */

static void test_default_handler_aborts(void **state) {
  (void)state;
#ifndef KEEL_TEST_HOOKS
  skip();
#endif
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    xmalloc_set_oom_handler(NULL);
    xmalloc_fail_after(1);
    (void)xmalloc(4242);
    _exit(0); /* not reached when the handler works */
  }
  close(fds[1]);
  char line[256] = {0};
  size_t got = 0;
  ssize_t n;
  while (got < sizeof line - 1 && (n = read(fds[0], line + got, sizeof line - 1 - got)) > 0) {
    got += (size_t)n;
  }
  close(fds[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
  assert_non_null(strstr(line, "out of memory"));
  assert_non_null(strstr(line, "4242"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_xmul_size),
      cmocka_unit_test(test_xadd_size),
      cmocka_unit_test(test_zero_size_is_unique),
      cmocka_unit_test(test_calloc_zeroes),
      cmocka_unit_test(test_realloc_keeps_content),
      cmocka_unit_test(test_string_copies),
      cmocka_unit_test(test_free_secret),
      cmocka_unit_test_setup_teardown(test_overflow_calls_handler, setup_handler, teardown_handler),
      cmocka_unit_test_setup_teardown(test_fail_after_nth, setup_handler, teardown_handler),
      cmocka_unit_test_setup_teardown(test_fail_after_each_entry_point, setup_handler,
                                      teardown_handler),
      cmocka_unit_test_setup_teardown(test_fail_after_disabled, setup_handler, teardown_handler),
      cmocka_unit_test_setup_teardown(test_fail_after_threads, setup_handler, teardown_handler),
      cmocka_unit_test(test_default_handler_aborts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
