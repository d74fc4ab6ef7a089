/*
 * test_events.c — the event contract: a validation matrix (each field wrong
 * in each way → its code and field path), mixed batches, body-level refusals,
 * every ingestion limit at N and N+1, the future bound on timestamps, the
 * enrichment defaults, typed values, in-batch duplicates, the canonical form
 * (number and string encoding, failures) and the hash chain against the
 * vectors of the Python reference (tests/fixtures/hashchain_vectors.json).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/events.h"
#include "domain/pricing.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* 2026-03-01T12:00:00Z, the received time of every batch here. */
static int64_t received_us;

static int setup(void **state) {
  (void)state;
  assert_int_equal(crypto_init(), 0);
  char err[256];
  assert_int_equal(pricing_load(NULL, err, sizeof(err)), 0); /* events_prepare prices */
  assert_int_equal(time_parse_rfc3339(slice_from_cstr("2026-03-01T12:00:00Z"), &received_us), 0);
  return 0;
}

/* --- helpers ---------------------------------------------------------------- */

/*
 * Expands a template: "~N~" becomes N 'x' characters. Everything else is
 * copied. Caller frees.
 */
static char *expand(const char *tmpl) {
  struct buf b;
  buf_init(&b, SIZE_MAX);
  for (const char *p = tmpl; *p;) {
    if (*p == '~') {
      char *end;
      unsigned long n = strtoul(p + 1, &end, 10);
      assert_true(*end == '~');
      for (unsigned long i = 0; i < n; i++) assert_int_equal(buf_putc(&b, 'x'), 0);
      p = end + 1;
    } else {
      assert_int_equal(buf_putc(&b, *p++), 0);
    }
  }
  return buf_steal(&b, NULL);
}

static int parse_with(const char *body, enum events_entry entry, struct ingest_batch *b) {
  struct events_parse_opts opts = {.entry = entry, .received_us = received_us};
  return events_parse(slice_from_cstr(body), &opts, b);
}

static int parse_batch(const char *body, struct ingest_batch *b) {
  return parse_with(body, EVENTS_ENTRY_BATCH, b);
}

/* {"events":[e0,e1,...]} from n event texts. Caller frees. */
static char *batch_of(const char *const *events, size_t n) {
  struct buf b;
  buf_init(&b, SIZE_MAX);
  assert_int_equal(buf_append_cstr(&b, "{\"events\":["), 0);
  for (size_t i = 0; i < n; i++) {
    if (i) assert_int_equal(buf_putc(&b, ','), 0);
    assert_int_equal(buf_append_cstr(&b, events[i]), 0);
  }
  assert_int_equal(buf_append_cstr(&b, "]}"), 0);
  return buf_steal(&b, NULL);
}

/* n copies of one event as a batch. Caller frees. */
static char *batch_repeat(const char *event, size_t n) {
  const char **events = xcalloc(n ? n : 1, sizeof(*events));
  for (size_t i = 0; i < n; i++) events[i] = event;
  char *body = batch_of(events, n);
  xfree(events);
  return body;
}

/* True when b lists an error for index with this field and code. */
static bool has_error(const struct ingest_batch *b, size_t index, const char *field,
                      const char *code) {
  for (size_t i = 0; i < b->error_count; i++) {
    const struct ingest_error *e = &b->errors[i];
    if (e->index == index && strcmp(e->field, field) == 0 && strcmp(e->code, code) == 0) {
      return true;
    }
  }
  return false;
}

static void dump_errors(const struct ingest_batch *b) {
  for (size_t i = 0; i < b->error_count; i++) {
    print_message("  [%zu] %s %s: %s\n", b->errors[i].index, b->errors[i].field, b->errors[i].code,
                  b->errors[i].message);
  }
}

/* Parses a one-event batch; asserts it is valid or has exactly the error. */
static void expect_event(const char *event_tmpl, const char *field, const char *code) {
  char *event = expand(event_tmpl);
  char *body = batch_of((const char *const *)&event, 1);
  struct ingest_batch b;
  assert_int_equal(parse_batch(body, &b), 0);
  assert_int_equal(b.count, 1);
  if (field == NULL) {
    if (!b.events[0].valid) {
      dump_errors(&b);
      fail_msg("refused: %s", event_tmpl);
    }
  } else if (b.events[0].valid || !has_error(&b, 0, field, code)) {
    dump_errors(&b);
    fail_msg("expected %s %s for %s", field, code, event_tmpl);
  }
  events_batch_free(&b);
  xfree(body);
  xfree(event);
}

static int64_t at(const char *rfc3339) {
  int64_t us;
  assert_int_equal(time_parse_rfc3339(slice_from_cstr(rfc3339), &us), 0);
  return us;
}

#define OK_EVENT "{\"session_id\":\"s1\",\"type\":\"custom\"}"
#define SID      "\"session_id\":\"s1\""
#define LLM      SID ",\"type\":\"llm_call\""
#define TOOL     SID ",\"type\":\"tool_call\""

/* --- the validation matrix -------------------------------------------------- */

