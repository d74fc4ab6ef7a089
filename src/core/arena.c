/*
 * arena.c — chunked bump allocator for per-request and per-job memory.
 *
 * Layout: the arena owns a list of blocks obtained from xmalloc. Small
 * allocations are bumped from the current block; when it is full a fresh
 * block of block_size becomes current. An allocation larger than a quarter of
 * block_size gets a block of its own (so one big body does not waste the rest
 * of a normal block, and a normal block is never oversized). The first block
 * is allocated with the arena and survives arena_reset, so an arena reused
 * across requests costs no allocation for the common small request.
 *
 * Alignment: every pointer handed out is ARENA_ALIGN-aligned. The alignment is
 * computed on addresses, not assumed from malloc, which only guarantees
 * alignof(max_align_t) (8 on some 32-bit targets).
 *
 * Cleanups live in arena memory as a singly linked stack, so they cost no
 * extra allocation and run LIFO: later resources may depend on earlier ones.
 */
#include "core/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/xmalloc.h"

#define ARENA_ALIGN         ((size_t)16)
#define ARENA_BLOCK_DEFAULT ((size_t)8 * 1024)

struct arena_block {
  struct arena_block *next;
  size_t size; /* usable bytes in data, after alignment slack */
  size_t used;
  unsigned char *data; /* ARENA_ALIGN-aligned start inside this allocation */
};

struct arena_cleanup {
  struct arena_cleanup *next;
  arena_cleanup_fn fn;
  void *arg;
};

struct arena {
  struct arena_block *first;   /* normal-sized, kept by arena_reset */
  struct arena_block *current; /* where small allocations are bumped */
  struct arena_block *others;  /* every block but first, newest first */
  struct arena_cleanup *cleanups;
  size_t block_size;
  size_t used; /* bytes requested by callers */
};

/* Reports a size that cannot even be computed as out of memory. xcalloc
 * treats an overflowing product as OOM and never returns (xmalloc.h), which
 * routes the failure through the one OOM handler. */
static _Noreturn void arena_size_overflow(void) {
  (void)xcalloc(SIZE_MAX, SIZE_MAX);
  __builtin_unreachable();
}

static size_t align_up(size_t n) {
  size_t r;
  if (xadd_size(n, ARENA_ALIGN - 1, &r)) arena_size_overflow();
  return r & ~(ARENA_ALIGN - 1);
}

