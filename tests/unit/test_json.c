/*
 * test_json.c — bounded parsing (depth N and N+1, duplicates, trailing data,
 * messages that never echo input), json_depth, every getter against every
 * rule code, json_reject_unknown and json_dump_buf.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/xmalloc.h"

/* --- parsing ---------------------------------------------------------------- */

/* "[[[...]]]" (or {"a":{"a":...}}) nested depth levels deep; caller frees. */
static char *nested(size_t depth, int objects) {
  size_t cap = depth * 6 + 8, n = 0;
  char *s = xmalloc(cap);
  for (size_t i = 0; i < depth; i++) {
    if (objects) {
      memcpy(s + n, "{\"a\":", 5);
      n += 5;
    } else {
      s[n++] = '[';
    }
  }
  if (objects && depth > 0) {
    memcpy(s + n, "1", 1); /* innermost value */
    n += 1;
  }
  for (size_t i = 0; i < depth; i++) s[n++] = objects ? '}' : ']';
  s[n] = '\0';
  return s;
}

static void test_parse_depth_limit(void **state) {
  static const struct {
    size_t depth, max;
    int objects;
    int ok;
  } cases[] = {
      {1, 1, 0, 1},
      {2, 1, 0, 0},
      {LIMIT_JSON_DEPTH, LIMIT_JSON_DEPTH, 0, 1},
      {LIMIT_JSON_DEPTH + 1, LIMIT_JSON_DEPTH, 0, 0},
      {LIMIT_JSON_DEPTH, LIMIT_JSON_DEPTH, 1, 1},
      {LIMIT_JSON_DEPTH + 1, LIMIT_JSON_DEPTH, 1, 0},
      {32, 32, 0, 1},
      {33, 32, 1, 0},
      {5000, 100000, 0, 0}, /* past jansson's own parser limit */
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *doc = nested(cases[i].depth, cases[i].objects);
    char msg[256] = "";
    json_t *v = json_parse_bounded(slice_from_cstr(doc), cases[i].max, msg, sizeof(msg));
    if (cases[i].ok) {
      if (v == NULL) fail_msg("case %zu refused: %s", i, msg);
      assert_int_equal(json_depth(v), cases[i].depth);
      json_decref(v);
    } else {
      if (v != NULL) fail_msg("case %zu accepted", i);
      assert_true(strlen(msg) > 0);
    }
    xfree(doc);
  }
}

static void test_parse_cases(void **state) {
  static const struct {
    const char *doc;
    int ok;
    const char *msg_has; /* substring of the message on failure */
  } cases[] = {
      {"{}", 1, NULL},
      {"[]", 1, NULL},
      {" \n{\"a\":[1,2,{\"b\":null}]}\n ", 1, NULL},
      {"1", 1, NULL},
      {"\"s\"", 1, NULL},
      {"null", 1, NULL},
      {"true", 1, NULL},
      {"", 0, "line"},
      {"   ", 0, "line"},
      {"{} x", 0, "unexpected data after"},
      {"{}{}", 0, "unexpected data after"},
      {"[] 1", 0, "unexpected data after"},
      {"{\"a\":1,\"a\":2}", 0, "duplicate"},
      {"{\"o\":{\"k\":1,\"k\":1}}", 0, "duplicate"},
      {"[1,]", 0, "line 1"},
      {"{\n\"a\": x}", 0, "line 2"},
      {"{\"a\":\"\\u0000\"}", 0, "line"},
      {"\"\xff\"", 0, "UTF-8"},
      {"[1e999]", 0, "line"},
      {"[99999999999999999999]", 0, "line"},
      {"{\"a\":1", 0, "end of input"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char msg[256] = "";
    json_t *v =
        json_parse_bounded(slice_from_cstr(cases[i].doc), LIMIT_JSON_DEPTH, msg, sizeof(msg));
    if (cases[i].ok) {
      if (v == NULL) fail_msg("case %zu refused: %s", i, msg);
      json_decref(v);
      continue;
    }
    if (v != NULL) fail_msg("case %zu accepted: %s", i, cases[i].doc);
    if (strstr(msg, cases[i].msg_has) == NULL) {
      fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, msg, cases[i].msg_has);
    }
  }
}