/* The bad event is the fourth of five, so the paths carry "events[3]". */
static const struct matrix_case {
  const char *event; /* template (see expand) */
  const char *field;
  const char *code;
} matrix[] = {
    /* id */
    {"{\"id\":7," SID ",\"type\":\"custom\"}", "events[3].id", "wrong_type"},
    {"{\"id\":\"\"," SID ",\"type\":\"custom\"}", "events[3].id", "too_short"},
    {"{\"id\":\"~65~\"," SID ",\"type\":\"custom\"}", "events[3].id", "too_long"},
    {"{\"id\":\"a b\"," SID ",\"type\":\"custom\"}", "events[3].id", "invalid_format"},
    {"{\"id\":\"a/b\"," SID ",\"type\":\"custom\"}", "events[3].id", "invalid_format"},
    {"{\"id\":\"\\u00e9\"," SID ",\"type\":\"custom\"}", "events[3].id", "invalid_format"},
    /* session_id */
    {"{\"type\":\"custom\"}", "events[3].session_id", "required"},
    {"{\"session_id\":null,\"type\":\"custom\"}", "events[3].session_id", "wrong_type"},
    {"{\"session_id\":5,\"type\":\"custom\"}", "events[3].session_id", "wrong_type"},
    {"{\"session_id\":\"\",\"type\":\"custom\"}", "events[3].session_id", "too_short"},
    {"{\"session_id\":\"~129~\",\"type\":\"custom\"}", "events[3].session_id", "too_long"},
    {"{\"session_id\":\"s#1\",\"type\":\"custom\"}", "events[3].session_id", "invalid_format"},
    /* agent_id */
    {"{\"agent_id\":[]," SID ",\"type\":\"custom\"}", "events[3].agent_id", "wrong_type"},
    {"{\"agent_id\":\"\"," SID ",\"type\":\"custom\"}", "events[3].agent_id", "too_short"},
    {"{\"agent_id\":\"~129~\"," SID ",\"type\":\"custom\"}", "events[3].agent_id", "too_long"},
    {"{\"agent_id\":\"bot 1\"," SID ",\"type\":\"custom\"}", "events[3].agent_id",
     "invalid_format"},
    /* type */
    {"{" SID "}", "events[3].type", "required"},
    {"{" SID ",\"type\":\"llm\"}", "events[3].type", "not_allowed"},
    {"{" SID ",\"type\":\"LLM_CALL\"}", "events[3].type", "not_allowed"},
    {"{" SID ",\"type\":3}", "events[3].type", "wrong_type"},
    /* timestamp */
    {"{" SID ",\"type\":\"custom\",\"timestamp\":12}", "events[3].timestamp", "wrong_type"},
    {"{" SID ",\"type\":\"custom\",\"timestamp\":\"yesterday\"}", "events[3].timestamp",
     "invalid_format"},
    {"{" SID ",\"type\":\"custom\",\"timestamp\":\"2026-02-30T00:00:00Z\"}", "events[3].timestamp",
     "invalid_format"},
    {"{" SID ",\"type\":\"custom\",\"timestamp\":\"2026-03-01T12:00:00\"}", "events[3].timestamp",
     "invalid_format"},
    {"{" SID ",\"type\":\"custom\",\"timestamp\":\"2026-03-01T12:00:00.~40~Z\"}",
     "events[3].timestamp", "invalid_format"},
    {"{" SID ",\"type\":\"custom\",\"timestamp\":\"2026-03-01T12:05:01Z\"}", "events[3].timestamp",
     "in_future"},
    {"{" SID ",\"type\":\"custom\",\"timestamp\":\"0001-01-01T00:00:00+01:00\"}",
     "events[3].timestamp", "invalid_format"},
    /* severity */
    {"{" SID ",\"type\":\"custom\",\"severity\":\"fatal\"}", "events[3].severity", "not_allowed"},
    {"{" SID ",\"type\":\"custom\",\"severity\":1}", "events[3].severity", "wrong_type"},
    /* data, metadata */
    {"{" SID ",\"type\":\"custom\",\"data\":[]}", "events[3].data", "wrong_type"},
    {"{" SID ",\"type\":\"custom\",\"data\":\"x\"}", "events[3].data", "wrong_type"},
    {"{" SID ",\"type\":\"custom\",\"metadata\":1}", "events[3].metadata", "wrong_type"},
    /* tags */
    {"{" SID ",\"type\":\"custom\",\"tags\":\"a\"}", "events[3].tags", "wrong_type"},
    {"{" SID ",\"type\":\"custom\",\"tags\":[1]}", "events[3].tags[0]", "wrong_type"},
    {"{" SID ",\"type\":\"custom\",\"tags\":[\"a\",\"\"]}", "events[3].tags[1]", "too_short"},
    {"{" SID ",\"type\":\"custom\",\"tags\":[\"a\",\"b\",\"~65~\"]}", "events[3].tags[2]",
     "too_long"},
    /* unknown members */
    {"{" SID ",\"type\":\"custom\",\"sessionId\":\"s\"}", "events[3].sessionId", "unknown_field"},
    {"{" SID ",\"type\":\"custom\",\"~65~\":1}", "events[3]", "unknown_field"},
    /* llm_call */
    {"{" LLM "}", "events[3].data.model", "required"},
    {"{" LLM ",\"data\":{}}", "events[3].data.model", "required"},
    {"{" LLM ",\"data\":{\"model\":5}}", "events[3].data.model", "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"\"}}", "events[3].data.model", "too_short"},
    {"{" LLM ",\"data\":{\"model\":\"~257~\"}}", "events[3].data.model", "too_long"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"provider\":\"~65~\"}}", "events[3].data.provider",
     "too_long"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"provider\":true}}", "events[3].data.provider",
     "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":-1}}", "events[3].data.input_tokens",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":1000000001}}",
     "events[3].data.input_tokens", "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":1.5}}", "events[3].data.input_tokens",
     "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":\"5\"}}", "events[3].data.input_tokens",
     "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"output_tokens\":2.0}}", "events[3].data.output_tokens",
     "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"reasoning_tokens\":-5}}",
     "events[3].data.reasoning_tokens", "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cache_read_tokens\":[]}}",
     "events[3].data.cache_read_tokens", "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cache_write_tokens\":-1}}",
     "events[3].data.cache_write_tokens", "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"latency_ms\":-1}}", "events[3].data.latency_ms",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"latency_ms\":604800001}}", "events[3].data.latency_ms",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"latency_ms\":\"fast\"}}", "events[3].data.latency_ms",
     "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"status\":\"done\"}}", "events[3].data.status",
     "not_allowed"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"status\":0}}", "events[3].data.status", "wrong_type"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":-1}}", "events[3].data.cost_usd",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":-0.5}}", "events[3].data.cost_usd",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"-0.5\"}}", "events[3].data.cost_usd",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"-0\"}}", "events[3].data.cost_usd",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"-\"}}", "events[3].data.cost_usd",
     "invalid_format"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":1000001}}", "events[3].data.cost_usd",
     "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"1000000.000000001\"}}",
     "events[3].data.cost_usd", "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"99999999999999999999999\"}}",
     "events[3].data.cost_usd", "out_of_range"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"1,5\"}}", "events[3].data.cost_usd",
     "invalid_format"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"1e-3\"}}", "events[3].data.cost_usd",
     "invalid_format"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\".5\"}}", "events[3].data.cost_usd",
     "invalid_format"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"1.\"}}", "events[3].data.cost_usd",
     "invalid_format"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"\"}}", "events[3].data.cost_usd",
     "invalid_format"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"0.~40~\"}}", "events[3].data.cost_usd",
     "too_long"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":true}}", "events[3].data.cost_usd",
     "wrong_type"},
    /* token consistency (OpenTelemetry GenAI: input ⊇ cache, output ⊇ reasoning) */
    {"{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":10,\"cache_read_tokens\":11}}",
     "events[3].data.input_tokens", "inconsistent_tokens"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":10,\"cache_read_tokens\":6,"
     "\"cache_write_tokens\":5}}",
     "events[3].data.input_tokens", "inconsistent_tokens"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"cache_write_tokens\":1}}", "events[3].data.input_tokens",
     "inconsistent_tokens"},
    {"{" LLM ",\"data\":{\"model\":\"m\",\"output_tokens\":3,\"reasoning_tokens\":4}}",
     "events[3].data.output_tokens", "inconsistent_tokens"},
    /* tool_* */
    {"{" TOOL "}", "events[3].data.tool_name", "required"},
    {"{" TOOL ",\"data\":{\"tool_name\":\"~129~\"}}", "events[3].data.tool_name", "too_long"},
    {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"call_id\":\"\"}}", "events[3].data.call_id",
     "too_short"},
    {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"call_id\":\"~129~\"}}", "events[3].data.call_id",
     "too_long"},
    {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"duration_ms\":-0.5}}", "events[3].data.duration_ms",
     "out_of_range"},
    {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"status\":\"fine\"}}", "events[3].data.status",
     "not_allowed"},
    {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"error\":\"~4097~\"}}", "events[3].data.error",
     "too_long"},
    {"{" SID ",\"type\":\"tool_error\",\"data\":{\"tool_name\":\"t\"}}", "events[3].data.error",
     "required"},
    {"{" SID ",\"type\":\"tool_error\",\"data\":{\"tool_name\":\"t\",\"error\":5}}",
     "events[3].data.error", "wrong_type"},
    {"{" SID ",\"type\":\"tool_result\",\"data\":{\"tool_name\":1}}", "events[3].data.tool_name",
     "wrong_type"},
};

static void test_validation_matrix(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT_OF(matrix); i++) {
    char *bad = expand(matrix[i].event);
    const char *events[] = {OK_EVENT, OK_EVENT, OK_EVENT, bad, OK_EVENT};
    char *body = batch_of(events, COUNT_OF(events));
    struct ingest_batch b;
    assert_int_equal(parse_batch(body, &b), 0);
    assert_int_equal(b.count, 5);
    if (b.events[3].valid || !has_error(&b, 3, matrix[i].field, matrix[i].code)) {
      dump_errors(&b);
      fail_msg("case %zu: expected %s %s", i, matrix[i].field, matrix[i].code);
    }
    /* The others are untouched by their neighbour. */
    assert_int_equal(b.rejected, 1);
    for (size_t k = 0; k < 5; k++) assert_int_equal(b.events[k].valid, k != 3);
    for (size_t k = 0; k < b.error_count; k++) {
      assert_int_equal(b.errors[k].index, 3);
      assert_non_null(b.errors[k].message);
    }
    events_batch_free(&b);
    xfree(body);
    xfree(bad);
  }
}

