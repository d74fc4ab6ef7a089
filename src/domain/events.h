/*
 * events.h — the ingestion event contract (docs/events.md) and the event
 * hash chain (docs/hash-chain.md).
 *
 * events_parse reads an ingestion body — {"events": [...]} for the batch route
 * or one event object for the single-event route — and validates every event
 * into a struct ingest_event. A body that cannot be read as a whole (not
 * JSON, not an object, no "events" array, too many events) is refused as a
 * whole; otherwise each event is judged on its own and a bad one does not
 * reject the others: its errors are listed as {index, field, code, message}.
 *
 * The pipeline then calls events_enrich on the batch (received time,
 * default timestamp, generated id), finds in-batch duplicates with
 * events_find_duplicates, and links each event into its session's chain:
 *     hash = SHA-256(prev_hash || events_canonical(event))
 * prev_hash of a session's first event being 32 zero bytes.
 *
 * Memory: a struct ingest_batch owns the parsed document and everything the
 * events point into (generated ids included); strings in an ingest_event are
 * borrowed from the batch and live until events_batch_free, so events may be
 * copied freely while the batch lives. Nothing here is shared between threads: a batch belongs
 * to one request at a time. The canonical functions are stateless and
 * thread-safe.
 */
#ifndef KEEL_DOMAIN_EVENTS_H
#define KEEL_DOMAIN_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/errors.h"
#include "core/slice.h"

#define EVENT_HASH_LEN 32

/* Event types, in the order of docs/events.md. */
enum event_type {
  EVENT_SESSION_START,
  EVENT_SESSION_END,
  EVENT_LLM_CALL,
  EVENT_TOOL_CALL,
  EVENT_TOOL_RESULT,
  EVENT_TOOL_ERROR,
  EVENT_AGENT_ACTION,
  EVENT_ERROR,
  EVENT_GUARDRAIL,
  EVENT_FEEDBACK,
  EVENT_HEALTH_CHECK,
  EVENT_CUSTOM,
  EVENT_TYPE_COUNT
};

enum event_severity {
  EVENT_SEVERITY_DEBUG,
  EVENT_SEVERITY_INFO,
  EVENT_SEVERITY_WARN,
  EVENT_SEVERITY_ERROR,
  EVENT_SEVERITY_CRITICAL,
  EVENT_SEVERITY_COUNT
};

/* data.status of llm_call and tool_* events; NONE when absent. */
enum event_status {
  EVENT_STATUS_NONE,
  EVENT_STATUS_OK,
  EVENT_STATUS_ERROR,
  EVENT_STATUS_TIMEOUT,
  EVENT_STATUS_CANCELLED,
  EVENT_STATUS_COUNT
};

/* Wire names ("llm_call", "warn", "timeout"); NULL when out of range (and
 * for EVENT_STATUS_NONE). */
const char *event_type_name(enum event_type t);
const char *event_severity_name(enum event_severity s);
const char *event_status_name(enum event_status s);

/*
 * The typed part of an llm_call's data. Token counts follow the OpenTelemetry
 * GenAI convention: input includes the cache reads and writes, output
 * includes the reasoning tokens (validation guarantees both). Absent counts
 * are 0.
 */
struct ingest_llm_call {
  const char *provider; /* NULL when absent */
  const char *model;
  int64_t input_tokens;
  int64_t output_tokens;
  int64_t reasoning_tokens;
  int64_t cache_read_tokens;
  int64_t cache_write_tokens;
  double latency_ms; /* -1 when absent */
  enum event_status status;
  int64_t client_cost_nusd; /* data.cost_usd in nano-USD; -1 when absent */
};

/* The typed part of a tool_call / tool_result / tool_error's data. */
struct ingest_tool_call {
  const char *tool_name;
  const char *call_id; /* NULL when absent */
  const char *error;   /* NULL when absent (never for tool_error) */
  double duration_ms;  /* -1 when absent */
  enum event_status status;
};

/*
 * One event of a batch. When valid is false only index is meaningful (its
 * errors are in the batch). Strings are NUL-terminated and borrowed from the
 * batch; data, metadata and tags are borrowed jansson values, NULL when
 * absent (the canonical form then uses {} / {} / []).
 */
struct ingest_event {
  size_t index; /* position in the body (0 for the single-event route) */
  bool valid;

  const char *id; /* NULL until enriched when the client sent none */
  bool id_generated;
  const char *session_id;
  const char *agent_id; /* "default" when absent */
  enum event_type type;
  int64_t timestamp_us; /* UTC µs; valid only when has_timestamp */
  bool has_timestamp;   /* false until enriched when the client sent none */
  enum event_severity severity;
  json_t *data;
  json_t *metadata;
  json_t *tags;
  union {
    struct ingest_llm_call llm;   /* EVENT_LLM_CALL */
    struct ingest_tool_call tool; /* EVENT_TOOL_CALL, _RESULT, _ERROR */
  } typed;

  int64_t received_us; /* the batch's received time */

  /* The canonical encodings of data and metadata as validation measured
   * them (batch memory; p NULL when not computed): the canonical form reuses
   * them instead of encoding again. Whoever changes data or metadata after
   * validation must clear them. */
  struct slice data_canon, metadata_canon;

  /* Filled by events_prepare (off the store writer): the canonical form
   * (docs/hash-chain.md) in the batch's memory, the spans of its data,
   * metadata and tags values (the stored columns), and an llm_call's cost. */
  bool prepared;
  const char *canon;
  size_t canon_len;
  struct events_span {
    size_t off, len;
  } canon_data, canon_metadata, canon_tags;
  int64_t cost_nano;   /* 0 unless llm_call */
  unsigned cost_flags; /* domain/pricing.h enum pricing_flag bits */
};

