/*
 * events.c — parsing and validating ingestion bodies against the event
 * contract (docs/events.md), the enrichment defaults and in-batch
 * duplicates. The canonical form and the hash chain are in events_canon.c.
 *
 * Validation of one event collects errors in a local struct field_errors
 * whose paths are relative to the event ("data.model", "tags[2]"); only
 * when the event has errors are they copied into the batch with the
 * event's prefix ("events[3].data.model"), so valid events cost no path
 * formatting. Rules that depend on the type live in declarative tables
 * (type_rules[], one row of data fields per typed event type).
 *
 * Invariants:
 *  - every string an event or an error points to is a literal, a jansson
 *    string of the batch's document, or arena memory of the batch;
 *  - an event is valid exactly when validation recorded no error for it;
 *  - error messages never contain input bytes (field paths may name an
 *    unknown member, as a path must).
 *
 * Thread-safety: a batch belongs to one thread at a time.
 */
#include "domain/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/ids.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/pricing.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

struct ingest_batch_mem {
  json_t *root;
  struct arena *arena; /* error paths, generated ids */
  struct buf scratch;  /* canonical data/metadata, to measure them */
  struct buf canon;    /* events_prepare's canonical forms, one at a time */
  size_t errors_cap;
};

/* --- names ------------------------------------------------------------------ */

static const char *const type_names[EVENT_TYPE_COUNT] = {
    [EVENT_SESSION_START] = "session_start", [EVENT_SESSION_END] = "session_end",
    [EVENT_LLM_CALL] = "llm_call",           [EVENT_TOOL_CALL] = "tool_call",
    [EVENT_TOOL_RESULT] = "tool_result",     [EVENT_TOOL_ERROR] = "tool_error",
    [EVENT_AGENT_ACTION] = "agent_action",   [EVENT_ERROR] = "error",
    [EVENT_GUARDRAIL] = "guardrail",         [EVENT_FEEDBACK] = "feedback",
    [EVENT_HEALTH_CHECK] = "health_check",   [EVENT_CUSTOM] = "custom",
};

static const char *const severity_names[EVENT_SEVERITY_COUNT] = {
    [EVENT_SEVERITY_DEBUG] = "debug",       [EVENT_SEVERITY_INFO] = "info",
    [EVENT_SEVERITY_WARN] = "warn",         [EVENT_SEVERITY_ERROR] = "error",
    [EVENT_SEVERITY_CRITICAL] = "critical",
};

/* Without NONE (index 0 here is EVENT_STATUS_OK). */
static const char *const status_names[EVENT_STATUS_COUNT - 1] = {"ok", "error", "timeout",
                                                                 "cancelled"};

const char *event_type_name(enum event_type t) {
  return (unsigned)t < EVENT_TYPE_COUNT ? type_names[t] : NULL;
}

const char *event_severity_name(enum event_severity s) {
  return (unsigned)s < EVENT_SEVERITY_COUNT ? severity_names[s] : NULL;
}

const char *event_status_name(enum event_status s) {
  if (s == EVENT_STATUS_NONE || (unsigned)s >= EVENT_STATUS_COUNT) return NULL;
  return status_names[s - 1];
}

/* --- typed data: the declarative part --------------------------------------- */

enum data_kind {
  DATA_TEXT,   /* string of 1..max_len bytes → const char * */
  DATA_COUNT,  /* integer 0..LIMIT_EVENT_TOKENS_MAX → int64_t, 0 when absent */
  DATA_MILLIS, /* number 0..LIMIT_EVENT_DURATION_MS_MAX → double, -1 when absent */
  DATA_STATUS, /* ok|error|timeout|cancelled → enum event_status */
  DATA_COST,   /* decimal string or number ≥ 0 → int64_t nano-USD, -1 when absent */
};

struct data_field {
  const char *key;  /* member of data */
  const char *path; /* field path relative to the event */
  enum data_kind kind;
  bool required;
  size_t max_len; /* DATA_TEXT */
  size_t offset;  /* of the destination in struct ingest_event */
};

#define LLM(member)  offsetof(struct ingest_event, typed.llm.member)
#define TOOL(member) offsetof(struct ingest_event, typed.tool.member)