/* Valid variations the matrix's neighbours do not cover. */
static void test_valid_events(void **state) {
  static const char *const ok[] = {
      "{\"id\":\"01J9ZK3T7W2Q8N4M6R5P0XBYCD\"," SID ",\"type\":\"custom\"}",
      "{\"id\":\"0190f5c8-2c1a-7d3e-9b7a-1f2e3d4c5b6a\"," SID ",\"type\":\"custom\"}",
      "{\"id\":\"AZaz09._:-\",\"session_id\":\"s.1:2_3-4\",\"agent_id\":\"a:b\","
      "\"type\":\"custom\"}",
      "{" LLM ",\"data\":{\"model\":\"m\"}}",
      "{" LLM
      ",\"data\":{\"model\":\"m\",\"input_tokens\":10,\"cache_read_tokens\":6,"
      "\"cache_write_tokens\":4,\"output_tokens\":5,\"reasoning_tokens\":5}}",
      "{" LLM ",\"data\":{\"model\":\"m\",\"provider\":null,\"status\":null}}",
      "{" LLM ",\"data\":{\"model\":\"m\",\"latency_ms\":0.5,\"cost_usd\":0}}",
      "{" LLM ",\"data\":{\"model\":\"m\",\"extra\":{\"anything\":[1,2]}}}",
      "{" TOOL ",\"data\":{\"tool_name\":\"t\"}}",
      "{" SID ",\"type\":\"tool_result\",\"data\":{\"tool_name\":\"t\",\"error\":\"e\"}}",
      "{" SID ",\"type\":\"tool_error\",\"data\":{\"tool_name\":\"t\",\"error\":\"boom\"}}",
      "{" SID ",\"type\":\"custom\",\"timestamp\":\"2020-01-01T00:00:00Z\"}",
      "{" SID
      ",\"type\":\"custom\",\"timestamp\":\"0001-01-01T00:00:00Z\","
      "\"severity\":\"warn\"}",
      "{" SID ",\"type\":\"custom\",\"timestamp\":\"2026-03-01T12:04:59.999999Z\"}",
      "{" SID ",\"type\":\"custom\",\"tags\":[\"x\",\"x\"]}",
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(ok); i++) expect_event(ok[i], NULL, NULL);
}

/* Every type name is accepted; types without typed data take any object. */
static void test_every_type(void **state) {
  (void)state;
  for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
    char event[256];
    const char *data = "{\"free\":1}";
    if (t == EVENT_LLM_CALL) data = "{\"model\":\"m\"}";
    if (t == EVENT_TOOL_CALL || t == EVENT_TOOL_RESULT) data = "{\"tool_name\":\"t\"}";
    if (t == EVENT_TOOL_ERROR) data = "{\"tool_name\":\"t\",\"error\":\"e\"}";
    snprintf(event, sizeof(event), "{" SID ",\"type\":\"%s\",\"data\":%s}",
             event_type_name((enum event_type)t), data);
    expect_event(event, NULL, NULL);
  }
  assert_null(event_type_name(EVENT_TYPE_COUNT));
  for (int s = 0; s < EVENT_SEVERITY_COUNT; s++) {
    char event[128];
    snprintf(event, sizeof(event), "{" SID ",\"type\":\"custom\",\"severity\":\"%s\"}",
             event_severity_name((enum event_severity)s));
    expect_event(event, NULL, NULL);
  }
  assert_null(event_status_name(EVENT_STATUS_NONE));
  assert_string_equal(event_status_name(EVENT_STATUS_CANCELLED), "cancelled");
}

/* --- batches ---------------------------------------------------------------- */

static void test_mixed_batch(void **state) {
  static const char *const events[] = {
      OK_EVENT,
      "{\"type\":\"custom\",\"severity\":\"loud\",\"bogus\":1}", /* three errors */
      "17",                                                      /* not an object */
      "{" LLM ",\"data\":{\"model\":\"m\"}}",
      "{" LLM ",\"data\":{\"input_tokens\":1}}",
  };
  struct ingest_batch b;
  char *body = batch_of(events, COUNT_OF(events));
  (void)state;
  assert_int_equal(parse_batch(body, &b), 0);
  assert_null(b.problem);
  assert_int_equal(b.count, 5);
  assert_int_equal(b.rejected, 3);
  assert_true(b.events[0].valid);
  assert_false(b.events[1].valid);
  assert_false(b.events[2].valid);
  assert_true(b.events[3].valid);
  assert_false(b.events[4].valid);
  assert_true(has_error(&b, 1, "events[1].session_id", "required"));
  assert_true(has_error(&b, 1, "events[1].severity", "not_allowed"));
  assert_true(has_error(&b, 1, "events[1].bogus", "unknown_field"));
  assert_true(has_error(&b, 2, "events[2]", "wrong_type"));
  assert_true(has_error(&b, 4, "events[4].data.model", "required"));
  assert_int_equal(b.error_count, 5);
  /* Errors come grouped by event, in body order. */
  for (size_t i = 1; i < b.error_count; i++) {
    assert_true(b.errors[i - 1].index <= b.errors[i].index);
  }
  assert_int_equal(b.errors_dropped, 0);
  events_batch_free(&b);
  xfree(body);
}

/* An event with more errors than are listed: the rest are counted. */
static void test_errors_per_event_cap(void **state) {
  struct buf ev;
  struct ingest_batch b;
  (void)state;
  buf_init(&ev, SIZE_MAX);
  assert_int_equal(buf_append_cstr(&ev, "{" SID ",\"type\":\"custom\""), 0);
  for (int i = 0; i < LIMIT_INGEST_ERRORS_PER_EVENT + 4; i++) {
    assert_int_equal(buf_printf(&ev, ",\"unknown%d\":1", i), 0);
  }
  assert_int_equal(buf_putc(&ev, '}'), 0);
  const char *events[] = {ev.data, OK_EVENT};
  char *body = batch_of(events, 2);
  assert_int_equal(parse_batch(body, &b), 0);
  assert_int_equal(b.error_count, LIMIT_INGEST_ERRORS_PER_EVENT);
  assert_int_equal(b.errors_dropped, 4);
  assert_true(b.events[1].valid);
  events_batch_free(&b);
  xfree(body);
  buf_free(&ev);
}

