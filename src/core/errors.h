/*
 * errors.h — the one status type and the catalogue of problems.
 *
 * Internal functions return int: 0 (KEEL_OK) on success, or a negative
 * KEEL_E* status. At the API edge a status — or an explicit problem code —
 * becomes an RFC 9457 problem+json body through the table in errors.c: each
 * problem has a stable snake_case code, an HTTP status and a title, 1:1.
 *
 * Thread-safety: everything here is thread-safe (the table is constant).
 */
#ifndef KEEL_CORE_ERRORS_H
#define KEEL_CORE_ERRORS_H

#include <stddef.h>

#include "core/buf.h"

/* Internal status codes. */
enum {
  KEEL_OK = 0,
  KEEL_EINVAL = -1,    /* bad argument / input that fails validation */
  KEEL_ENOMEM = -2,    /* a bounded buffer is full */
  KEEL_ENOTFOUND = -3, /* no such row in this scope */
  KEEL_ECONFLICT = -4, /* unique constraint, already exists */
  KEEL_ESTORE = -5,    /* storage failure */
  KEEL_EBUSY = -6,     /* try again later (queue full, store busy) */
  KEEL_EIO = -7,       /* I/O, network */
  KEEL_ETOOBIG = -8,   /* over a limit */
  KEEL_EDENIED = -9,   /* permission denied */
  KEEL_EINTERNAL = -10 /* a bug: an invariant does not hold */
};

/* Short name of a status ("ok", "einval", ...), for logs. */
const char *keel_strerror(int status);

/*
 * Problems: the public error catalogue. Add a row to errors.c and an entry to
 * docs/errors.md together; codes are never renamed once shipped.
 */
struct problem_def {
  const char *code;  /* stable snake_case, e.g. "not_found" */
  int http_status;   /* e.g. 404 */
  const char *title; /* short, human, constant per code */
};

/* Looks a problem up by code; NULL when unknown. */
const struct problem_def *problem_lookup(const char *code);
/* The whole catalogue (for docs and tests). */
const struct problem_def *problem_table(size_t *count);
/* Maps an internal status to a default problem code. */
const char *problem_code_for_status(int status);

/*
 * One field-level validation error, and a bounded list of them. The strings
 * are borrowed: they must outlive the list (use literals or arena memory).
 */
struct field_error {
  const char *field;   /* JSON path, e.g. "events[3].data.model" */
  const char *code;    /* stable snake_case rule, e.g. "required", "too_long" */
  const char *message; /* human text */
};

#define FIELD_ERRORS_MAX 64

struct field_errors {
  struct field_error items[FIELD_ERRORS_MAX];
  size_t count;
  size_t dropped; /* errors past FIELD_ERRORS_MAX, counted but not kept */
};

void field_errors_add(struct field_errors *fe, const char *field, const char *code,
                      const char *message);

/*
 * Renders a problem+json document into out:
 *   {type, title, status, detail, code, request_id[, errors]}
 * type is "urn:keel:problem:<code>". detail and request_id may be NULL;
 * fe may be NULL or empty (then no "errors" member). Returns 0 or -1 when out
 * is full.
 */
int problem_render(struct buf *out, const struct problem_def *p, const char *detail,
                   const char *request_id, const struct field_errors *fe);

#endif
