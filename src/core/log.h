/*
 * log.h — structured logs: one JSON object per line, one line per event.
 *
 * Each line carries ts (RFC 3339), level, event (a dotted name such as
 * "http.request"), the calling thread's request_id and org_id when set, and
 * the caller's fields. A line is written with a single write(2) to the log fd
 * (stderr by default), so lines from different threads never interleave.
 *
 * Never pass a secret as a field: keys are logged by prefix only.
 *
 * Thread-safety: all functions are thread-safe; the context is per-thread.
 */
#ifndef KEEL_CORE_LOG_H
#define KEEL_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

enum log_field_type { LF_STR, LF_INT, LF_BOOL, LF_DOUBLE, LF_RAW_JSON };

struct log_field {
  const char *key;
  enum log_field_type type;
  union {
    const char *s; /* LF_STR (NULL → null), LF_RAW_JSON (must be valid JSON) */
    int64_t i;
    bool b;
    double d;
  } v;
};

#define LS(k, val) ((struct log_field){.key = (k), .type = LF_STR, .v.s = (val)})
#define LI(k, val) ((struct log_field){.key = (k), .type = LF_INT, .v.i = (int64_t)(val)})
#define LB(k, val) ((struct log_field){.key = (k), .type = LF_BOOL, .v.b = (val)})
#define LD(k, val) ((struct log_field){.key = (k), .type = LF_DOUBLE, .v.d = (val)})
#define LJ(k, val) ((struct log_field){.key = (k), .type = LF_RAW_JSON, .v.s = (val)})

/* Sets the minimum level (default LOG_INFO) and the output fd (default 2). */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
void log_set_fd(int fd);
/* Parses "debug" | "info" | "warn" | "error"; returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
bool log_enabled(enum log_level lvl);

/* Per-thread context copied into every line (NULL clears). The strings are
 * copied. */
void log_set_request_id(const char *request_id);
void log_set_org_id(const char *org_id);
void log_clear_context(void);

void log_emit(enum log_level lvl, const char *event, const struct log_field *fields,
              unsigned nfields);

#define LOG_FIELDS_(...) ((const struct log_field[]){__VA_ARGS__})
#define LOG_NFIELDS_(...) \
  ((unsigned)(sizeof((const struct log_field[]){__VA_ARGS__}) / sizeof(struct log_field)))

/* log_info("event.name", LS("k", "v"), LI("n", 3)); at least one field, or use
 * the _0 forms. */
#define log_debug(ev, ...)                                                            \
  do {                                                                                \
    if (log_enabled(LOG_DEBUG))                                                       \
      log_emit(LOG_DEBUG, (ev), LOG_FIELDS_(__VA_ARGS__), LOG_NFIELDS_(__VA_ARGS__)); \
  } while (0)
#define log_info(ev, ...) \
  log_emit(LOG_INFO, (ev), LOG_FIELDS_(__VA_ARGS__), LOG_NFIELDS_(__VA_ARGS__))
#define log_warn(ev, ...) \
  log_emit(LOG_WARN, (ev), LOG_FIELDS_(__VA_ARGS__), LOG_NFIELDS_(__VA_ARGS__))
#define log_error(ev, ...) \
  log_emit(LOG_ERROR, (ev), LOG_FIELDS_(__VA_ARGS__), LOG_NFIELDS_(__VA_ARGS__))
#define log_info0(ev)  log_emit(LOG_INFO, (ev), NULL, 0)
#define log_warn0(ev)  log_emit(LOG_WARN, (ev), NULL, 0)
#define log_error0(ev) log_emit(LOG_ERROR, (ev), NULL, 0)

/* Aborts loudly with file:line when an invariant does not hold. Never for
 * validating input. */
#define KEEL_ASSERT(cond)                               \
  do {                                                  \
    if (!(cond)) keel_panic(__FILE__, __LINE__, #cond); \
  } while (0)
#define KEEL_PANIC(msg) keel_panic(__FILE__, __LINE__, (msg))
_Noreturn void keel_panic(const char *file, int line, const char *what);

#endif