static void test_body_refusals(void **state) {
  static const struct {
    const char *body;
    int status;
    const char *problem;
    const char *field; /* a body-level field error, or NULL */
    const char *code;
  } cases[] = {
      {"", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{\"events\":[]} trailing", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{\"events\":[],\"events\":[]}", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{\"events\":[{\"x\":\"\\u0000\"}]}", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{\"events\":[{\"x\":1e400}]}", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{\"events\":[{\"x\":9223372036854775808}]}", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"{\"events\":[{\"x\":\"\\ud800\"}]}", KEEL_EINVAL, "invalid_json", NULL, NULL},
      {"[]", KEEL_EINVAL, "validation_failed", "", "wrong_type"},
      {"\"events\"", KEEL_EINVAL, "validation_failed", "", "wrong_type"},
      {"{}", KEEL_EINVAL, "validation_failed", "events", "required"},
      {"{\"events\":null}", KEEL_EINVAL, "validation_failed", "events", "wrong_type"},
      {"{\"events\":{}}", KEEL_EINVAL, "validation_failed", "events", "wrong_type"},
      {"{\"events\":[]}", KEEL_EINVAL, "validation_failed", "events", "too_short"},
      {"{\"events\":[" OK_EVENT "],\"event\":1}", KEEL_EINVAL, "validation_failed", "event",
       "unknown_field"},
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(cases); i++) {
    struct ingest_batch b;
    int rc = parse_batch(cases[i].body, &b);
    if (rc != cases[i].status) fail_msg("case %zu: status %d", i, rc);
    assert_non_null(b.problem);
    assert_string_equal(b.problem, cases[i].problem);
    assert_true(strlen(b.problem_detail) > 0);
    assert_int_equal(b.count, 0);
    if (cases[i].field != NULL) {
      bool found = false;
      for (size_t k = 0; k < b.body_errors.count; k++) {
        found |= strcmp(b.body_errors.items[k].field, cases[i].field) == 0 &&
                 strcmp(b.body_errors.items[k].code, cases[i].code) == 0;
      }
      if (!found) fail_msg("case %zu: no %s %s", i, cases[i].field, cases[i].code);
    }
    events_batch_free(&b);
    events_batch_free(&b); /* twice is harmless */
  }
}

/* A parse message never repeats the input. */
static void test_invalid_json_detail(void **state) {
  struct ingest_batch b;
  (void)state;
  assert_int_equal(parse_batch("{\"events\":[{\"secret-token-123\" 1}]}", &b), KEEL_EINVAL);
  assert_string_equal(b.problem, "invalid_json");
  assert_null(strstr(b.problem_detail, "secret"));
  events_batch_free(&b);
}

static void test_single_entry(void **state) {
  struct ingest_batch b;
  (void)state;
  assert_int_equal(parse_with(OK_EVENT, EVENTS_ENTRY_SINGLE, &b), 0);
  assert_int_equal(b.count, 1);
  assert_true(b.events[0].valid);
  events_batch_free(&b);

  /* Paths are relative to the body: no "events[0]." prefix. */
  assert_int_equal(parse_with("{" LLM ",\"data\":{\"model\":7},\"x\":1}", EVENTS_ENTRY_SINGLE, &b),
                   0);
  assert_int_equal(b.rejected, 1);
  assert_true(has_error(&b, 0, "data.model", "wrong_type"));
  assert_true(has_error(&b, 0, "x", "unknown_field"));
  events_batch_free(&b);

  /* A batch envelope is not an event. */
  assert_int_equal(parse_with("{\"events\":[" OK_EVENT "]}", EVENTS_ENTRY_SINGLE, &b), 0);
  assert_true(has_error(&b, 0, "events", "unknown_field"));
  assert_true(has_error(&b, 0, "session_id", "required"));
  events_batch_free(&b);

  assert_int_equal(parse_with("[" OK_EVENT "]", EVENTS_ENTRY_SINGLE, &b), KEEL_EINVAL);
  assert_string_equal(b.problem, "validation_failed");
  events_batch_free(&b);
  assert_int_equal(parse_with("nope", EVENTS_ENTRY_SINGLE, &b), KEEL_EINVAL);
  assert_string_equal(b.problem, "invalid_json");
  events_batch_free(&b);
}

/* --- limits at N and N+1 ---------------------------------------------------- */

static void test_limit_batch_events(void **state) {
  struct ingest_batch b;
  char *body;
  (void)state;
  body = batch_repeat(OK_EVENT, LIMIT_INGEST_BATCH_EVENTS);
  assert_int_equal(parse_batch(body, &b), 0);
  assert_int_equal(b.count, LIMIT_INGEST_BATCH_EVENTS);
  assert_int_equal(b.rejected, 0);
  events_batch_free(&b);
  xfree(body);

  body = batch_repeat(OK_EVENT, LIMIT_INGEST_BATCH_EVENTS + 1);
  assert_int_equal(parse_batch(body, &b), KEEL_EINVAL);
  assert_string_equal(b.problem, "validation_failed");
  assert_int_equal(b.body_errors.count, 1);
  assert_string_equal(b.body_errors.items[0].field, "events");
  assert_string_equal(b.body_errors.items[0].code, "too_long");
  events_batch_free(&b);
  xfree(body);
}

static void test_limit_body_size(void **state) {
  const char *body = "{\"events\":[" OK_EVENT "]}";
  size_t len = strlen(body);
  struct events_parse_opts opts = {.entry = EVENTS_ENTRY_BATCH, .received_us = 0};
  struct ingest_batch b;
  (void)state;
  opts.received_us = received_us;
  opts.body_max = len;
  assert_int_equal(events_parse(slice_make(body, len), &opts, &b), 0);
  events_batch_free(&b);
  opts.body_max = len - 1;
  assert_int_equal(events_parse(slice_make(body, len), &opts, &b), KEEL_ETOOBIG);
  assert_string_equal(b.problem, "payload_too_large");
  events_batch_free(&b);
  /* 0 means the default, LIMIT_BODY_INGEST. */
  char *big = xmalloc(LIMIT_BODY_INGEST + 1);
  memset(big, ' ', LIMIT_BODY_INGEST + 1);
  memcpy(big, body, len);
  opts.body_max = 0;
  assert_int_equal(events_parse(slice_make(big, LIMIT_BODY_INGEST), &opts, &b), 0);
  events_batch_free(&b);
  assert_int_equal(events_parse(slice_make(big, LIMIT_BODY_INGEST + 1), &opts, &b), KEEL_ETOOBIG);
  events_batch_free(&b);
  xfree(big);
}

/* data {"s":"xxx..."} whose canonical form is exactly size bytes. */
static void check_object_size(const char *member, size_t limit) {
  /* {"s":"<n>"} is n + 8 bytes. */
  for (size_t size = limit; size <= limit + 1; size++) {
    char tmpl[128];
    snprintf(tmpl, sizeof(tmpl), "{" SID ",\"type\":\"custom\",\"%s\":{\"s\":\"~%zu~\"}}", member,
             size - 8);
    char path[64];
    snprintf(path, sizeof(path), "events[0].%s", member);
    expect_event(tmpl, size == limit ? NULL : path, "too_large");
  }
}

static void test_limit_data_metadata_size(void **state) {
  (void)state;
  check_object_size("data", LIMIT_EVENT_DATA_MAX);
  check_object_size("metadata", LIMIT_EVENT_METADATA_MAX);
  /* Measured canonically: escapes count as written by the canonical form
   * (a newline is 6 bytes, \u00e9 is 2). */
  char *ev =
      expand("{" SID ",\"type\":\"custom\",\"data\":{\"s\":\"~32754~\\u00e9\\u00e9\\u00e9\"}}");
  expect_event(ev, NULL, NULL); /* 32754 + 3 * 2 + 8 = 32768 */
  xfree(ev);
  ev = expand("{" SID ",\"type\":\"custom\",\"data\":{\"s\":\"~32754~\\n\"}}");
  expect_event(ev, NULL, NULL); /* 32754 + 6 + 8 = 32768 */
  xfree(ev);
  ev = expand("{" SID ",\"type\":\"custom\",\"data\":{\"s\":\"~32755~\\n\"}}");
  expect_event(ev, "events[0].data", "too_large"); /* 32769 */
  xfree(ev);
}

/* data nested depth levels ({"a":{"a":...}}, data itself level 1). */
static char *nested_event(const char *member, size_t depth) {
  struct buf b;
  buf_init(&b, SIZE_MAX);
  assert_int_equal(buf_printf(&b, "{" SID ",\"type\":\"custom\",\"%s\":", member), 0);
  for (size_t i = 0; i < depth; i++) assert_int_equal(buf_append_cstr(&b, "{\"a\":"), 0);
  assert_int_equal(buf_putc(&b, '1'), 0);
  for (size_t i = 0; i < depth; i++) assert_int_equal(buf_putc(&b, '}'), 0);
  assert_int_equal(buf_putc(&b, '}'), 0);
  return buf_steal(&b, NULL);
}

static void test_limit_depth(void **state) {
  struct ingest_batch b;
  (void)state;
  for (int m = 0; m < 2; m++) {
    const char *member = m ? "metadata" : "data";
    char *ok = nested_event(member, LIMIT_EVENT_DEPTH);
    char *deep = nested_event(member, LIMIT_EVENT_DEPTH + 1);
    char field[32];
    snprintf(field, sizeof(field), "events[0].%s", member);
    expect_event(ok, NULL, NULL);
    expect_event(deep, field, "too_deep");
    xfree(ok);
    xfree(deep);
  }
  /* The whole body: {"events":[{..."data":<depth d>}]} is d + 3 deep. Up to
   * LIMIT_INGEST_BODY_DEPTH the too-deep event is refused alone. */
  char *ev = nested_event("data", LIMIT_INGEST_BODY_DEPTH - 3);
  const char *events[] = {ev, OK_EVENT};
  char *body = batch_of(events, 2);
  assert_int_equal(parse_batch(body, &b), 0);
  assert_true(has_error(&b, 0, "events[0].data", "too_deep"));
  assert_true(b.events[1].valid);
  events_batch_free(&b);
  xfree(body);
  xfree(ev);
  ev = nested_event("data", LIMIT_INGEST_BODY_DEPTH - 2);
  events[0] = ev;
  body = batch_of(events, 2);
  assert_int_equal(parse_batch(body, &b), KEEL_EINVAL);
  assert_string_equal(b.problem, "invalid_json");
  events_batch_free(&b);
  xfree(body);
  xfree(ev);
}

static void test_limit_tags(void **state) {
  struct buf ev;
  (void)state;
  for (int n = LIMIT_EVENT_TAGS; n <= LIMIT_EVENT_TAGS + 1; n++) {
    buf_init(&ev, SIZE_MAX);
    assert_int_equal(buf_append_cstr(&ev, "{" SID ",\"type\":\"custom\",\"tags\":["), 0);
    for (int i = 0; i < n; i++) assert_int_equal(buf_printf(&ev, "%s\"t%d\"", i ? "," : "", i), 0);
    assert_int_equal(buf_append_cstr(&ev, "]}"), 0);
    expect_event(ev.data, n == LIMIT_EVENT_TAGS ? NULL : "events[0].tags", "too_long");
    buf_free(&ev);
  }
  expect_event("{" SID ",\"type\":\"custom\",\"tags\":[\"~64~\"]}", NULL, NULL);
  expect_event("{" SID ",\"type\":\"custom\",\"tags\":[\"~65~\"]}", "events[0].tags[0]",
               "too_long");
}

static void test_limit_string_lengths(void **state) {
  static const struct {
    const char *ok, *over, *field;
  } cases[] = {
      {"{\"id\":\"~64~\"," SID ",\"type\":\"custom\"}",
       "{\"id\":\"~65~\"," SID ",\"type\":\"custom\"}", "events[0].id"},
      {"{\"session_id\":\"~128~\",\"type\":\"custom\"}",
       "{\"session_id\":\"~129~\",\"type\":\"custom\"}", "events[0].session_id"},
      {"{\"agent_id\":\"~128~\"," SID ",\"type\":\"custom\"}",
       "{\"agent_id\":\"~129~\"," SID ",\"type\":\"custom\"}", "events[0].agent_id"},
      {"{" LLM ",\"data\":{\"model\":\"~256~\"}}", "{" LLM ",\"data\":{\"model\":\"~257~\"}}",
       "events[0].data.model"},
      {"{" LLM ",\"data\":{\"model\":\"m\",\"provider\":\"~64~\"}}",
       "{" LLM ",\"data\":{\"model\":\"m\",\"provider\":\"~65~\"}}", "events[0].data.provider"},
      {"{" TOOL ",\"data\":{\"tool_name\":\"~128~\"}}",
       "{" TOOL ",\"data\":{\"tool_name\":\"~129~\"}}", "events[0].data.tool_name"},
      {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"call_id\":\"~128~\"}}",
       "{" TOOL ",\"data\":{\"tool_name\":\"t\",\"call_id\":\"~129~\"}}", "events[0].data.call_id"},
      {"{" TOOL ",\"data\":{\"tool_name\":\"t\",\"error\":\"~4096~\"}}",
       "{" TOOL ",\"data\":{\"tool_name\":\"t\",\"error\":\"~4097~\"}}", "events[0].data.error"},
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(cases); i++) {
    expect_event(cases[i].ok, NULL, NULL);
    expect_event(cases[i].over, cases[i].field, "too_long");
  }
  /* cost_usd text (digits, so not through expand): 32 bytes accepted, 33
   * refused. */
  char ok[128], over[128];
  snprintf(ok, sizeof(ok), "{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"0.%030d\"}}", 0);
  snprintf(over, sizeof(over), "{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"0.%031d\"}}", 0);
  expect_event(ok, NULL, NULL);
  expect_event(over, "events[0].data.cost_usd", "too_long");
}

static void test_limit_numbers(void **state) {
  (void)state;
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":1000000000}}", NULL, NULL);
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"input_tokens\":1000000001}}",
               "events[0].data.input_tokens", "out_of_range");
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"latency_ms\":604800000}}", NULL, NULL);
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"latency_ms\":604800000.001}}",
               "events[0].data.latency_ms", "out_of_range");
  expect_event("{" TOOL ",\"data\":{\"tool_name\":\"t\",\"duration_ms\":604800000}}", NULL, NULL);
  expect_event("{" TOOL ",\"data\":{\"tool_name\":\"t\",\"duration_ms\":604800001}}",
               "events[0].data.duration_ms", "out_of_range");
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"1000000\"}}", NULL, NULL);
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":\"1000000.000000001\"}}",
               "events[0].data.cost_usd", "out_of_range");
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":1000000}}", NULL, NULL);
  expect_event("{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":1000000.01}}",
               "events[0].data.cost_usd", "out_of_range");
}

