/*
 * store/events.h — ingested events and their sessions (tables events,
 * sessions, dead_letters; migration 0004).
 *
 * store_events_append runs inside a write transaction (a store_write or
 * store_write_async job: on the single SQLite writer, so nothing else writes
 * between its reads and writes). For each event it deduplicates by
 * (org_id, id), links the event into its session's hash chain
 * (docs/hash-chain.md) and keeps the session row current. Events arrive
 * validated and enriched (domain/events.h: events_parse, events_enrich).
 *
 * Thread-safety: as the transaction it runs in. Strings and events are
 * borrowed for the call.
 */
#ifndef KEEL_STORE_EVENTS_H
#define KEEL_STORE_EVENTS_H

#include <stddef.h>

#include "domain/events.h"
#include "store/store.h"

/* What became of one event of a batch. */
enum store_append_outcome {
  STORE_APPEND_SKIPPED,   /* not valid (ingest_event.valid false): not stored */
  STORE_APPEND_ACCEPTED,  /* stored and linked into its session's chain */
  STORE_APPEND_DUPLICATE, /* its id was already stored for the org (or earlier in the batch) */
};

struct store_append_result {
  /* In: the API key recorded on every new event (NULL: none). */
  const char *api_key_id;
  /* In: n entries of the caller's memory, filled with each event's outcome
   * in batch order; may be NULL when only the counts are wanted. */
  enum store_append_outcome *outcomes;
  /* Out. */
  size_t accepted;
  size_t duplicates;
};

/*
 * Appends events[0..n) for the org, in order. For each valid event:
 *  - an id already stored for the org (including by an earlier event of this
 *    batch) → DUPLICATE, nothing written;
 *  - otherwise the session row is created on the session's first event, the
 *    event is inserted with seq = chain_seq + 1, prev_hash = the chain head
 *    and hash = SHA-256(prev_hash || events_canonical(event)), and the
 *    session's counters, token sums (llm_call), cost, tags (union, at most
 *    LIMIT_SESSION_TAGS), started_at / ended_at / status and chain head move
 *    on. The cost of an llm_call is priced here (pricing_cost at the event's
 *    time with the org's prices; a client-supplied cost wins and is flagged).
 * Returns 0 (res filled), KEEL_EINVAL when a valid event is not enriched or
 * cannot be put in canonical form, or a store status. On error the caller
 * must roll back (return the status from the transaction function): earlier
 * events of the batch may have been written.
 */
int store_events_append(struct store_tx *tx, const struct org_scope *scope,
                        struct ingest_event *events, size_t n, struct store_append_result *res);

#endif