/* Parse errors describe the problem, never the bytes: a body may carry
 * secrets that must not reach a response or a log. */
static void test_parse_message_never_echoes_input(void **state) {
  static const char *const docs[] = {
      "{\"SECRETTOKEN\" 1}",  "{\"SECRETTOKEN\":1,\"SECRETTOKEN\":2}",
      "[SECRETTOKEN]",        "{} SECRETTOKEN",
      "\"SECRETTOKEN",        "{\"a\":SECRETTOKEN}",
      "[1, 2, tSECRETTOKEN]",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
    char msg[512] = "";
    assert_null(json_parse_bounded(slice_from_cstr(docs[i]), 8, msg, sizeof(msg)));
    assert_true(strlen(msg) > 0);
    if (strstr(msg, "SECRET") || strstr(msg, "TOKEN")) fail_msg("echoed: %s", msg);
  }
}

static void test_parse_slice_bounds(void **state) {
  /* The slice is not NUL-terminated where it ends. */
  static const char bytes[] = "{\"a\":1}GARBAGE";
  char msg[8]; /* too short for the message: truncated, still terminated */
  json_t *v;
  (void)state;

  v = json_parse_bounded(slice_make(bytes, 7), 4, NULL, 0);
  assert_non_null(v);
  json_decref(v);
  assert_null(json_parse_bounded(slice_make(bytes, 8), 4, msg, sizeof(msg)));
  assert_int_equal(strlen(msg), sizeof(msg) - 1);
  assert_null(json_parse_bounded(SLICE_NULL, 4, NULL, 0));
}

static void test_depth(void **state) {
  static const struct {
    const char *doc;
    size_t depth;
  } cases[] = {
      {"1", 0},
      {"\"x\"", 0},
      {"null", 0},
      {"[]", 1},
      {"{}", 1},
      {"[1,2,3]", 1},
      {"[[]]", 2},
      {"{\"a\":[{}]}", 3},
      {"[1,[2,[3]],{}]", 3},
      {"[{},{\"a\":{\"b\":[[]]}},[]]", 5},
      {"{\"a\":{},\"b\":{\"c\":{}},\"d\":1}", 3},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_error_t err;
    json_t *v = json_loads(cases[i].doc, JSON_DECODE_ANY, &err);
    assert_non_null(v);
    assert_int_equal(json_depth(v), cases[i].depth);
    json_decref(v);
  }
  assert_int_equal(json_depth(NULL), 0);
}

/* A value built in code can be deeper than the parser allows; json_depth
 * must not recurse on the C stack. */
static void test_depth_built_value(void **state) {
  const size_t levels = 10000;
  json_t *root = json_array();
  json_t *cur = root;
  (void)state;
  for (size_t i = 1; i < levels; i++) {
    json_t *child = json_array();
    assert_int_equal(json_array_append_new(cur, child), 0);
    cur = child;
  }
  assert_int_equal(json_depth(root), levels);
  json_decref(root);
}

/* --- getters ---------------------------------------------------------------- */

static const char getter_doc[] =
    "{\"s\":\"hello\",\"e\":\"\",\"u\":\"\xc3\xa9\xe2\x82\xac\",\"n\":42,\"neg\":-5,"
    "\"r\":2.5,\"r_int\":3.0,\"big\":9007199254740993,\"t\":true,\"f\":false,\"z\":null,"
    "\"o\":{\"k\":1},\"a\":[1,2,3],\"ea\":[],\"color\":\"blue\"}";

enum getter { G_STR, G_INT, G_NUM, G_BOOL, G_ENUM, G_OBJ, G_ARR };

static const char *const colors[] = {"red", "green", "blue"};

struct getter_case {
  enum getter g;
  const char *key;
  enum json_req req;
  int64_t lo, hi; /* str: byte lengths; int: bounds; arr: hi = max items */
  double dlo, dhi;
  int rc;
  const char *code; /* expected rule code when rc == -1 */
  int64_t want_i;   /* int, enum index, bool, str length, arr size */
  double want_d;
};

#define R JSON_REQUIRED
#define O JSON_OPTIONAL

