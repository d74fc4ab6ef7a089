/*
 * fuzz_json.c — libFuzzer driver for the bounded JSON parser and the typed
 * getters: any input must parse or be refused cleanly, never crash or leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char msg[160];
  json_t *v =
      json_parse_bounded(slice_make((const char *)data, size), LIMIT_JSON_DEPTH, msg, sizeof(msg));
  if (!v) return 0;
  struct field_errors fe = {0};
  const char *s;
  int64_t i;
  double d;
  bool b;
  json_t *o;
  static const char *const allowed[] = {"a", "b", "name"};
  json_get_str(v, "name", NULL, JSON_REQUIRED, 1, 64, &s, &fe);
  json_get_int(v, "a", NULL, JSON_OPTIONAL, -5, 5, &i, &fe);
  json_get_num(v, "b", NULL, JSON_OPTIONAL, 0, 1, &d, &fe);
  json_get_bool(v, "c", NULL, JSON_OPTIONAL, &b, &fe);
  json_get_obj(v, "d", NULL, JSON_OPTIONAL, &o, &fe);
  json_get_arr(v, "e", NULL, JSON_OPTIONAL, 3, &o, &fe);
  json_reject_unknown(v, NULL, allowed, 3, &fe);
  (void)json_depth(v);
  json_decref(v);
  return 0;
}
