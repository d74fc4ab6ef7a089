/*
 * xmalloc.h — the one allocator wrapper.
 *
 * Every heap allocation in keel goes through these functions. They never
 * return NULL: on out-of-memory they call the OOM handler, which by default
 * logs and aborts. Size arithmetic is overflow-checked (an overflow is treated
 * as OOM). A test hook can make the Nth allocation from now fail, so tests can
 * prove that failure paths are reached (see xmalloc_fail_after()).
 *
 * Thread-safety: all functions are thread-safe.
 */
#ifndef KEEL_CORE_XMALLOC_H
#define KEEL_CORE_XMALLOC_H

#include <stddef.h>

/* Returns n bytes, uninitialised. n == 0 returns a unique minimal block. */
void *xmalloc(size_t n);
/* Returns nmemb*size bytes, zeroed; the product is overflow-checked. */
void *xcalloc(size_t nmemb, size_t size);
/* Resizes p (may be NULL) to n bytes. */
void *xrealloc(void *p, size_t n);
/* Resizes p to nmemb*size bytes; the product is overflow-checked. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
/* Copies of a NUL-terminated string / of n bytes plus a NUL. Caller frees. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* Frees p (NULL is fine). */
void xfree(void *p);
/* Wipes n bytes with sodium_memzero, then frees. For secrets. */
void xfree_secret(void *p, size_t n);

/*
 * Overflow-checked helpers: return 0 and store the result, or return -1 on
 * overflow (and leave *out untouched).
 */
int xmul_size(size_t a, size_t b, size_t *out);
int xadd_size(size_t a, size_t b, size_t *out);

/* Called on OOM / overflow with the requested size; must not return. */
typedef void (*xmalloc_oom_fn)(size_t requested);
/* Installs handler (NULL restores the default: log a line and abort()). */
void xmalloc_set_oom_handler(xmalloc_oom_fn handler);

/*
 * Test hook: the nth allocation from now (1 = the next one) fails as if the
 * system were out of memory; 0 disables. Process-wide, thread-safe.
 */
void xmalloc_fail_after(unsigned long nth);

#endif