static const struct data_field llm_call_fields[] = {
    {"provider", "data.provider", DATA_TEXT, false, LIMIT_EVENT_PROVIDER_MAX, LLM(provider)},
    {"model", "data.model", DATA_TEXT, true, LIMIT_EVENT_MODEL_MAX, LLM(model)},
    {"input_tokens", "data.input_tokens", DATA_COUNT, false, 0, LLM(input_tokens)},
    {"output_tokens", "data.output_tokens", DATA_COUNT, false, 0, LLM(output_tokens)},
    {"reasoning_tokens", "data.reasoning_tokens", DATA_COUNT, false, 0, LLM(reasoning_tokens)},
    {"cache_read_tokens", "data.cache_read_tokens", DATA_COUNT, false, 0, LLM(cache_read_tokens)},
    {"cache_write_tokens", "data.cache_write_tokens", DATA_COUNT, false, 0,
     LLM(cache_write_tokens)},
    {"latency_ms", "data.latency_ms", DATA_MILLIS, false, 0, LLM(latency_ms)},
    {"status", "data.status", DATA_STATUS, false, 0, LLM(status)},
    {"cost_usd", "data.cost_usd", DATA_COST, false, 0, LLM(client_cost_nusd)},
};

/* tool_call and tool_result; tool_error differs only in requiring error. */
#define TOOL_FIELDS(error_required)                                                             \
  {"tool_name", "data.tool_name", DATA_TEXT, true, LIMIT_EVENT_TOOL_NAME_MAX, TOOL(tool_name)}, \
      {"call_id", "data.call_id", DATA_TEXT, false, LIMIT_EVENT_CALL_ID_MAX, TOOL(call_id)},    \
      {"duration_ms", "data.duration_ms", DATA_MILLIS, false, 0, TOOL(duration_ms)},            \
      {"status", "data.status", DATA_STATUS, false, 0, TOOL(status)},                           \
      {"error", "data.error", DATA_TEXT, error_required, LIMIT_EVENT_ERROR_MAX, TOOL(error)},

static const struct data_field tool_fields[] = {TOOL_FIELDS(false)};
static const struct data_field tool_error_fields[] = {TOOL_FIELDS(true)};

static void check_llm_tokens(const struct ingest_event *e, struct field_errors *fe);

struct type_rules {
  const struct data_field *fields;
  size_t nfields;
  /* Rules across fields, run when every field above was valid. */
  void (*check)(const struct ingest_event *e, struct field_errors *fe);
};

/* Types without a row carry free-form data. */
static const struct type_rules type_rules[EVENT_TYPE_COUNT] = {
    [EVENT_LLM_CALL] = {llm_call_fields, COUNT_OF(llm_call_fields), check_llm_tokens},
    [EVENT_TOOL_CALL] = {tool_fields, COUNT_OF(tool_fields), NULL},
    [EVENT_TOOL_RESULT] = {tool_fields, COUNT_OF(tool_fields), NULL},
    [EVENT_TOOL_ERROR] = {tool_error_fields, COUNT_OF(tool_error_fields), NULL},
};

/* The members an event may have; anything else is unknown_field. */
static const char *const event_members[] = {
    "id", "session_id", "agent_id", "type", "timestamp", "severity", "data", "metadata", "tags"};

/* --- small parsers ---------------------------------------------------------- */

/* Ids (event, session, agent): [A-Za-z0-9._:-], so they are safe in URLs,
 * logs and file names without escaping. */
static bool id_chars_ok(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool events_id_valid(const char *s, size_t len, size_t max) {
  return len >= 1 && len <= max && id_chars_ok(s, len);
}

enum decimal_status { DECIMAL_OK, DECIMAL_FORMAT, DECIMAL_RANGE };

/*
 * "digits[.digits]" as nano-USD, rounded half up at the ninth decimal. A
 * leading '-' before an otherwise valid number reads as a negative amount:
 * out of range rather than a format error. Whole-slice parser.
 */
static enum decimal_status parse_usd_text(struct slice s, int64_t *out) {
  size_t i = 0;
  int64_t units = 0, nanos = 0;
  bool negative = false, any_int = false;

  if (i < s.len && s.p[i] == '-') {
    negative = true;
    i++;
  }
  for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
    any_int = true;
    /* Past the maximum already: keep scanning for the format, stop growing. */
    if (units <= LIMIT_EVENT_COST_NUSD_MAX / 1000000000) units = units * 10 + (s.p[i] - '0');
  }
  if (!any_int) return DECIMAL_FORMAT;
  if (i < s.len) {
    size_t frac_digits = 0;
    if (s.p[i] != '.') return DECIMAL_FORMAT;
    i++;
    for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++, frac_digits++) {
      if (frac_digits < 9) {
        nanos = nanos * 10 + (s.p[i] - '0');
      } else if (frac_digits == 9 && s.p[i] >= '5') {
        nanos++; /* round half up on the tenth decimal */
      }
    }
    if (frac_digits == 0 || i < s.len) return DECIMAL_FORMAT;
    for (; frac_digits < 9; frac_digits++) nanos *= 10;
  }
  if (negative) return DECIMAL_RANGE; /* "-0" too: the grammar has no sign */
  if (units > LIMIT_EVENT_COST_NUSD_MAX / 1000000000) return DECIMAL_RANGE;
  int64_t total = units * 1000000000 + nanos;
  if (total > LIMIT_EVENT_COST_NUSD_MAX) return DECIMAL_RANGE;
  *out = total;
  return DECIMAL_OK;
}

