/*
 * store/telemetry.h — reading ingested sessions and events (R-QRY-1, R-QRY-2,
 * R-QRY-7): the lists behind GET /v1/sessions and GET /v1/events, one session
 * or event, a session's events in chain order, and the recomputation of a
 * session's hash chain (docs/hash-chain.md).
 *
 * Every query is scoped by the org and walks an index that starts with
 * org_id, in the order of the answer, so a page costs about its own rows:
 *   - sessions newest first, (started_at DESC, id DESC): sessions_started
 *     (migration 0007);
 *   - events newest first, (ts DESC, id DESC): events_type_ts with a type,
 *     else events_agent_ts with an agent, else events_ts, each read
 *     backwards; with a session, events_session_seq then a sort of that
 *     session's events (bounded by the session, not the org);
 *   - a session's events by seq: events_session_seq.
 * Filters that no chosen index serves (an event's severity; a session's
 * agent, status and tag; the second of type and agent) are checked row by
 * row as the index is walked. To keep a page's cost bounded whatever the
 * filter, a list examines at most TELEMETRY_SCAN_MAX rows: a rare value can
 * then leave a page short (even empty) with a position to continue from.
 *
 * Rows are handed to a callback one at a time; their strings and slices are
 * borrowed from the statement and valid during the call only. Nothing here
 * allocates per row beyond the verifier's parse of one event at a time.
 * Thread-safety: as the transaction (a store_read job).
 */
#ifndef KEEL_STORE_TELEMETRY_H
#define KEEL_STORE_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ids.h"
#include "core/limits.h"
#include "core/slice.h"
#include "domain/events.h"
#include "store/store.h"

/* Rows a list examines per page at most (matching or not). A row costs one
 * index entry and, for a filter the index does not hold, one table lookup:
 * 1 to 3 µs on a warm cache (measured with a million events), so a page
 * stays within a few milliseconds however rare the filtered value. */
#define TELEMETRY_SCAN_MAX 2000

/* The longest id a list position holds: a session id (events' ids are
 * shorter). */
#define TELEMETRY_KEY_ID_MAX LIMIT_EVENT_SESSION_ID_MAX

/* One stored event. */
struct telemetry_event {
  const char *id;
  const char *session_id;
  const char *agent_id;
  const char *type;     /* wire name, "llm_call" */
  const char *severity; /* wire name, "info" */
  int64_t ts_us;        /* the event's timestamp */
  int64_t received_us;
  struct slice data;            /* canonical JSON object (docs/hash-chain.md) */
  struct slice metadata;        /* canonical JSON object */
  struct slice tags;            /* canonical JSON array of strings */
  char api_key_id[ID_STR_SIZE]; /* "" when not ingested through a key */
  int64_t cost_nano;
  unsigned cost_flags; /* domain/pricing.h enum pricing_flag bits */
  int64_t seq;         /* 1-based position in the session's chain */
  uint8_t hash[EVENT_HASH_LEN];
  /* The hash of the event before it in the session (zeros for the first):
   * not stored, read from that event. */
  uint8_t prev_hash[EVENT_HASH_LEN];
};

/* One session row. */
struct telemetry_session {
  const char *id;
  const char *agent_id;
  const char *status; /* active | completed | error */
  int64_t started_us;
  int64_t ended_us; /* valid when ended */
  bool ended;
  int64_t event_count, tool_count, error_count, llm_count;
  int64_t input_tokens, output_tokens, reasoning_tokens, cache_read_tokens, cache_write_tokens;
  int64_t cost_nano;
  struct slice tags; /* canonical JSON array of strings */
  int64_t chain_seq; /* seq of the last event */
  uint8_t chain_head[EVENT_HASH_LEN];
  int64_t updated_us;
};

/* A position in a newest-first list: a row's time and id. */
struct telemetry_key {
  int64_t us;
  char id[TELEMETRY_KEY_ID_MAX + 1];
};

/* One page of a newest-first list. */
struct telemetry_page {
  /* In. */
  int64_t limit;              /* rows wanted, 1..LIMIT_PAGE_MAX */
  bool has_after;             /* continue after `after` (a cursor) */
  struct telemetry_key after; /* rows strictly after this position */
  /* Out. */
  size_t rows;               /* rows given to the callback */
  bool more;                 /* rows may follow: continue after `next` */
  struct telemetry_key next; /* the last row given, or the last examined */
};

