/*
 * arena.h — region allocator for per-request (or per-job) memory.
 *
 * Everything allocated from an arena is freed at once by arena_free or
 * arena_reset. Cleanup callbacks registered with arena_on_cleanup run in
 * reverse order of registration when the arena is reset or freed; use them to
 * release resources that are not arena memory (jansson values, statements).
 * Allocations are 16-byte aligned. Memory comes from xmalloc (aborts on OOM).
 *
 * Not thread-safe: an arena belongs to one request at a time.
 */
#ifndef KEEL_CORE_ARENA_H
#define KEEL_CORE_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#include "core/slice.h"

struct arena;

typedef void (*arena_cleanup_fn)(void *arg);

/* block_size: size of each chunk requested from xmalloc (0 → 8 KiB). */
struct arena *arena_new(size_t block_size);
void arena_free(struct arena *a);  /* NULL is fine */
void arena_reset(struct arena *a); /* runs cleanups, keeps the first block */
void *arena_alloc(struct arena *a, size_t n);
void *arena_calloc(struct arena *a, size_t nmemb, size_t size);
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_slice_dup(struct arena *a, struct slice s); /* NUL-terminated copy */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vprintf(struct arena *a, const char *fmt, va_list ap);
void arena_on_cleanup(struct arena *a, arena_cleanup_fn fn, void *arg);
/* Bytes handed out so far (for limits and metrics). */
size_t arena_used(const struct arena *a);

#endif