/* data.cost_usd: a decimal string or a JSON number. Same returns as the
 * json.h getters. */
static int get_cost(const json_t *data, const struct data_field *f, int64_t *out,
                    struct field_errors *fe) {
  json_t *v = json_is_object(data) ? json_object_get(data, f->key) : NULL;
  if (v == NULL || json_is_null(v)) return 1;
  if (json_is_string(v)) {
    size_t len = json_string_length(v);
    if (len > LIMIT_EVENT_COST_TEXT_MAX) {
      field_errors_add(fe, f->path, "too_long", "is too long");
      return -1;
    }
    switch (parse_usd_text(slice_make(json_string_value(v), len), out)) {
      case DECIMAL_OK:
        return 0;
      case DECIMAL_RANGE:
        field_errors_add(fe, f->path, "out_of_range", "is out of range");
        return -1;
      case DECIMAL_FORMAT:
        break;
    }
    field_errors_add(fe, f->path, "invalid_format", "must be a decimal number such as \"0.0042\"");
    return -1;
  }
  if (!json_is_number(v)) {
    field_errors_add(fe, f->path, "wrong_type", "must be a decimal string or a number");
    return -1;
  }
  double usd = json_number_value(v);
  if (!(usd >= 0 && usd * 1e9 <= (double)LIMIT_EVENT_COST_NUSD_MAX)) {
    field_errors_add(fe, f->path, "out_of_range", "is out of range");
    return -1;
  }
  /* Non-negative and far below 2^53 nano-USD: adding a half and truncating
   * rounds to nearest (half up) without libm. */
  *out = (int64_t)(usd * 1e9 + 0.5);
  return 0;
}

/* --- one event -------------------------------------------------------------- */

struct event_check {
  struct ingest_batch *b;
  struct ingest_event *e;
  struct field_errors fe; /* paths relative to the event */
};

static void add_error(struct event_check *c, const char *path, const char *code,
                      const char *message) {
  field_errors_add(&c->fe, path, code, message);
}

/* An id-like member: present string of 1..max bytes from the safe set. */
static int get_id(struct event_check *c, const json_t *ev, const char *key, enum json_req req,
                  size_t max, const char **out) {
  const char *s = NULL;
  int rc = json_get_str(ev, key, NULL, req, 1, max, &s, &c->fe);
  if (rc != 0) return rc;
  if (!id_chars_ok(s, strlen(s))) {
    add_error(c, key, "invalid_format", "may contain only A-Z a-z 0-9 . _ : -");
    return -1;
  }
  *out = s;
  return 0;
}

static void check_timestamp(struct event_check *c, const json_t *ev) {
  const char *s = NULL;
  int64_t us;
  if (json_get_str(ev, "timestamp", NULL, JSON_OPTIONAL, 0, SIZE_MAX, &s, &c->fe) != 0) return;
  /* The parser also refuses an instant that an offset carries outside the
   * years 0001..9999 (UTC), which the canonical form could not write. */
  if (strlen(s) > LIMIT_EVENT_TIMESTAMP_MAX || time_parse_rfc3339(slice_from_cstr(s), &us) != 0) {
    add_error(c, "timestamp", "invalid_format",
              "must be an RFC 3339 date-time within the years 0001 to 9999 (UTC)");
    return;
  }
  if (us > c->b->received_us + LIMIT_EVENT_FUTURE_SKEW_US) {
    add_error(c, "timestamp", "in_future", "is more than 5 minutes in the future");
    return;
  }
  c->e->timestamp_us = us;
  c->e->has_timestamp = true;
}