/* One per-event error of a batch; the strings are borrowed from the batch
 * (or static). */
struct ingest_error {
  size_t index;        /* the event's position in the body */
  const char *field;   /* "events[3].data.model" (batch) or "data.model" (single) */
  const char *code;    /* stable snake_case rule, docs/events.md */
  const char *message; /* human text */
};

enum events_entry {
  EVENTS_ENTRY_BATCH,  /* POST /v1/events/batch: {"events": [...]} */
  EVENTS_ENTRY_SINGLE, /* POST /v1/events: one event object */
};

struct events_parse_opts {
  enum events_entry entry;
  int64_t received_us; /* when the request arrived (the future bound, defaults) */
  size_t body_max;     /* 0: LIMIT_BODY_INGEST */
};

struct ingest_batch_mem; /* private: the document, an arena, scratch space */

struct ingest_batch {
  /* Set when events_parse refused the body as a whole: a problem code
   * ("invalid_json", "validation_failed", "payload_too_large"), a detail
   * (never echoing input) and, for validation_failed, the body-level field
   * errors (field "events", "" for the body itself, or an unknown member). */
  const char *problem;
  char problem_detail[128];
  struct field_errors body_errors;

  int64_t received_us;
  struct ingest_event *events; /* count entries, in body order */
  size_t count;
  size_t rejected;             /* events with valid == false */
  struct ingest_error *errors; /* error_count entries, grouped by index */
  size_t error_count;
  size_t errors_dropped; /* past LIMIT_INGEST_ERRORS_PER_EVENT, counted only */

  struct ingest_batch_mem *mem;
};

/*
 * Parses and validates body into *out (which is overwritten; call
 * events_batch_free afterwards whatever the result).
 * Returns 0 when the body was readable (each event valid or not: see
 * out->events[i].valid and out->errors), KEEL_EINVAL when it was refused as a
 * whole (out->problem is "invalid_json" or "validation_failed"), or
 * KEEL_ETOOBIG when body is longer than opts->body_max ("payload_too_large").
 * body need not be NUL-terminated.
 */
int events_parse(struct slice body, const struct events_parse_opts *opts, struct ingest_batch *out);

/*
 * Prepares every valid, enriched event of b for the store (the work that
 * need not run on the single store writer): its canonical form with the
 * spans of data/metadata/tags, and the cost of an llm_call from the price
 * table for org_id at the event's time (a client-supplied cost wins and is
 * flagged; a call that cannot be priced costs 0, flagged unpriced). An event
 * that has no canonical form (cannot happen after validation) is marked
 * invalid with an error. Idempotent.
 */
void events_prepare(struct ingest_batch *b, const char *org_id);

/* Prepares one event whose strings outlive the call, with the canonical
 * form in out (reset first; e->canon points into it). 0 or -1 (no
 * canonical form). For callers without a batch (replay, tests). */
int events_prepare_one(struct ingest_event *e, const char *org_id, struct buf *out);

/* An event, session or agent id as the contract allows it (docs/events.md):
 * 1..max bytes of A-Z a-z 0-9 . _ : - (safe in URLs, logs and file names).
 * s need not be NUL-terminated. */
bool events_id_valid(const char *s, size_t len, size_t max);

/* Releases everything the batch owns; the events' strings die with it.
 * Safe on a zeroed or already freed batch. */
void events_batch_free(struct ingest_batch *b);

/*
 * Enrichment defaults for every valid event of b: received_us is set, the
 * timestamp becomes the received time when the client sent none, and a
 * UUIDv7 (from the received time, lower-case text in the batch's memory) is
 * generated when the client sent no id (id_generated is then true).
 * Idempotent.
 */
void events_enrich(struct ingest_batch *b);

/*
 * In-batch duplicates: for each i, first_of[i] (count entries, caller's
 * memory) becomes the index of the first valid event with the same
 * client-supplied id when event i is a later one, or SIZE_MAX otherwise
 * (invalid events, generated ids and first occurrences). Returns the number
 * of duplicates. O(n log n).
 */
size_t events_find_duplicates(const struct ingest_batch *b, size_t *first_of);

/* --- canonical form and hash chain (events_canon.c) ------------------------- */

/*
 * Appends the canonical bytes of an enriched event (docs/hash-chain.md) to
 * out. Returns 0, or -1 when out is full, when the event is not enriched (no
 * id or timestamp), or when a value cannot be encoded (nesting past
 * LIMIT_EVENT_DEPTH + 1, a string that is not a C string, a non-finite
 * number); out is then left as it was.
 */
int events_canonical(const struct ingest_event *e, struct buf *out);

/* Appends the canonical encoding of one JSON value (the rules of
 * docs/hash-chain.md for data, metadata and tags). Same returns. */
int events_canonical_json(const json_t *v, struct buf *out);

/* Appends the canonical text of a real number ("0.1", "1e+21", "-0.0"). */
int events_canonical_real(double d, struct buf *out);

/* The same, recording where the data, metadata and tags values start
 * (offsets from the start of the event's canonical form) and their lengths. */
int events_canonical_spans(const struct ingest_event *e, struct buf *out, struct events_span *data,
                           struct events_span *metadata, struct events_span *tags);

/* out = SHA-256(prev || canon). out may alias prev. */
void events_chain_hash(const uint8_t prev[EVENT_HASH_LEN], const struct buf *canon,
                       uint8_t out[EVENT_HASH_LEN]);
void events_chain_hash_raw(const uint8_t prev[EVENT_HASH_LEN], const void *canon, size_t len,
                           uint8_t out[EVENT_HASH_LEN]);

#endif