/* The received time is injected: +5 min is accepted, a second (or a
 * microsecond) more is in the future. */
static void test_limit_future(void **state) {
  static const struct {
    const char *timestamp;
    bool ok;
  } cases[] = {
      {"2026-03-01T12:05:00Z", true},
      {"2026-03-01T12:05:00.000000Z", true},
      {"2026-03-01T13:05:00+01:00", true},
      {"2026-03-01T12:05:00.000001Z", false},
      {"2026-03-01T12:05:01Z", false},
      {"2026-03-01T12:05:00.0000009Z", true}, /* truncated to µs */
      {"2026-03-01T12:00:00Z", true},
      {"1970-01-01T00:00:00Z", true},
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(cases); i++) {
    char ev[160];
    snprintf(ev, sizeof(ev), "{" SID ",\"type\":\"custom\",\"timestamp\":\"%s\"}",
             cases[i].timestamp);
    expect_event(ev, cases[i].ok ? NULL : "events[0].timestamp", "in_future");
  }
  /* The bound moves with the received time. */
  struct ingest_batch b;
  struct events_parse_opts opts = {.entry = EVENTS_ENTRY_SINGLE,
                                   .received_us = received_us + US_PER_SEC};
  const char *ev = "{" SID ",\"type\":\"custom\",\"timestamp\":\"2026-03-01T12:05:01Z\"}";
  assert_int_equal(events_parse(slice_from_cstr(ev), &opts, &b), 0);
  assert_true(b.events[0].valid);
  assert_int_equal(b.events[0].timestamp_us, at("2026-03-01T12:05:01Z"));
  events_batch_free(&b);
}

/* --- enrichment and typed values -------------------------------------------- */

static void test_defaults(void **state) {
  struct ingest_batch b;
  const char *events[] = {OK_EVENT, "{\"id\":\"mine\"," SID
                                    ",\"type\":\"custom\",\"timestamp\":\"2026-03-01T11:00:00Z\"}"};
  char *body = batch_of(events, 2);
  (void)state;
  assert_int_equal(parse_batch(body, &b), 0);
  struct ingest_event *e = &b.events[0];
  assert_null(e->id);
  assert_false(e->has_timestamp);
  assert_string_equal(e->agent_id, "default");
  assert_int_equal(e->severity, EVENT_SEVERITY_INFO);
  assert_null(e->data);
  assert_null(e->metadata);
  assert_null(e->tags);

  events_enrich(&b);
  assert_true(e->id_generated);
  assert_true(id_valid(slice_from_cstr(e->id)));
  assert_int_equal(e->id[14], '7'); /* UUIDv7 */
  struct id id;
  assert_int_equal(id_parse(slice_from_cstr(e->id), &id), 0);
  assert_int_equal(id_unix_ms(&id), received_us / 1000);
  assert_true(e->has_timestamp);
  assert_int_equal(e->timestamp_us, received_us);
  assert_int_equal(e->received_us, received_us);

  struct ingest_event *mine = &b.events[1];
  assert_string_equal(mine->id, "mine");
  assert_false(mine->id_generated);
  assert_int_equal(mine->timestamp_us, at("2026-03-01T11:00:00Z"));

  /* Idempotent: a second pass keeps the generated id. */
  const char *first = e->id;
  events_enrich(&b);
  assert_ptr_equal(e->id, first);

  struct buf canon;
  buf_init(&canon, 4096);
  assert_int_equal(events_canonical(e, &canon), 0);
  char want[512];
  snprintf(want, sizeof(want),
           "{\"id\":\"%s\",\"session_id\":\"s1\",\"agent_id\":\"default\",\"type\":\"custom\","
           "\"timestamp\":\"2026-03-01T12:00:00.000000Z\",\"severity\":\"info\",\"data\":{},"
           "\"metadata\":{},\"tags\":[]}",
           e->id);
  assert_string_equal(canon.data, want);
  buf_free(&canon);
  events_batch_free(&b);
  xfree(body);
}