/*
 * data or metadata: an object at most LIMIT_EVENT_DEPTH deep whose canonical
 * encoding fits max_bytes. Stores the object (NULL when absent) in *out.
 * Returns 0 when absent or valid.
 */
static int check_object_member(struct event_check *c, const json_t *ev, const char *key,
                               size_t max_bytes, json_t **out, struct slice *canon) {
  json_t *obj = NULL;
  int rc = json_get_obj(ev, key, NULL, JSON_OPTIONAL, &obj, &c->fe);
  if (rc == 1) return 0;
  if (rc != 0) return -1;
  if (json_depth(obj) > LIMIT_EVENT_DEPTH) {
    add_error(c, key, "too_deep", "is nested too deeply");
    return -1;
  }
  struct buf *scratch = &c->b->mem->scratch;
  buf_reset(scratch);
  if (events_canonical_json(obj, scratch) != 0 || scratch->len > max_bytes) {
    add_error(c, key, "too_large", "is too large when serialised");
    return -1;
  }
  *out = obj;
  *canon = slice_make(arena_strndup(c->b->mem->arena, scratch->data, scratch->len), scratch->len);
  return 0;
}

static void check_tags(struct event_check *c, const json_t *ev) {
  json_t *tags = NULL;
  size_t bad_before = c->fe.count + c->fe.dropped;
  if (json_get_arr(ev, "tags", NULL, JSON_OPTIONAL, LIMIT_EVENT_TAGS, &tags, &c->fe) != 0) return;
  for (size_t i = 0; i < json_array_size(tags); i++) {
    json_t *t = json_array_get(tags, i);
    const char *code = NULL, *message = NULL;
    if (!json_is_string(t)) {
      code = "wrong_type", message = "must be a string";
    } else if (json_string_length(t) < 1) {
      code = "too_short", message = "is too short";
    } else if (json_string_length(t) > LIMIT_EVENT_TAG_MAX) {
      code = "too_long", message = "is too long";
    }
    if (code != NULL) add_error(c, arena_printf(c->b->mem->arena, "tags[%zu]", i), code, message);
  }
  if (c->fe.count + c->fe.dropped == bad_before) c->e->tags = tags;
}

/* The unknown members of an event, each named (a long name is not echoed). */
static void check_members(struct event_check *c, const json_t *ev) {
  const char *key;
  json_t *value;
  /* The macro takes a non-const object; iteration does not modify it. */
  json_object_foreach((json_t *)ev, key, value) {
    bool known = false;
    (void)value;
    for (size_t i = 0; i < COUNT_OF(event_members) && !known; i++) {
      known = strcmp(event_members[i], key) == 0;
    }
    if (known) continue;
    if (strlen(key) <= LIMIT_EVENT_TAG_MAX) {
      add_error(c, key, "unknown_field", "is not a known field");
    } else {
      add_error(c, "", "unknown_field", "has an unknown member with a long name");
    }
  }
}

static void check_typed_data(struct event_check *c, const json_t *data) {
  const struct type_rules *rules = &type_rules[c->e->type];
  size_t errors_before = c->fe.count + c->fe.dropped;
  char *base = (char *)c->e;

  for (size_t i = 0; i < rules->nfields; i++) {
    const struct data_field *f = &rules->fields[i];
    enum json_req req = f->required ? JSON_REQUIRED : JSON_OPTIONAL;
    void *dst = base + f->offset;
    int rc = 0, st = 0;
    int64_t n = 0;
    double d = 0;
    const char *s = NULL;

    switch (f->kind) {
      case DATA_TEXT:
        rc = json_get_str(data, f->key, f->path, req, 1, f->max_len, &s, &c->fe);
        *(const char **)dst = rc == 0 ? s : NULL;
        break;
      case DATA_COUNT:
        rc = json_get_int(data, f->key, f->path, req, 0, LIMIT_EVENT_TOKENS_MAX, &n, &c->fe);
        *(int64_t *)dst = rc == 0 ? n : 0;
        break;
      case DATA_MILLIS:
        rc = json_get_num(data, f->key, f->path, req, 0, LIMIT_EVENT_DURATION_MS_MAX, &d, &c->fe);
        *(double *)dst = rc == 0 ? d : -1;
        break;
      case DATA_STATUS:
        rc = json_get_enum(data, f->key, f->path, req, status_names, COUNT_OF(status_names), &st,
                           &c->fe);
        *(enum event_status *)dst = rc == 0 ? (enum event_status)(st + 1) : EVENT_STATUS_NONE;
        break;
      case DATA_COST:
        rc = get_cost(data, f, &n, &c->fe);
        *(int64_t *)dst = rc == 0 ? n : -1;
        break;
    }
  }
  if (rules->check != NULL && c->fe.count + c->fe.dropped == errors_before) {
    rules->check(c->e, &c->fe);
  }
}

