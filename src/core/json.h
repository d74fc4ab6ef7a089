/*
 * json.h — jansson helpers: bounded parsing and typed getters that report
 * field-level validation errors.
 *
 * The getters read one member of an object, check its type and bounds, and on
 * failure add a field_error (field path, rule code, message) instead of
 * returning early, so one response can list every wrong field. A getter
 * returns 0 when the value was present and valid, 1 when it was absent and
 * optional (out untouched), -1 when an error was recorded.
 *
 * Field paths are built by the caller: pass NULL (the key is used) or a path
 * such as "events[3].data.model" (arena memory); it must outlive fe.
 * Messages are static strings.
 *
 * Rule codes (stable, listed in docs/errors.md): required, wrong_type,
 * too_short, too_long, out_of_range, not_allowed (enum), invalid_format,
 * too_deep, unknown_field.
 */
#ifndef KEEL_CORE_JSON_H
#define KEEL_CORE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"
#include "core/slice.h"

/*
 * Parses a JSON document from s. Rejects documents nested deeper than
 * max_depth (arrays/objects; the top level is depth 1), duplicate keys, and
 * trailing garbage. On error returns NULL and, when msg is not NULL, writes a
 * short human message (no input bytes echoed) into msg[msglen]. Caller owns
 * the result (json_decref).
 */
json_t *json_parse_bounded(struct slice s, size_t max_depth, char *msg, size_t msglen);
/* Depth of v (scalars: 0, [] and {}: 1). */
size_t json_depth(const json_t *v);

enum json_req { JSON_OPTIONAL = 0, JSON_REQUIRED = 1 };

/* String of min..max bytes (UTF-8 checked by jansson); *out borrowed from obj. */
int json_get_str(const json_t *obj, const char *key, const char *path, enum json_req req,
                 size_t min_len, size_t max_len, const char **out, struct field_errors *fe);
/* Integer in [min, max]; a JSON real with an integral value is refused. */
int json_get_int(const json_t *obj, const char *key, const char *path, enum json_req req,
                 int64_t min, int64_t max, int64_t *out, struct field_errors *fe);
/* Number (integer or real) in [min, max]. */
int json_get_num(const json_t *obj, const char *key, const char *path, enum json_req req,
                 double min, double max, double *out, struct field_errors *fe);
int json_get_bool(const json_t *obj, const char *key, const char *path, enum json_req req,
                  bool *out, struct field_errors *fe);
/* One of values[0..nvalues); stores the index. */
int json_get_enum(const json_t *obj, const char *key, const char *path, enum json_req req,
                  const char *const *values, size_t nvalues, int *out, struct field_errors *fe);
/* Object / array members (borrowed). */
int json_get_obj(const json_t *obj, const char *key, const char *path, enum json_req req,
                 json_t **out, struct field_errors *fe);
int json_get_arr(const json_t *obj, const char *key, const char *path, enum json_req req,
                 size_t max_items, json_t **out, struct field_errors *fe);
/* Adds "unknown_field" errors for members of obj not in allowed[]. Returns
 * the number of unknown members. */
size_t json_reject_unknown(const json_t *obj, const char *path, const char *const *allowed,
                           size_t nallowed, struct field_errors *fe);

/* Serialises v compactly into out (appending). Returns 0 or -1 when full. */
int json_dump_buf(const json_t *v, struct buf *out);

#endif