/* Enrichment leaves invalid events alone. */
static void test_enrich_skips_invalid(void **state) {
  struct ingest_batch b;
  (void)state;
  assert_int_equal(parse_batch("{\"events\":[{\"type\":\"custom\"}]}", &b), 0);
  events_enrich(&b);
  assert_null(b.events[0].id);
  assert_false(b.events[0].has_timestamp);
  events_batch_free(&b);
}

static void test_typed_values(void **state) {
  struct ingest_batch b;
  const char *events[] = {
      "{" LLM
      ",\"data\":{\"provider\":\"openai\",\"model\":\"gpt-4.1\",\"input_tokens\":1200,"
      "\"output_tokens\":300,\"reasoning_tokens\":120,\"cache_read_tokens\":1000,"
      "\"cache_write_tokens\":24,\"latency_ms\":812.5,\"status\":\"timeout\","
      "\"cost_usd\":\"0.0042\"}}",
      "{" LLM ",\"data\":{\"model\":\"m\"}}",
      "{" SID
      ",\"type\":\"tool_error\",\"data\":{\"tool_name\":\"grep\",\"call_id\":\"c1\","
      "\"error\":\"no such file\",\"duration_ms\":12,\"status\":\"error\"}}",
      "{" TOOL ",\"data\":{\"tool_name\":\"t\"}}",
  };
  char *body = batch_of(events, COUNT_OF(events));
  (void)state;
  assert_int_equal(parse_batch(body, &b), 0);
  assert_int_equal(b.rejected, 0);

  const struct ingest_llm_call *l = &b.events[0].typed.llm;
  assert_int_equal(b.events[0].type, EVENT_LLM_CALL);
  assert_string_equal(l->provider, "openai");
  assert_string_equal(l->model, "gpt-4.1");
  assert_int_equal(l->input_tokens, 1200);
  assert_int_equal(l->output_tokens, 300);
  assert_int_equal(l->reasoning_tokens, 120);
  assert_int_equal(l->cache_read_tokens, 1000);
  assert_int_equal(l->cache_write_tokens, 24);
  assert_true(l->latency_ms == 812.5);
  assert_int_equal(l->status, EVENT_STATUS_TIMEOUT);
  assert_int_equal(l->client_cost_nusd, 4200000);

  l = &b.events[1].typed.llm;
  assert_null(l->provider);
  assert_int_equal(l->input_tokens, 0);
  assert_true(l->latency_ms == -1);
  assert_int_equal(l->status, EVENT_STATUS_NONE);
  assert_int_equal(l->client_cost_nusd, -1);

  const struct ingest_tool_call *t = &b.events[2].typed.tool;
  assert_string_equal(t->tool_name, "grep");
  assert_string_equal(t->call_id, "c1");
  assert_string_equal(t->error, "no such file");
  assert_true(t->duration_ms == 12);
  assert_int_equal(t->status, EVENT_STATUS_ERROR);

  t = &b.events[3].typed.tool;
  assert_null(t->call_id);
  assert_null(t->error);
  assert_true(t->duration_ms == -1);
  events_batch_free(&b);
  xfree(body);
}

static void test_cost_conversion(void **state) {
  static const struct {
    const char *cost; /* JSON value */
    int64_t nusd;
  } cases[] = {
      {"\"0\"", 0},
      {"\"0.0042\"", 4200000},
      {"\"12\"", 12000000000},
      {"\"0.000000001\"", 1},
      {"\"0.0000000014\"", 1},
      {"\"0.0000000015\"", 2}, /* half up at the ninth decimal */
      {"\"0.9999999995\"", 1000000000},
      {"\"007.50\"", 7500000000},
      {"\"1000000.000000000\"", 1000000000000000},
      {"0", 0},
      {"0.5", 500000000},
      {"1e-9", 1},
      {"-0.0", 0},
      {"0.0042", 4200000},
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(cases); i++) {
    char ev[160];
    struct ingest_batch b;
    snprintf(ev, sizeof(ev), "{" LLM ",\"data\":{\"model\":\"m\",\"cost_usd\":%s}}", cases[i].cost);
    assert_int_equal(parse_with(ev, EVENTS_ENTRY_SINGLE, &b), 0);
    if (!b.events[0].valid) fail_msg("case %zu refused", i);
    if (b.events[0].typed.llm.client_cost_nusd != cases[i].nusd) {
      fail_msg("case %zu: %lld", i, (long long)b.events[0].typed.llm.client_cost_nusd);
    }
    events_batch_free(&b);
  }
}

/* --- duplicates ------------------------------------------------------------- */

static void test_duplicates(void **state) {
  const char *events[] = {
      "{\"id\":\"a\"," SID ",\"type\":\"custom\"}", /* 0 */
      "{\"id\":\"b\"," SID ",\"type\":\"custom\"}", /* 1 */
      "{\"id\":\"a\"," SID ",\"type\":\"custom\"}", /* 2: dup of 0 */
      OK_EVENT,                                     /* 3: generated id */
      "{\"id\":\"c\"," SID ",\"type\":\"custom\"}", /* 4 */
      "{\"id\":\"b\"," SID ",\"type\":\"custom\"}", /* 5: dup of 1 */
      "{\"id\":\"a\",\"type\":\"custom\"}",         /* 6: invalid */
      "{\"id\":\"a\"," SID ",\"type\":\"error\"}",  /* 7: dup of 0 */
      OK_EVENT,                                     /* 8: generated id */
  };
  static const size_t want[] = {SIZE_MAX, SIZE_MAX, 0, SIZE_MAX, SIZE_MAX,
                                1,        SIZE_MAX, 0, SIZE_MAX};
  size_t first_of[COUNT_OF(events)];
  struct ingest_batch b;
  char *body = batch_of(events, COUNT_OF(events));
  (void)state;
  assert_int_equal(parse_batch(body, &b), 0);
  events_enrich(&b);
  assert_int_equal(events_find_duplicates(&b, first_of), 3);
  for (size_t i = 0; i < COUNT_OF(events); i++) {
    if (first_of[i] != want[i]) fail_msg("event %zu: %zu", i, first_of[i]);
  }
  events_batch_free(&b);
  xfree(body);

  /* No events of note: nothing found. */
  assert_int_equal(parse_batch("{\"events\":[" OK_EVENT "]}", &b), 0);
  assert_int_equal(events_find_duplicates(&b, first_of), 0);
  assert_int_equal(first_of[0], SIZE_MAX);
  events_batch_free(&b);
}

/* --- canonical form --------------------------------------------------------- */