/* OpenTelemetry GenAI semantics: input includes cache reads and writes,
 * output includes reasoning. A count that breaks this would be billed twice
 * (or negative), so the event is refused rather than guessed at. */
static void check_llm_tokens(const struct ingest_event *e, struct field_errors *fe) {
  const struct ingest_llm_call *l = &e->typed.llm;
  if (l->cache_read_tokens + l->cache_write_tokens > l->input_tokens) {
    field_errors_add(fe, "data.input_tokens", "inconsistent_tokens",
                     "must include cache_read_tokens and cache_write_tokens");
  }
  if (l->reasoning_tokens > l->output_tokens) {
    field_errors_add(fe, "data.output_tokens", "inconsistent_tokens",
                     "must include reasoning_tokens");
  }
}

/* The field path of an error at index i: the event prefix plus rel. */
static const char *error_field(struct ingest_batch *b, enum events_entry entry, size_t index,
                               const char *rel) {
  if (entry == EVENTS_ENTRY_SINGLE) return rel;
  if (rel[0] == '\0') return arena_printf(b->mem->arena, "events[%zu]", index);
  return arena_printf(b->mem->arena, "events[%zu].%s", index, rel);
}

static void batch_add_error(struct ingest_batch *b, size_t index, const char *field,
                            const char *code, const char *message) {
  struct ingest_batch_mem *m = b->mem;
  if (b->error_count == m->errors_cap) {
    m->errors_cap = m->errors_cap ? m->errors_cap * 2 : 16;
    b->errors = xreallocarray(b->errors, m->errors_cap, sizeof(*b->errors));
  }
  b->errors[b->error_count++] =
      (struct ingest_error){.index = index, .field = field, .code = code, .message = message};
}

/* Validates ev (any JSON value) as event index of b into e. */
static void validate_event(struct ingest_batch *b, enum events_entry entry, const json_t *ev,
                           size_t index, struct ingest_event *e) {
  struct event_check c = {.b = b, .e = e};
  int type = -1, severity = EVENT_SEVERITY_INFO;
  json_t *data = NULL;

  *e = (struct ingest_event){.index = index, .received_us = b->received_us};
  if (!json_is_object(ev)) {
    add_error(&c, "", "wrong_type", "must be an object");
  } else {
    check_members(&c, ev);
    get_id(&c, ev, "id", JSON_OPTIONAL, LIMIT_EVENT_ID_MAX, &e->id);
    get_id(&c, ev, "session_id", JSON_REQUIRED, LIMIT_EVENT_SESSION_ID_MAX, &e->session_id);
    e->agent_id = "default";
    get_id(&c, ev, "agent_id", JSON_OPTIONAL, LIMIT_EVENT_AGENT_ID_MAX, &e->agent_id);
    json_get_enum(ev, "type", NULL, JSON_REQUIRED, type_names, EVENT_TYPE_COUNT, &type, &c.fe);
    check_timestamp(&c, ev);
    json_get_enum(ev, "severity", NULL, JSON_OPTIONAL, severity_names, EVENT_SEVERITY_COUNT,
                  &severity, &c.fe);
    e->severity = (enum event_severity)severity;
    int data_rc = check_object_member(&c, ev, "data", LIMIT_EVENT_DATA_MAX, &data, &e->data_canon);
    e->data = data;
    check_object_member(&c, ev, "metadata", LIMIT_EVENT_METADATA_MAX, &e->metadata,
                        &e->metadata_canon);
    check_tags(&c, ev);
    /* Typed fields only over a usable data (absent counts: its required
     * members are then reported missing). */
    if (type >= 0) {
      e->type = (enum event_type)type;
      if (data_rc == 0) check_typed_data(&c, data);
    }
  }

  e->valid = c.fe.count == 0 && c.fe.dropped == 0;
  if (e->valid) return;
  b->rejected++;
  for (size_t i = 0; i < c.fe.count; i++) {
    if (i == LIMIT_INGEST_ERRORS_PER_EVENT) {
      b->errors_dropped += c.fe.count - i;
      break;
    }
    const struct field_error *f = &c.fe.items[i];
    batch_add_error(b, index, error_field(b, entry, index, f->field), f->code, f->message);
  }
  b->errors_dropped += c.fe.dropped;
}

