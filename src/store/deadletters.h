/*
 * store/deadletters.h — events that passed validation but could not be
 * stored (table dead_letters; migrations 0004 and 0005).
 *
 * The ingestion pipeline (api/ingest.c) writes one row per event whose
 * append failed, holding the event's canonical form (docs/hash-chain.md: a
 * JSON object that events_parse reads back as a single event), the error,
 * and what enrichment knew (received time, API key). Rows are replayed
 * (appended again, the row deleted in the same transaction), deleted by an
 * administrator, or expired after LIMIT_DEAD_LETTER_TTL_US by a job.
 *
 * Every function on a row takes the org scope; the expiry and the count
 * used by /readyz and /metrics are platform-wide.
 *
 * Thread-safety: as the transaction the functions run in. Strings passed in
 * are borrowed for the call.
 */
#ifndef KEEL_STORE_DEADLETTERS_H
#define KEEL_STORE_DEADLETTERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"
#include "store/store.h"

/* A dead letter to write; strings borrowed for the call. */
struct dead_letter_in {
  const char *event_id; /* the event's id (client's or generated) */
  const char *session_id;
  const char *type;       /* event type name */
  const char *api_key_id; /* NULL: not ingested through a key */
  int64_t received_at;    /* µs: the batch's received time */
  const char *error;      /* why the append failed: no secrets, no SQL */
  const char *payload;    /* the event's canonical JSON */
  size_t payload_len;
};

/* Inserts one row with a new UUIDv7 id (written to id_out when not NULL)
 * and failed_at = now. Returns 0 or a store status. */
int store_dead_letter_put(struct store_tx *tx, const struct org_scope *scope,
                          const struct dead_letter_in *in, char *id_out);

/* The longest error kept in a row as read back (errors are keel's own short
 * sentences; a longer one is cut at a character boundary). */
#define DEAD_LETTER_ERROR_MAX 256
/* Event type names are short identifiers ("health_check"). */
#define DEAD_LETTER_TYPE_MAX 32

/* A dead letter as read. */
struct dead_letter_row {
  char id[ID_STR_SIZE];
  char event_id[LIMIT_EVENT_ID_MAX + 1];
  char session_id[LIMIT_EVENT_SESSION_ID_MAX + 1];
  char type[DEAD_LETTER_TYPE_MAX];
  char api_key_id[ID_STR_SIZE]; /* "" when the event came without a key */
  char error[DEAD_LETTER_ERROR_MAX];
  int64_t received_at; /* µs */
  int64_t failed_at;   /* µs: the last failed attempt */
  int64_t attempts;    /* 1 for the ingestion; +1 per failed replay */
  /* The canonical JSON. In a list callback: borrowed, valid during the
   * call only. From store_dead_letter_get: NULL (it goes into a buf). */
  const char *payload;
  size_t payload_len;
};

/* A position in an org's list, newest first: the last row of a page. */
struct dead_letter_pos {
  int64_t received_at;
  char id[ID_STR_SIZE];
};

/* Called for each row of a list; a non-zero return stops the walk and is
 * returned by the list function. */
typedef int (*dead_letter_row_fn)(const struct dead_letter_row *row, void *arg);

/*
 * The org's dead letters newest first, by (received_at DESC, id DESC) —
 * index dead_letters_org_received — starting after *after (NULL: from the
 * newest), at most limit rows. Returns 0, fn's non-zero return, or a store
 * status.
 */
int store_dead_letters_list(struct store_tx *tx, const struct org_scope *scope,
                            const struct dead_letter_pos *after, int64_t limit,
                            dead_letter_row_fn fn, void *arg);

/* One row of the org. payload (may be NULL) receives the canonical JSON,
 * appended. Returns 0, KEEL_ENOTFOUND (no such row in this org),
 * KEEL_ETOOBIG (payload over its buf's maximum) or a store status. */
int store_dead_letter_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                          struct dead_letter_row *out, struct buf *payload);

/* Deletes one row of the org. Returns 0, KEEL_ENOTFOUND or a store status. */
int store_dead_letter_delete(struct store_tx *tx, const struct org_scope *scope, const char *id);

/* Records a failed replay: attempts + 1, error, failed_at = failed_at_us.
 * Returns 0, KEEL_ENOTFOUND or a store status. */
int store_dead_letter_record_failure(struct store_tx *tx, const struct org_scope *scope,
                                     const char *id, const char *error, int64_t failed_at_us);

/*
 * Platform-wide: deletes at most max_rows rows (all orgs) received before
 * cutoff_us (strictly), oldest first through index dead_letters_received.
 * *deleted (may be NULL) gets how many. Callers run it in chunks, one write
 * transaction each, until fewer than max_rows go, so the single writer is
 * never held long. Returns 0 or a store status.
 */
int store_dead_letters_expire(struct store_tx *tx, int64_t cutoff_us, int64_t max_rows,
                              int64_t *deleted);

/* Platform-wide: the number of rows (the depth gauge). Returns 0 or a store
 * status. */
int store_dead_letters_count(struct store_tx *tx, int64_t *count);

#endif
