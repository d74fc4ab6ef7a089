/*
 * json.c — bounded JSON parsing and typed getters with field-level errors.
 *
 * Invariants:
 *  - Parse error messages never contain input bytes: jansson's own texts
 *    quote the offending token ("near '...'"), so only its error code, line
 *    and column are reported.
 *  - A getter records at most one field_error per call and never stores into
 *    *out unless it returns 0.
 *  - Every rule code used here is listed in json.h and docs/errors.md.
 *
 * Thread-safety: stateless; jansson values are not shared between threads
 * by the callers.
 */
#include "core/json.h"

#include <stdio.h>
#include <string.h>

#include "core/xmalloc.h"

/* --- parsing ---------------------------------------------------------------- */

/* Generic texts per jansson error code: what went wrong, without the input. */
static const char *parse_error_text(enum json_error_code code) {
  switch (code) {
    case json_error_stack_overflow:
      return "nesting too deep";
    case json_error_invalid_utf8:
      return "invalid UTF-8";
    case json_error_premature_end_of_input:
      return "unexpected end of input";
    case json_error_end_of_input_expected:
      return "unexpected data after the JSON value";
    case json_error_invalid_syntax:
      return "invalid syntax";
    case json_error_null_character:
      return "NUL character in input";
    case json_error_null_byte_in_key:
      return "NUL character in an object key";
    case json_error_duplicate_key:
      return "duplicate object key";
    case json_error_numeric_overflow:
      return "number out of range";
    case json_error_out_of_memory:
      return "out of memory";
    default:
      return "invalid JSON";
  }
}