/* --- the body --------------------------------------------------------------- */

static int refuse_body(struct ingest_batch *b, int status, const char *problem,
                       const char *detail) {
  b->problem = problem;
  snprintf(b->problem_detail, sizeof(b->problem_detail), "%s", detail);
  return status;
}

/* {"events": [...]}: the array of 1..LIMIT_INGEST_BATCH_EVENTS events, or
 * NULL after recording body-level errors. */
static json_t *batch_events(struct ingest_batch *b, json_t *root) {
  static const char *const allowed[] = {"events"};
  json_t *events = NULL;
  struct field_errors *fe = &b->body_errors;

  json_reject_unknown(root, NULL, allowed, COUNT_OF(allowed), fe);
  if (json_get_arr(root, "events", NULL, JSON_REQUIRED, LIMIT_INGEST_BATCH_EVENTS, &events, fe) ==
          0 &&
      json_array_size(events) == 0) {
    field_errors_add(fe, "events", "too_short", "must hold at least one event");
  }
  return fe->count > 0 || fe->dropped > 0 ? NULL : events;
}

int events_parse(struct slice body, const struct events_parse_opts *opts,
                 struct ingest_batch *out) {
  size_t body_max = opts->body_max ? opts->body_max : LIMIT_BODY_INGEST;
  char msg[128];
  json_t *root, *events = NULL;

  memset(out, 0, sizeof(*out));
  out->received_us = opts->received_us;
  out->mem = xcalloc(1, sizeof(*out->mem));
  if (body.len > body_max) {
    return refuse_body(out, KEEL_ETOOBIG, "payload_too_large", "the body is over the size limit");
  }
  root = json_parse_bounded(body, LIMIT_INGEST_BODY_DEPTH, msg, sizeof(msg));
  if (root == NULL) return refuse_body(out, KEEL_EINVAL, "invalid_json", msg);
  out->mem->root = root;
  out->mem->arena = arena_new(0);
  buf_init(&out->mem->scratch, LIMIT_EVENT_DATA_MAX > LIMIT_EVENT_METADATA_MAX
                                   ? LIMIT_EVENT_DATA_MAX
                                   : LIMIT_EVENT_METADATA_MAX);
  buf_init(&out->mem->canon, LIMIT_EVENT_CANONICAL_MAX);

  if (!json_is_object(root)) {
    field_errors_add(&out->body_errors, "", "wrong_type", "must be a JSON object");
    return refuse_body(out, KEEL_EINVAL, "validation_failed", "the body is not a JSON object");
  }
  if (opts->entry == EVENTS_ENTRY_SINGLE) {
    out->count = 1;
    out->events = xcalloc(1, sizeof(*out->events));
    validate_event(out, EVENTS_ENTRY_SINGLE, root, 0, &out->events[0]);
    return 0;
  }
  events = batch_events(out, root);
  if (events == NULL) {
    return refuse_body(out, KEEL_EINVAL, "validation_failed",
                       "the body must be {\"events\": [...]} with 1 to 100 events");
  }
  out->count = json_array_size(events);
  out->events = xcalloc(out->count, sizeof(*out->events));
  for (size_t i = 0; i < out->count; i++) {
    validate_event(out, EVENTS_ENTRY_BATCH, json_array_get(events, i), i, &out->events[i]);
  }
  return 0;
}

void events_batch_free(struct ingest_batch *b) {
  if (b->mem != NULL) {
    json_decref(b->mem->root);
    arena_free(b->mem->arena);
    buf_free(&b->mem->scratch);
    buf_free(&b->mem->canon);
    xfree(b->mem);
  }
  xfree(b->events);
  xfree(b->errors);
  memset(b, 0, sizeof(*b));
}

/* --- enrichment and duplicates ---------------------------------------------- */