/* One xmalloc per block: the header, alignment slack and size usable bytes. */
static struct arena_block *arena_block_new(size_t size) {
  size_t bytes;
  if (xadd_size(sizeof(struct arena_block) + ARENA_ALIGN - 1, size, &bytes)) {
    arena_size_overflow();
  }
  struct arena_block *blk = xmalloc(bytes);
  uintptr_t start = (uintptr_t)(blk + 1);
  start = (start + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
  blk->next = NULL;
  blk->size = size;
  blk->used = 0;
  blk->data = (unsigned char *)start;
  return blk;
}

struct arena *arena_new(size_t block_size) {
  struct arena *a = xmalloc(sizeof *a);
  a->block_size = align_up(block_size ? block_size : ARENA_BLOCK_DEFAULT);
  a->first = arena_block_new(a->block_size);
  a->current = a->first;
  a->others = NULL;
  a->cleanups = NULL;
  a->used = 0;
  return a;
}

static void arena_run_cleanups(struct arena *a) {
  /* Pop before calling, so a cleanup that registers another (or fails to
   * return normally in a test) never runs twice. */
  while (a->cleanups) {
    struct arena_cleanup *c = a->cleanups;
    a->cleanups = c->next;
    c->fn(c->arg);
  }
}

static void arena_free_others(struct arena *a) {
  struct arena_block *blk = a->others;
  while (blk) {
    struct arena_block *next = blk->next;
    xfree(blk);
    blk = next;
  }
  a->others = NULL;
}

void arena_reset(struct arena *a) {
  /* Cleanups first: their nodes and arguments may live in the blocks. */
  arena_run_cleanups(a);
  arena_free_others(a);
  a->first->used = 0;
  a->current = a->first;
  a->used = 0;
}

void arena_free(struct arena *a) {
  if (!a) return;
  arena_reset(a);
  xfree(a->first);
  xfree(a);
}

/* Bump-allocates size bytes (already a multiple of ARENA_ALIGN). */
static void *arena_bump(struct arena *a, size_t size) {
  if (size > a->block_size / 4) {
    /* Dedicated block, linked behind the current one so the current block
     * keeps serving small allocations. */
    struct arena_block *big = arena_block_new(size);
    big->used = size;
    big->next = a->others;
    a->others = big;
    return big->data;
  }
  struct arena_block *blk = a->current;
  if (blk->size - blk->used < size) {
    blk = arena_block_new(a->block_size);
    blk->next = a->others;
    a->others = blk;
    a->current = blk;
  }
  void *p = blk->data + blk->used;
  blk->used += size;
  return p;
}

void *arena_alloc(struct arena *a, size_t n) {
  /* A zero-byte request still gets a distinct, aligned pointer. */
  void *p = arena_bump(a, align_up(n ? n : 1));
  a->used += n;
  return p;
}

void *arena_calloc(struct arena *a, size_t nmemb, size_t size) {
  size_t total;
  if (xmul_size(nmemb, size, &total)) arena_size_overflow();
  void *p = arena_alloc(a, total);
  memset(p, 0, total);
  return p;
}

char *arena_strdup(struct arena *a, const char *s) {
  return arena_slice_dup(a, slice_from_cstr(s));
}

char *arena_strndup(struct arena *a, const char *s, size_t n) {
  /* Like strndup: stops at a NUL within n bytes, never reads past n. */
  const char *nul = n ? memchr(s, '\0', n) : NULL;
  return arena_slice_dup(a, slice_make(s, nul ? (size_t)(nul - s) : n));
}

char *arena_slice_dup(struct arena *a, struct slice s) {
  size_t total;
  if (xadd_size(s.len, 1, &total)) arena_size_overflow();
  char *copy = arena_alloc(a, total);
  if (s.len) memcpy(copy, s.p, s.len);
  copy[s.len] = '\0';
  return copy;
}

char *arena_printf(struct arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = arena_vprintf(a, fmt, ap);
  va_end(ap);
  return s;
}

/* Short results (ids, paths, messages) are the common case: formatting into
 * a stack buffer first makes them a single vsnprintf pass plus a copy; only
 * longer output is formatted a second time, into its arena block. (Measuring
 * with vsnprintf(NULL, 0, ...) instead also trips a GCC 12 false positive,
 * -Wformat-truncation "null format string", under -fsanitize=undefined
 * with -fPIC.) */
#define ARENA_PRINTF_STACK 256

char *arena_vprintf(struct arena *a, const char *fmt, va_list ap) {
  char small[ARENA_PRINTF_STACK];
  va_list measure;
  va_copy(measure, ap);
  int n = vsnprintf(small, sizeof small, fmt, measure);
  va_end(measure);
  /* Only an invalid format makes vsnprintf fail: that is a bug in the
   * caller, and an empty string is the least surprising result. */
  if (n < 0) return arena_slice_dup(a, SLICE_LIT(""));
  if ((size_t)n < sizeof small) return arena_slice_dup(a, slice_make(small, (size_t)n));
  char *s = arena_alloc(a, (size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

void arena_on_cleanup(struct arena *a, arena_cleanup_fn fn, void *arg) {
  struct arena_cleanup *c = arena_bump(a, align_up(sizeof *c));
  c->fn = fn;
  c->arg = arg;
  c->next = a->cleanups;
  a->cleanups = c;
}

size_t arena_used(const struct arena *a) {
  return a->used;
}