json_t *json_parse_bounded(struct slice s, size_t max_depth, char *msg, size_t msglen) {
  json_error_t jerr;
  json_t *v;
  size_t depth;

  /* JSON_DECODE_ANY: a scalar document is valid JSON; callers check the
   * type they expect. Trailing data is refused (no JSON_DISABLE_EOF_CHECK)
   * and "\u0000" in strings too (no JSON_ALLOW_NUL), since values are used
   * as C strings. */
  v = json_loadb(s.p != NULL ? s.p : "", s.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (v == NULL) {
    if (msg != NULL && msglen > 0) {
      snprintf(msg, msglen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
               parse_error_text(json_error_code(&jerr)));
    }
    return NULL;
  }
  depth = json_depth(v);
  if (depth > max_depth) {
    json_decref(v);
    if (msg != NULL && msglen > 0) {
      snprintf(msg, msglen, "invalid JSON: nested deeper than %zu levels", max_depth);
    }
    return NULL;
  }
  return v;
}

/* One open container during the depth walk. */
struct depth_frame {
  json_t *container;
  size_t index; /* arrays: next index */
  void *iter;   /* objects: next member, NULL before the first */
  bool started;
};

/* Returns the next child of f, or NULL when f is exhausted. */
static json_t *depth_next_child(struct depth_frame *f) {
  if (json_is_array(f->container)) {
    if (f->index >= json_array_size(f->container)) return NULL;
    return json_array_get(f->container, f->index++);
  }
  f->iter =
      f->started ? json_object_iter_next(f->container, f->iter) : json_object_iter(f->container);
  f->started = true;
  return f->iter != NULL ? json_object_iter_value(f->iter) : NULL;
}

/*
 * Iterative so that a value built in code (not parsed, so not bounded by
 * jansson's parser depth) cannot overflow the C stack.
 */
size_t json_depth(const json_t *v) {
  struct depth_frame *stack;
  size_t top = 0, cap = 16, max_depth = 1;

  if (v == NULL || !(json_is_array(v) || json_is_object(v))) return 0;
  stack = xreallocarray(NULL, cap, sizeof(*stack));
  /* jansson's iteration API takes non-const values but does not modify. */
  stack[top++] = (struct depth_frame){.container = (json_t *)v};
  while (top > 0) {
    json_t *child = depth_next_child(&stack[top - 1]);
    if (child == NULL) {
      top--;
      continue;
    }
    if (!json_is_array(child) && !json_is_object(child)) continue;
    if (top == cap) {
      cap *= 2;
      stack = xreallocarray(stack, cap, sizeof(*stack));
    }
    stack[top++] = (struct depth_frame){.container = child};
    if (top > max_depth) max_depth = top;
  }
  xfree(stack);
  return max_depth;
}

/* --- getters ---------------------------------------------------------------- */

/*
 * Looks key up in obj. Returns 0 with *v set when a value is present, 1 when
 * absent and optional, -1 after recording "required". JSON null counts as
 * absent for optional members and as a present value (of the wrong type) for
 * required ones.
 */
static int member_fetch(const json_t *obj, const char *key, const char *field, enum json_req req,
                        json_t **v, struct field_errors *fe) {
  json_t *m = NULL;

  if (json_is_object(obj) && key != NULL) m = json_object_get(obj, key);
  if (m == NULL || (json_is_null(m) && req == JSON_OPTIONAL)) {
    if (req == JSON_OPTIONAL) return 1;
    field_errors_add(fe, field, "required", "is required");
    return -1;
  }
  *v = m;
  return 0;
}

static int reject(struct field_errors *fe, const char *field, const char *code,
                  const char *message) {
  field_errors_add(fe, field, code, message);
  return -1;
}

int json_get_str(const json_t *obj, const char *key, const char *path, enum json_req req,
                 size_t min_len, size_t max_len, const char **out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  size_t len;
  const char *s;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  if (!json_is_string(v)) return reject(fe, field, "wrong_type", "must be a string");
  s = json_string_value(v);
  len = json_string_length(v);
  /* Only values built in code can hold NUL (the parser refuses it); callers
   * treat the result as a C string, so refuse it here too. */
  if (strlen(s) != len) return reject(fe, field, "invalid_format", "must not contain NUL");
  if (len < min_len) return reject(fe, field, "too_short", "is too short");
  if (len > max_len) return reject(fe, field, "too_long", "is too long");
  *out = s;
  return 0;
}

int json_get_int(const json_t *obj, const char *key, const char *path, enum json_req req,
                 int64_t min, int64_t max, int64_t *out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  json_int_t n;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  /* 3.0 is a real in JSON terms; accepting it would make 3.5 a surprise. */
  if (!json_is_integer(v)) return reject(fe, field, "wrong_type", "must be an integer");
  n = json_integer_value(v);
  if (n < min || n > max) return reject(fe, field, "out_of_range", "is out of range");
  *out = (int64_t)n;
  return 0;
}

int json_get_num(const json_t *obj, const char *key, const char *path, enum json_req req,
                 double min, double max, double *out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  double d;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  if (!json_is_number(v)) return reject(fe, field, "wrong_type", "must be a number");
  d = json_number_value(v);
  /* Written so that a NaN (impossible from the parser) is out of range. */
  if (!(d >= min && d <= max)) return reject(fe, field, "out_of_range", "is out of range");
  *out = d;
  return 0;
}

int json_get_bool(const json_t *obj, const char *key, const char *path, enum json_req req,
                  bool *out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  if (!json_is_boolean(v)) return reject(fe, field, "wrong_type", "must be a boolean");
  *out = json_is_true(v);
  return 0;
}

int json_get_enum(const json_t *obj, const char *key, const char *path, enum json_req req,
                  const char *const *values, size_t nvalues, int *out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  const char *s;
  size_t len;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  if (!json_is_string(v)) return reject(fe, field, "wrong_type", "must be a string");
  s = json_string_value(v);
  len = json_string_length(v);
  for (size_t i = 0; i < nvalues; i++) {
    /* Length first: "a\u0000b" must not match "a". */
    if (strlen(values[i]) == len && memcmp(values[i], s, len) == 0) {
      *out = (int)i;
      return 0;
    }
  }
  return reject(fe, field, "not_allowed", "is not one of the allowed values");
}

int json_get_obj(const json_t *obj, const char *key, const char *path, enum json_req req,
                 json_t **out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  if (!json_is_object(v)) return reject(fe, field, "wrong_type", "must be an object");
  *out = v;
  return 0;
}

int json_get_arr(const json_t *obj, const char *key, const char *path, enum json_req req,
                 size_t max_items, json_t **out, struct field_errors *fe) {
  const char *field = path != NULL ? path : key;
  json_t *v;
  int rc = member_fetch(obj, key, field, req, &v, fe);
  if (rc) return rc;

  if (!json_is_array(v)) return reject(fe, field, "wrong_type", "must be an array");
  if (json_array_size(v) > max_items) return reject(fe, field, "too_long", "has too many items");
  *out = v;
  return 0;
}

/*
 * With path NULL each error names the unknown member itself (the key string
 * is borrowed from obj, like every value the getters return). With a path the
 * error names the object at path: the full "path.key" would need memory that
 * outlives fe, which this API has no allocator for.
 */
size_t json_reject_unknown(const json_t *obj, const char *path, const char *const *allowed,
                           size_t nallowed, struct field_errors *fe) {
  const char *key;
  json_t *value;
  size_t unknown = 0;

  if (!json_is_object(obj)) return 0;
  /* The macro takes a non-const object; iteration does not modify it. */
  json_object_foreach((json_t *)obj, key, value) {
    bool known = false;
    (void)value;
    for (size_t i = 0; i < nallowed && !known; i++) known = strcmp(allowed[i], key) == 0;
    if (known) continue;
    unknown++;
    if (path != NULL) {
      field_errors_add(fe, path, "unknown_field", "has an unknown member");
    } else {
      field_errors_add(fe, key, "unknown_field", "is not a known field");
    }
  }
  return unknown;
}

/* --- output ----------------------------------------------------------------- */

struct dump_ctx {
  struct buf *out;
  size_t start;
  bool full;
};

static int dump_chunk(const char *p, size_t n, void *arg) {
  struct dump_ctx *d = arg;
  if (buf_append(d->out, p, n) != 0) {
    d->full = true;
    return -1;
  }
  return 0;
}

int json_dump_buf(const json_t *v, struct buf *out) {
  if (v == NULL) return -1;
  /* One pass: jansson streams the encoding into the buffer (measuring first
   * would encode everything twice). On failure the buffer is restored. */
  struct dump_ctx d = {.out = out, .start = out->len};
  if (json_dump_callback(v, dump_chunk, &d, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
    out->len = d.start;
    if (out->data) out->data[out->len] = '\0';
    return -1;
  }
  return 0;
}