static void test_canonical_reals(void **state) {
  static const struct {
    double d;
    const char *text;
  } cases[] = {
      {0.0, "0.0"},
      {-0.0, "-0.0"},
      {1.0, "1.0"},
      {-1.0, "-1.0"},
      {0.1, "0.1"},
      {0.30000000000000004, "0.30000000000000004"},
      {100.0, "100.0"},
      {2.5, "2.5"},
      {1e15, "1000000000000000.0"},
      {1234567890123456.0, "1234567890123456.0"},
      {1e16, "1e+16"},
      {12345678901234568.0, "1.2345678901234568e+16"},
      {1e21, "1e+21"},
      {1.5e300, "1.5e+300"},
      {0.0001, "0.0001"},
      {0.00012, "0.00012"},
      {0.00001, "1e-05"},
      {1.5e-7, "1.5e-07"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {9007199254740992.0, "9007199254740992.0"},
      {-3.14159, "-3.14159"},
      /* 2^-24: Python's repr says 5.960464477539063e-08 (shortest), the
       * canonical form the 17-digit correctly rounded text (docs). */
      {5.9604644775390625e-08, "5.9604644775390625e-08"},
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(cases); i++) {
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(events_canonical_real(cases[i].d, &b), 0);
    if (strcmp(b.data, cases[i].text) != 0) fail_msg("case %zu: %s", i, b.data);
    assert_true(strtod(b.data, NULL) == cases[i].d);
    buf_free(&b);
  }
  struct buf b;
  buf_init(&b, 64);
  assert_int_equal(events_canonical_real(NAN, &b), -1);
  assert_int_equal(events_canonical_real(INFINITY, &b), -1);
  assert_int_equal(b.len, 0);
  buf_free(&b);
}

/* Random doubles: the text reads back exactly, and no shorter correctly
 * rounded text would. */
static void test_canonical_reals_roundtrip(void **state) {
  (void)state;
  for (int i = 0; i < 20000; i++) {
    uint64_t bits = crypto_random_u64();
    double d;
    memcpy(&d, &bits, sizeof(d));
    if (!isfinite(d)) continue;
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(events_canonical_real(d, &b), 0);
    double back = strtod(b.data, NULL);
    if (memcmp(&back, &d, sizeof(d)) != 0) fail_msg("%s does not read back", b.data);
    buf_free(&b);
  }
}

static void test_canonical_json(void **state) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"{\"b\":1,\"a\":2,\"A\":3,\"\":4,\"aa\":5}", "{\"\":4,\"A\":3,\"a\":2,\"aa\":5,\"b\":1}"},
      {"{\"\\u00e9\":1,\"\\ue000\":2,\"\\ud83d\\ude00\":3,\"z\":4}",
       "{\"z\":4,\"\xc3\xa9\":1,\"\xee\x80\x80\":2,\"\xf0\x9f\x98\x80\":3}"},
      {"[\"\\n\\t\\u0001\\u001f\\u007f\\\"\\\\\\/\"]",
       "[\"\\u000a\\u0009\\u0001\\u001f\x7f\\\"\\\\/\"]"},
      {"[1, -0, 0.0, -0.0, 1E2, 1e-2, true, false, null]",
       "[1,0,0.0,-0.0,100.0,0.01,true,false,null]"},
      {"{ \"x\" : [ { } , [ ] ] }", "{\"x\":[{},[]]}"},
      {"[9223372036854775807,-9223372036854775808]", "[9223372036854775807,-9223372036854775808]"},
      {"\"\xe2\x80\xa8\"", "\"\xe2\x80\xa8\""},
  };
  (void)state;
  for (size_t i = 0; i < COUNT_OF(cases); i++) {
    json_error_t err;
    json_t *v = json_loads(cases[i].in, JSON_DECODE_ANY, &err);
    assert_non_null(v);
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(events_canonical_json(v, &b), 0);
    if (strcmp(b.data, cases[i].out) != 0) fail_msg("case %zu: %s", i, b.data);
    /* Canonical text is a fixed point. */
    json_t *again = json_loads(b.data, JSON_DECODE_ANY, &err);
    assert_non_null(again);
    struct buf b2;
    buf_init(&b2, 1024);
    assert_int_equal(events_canonical_json(again, &b2), 0);
    assert_string_equal(b.data, b2.data);
    buf_free(&b2);
    json_decref(again);
    buf_free(&b);
    json_decref(v);
  }
}

/* Objects above the inline sort size are sorted too. */
static void test_canonical_large_object(void **state) {
  json_t *o = json_object();
  struct buf b, want;
  (void)state;
  for (int i = 99; i >= 0; i--) {
    char key[8];
    snprintf(key, sizeof(key), "k%02d", i);
    json_object_set_new(o, key, json_integer(i));
  }
  buf_init(&want, 4096);
  assert_int_equal(buf_putc(&want, '{'), 0);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(buf_printf(&want, "%s\"k%02d\":%d", i ? "," : "", i, i), 0);
  }
  assert_int_equal(buf_putc(&want, '}'), 0);
  buf_init(&b, 4096);
  assert_int_equal(events_canonical_json(o, &b), 0);
  assert_string_equal(b.data, want.data);
  buf_free(&b);
  buf_free(&want);
  json_decref(o);
}

static void test_canonical_failures(void **state) {
  struct ingest_batch b;
  struct buf out;
  (void)state;
  assert_int_equal(parse_batch("{\"events\":[{" SID ",\"type\":\"custom\",\"data\":{\"k\":"
                               "\"0123456789\"}}]}",
                               &b),
                   0);
  buf_init(&out, 4096);
  assert_int_equal(buf_append_cstr(&out, "prefix"), 0);
  /* Not enriched: no id, no timestamp. */
  assert_int_equal(events_canonical(&b.events[0], &out), -1);
  assert_string_equal(out.data, "prefix");
  events_enrich(&b);
  assert_int_equal(events_canonical(&b.events[0], &out), 0);
  size_t full = out.len;
  buf_free(&out);
  /* A buffer one byte short leaves nothing behind. */
  buf_init(&out, full - 1);
  assert_int_equal(buf_append_cstr(&out, "prefix"), 0);
  assert_int_equal(events_canonical(&b.events[0], &out), -1);
  assert_string_equal(out.data, "prefix");
  buf_free(&out);
  events_batch_free(&b);

  /* A value built in code past the depth bound is refused, not recursed. */
  json_t *v = json_array();
  for (int i = 0; i < LIMIT_EVENT_DEPTH + 8; i++) {
    json_t *outer = json_array();
    json_array_append_new(outer, v);
    v = outer;
  }
  buf_init(&out, 1 << 16);
  assert_int_equal(events_canonical_json(v, &out), -1);
  assert_int_equal(out.len, 0);
  buf_free(&out);
  json_decref(v);
  assert_int_equal(events_canonical_json(NULL, &out), -1);
}

/* --- the hash chain --------------------------------------------------------- */

static void test_chain_hash(void **state) {
  uint8_t zero[EVENT_HASH_LEN] = {0}, h[EVENT_HASH_LEN], want[EVENT_HASH_LEN];
  uint8_t msg[EVENT_HASH_LEN + 3] = {0};
  struct buf canon;
  (void)state;
  buf_init(&canon, 16);
  /* SHA-256 of 32 zero bytes and nothing else. */
  events_chain_hash(zero, &canon, h);
  crypto_sha256(msg, EVENT_HASH_LEN, want);
  assert_memory_equal(h, want, EVENT_HASH_LEN);
  assert_int_equal(buf_append_cstr(&canon, "abc"), 0);
  events_chain_hash(h, &canon, h); /* out aliases prev */
  memcpy(msg, want, EVENT_HASH_LEN);
  memcpy(msg + EVENT_HASH_LEN, "abc", 3);
  crypto_sha256(msg, sizeof(msg), want);
  assert_memory_equal(h, want, EVENT_HASH_LEN);
  buf_free(&canon);
}

static char *read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) fail_msg("cannot open %s", path);
  struct buf b;
  buf_init(&b, 1 << 24);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) assert_int_equal(buf_append(&b, chunk, n), 0);
  fclose(f);
  return buf_steal(&b, len_out);
}

/* The Python reference's vectors: same canonical bytes, same chain. */
static void test_reference_vectors(void **state) {
  const char *root = getenv("KEEL_SOURCE_ROOT");
  char path[4096];
  (void)state;
#ifdef KEEL_SOURCE_ROOT
  if (root == NULL) root = KEEL_SOURCE_ROOT;
#endif
  assert_non_null(root);
  snprintf(path, sizeof(path), "%s/tests/fixtures/hashchain_vectors.json", root);
  size_t len;
  char *text = read_file(path, &len);
  json_error_t err;
  json_t *doc = json_loadb(text, len, 0, &err);
  if (doc == NULL) fail_msg("%s: %s", path, err.text);

  int64_t received = at(json_string_value(json_object_get(doc, "received")));
  json_t *vectors = json_object_get(doc, "vectors");
  assert_true(json_array_size(vectors) >= 10);
  json_t *heads = json_object(); /* session id → hex of the last hash */
  size_t i;
  json_t *v;
  json_array_foreach(vectors, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    json_t *body = json_object_get(v, "body");
    json_t *canonical = json_object_get(v, "canonical");
    struct events_parse_opts opts = {.entry = EVENTS_ENTRY_SINGLE, .received_us = received};
    struct ingest_batch b;

    assert_int_equal(
        events_parse(slice_make(json_string_value(body), json_string_length(body)), &opts, &b), 0);
    if (!b.events[0].valid) {
      dump_errors(&b);
      fail_msg("vector %zu (%s) refused", i, name);
    }
    events_enrich(&b);
    struct buf canon;
    buf_init(&canon, 1 << 20);
    assert_int_equal(events_canonical(&b.events[0], &canon), 0);
    if (canon.len != json_string_length(canonical) ||
        memcmp(canon.data, json_string_value(canonical), canon.len) != 0) {
      fail_msg("vector %zu (%s):\n   C: %s\n  py: %s", i, name, canon.data,
               json_string_value(canonical));
    }

    /* The chain: prev is the session's previous hash (zeros at first). */
    const char *session = b.events[0].session_id;
    json_t *head = json_object_get(heads, session);
    const char *prev_hex = json_string_value(json_object_get(v, "prev_hash"));
    uint8_t prev[EVENT_HASH_LEN] = {0}, h[EVENT_HASH_LEN];
    char hex[SHA256_HEX_SIZE];
    if (head != NULL) {
      assert_string_equal(prev_hex, json_string_value(head));
      assert_int_equal(crypto_unhex(prev_hex, 64, prev, sizeof(prev)), 0);
    } else {
      assert_string_equal(prev_hex,
                          "0000000000000000000000000000000000000000000000000000000000000000");
    }
    events_chain_hash(prev, &canon, h);
    crypto_hex(h, sizeof(h), hex);
    if (strcmp(hex, json_string_value(json_object_get(v, "hash"))) != 0) {
      fail_msg("vector %zu (%s): hash %s", i, name, hex);
    }
    json_object_set_new(heads, session, json_string(hex));
    buf_free(&canon);
    events_batch_free(&b);
  }
  json_decref(heads);
  json_decref(doc);
  xfree(text);
}