void events_enrich(struct ingest_batch *b) {
  for (size_t i = 0; i < b->count; i++) {
    struct ingest_event *e = &b->events[i];
    if (!e->valid) continue;
    e->received_us = b->received_us;
    if (!e->has_timestamp) {
      e->timestamp_us = b->received_us;
      e->has_timestamp = true;
    }
    if (e->id == NULL) {
      struct id id;
      char *text = arena_alloc(b->mem->arena, ID_STR_SIZE);
      id_new_at(&id, b->received_us);
      id_format(&id, text);
      e->id = text;
      e->id_generated = true;
    }
  }
}

struct id_ref {
  const char *id;
  size_t index;
};

/* By id, then by position, so the first of equal ids is the earliest. */
static int id_ref_cmp(const void *a, const void *b) {
  const struct id_ref *x = a, *y = b;
  int c = strcmp(x->id, y->id);
  if (c) return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

size_t events_find_duplicates(const struct ingest_batch *b, size_t *first_of) {
  struct id_ref *refs = xreallocarray(NULL, b->count ? b->count : 1, sizeof(*refs));
  size_t n = 0, dups = 0;

  for (size_t i = 0; i < b->count; i++) {
    const struct ingest_event *e = &b->events[i];
    first_of[i] = SIZE_MAX;
    if (e->valid && e->id != NULL && !e->id_generated) {
      refs[n++] = (struct id_ref){.id = e->id, .index = i};
    }
  }
  qsort(refs, n, sizeof(*refs), id_ref_cmp);
  for (size_t i = 1, first = 0; i < n; i++) {
    if (strcmp(refs[i].id, refs[first].id) == 0) {
      first_of[refs[i].index] = refs[first].index;
      dups++;
    } else {
      first = i;
    }
  }
  xfree(refs);
  return dups;
}

/* --- preparation for the store ------------------------------------------- */

/* The cost of an llm_call: the org's prices at the event's time, or the
 * client's cost when it sent one. Pricing never fails an event: a call that
 * cannot be priced costs 0, flagged unpriced. */
static void event_cost(const char *org_id, struct ingest_event *e) {
  e->cost_nano = 0;
  e->cost_flags = 0;
  if (e->type != EVENT_LLM_CALL) return;
  const struct ingest_llm_call *llm = &e->typed.llm;
  struct pricing_usage u = {
      .org_id = org_id,
      .provider = slice_from_cstr(llm->provider),
      .model = slice_from_cstr(llm->model),
      .input_tokens = llm->input_tokens,
      .output_tokens = llm->output_tokens,
      .reasoning_tokens = llm->reasoning_tokens,
      .cache_read_tokens = llm->cache_read_tokens,
      .cache_write_tokens = llm->cache_write_tokens,
      .has_client_cost = llm->client_cost_nusd >= 0,
      .client_cost_nano = llm->client_cost_nusd >= 0 ? llm->client_cost_nusd : 0,
  };
  struct pricing_result r;
  if (pricing_cost(&u, e->timestamp_us, &r) != 0) {
    e->cost_flags = PRICING_UNPRICED;
    if (u.has_client_cost) {
      e->cost_nano = u.client_cost_nano;
      e->cost_flags |= PRICING_CLIENT_SUPPLIED;
    }
    return;
  }
  e->cost_nano = r.cost_nano;
  e->cost_flags = r.flags;
}

int events_prepare_one(struct ingest_event *e, const char *org_id, struct buf *out) {
  buf_reset(out);
  if (events_canonical_spans(e, out, &e->canon_data, &e->canon_metadata, &e->canon_tags) != 0) {
    return -1;
  }
  e->canon = out->data;
  e->canon_len = out->len;
  event_cost(org_id, e);
  e->prepared = true;
  return 0;
}

void events_prepare(struct ingest_batch *b, const char *org_id) {
  struct buf *scratch = &b->mem->canon;
  for (size_t i = 0; i < b->count; i++) {
    struct ingest_event *e = &b->events[i];
    if (!e->valid || e->prepared) continue;
    if (events_prepare_one(e, org_id, scratch) != 0) {
      e->valid = false;
      b->rejected++;
      batch_add_error(b, e->index, arena_printf(b->mem->arena, "events[%zu]", e->index),
                      "invalid_format", "has no canonical form");
      continue;
    }
    e->canon = arena_strndup(b->mem->arena, scratch->data, scratch->len);
  }
}