static const struct getter_case getter_cases[] = {
    /* strings: length in bytes, bounds inclusive */
    {G_STR, "s", R, 0, 10, 0, 0, 0, NULL, 5, 0},
    {G_STR, "s", R, 5, 5, 0, 0, 0, NULL, 5, 0},
    {G_STR, "s", R, 6, 10, 0, 0, -1, "too_short", 0, 0},
    {G_STR, "s", R, 0, 4, 0, 0, -1, "too_long", 0, 0},
    {G_STR, "e", R, 0, 1, 0, 0, 0, NULL, 0, 0},
    {G_STR, "e", R, 1, 10, 0, 0, -1, "too_short", 0, 0},
    {G_STR, "u", R, 5, 5, 0, 0, 0, NULL, 5, 0},
    {G_STR, "u", R, 0, 4, 0, 0, -1, "too_long", 0, 0},
    {G_STR, "n", R, 0, 10, 0, 0, -1, "wrong_type", 0, 0},
    {G_STR, "o", O, 0, 10, 0, 0, -1, "wrong_type", 0, 0},
    {G_STR, "missing", O, 0, 10, 0, 0, 1, NULL, 0, 0},
    {G_STR, "missing", R, 0, 10, 0, 0, -1, "required", 0, 0},
    {G_STR, "z", O, 0, 10, 0, 0, 1, NULL, 0, 0},
    {G_STR, "z", R, 0, 10, 0, 0, -1, "wrong_type", 0, 0},
    /* integers: reals refused even when integral */
    {G_INT, "n", R, 0, 100, 0, 0, 0, NULL, 42, 0},
    {G_INT, "n", R, 42, 42, 0, 0, 0, NULL, 42, 0},
    {G_INT, "n", R, 43, 100, 0, 0, -1, "out_of_range", 0, 0},
    {G_INT, "n", R, 0, 41, 0, 0, -1, "out_of_range", 0, 0},
    {G_INT, "neg", R, -5, 0, 0, 0, 0, NULL, -5, 0},
    {G_INT, "neg", R, -4, 0, 0, 0, -1, "out_of_range", 0, 0},
    {G_INT, "big", R, INT64_MIN, INT64_MAX, 0, 0, 0, NULL, INT64_C(9007199254740993), 0},
    {G_INT, "r_int", R, 0, 100, 0, 0, -1, "wrong_type", 0, 0},
    {G_INT, "r", R, 0, 100, 0, 0, -1, "wrong_type", 0, 0},
    {G_INT, "s", R, 0, 100, 0, 0, -1, "wrong_type", 0, 0},
    {G_INT, "t", O, 0, 100, 0, 0, -1, "wrong_type", 0, 0},
    {G_INT, "missing", O, 0, 100, 0, 0, 1, NULL, 0, 0},
    {G_INT, "missing", R, 0, 100, 0, 0, -1, "required", 0, 0},
    {G_INT, "z", O, 0, 100, 0, 0, 1, NULL, 0, 0},
    {G_INT, "z", R, 0, 100, 0, 0, -1, "wrong_type", 0, 0},
    /* numbers: integers and reals */
    {G_NUM, "r", R, 0, 0, 0, 10, 0, NULL, 0, 2.5},
    {G_NUM, "r", R, 0, 0, 2.5, 2.5, 0, NULL, 0, 2.5},
    {G_NUM, "n", R, 0, 0, 0, 100, 0, NULL, 0, 42.0},
    {G_NUM, "r", R, 0, 0, 2.6, 10, -1, "out_of_range", 0, 0},
    {G_NUM, "r", R, 0, 0, -1, 2.4, -1, "out_of_range", 0, 0},
    {G_NUM, "s", R, 0, 0, 0, 10, -1, "wrong_type", 0, 0},
    {G_NUM, "missing", O, 0, 0, 0, 10, 1, NULL, 0, 0},
    {G_NUM, "missing", R, 0, 0, 0, 10, -1, "required", 0, 0},
    {G_NUM, "z", O, 0, 0, 0, 10, 1, NULL, 0, 0},
    {G_NUM, "z", R, 0, 0, 0, 10, -1, "wrong_type", 0, 0},
    /* booleans */
    {G_BOOL, "t", R, 0, 0, 0, 0, 0, NULL, 1, 0},
    {G_BOOL, "f", R, 0, 0, 0, 0, 0, NULL, 0, 0},
    {G_BOOL, "n", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    {G_BOOL, "s", O, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    {G_BOOL, "missing", O, 0, 0, 0, 0, 1, NULL, 0, 0},
    {G_BOOL, "missing", R, 0, 0, 0, 0, -1, "required", 0, 0},
    {G_BOOL, "z", O, 0, 0, 0, 0, 1, NULL, 0, 0},
    {G_BOOL, "z", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    /* enums */
    {G_ENUM, "color", R, 0, 0, 0, 0, 0, NULL, 2, 0},
    {G_ENUM, "s", R, 0, 0, 0, 0, -1, "not_allowed", 0, 0},
    {G_ENUM, "e", R, 0, 0, 0, 0, -1, "not_allowed", 0, 0},
    {G_ENUM, "n", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    {G_ENUM, "missing", O, 0, 0, 0, 0, 1, NULL, 0, 0},
    {G_ENUM, "missing", R, 0, 0, 0, 0, -1, "required", 0, 0},
    {G_ENUM, "z", O, 0, 0, 0, 0, 1, NULL, 0, 0},
    {G_ENUM, "z", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    /* objects */
    {G_OBJ, "o", R, 0, 0, 0, 0, 0, NULL, 1, 0},
    {G_OBJ, "a", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    {G_OBJ, "s", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    {G_OBJ, "missing", O, 0, 0, 0, 0, 1, NULL, 0, 0},
    {G_OBJ, "missing", R, 0, 0, 0, 0, -1, "required", 0, 0},
    {G_OBJ, "z", O, 0, 0, 0, 0, 1, NULL, 0, 0},
    {G_OBJ, "z", R, 0, 0, 0, 0, -1, "wrong_type", 0, 0},
    /* arrays: item count at N and N+1 */
    {G_ARR, "a", R, 0, 3, 0, 0, 0, NULL, 3, 0},
    {G_ARR, "a", R, 0, 2, 0, 0, -1, "too_long", 0, 0},
    {G_ARR, "ea", R, 0, 0, 0, 0, 0, NULL, 0, 0},
    {G_ARR, "a", R, 0, 0, 0, 0, -1, "too_long", 0, 0},
    {G_ARR, "o", R, 0, 10, 0, 0, -1, "wrong_type", 0, 0},
    {G_ARR, "missing", O, 0, 10, 0, 0, 1, NULL, 0, 0},
    {G_ARR, "missing", R, 0, 10, 0, 0, -1, "required", 0, 0},
    {G_ARR, "z", O, 0, 10, 0, 0, 1, NULL, 0, 0},
    {G_ARR, "z", R, 0, 10, 0, 0, -1, "wrong_type", 0, 0},
};

/* Runs one case; returns rc, checks the value on success and that out was
 * not touched otherwise. */
static int run_getter(const json_t *doc, const struct getter_case *c, const char *path,
                      struct field_errors *fe) {
  int rc = -2;
  switch (c->g) {
    case G_STR: {
      const char *out = "untouched";
      rc = json_get_str(doc, c->key, path, c->req, (size_t)c->lo, (size_t)c->hi, &out, fe);
      if (rc == 0) {
        assert_int_equal(strlen(out), c->want_i);
        assert_ptr_equal(out, json_string_value(json_object_get(doc, c->key)));
      } else {
        assert_string_equal(out, "untouched");
      }
      break;
    }
    case G_INT: {
      int64_t out = 7777;
      rc = json_get_int(doc, c->key, path, c->req, c->lo, c->hi, &out, fe);
      assert_true(out == (rc == 0 ? c->want_i : 7777));
      break;
    }
    case G_NUM: {
      double out = 7777.5;
      rc = json_get_num(doc, c->key, path, c->req, c->dlo, c->dhi, &out, fe);
      assert_true(out == (rc == 0 ? c->want_d : 7777.5));
      break;
    }
    case G_BOOL: {
      bool out = true;
      bool sentinel = c->want_i ? false : true;
      out = sentinel;
      rc = json_get_bool(doc, c->key, path, c->req, &out, fe);
      assert_true(out == (rc == 0 ? (c->want_i != 0) : sentinel));
      break;
    }
    case G_ENUM: {
      int out = -7;
      rc = json_get_enum(doc, c->key, path, c->req, colors, 3, &out, fe);
      assert_int_equal(out, rc == 0 ? c->want_i : -7);
      break;
    }
    case G_OBJ: {
      json_t *out = NULL;
      rc = json_get_obj(doc, c->key, path, c->req, &out, fe);
      if (rc == 0) {
        assert_ptr_equal(out, json_object_get(doc, c->key));
      } else {
        assert_null(out);
      }
      break;
    }
    case G_ARR: {
      json_t *out = NULL;
      rc = json_get_arr(doc, c->key, path, c->req, (size_t)c->hi, &out, fe);
      if (rc == 0) {
        assert_int_equal(json_array_size(out), c->want_i);
      } else {
        assert_null(out);
      }
      break;
    }
  }
  return rc;
}

static void test_getters(void **state) {
  json_t *doc = json_parse_bounded(SLICE_LIT(getter_doc), 4, NULL, 0);
  (void)state;
  assert_non_null(doc);

  for (size_t i = 0; i < sizeof(getter_cases) / sizeof(getter_cases[0]); i++) {
    const struct getter_case *c = &getter_cases[i];
    /* once with the key as the field name, once with a caller's path */
    static const char *const paths[] = {NULL, "events[3].data.model"};
    for (size_t p = 0; p < 2; p++) {
      struct field_errors fe = {0};
      int rc = run_getter(doc, c, paths[p], &fe);
      if (rc != c->rc) fail_msg("case %zu (%s): rc %d, want %d", i, c->key, rc, c->rc);
      if (rc == -1) {
        assert_int_equal(fe.count, 1);
        if (strcmp(fe.items[0].code, c->code) != 0) {
          fail_msg("case %zu (%s): code %s, want %s", i, c->key, fe.items[0].code, c->code);
        }
        assert_string_equal(fe.items[0].field, paths[p] ? paths[p] : c->key);
        assert_non_null(fe.items[0].message);
        assert_true(strlen(fe.items[0].message) > 0);
      } else {
        assert_int_equal(fe.count, 0);
      }
    }
  }
  json_decref(doc);
}

/* Every getter error in one list: a response names all wrong fields. */
static void test_errors_accumulate(void **state) {
  json_t *doc = json_parse_bounded(SLICE_LIT(getter_doc), 4, NULL, 0);
  struct field_errors fe = {0};
  const char *s;
  int64_t n;
  bool b;
  (void)state;

  assert_int_equal(json_get_str(doc, "n", NULL, R, 0, 9, &s, &fe), -1);
  assert_int_equal(json_get_int(doc, "s", NULL, R, 0, 9, &n, &fe), -1);
  assert_int_equal(json_get_bool(doc, "t", NULL, R, &b, &fe), 0);
  assert_int_equal(json_get_int(doc, "nope", NULL, R, 0, 9, &n, &fe), -1);
  assert_int_equal(fe.count, 3);
  assert_string_equal(fe.items[0].field, "n");
  assert_string_equal(fe.items[1].field, "s");
  assert_string_equal(fe.items[2].field, "nope");
  assert_string_equal(fe.items[2].code, "required");
  json_decref(doc);
}

/* A value built in code may hold NUL bytes; callers use C strings. */
static void test_str_with_nul_refused(void **state) {
  json_t *doc = json_object();
  struct field_errors fe = {0};
  const char *s = NULL;
  int out = -1;
  (void)state;
  json_object_set_new(doc, "k", json_stringn("a\0b", 3));
  json_object_set_new(doc, "c", json_stringn("red\0x", 5));
  assert_int_equal(json_get_str(doc, "k", NULL, R, 0, 10, &s, &fe), -1);
  assert_string_equal(fe.items[0].code, "invalid_format");
  assert_null(s);
  assert_int_equal(json_get_enum(doc, "c", NULL, R, colors, 3, &out, &fe), -1);
  assert_string_equal(fe.items[1].code, "not_allowed");
  json_decref(doc);
}

static void test_getter_not_an_object(void **state) {
  json_t *arr = json_array();
  struct field_errors fe = {0};
  int64_t n;
  (void)state;
  assert_int_equal(json_get_int(arr, "k", NULL, O, 0, 1, &n, &fe), 1);
  assert_int_equal(json_get_int(NULL, "k", NULL, R, 0, 1, &n, &fe), -1);
  assert_string_equal(fe.items[0].code, "required");
  json_decref(arr);
}

static void test_reject_unknown(void **state) {
  static const char *const ab[] = {"a", "b"};
  static const char *const abc[] = {"a", "b", "c"};
  static const struct {
    const char *doc;
    const char *const *allowed;
    size_t nallowed;
    const char *path;
    size_t unknown;
    const char *field; /* of the first error */
  } cases[] = {
      {"{\"a\":1,\"b\":2,\"c\":3}", ab, 2, NULL, 1, "c"},
      {"{\"a\":1,\"b\":2,\"c\":3}", ab, 2, "events[0]", 1, "events[0]"},
      {"{\"a\":1,\"b\":2,\"c\":3}", abc, 3, NULL, 0, NULL},
      {"{\"a\":1,\"b\":2,\"c\":3}", NULL, 0, NULL, 3, "a"},
      {"{}", ab, 2, NULL, 0, NULL},
      {"{\"A\":1}", ab, 2, NULL, 1, "A"},
      {"[1,2]", ab, 2, NULL, 0, NULL},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct field_errors fe = {0};
    json_t *doc = json_parse_bounded(slice_from_cstr(cases[i].doc), 4, NULL, 0);
    assert_non_null(doc);
    size_t n = json_reject_unknown(doc, cases[i].path, cases[i].allowed, cases[i].nallowed, &fe);
    assert_int_equal(n, cases[i].unknown);
    assert_int_equal(fe.count, cases[i].unknown);
    for (size_t e = 0; e < fe.count; e++) assert_string_equal(fe.items[e].code, "unknown_field");
    if (cases[i].field) assert_string_equal(fe.items[0].field, cases[i].field);
    json_decref(doc);
  }
}

/* --- json_dump_buf ---------------------------------------------------------- */

static void test_dump_buf(void **state) {
  static const struct {
    const char *doc;
    const char *want;
  } cases[] = {
      {"{ \"a\" : 1, \"b\" : [ true, null, \"x\\\"y\" ] }",
       "{\"a\":1,\"b\":[true,null,\"x\\\"y\"]}"},
      {"5", "5"},
      {"\"caf\xc3\xa9\"", "\"caf\xc3\xa9\""},
      {"[]", "[]"},
      {"{\"z\":1,\"a\":2}", "{\"z\":1,\"a\":2}"}, /* insertion order kept */
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *v = json_parse_bounded(slice_from_cstr(cases[i].doc), 4, NULL, 0);
    struct buf b;
    size_t want_len = strlen(cases[i].want);
    assert_non_null(v);

    buf_init(&b, 1 << 16);
    assert_int_equal(buf_append_cstr(&b, "<<"), 0);
    assert_int_equal(json_dump_buf(v, &b), 0);
    assert_int_equal(b.len, 2 + want_len);
    assert_string_equal(b.data + 2, cases[i].want);
    buf_free(&b);

    /* max exactly enough: fits; one less: refused, buffer unchanged */
    buf_init(&b, 2 + want_len);
    assert_int_equal(buf_append_cstr(&b, "<<"), 0);
    assert_int_equal(json_dump_buf(v, &b), 0);
    assert_string_equal(b.data + 2, cases[i].want);
    buf_free(&b);
    buf_init(&b, 2 + want_len - 1);
    assert_int_equal(buf_append_cstr(&b, "<<"), 0);
    assert_int_equal(json_dump_buf(v, &b), -1);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "<<");
    buf_free(&b);
    json_decref(v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_depth_limit),
      cmocka_unit_test(test_parse_cases),
      cmocka_unit_test(test_parse_message_never_echoes_input),
      cmocka_unit_test(test_parse_slice_bounds),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_depth_built_value),
      cmocka_unit_test(test_getters),
      cmocka_unit_test(test_errors_accumulate),
      cmocka_unit_test(test_str_with_nul_refused),
      cmocka_unit_test(test_getter_not_an_object),
      cmocka_unit_test(test_reject_unknown),
      cmocka_unit_test(test_dump_buf),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