/* Event filters; NULL / false: any. Values are exact (ids, wire names). */
struct telemetry_event_filter {
  const char *type;
  const char *session_id;
  const char *agent_id;
  const char *severity;
  bool has_from, has_to;
  int64_t from_us; /* ts >= from (inclusive) */
  int64_t to_us;   /* ts < to (exclusive) */
};

/* Session filters; NULL / false: any. */
struct telemetry_session_filter {
  const char *agent_id;
  const char *status;
  const char *tag; /* sessions whose tags hold this exact string */
  bool has_from, has_to;
  int64_t from_us; /* started_at >= from */
  int64_t to_us;   /* started_at < to */
};

/* A callback's non-zero return stops the walk and is returned. */
typedef int (*telemetry_event_fn)(const struct telemetry_event *e, void *arg);
typedef int (*telemetry_session_fn)(const struct telemetry_session *s, void *arg);

/*
 * Events matching f, newest first (ts DESC, id DESC), after page->after when
 * page->has_after: fn is called for at most page->limit rows, then
 * page->rows, ->more and ->next are set. more is false only when the walk
 * reached the end of the list. Returns 0, fn's non-zero result, or a store
 * status.
 */
int store_telemetry_events_list(struct store_tx *tx, const struct org_scope *scope,
                                const struct telemetry_event_filter *f, struct telemetry_page *page,
                                telemetry_event_fn fn, void *arg);

/* Sessions matching f, newest first (started_at DESC, id DESC); the page as
 * above. */
int store_telemetry_sessions_list(struct store_tx *tx, const struct org_scope *scope,
                                  const struct telemetry_session_filter *f,
                                  struct telemetry_page *page, telemetry_session_fn fn, void *arg);

/* One event / one session by id: fn is called once. KEEL_ENOTFOUND when the
 * org has no such row. */
int store_telemetry_event_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                              telemetry_event_fn fn, void *arg);
int store_telemetry_session_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                                telemetry_session_fn fn, void *arg);

/* A page of a session's events in chain order (seq ascending). */
struct telemetry_seq_page {
  /* In. */
  int64_t limit;     /* rows wanted, >= 1 */
  int64_t after_seq; /* rows with seq > after_seq (0: from the start) */
  /* Out. */
  size_t rows;
  bool more;        /* rows follow: continue after next_seq */
  int64_t next_seq; /* seq of the last row given */
};

/* The session's events after page->after_seq, at most page->limit, in seq
 * order. Returns 0, fn's non-zero result, or a store status (an unknown
 * session simply has no events). */
int store_telemetry_session_events(struct store_tx *tx, const struct org_scope *scope,
                                   const char *session_id, struct telemetry_seq_page *page,
                                   telemetry_event_fn fn, void *arg);

/* The result of recomputing a session's chain. */
struct telemetry_verify {
  bool valid;
  int64_t events;          /* events read, the failing one included */
  int64_t failed_at_index; /* 0-based position in seq order; -1 when valid */
  /* NULL when valid, else one of: "hash_mismatch" (the recomputed hash
   * differs: the event was changed, or events were reordered),
   * "missing_event" (a gap in seq, or fewer events than the session's
   * head counts), "head_mismatch" (the session's chain head does not name
   * the last event), "seq_mismatch" (a seq below its position),
   * "malformed_event" (a stored event cannot be read back). */
  const char *reason;
  int64_t chain_seq;                  /* the session row's head: seq … */
  uint8_t chain_head[EVENT_HASH_LEN]; /* … and hash */
};

/*
 * Recomputes the session's hash chain from the stored rows, streaming them
 * in seq order (one event in memory at a time): each event's canonical form
 * is rebuilt from its columns (events_canonical) and hashed after the hash
 * of the event before it; the first failure is reported. Then the session
 * row's chain_seq / chain_head must name the last event. Returns 0 (out
 * filled), KEEL_ENOTFOUND when the org has no such session, or a store
 * status.
 */
int store_telemetry_session_verify(struct store_tx *tx, const struct org_scope *scope,
                                   const char *session_id, struct telemetry_verify *out);

#endif
