/*
 * xmalloc.c — the one allocator wrapper; the only file that calls the C
 * allocator directly.
 *
 * Invariants:
 *  - no function here returns NULL: failure (real OOM, a size overflow, or the
 *    fail-after test hook) goes to the OOM handler, which must not return; if
 *    it does anyway, we abort, because every caller relies on a valid pointer;
 *  - a zero-byte request is served as one byte so that every successful call
 *    returns a distinct pointer that can be passed to xfree;
 *  - the handler and the fail-after counter are atomics, so any thread may
 *    allocate while a test changes them.
 */
#include "core/xmalloc.h"

#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void xmalloc_default_oom(size_t requested);

static _Atomic(xmalloc_oom_fn) oom_handler = xmalloc_default_oom;

/* Allocations left before the injected failure; 0 = hook disabled. */
static atomic_ulong fail_countdown;

/* Formats n in decimal without the stdio machinery, which may itself want
 * memory at the worst possible moment. Returns the number of digits. */
static size_t format_size(size_t n, char *out, size_t outsize) {
  char digits[24];
  size_t count = 0;
  do {
    digits[count++] = (char)('0' + n % 10);
    n /= 10;
  } while (n && count < sizeof digits);
  if (count > outsize) count = outsize;
  for (size_t i = 0; i < count; i++) out[i] = digits[count - 1 - i];
  return count;
}

/* Default handler: one line on stderr (fd 2 directly: log.c may allocate),
 * then abort() so a core dump shows where memory ran out. */
static void xmalloc_default_oom(size_t requested) {
  static const char prefix[] = "keel: out of memory (requested ";
  static const char suffix[] = " bytes), aborting\n";
  char line[sizeof prefix + sizeof suffix + 24];
  size_t len = 0;
  memcpy(line, prefix, sizeof prefix - 1);
  len += sizeof prefix - 1;
  len += format_size(requested, line + len, 24);
  memcpy(line + len, suffix, sizeof suffix - 1);
  len += sizeof suffix - 1;
  /* Best effort: there is nothing useful to do if stderr is gone. */
  ssize_t written = write(2, line, len);
  (void)written;
  abort();
}

static _Noreturn void xmalloc_oom(size_t requested) {
  xmalloc_oom_fn handler = atomic_load(&oom_handler);
  handler(requested);
  /* The handler broke its contract by returning; no caller can cope. */
  abort();
}

/* True when the fail-after hook says this allocation must fail. Counts every
 * allocation attempt while the hook is armed; fires exactly once. */
static int xmalloc_should_fail(void) {
#ifdef KEEL_TEST_HOOKS
  unsigned long left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
  while (left != 0) {
    /* CAS so that concurrent allocators each consume one step and exactly one
     * of them observes the transition 1 → 0. */
    if (atomic_compare_exchange_weak(&fail_countdown, &left, left - 1)) return left == 1;
  }
#endif
  return 0;
}

void xmalloc_fail_after(unsigned long nth) {
  atomic_store(&fail_countdown, nth);
}

void xmalloc_set_oom_handler(xmalloc_oom_fn handler) {
  atomic_store(&oom_handler, handler ? handler : xmalloc_default_oom);
}

int xmul_size(size_t a, size_t b, size_t *out) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r)) return -1;
  *out = r;
  return 0;
}

int xadd_size(size_t a, size_t b, size_t *out) {
  size_t r;
  if (__builtin_add_overflow(a, b, &r)) return -1;
  *out = r;
  return 0;
}

void *xmalloc(size_t n) {
  if (xmalloc_should_fail()) xmalloc_oom(n);
  void *p = malloc(n ? n : 1);
  if (!p) xmalloc_oom(n);
  return p;
}

void *xcalloc(size_t nmemb, size_t size) {
  size_t total;
  if (xmul_size(nmemb, size, &total)) xmalloc_oom(SIZE_MAX);
  if (xmalloc_should_fail()) xmalloc_oom(total);
  void *p = calloc(total ? total : 1, 1);
  if (!p) xmalloc_oom(total);
  return p;
}

void *xrealloc(void *p, size_t n) {
  if (xmalloc_should_fail()) xmalloc_oom(n);
  /* realloc(p, 0) may free p and return NULL; keep one byte instead so the
   * "never NULL, always freeable" rule holds. On failure p stays valid. */
  void *q = realloc(p, n ? n : 1);
  if (!q) xmalloc_oom(n);
  return q;
}

void *xreallocarray(void *p, size_t nmemb, size_t size) {
  size_t total;
  if (xmul_size(nmemb, size, &total)) xmalloc_oom(SIZE_MAX);
  return xrealloc(p, total);
}

char *xstrdup(const char *s) {
  return xmemdup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n) {
  /* Stops at a NUL within the first n bytes, like strndup, and never reads
   * past n, so s need not be terminated when it is at least n long. */
  const char *nul = memchr(s, '\0', n);
  return xmemdup(s, nul ? (size_t)(nul - s) : n);
}

void *xmemdup(const void *p, size_t n) {
  size_t total;
  if (xadd_size(n, 1, &total)) xmalloc_oom(SIZE_MAX);
  char *copy = xmalloc(total);
  if (n) memcpy(copy, p, n);
  copy[n] = '\0';
  return copy;
}

void xfree(void *p) {
  free(p);
}

void xfree_secret(void *p, size_t n) {
  if (!p) return;
  sodium_memzero(p, n);
  free(p);
}