/* Changing, removing or reordering an event changes the chain from there. */
static void test_chain_detects_tampering(void **state) {
  const char *events[] = {
      "{\"id\":\"e1\"," SID ",\"type\":\"session_start\"}",
      "{\"id\":\"e2\"," SID ",\"type\":\"custom\",\"data\":{\"n\":1}}",
      "{\"id\":\"e3\"," SID ",\"type\":\"session_end\"}",
  };
  const char *changed[] = {
      events[0], "{\"id\":\"e2\"," SID ",\"type\":\"custom\",\"data\":{\"n\":2}}", events[2]};
  const char *reordered[] = {events[0], events[2], events[1]};
  const char *removed[] = {events[0], events[2]};
  const char *const *bodies[] = {events, changed, reordered, removed};
  size_t counts[] = {3, 3, 3, 2};
  uint8_t heads[4][3][EVENT_HASH_LEN];
  (void)state;
  for (size_t k = 0; k < 4; k++) {
    char *body = batch_of(bodies[k], counts[k]);
    struct ingest_batch b;
    uint8_t prev[EVENT_HASH_LEN] = {0};
    assert_int_equal(parse_batch(body, &b), 0);
    events_enrich(&b);
    for (size_t i = 0; i < b.count; i++) {
      struct buf canon;
      buf_init(&canon, 4096);
      assert_int_equal(events_canonical(&b.events[i], &canon), 0);
      events_chain_hash(prev, &canon, prev);
      memcpy(heads[k][i], prev, EVENT_HASH_LEN);
      buf_free(&canon);
    }
    events_batch_free(&b);
    xfree(body);
  }
  /* Same prefix, different from the first changed position on. */
  for (size_t k = 1; k < 4; k++) {
    assert_memory_equal(heads[k][0], heads[0][0], EVENT_HASH_LEN);
    assert_memory_not_equal(heads[k][1], heads[0][1], EVENT_HASH_LEN);
  }
}

/* events_prepare: the canonical form, the column spans inside it, and the
 * cost; invalid events are left alone. */
static void test_prepare(void **state) {
  (void)state;
  struct ingest_batch b;
  assert_int_equal(
      parse_batch("{\"events\":[{\"id\":\"a\",\"session_id\":\"s\",\"type\":\"llm_call\","
                  "\"data\":{\"provider\":\"openai\",\"model\":\"gpt-4o\","
                  "\"input_tokens\":1000,\"output_tokens\":200},\"tags\":[\"x\"]},"
                  "{\"id\":\"b\",\"session_id\":\"s\",\"type\":\"nope\"},"
                  "{\"id\":\"c\",\"session_id\":\"s\",\"type\":\"llm_call\","
                  "\"data\":{\"model\":\"gpt-4o\",\"cost_usd\":\"0.5\"},"
                  "\"metadata\":{\"k\":[1,2]}}]}",
                  &b),
      0);
  events_enrich(&b);
  events_prepare(&b, "01a20000-0000-7000-8000-000000000001");
  struct ingest_event *a = &b.events[0], *bad = &b.events[1], *c = &b.events[2];
  assert_true(a->prepared);
  assert_false(bad->prepared);
  struct buf canon;
  buf_init(&canon, LIMIT_EVENT_CANONICAL_MAX);
  assert_int_equal(events_canonical(a, &canon), 0);
  assert_int_equal(a->canon_len, canon.len);
  assert_memory_equal(a->canon, canon.data, canon.len);
  buf_free(&canon);
  const char *data =
      "{\"input_tokens\":1000,\"model\":\"gpt-4o\",\"output_tokens\":200,"
      "\"provider\":\"openai\"}";
  assert_int_equal(a->canon_data.len, strlen(data));
  assert_memory_equal(a->canon + a->canon_data.off, data, strlen(data));
  assert_int_equal(a->canon_metadata.len, 2);
  assert_memory_equal(a->canon + a->canon_metadata.off, "{}", 2);
  assert_int_equal(a->canon_tags.len, 5);
  assert_memory_equal(a->canon + a->canon_tags.off, "[\"x\"]", 5);
  assert_memory_equal(c->canon + c->canon_metadata.off, "{\"k\":[1,2]}", 11);
  /* gpt-4o from 2024-10-02: 2.50 and 10.00 USD per million input and output
   * tokens: 1 000 × 2 500 + 200 × 10 000 nano-USD. */
  assert_int_equal(a->cost_nano, 4500000);
  assert_int_equal(a->cost_flags, 0);
  assert_int_equal(c->cost_nano, 500000000);
  assert_true(c->cost_flags & PRICING_CLIENT_SUPPLIED);
  events_batch_free(&b);
}

/* events_id_valid: the one id check shared by validation and the query
 * routes' path and cursor parameters. */
static void test_id_valid(void **state) {
  (void)state;
  assert_true(events_id_valid("a", 1, 64));
  assert_true(events_id_valid("Az09._:-", 8, 64));
  assert_false(events_id_valid("", 0, 64));
  assert_false(events_id_valid("abc", 3, 2));
  assert_true(events_id_valid("ab", 2, 2));
  assert_false(events_id_valid("a b", 3, 64));
  assert_false(events_id_valid("a/b", 3, 64));
  assert_false(events_id_valid("a\0b", 3, 64));
  assert_true(events_id_valid("ab/", 2, 64)); /* only len bytes are read */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validation_matrix),
      cmocka_unit_test(test_valid_events),
      cmocka_unit_test(test_every_type),
      cmocka_unit_test(test_mixed_batch),
      cmocka_unit_test(test_errors_per_event_cap),
      cmocka_unit_test(test_body_refusals),
      cmocka_unit_test(test_invalid_json_detail),
      cmocka_unit_test(test_single_entry),
      cmocka_unit_test(test_limit_batch_events),
      cmocka_unit_test(test_limit_body_size),
      cmocka_unit_test(test_limit_data_metadata_size),
      cmocka_unit_test(test_limit_depth),
      cmocka_unit_test(test_limit_tags),
      cmocka_unit_test(test_limit_string_lengths),
      cmocka_unit_test(test_limit_numbers),
      cmocka_unit_test(test_limit_future),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_enrich_skips_invalid),
      cmocka_unit_test(test_typed_values),
      cmocka_unit_test(test_cost_conversion),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_canonical_reals),
      cmocka_unit_test(test_canonical_reals_roundtrip),
      cmocka_unit_test(test_canonical_json),
      cmocka_unit_test(test_canonical_large_object),
      cmocka_unit_test(test_canonical_failures),
      cmocka_unit_test(test_chain_hash),
      cmocka_unit_test(test_reference_vectors),
      cmocka_unit_test(test_chain_detects_tampering),
      cmocka_unit_test(test_prepare),
      cmocka_unit_test(test_id_valid),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
