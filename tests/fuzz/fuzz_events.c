/*
 * fuzz_events.c — libFuzzer driver for the ingestion body parser and
 * validator (attacker-controlled bodies) and the canonical form.
 *
 * Each input is parsed both as a batch body and as a single event. Beyond
 * "no crash, no sanitizer report" it checks the invariants the pipeline
 * relies on, and aborts when one breaks:
 *  - rejected counts exactly the invalid events, every error names an event
 *    of the batch, no event lists more than LIMIT_INGEST_ERRORS_PER_EVENT;
 *  - a body refused as a whole has a problem code and no events;
 *  - every valid event, once enriched, has a canonical form; that form is
 *    JSON whose data member re-encodes to the same bytes (the canonical form
 *    is a fixed point, which exercises the number encoding's round trip);
 *  - duplicate detection points each duplicate at an earlier event with the
 *    same id.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/limits.h"
#include "domain/events.h"
#include "domain/pricing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)       \
  do {                    \
    if (!(cond)) abort(); \
  } while (0)

/* 2026-03-01T12:00:00Z */
#define FUZZ_RECEIVED_US INT64_C(1772366400000000)

static void check_canonical(const struct ingest_event *e) {
  struct buf canon, again;
  uint8_t prev[EVENT_HASH_LEN] = {0}, h[EVENT_HASH_LEN];
  json_error_t err;

  buf_init(&canon, LIMIT_BODY_INGEST);
  CHECK(events_canonical(e, &canon) == 0);
  events_chain_hash(prev, &canon, h);

  json_t *parsed = json_loadb(canon.data, canon.len, JSON_REJECT_DUPLICATES, &err);
  CHECK(parsed != NULL);
  buf_init(&again, LIMIT_BODY_INGEST);
  CHECK(events_canonical_json(json_object_get(parsed, "data"), &again) == 0);
  if (e->data != NULL) {
    struct buf direct;
    buf_init(&direct, LIMIT_BODY_INGEST);
    CHECK(events_canonical_json(e->data, &direct) == 0);
    CHECK(direct.len == again.len && memcmp(direct.data, again.data, again.len) == 0);
    buf_free(&direct);
  } else {
    CHECK(again.len == 2 && memcmp(again.data, "{}", 2) == 0);
  }
  buf_free(&again);
  json_decref(parsed);
  buf_free(&canon);
}

/* events_prepare: the stored canonical form is events_canonical's, and the
 * column spans are the canonical data, metadata and tags. */
static void check_span(const struct ingest_event *e, struct events_span sp, const json_t *v,
                       const char *empty) {
  struct buf want;
  buf_init(&want, LIMIT_BODY_INGEST);
  if (v != NULL) {
    CHECK(events_canonical_json(v, &want) == 0);
  } else {
    CHECK(buf_append_cstr(&want, empty) == 0);
  }
  CHECK(sp.off + sp.len <= e->canon_len);
  CHECK(sp.len == want.len && memcmp(e->canon + sp.off, want.data, want.len) == 0);
  buf_free(&want);
}

static void check_prepared(const struct ingest_event *e) {
  struct buf canon;
  buf_init(&canon, LIMIT_BODY_INGEST);
  CHECK(e->prepared && e->canon != NULL);
  CHECK(events_canonical(e, &canon) == 0);
  CHECK(canon.len == e->canon_len && memcmp(canon.data, e->canon, canon.len) == 0);
  buf_free(&canon);
  check_span(e, e->canon_data, e->data, "{}");
  check_span(e, e->canon_metadata, e->metadata, "{}");
  check_span(e, e->canon_tags, e->tags, "[]");
  CHECK(e->cost_nano >= 0);
}

static void run(const uint8_t *data, size_t size, enum events_entry entry) {
  struct events_parse_opts opts = {.entry = entry, .received_us = FUZZ_RECEIVED_US};
  struct ingest_batch b;
  int rc = events_parse(slice_make((const char *)data, size), &opts, &b);

  if (rc != 0) {
    CHECK(b.problem != NULL && b.count == 0 && b.error_count == 0);
    events_batch_free(&b);
    return;
  }
  CHECK(b.problem == NULL && b.count >= 1 && b.count <= LIMIT_INGEST_BATCH_EVENTS);
  size_t invalid = 0;
  for (size_t i = 0; i < b.count; i++) invalid += !b.events[i].valid;
  CHECK(invalid == b.rejected);
  size_t per_event = 0;
  for (size_t i = 0; i < b.error_count; i++) {
    const struct ingest_error *e = &b.errors[i];
    CHECK(e->index < b.count && !b.events[e->index].valid);
    CHECK(e->field != NULL && e->code != NULL && e->message != NULL);
    per_event = i > 0 && b.errors[i - 1].index == e->index ? per_event + 1 : 1;
    CHECK(per_event <= LIMIT_INGEST_ERRORS_PER_EVENT);
    CHECK(i == 0 || b.errors[i - 1].index <= e->index);
  }

  events_enrich(&b);
  for (size_t i = 0; i < b.count; i++) {
    if (b.events[i].valid) check_canonical(&b.events[i]);
  }
  events_prepare(&b, "01a20000-0000-7000-8000-000000000001");
  for (size_t i = 0; i < b.count; i++) {
    if (b.events[i].valid) check_prepared(&b.events[i]);
  }

  size_t first_of[LIMIT_INGEST_BATCH_EVENTS];
  size_t dups = events_find_duplicates(&b, first_of), seen = 0;
  for (size_t i = 0; i < b.count; i++) {
    if (first_of[i] == SIZE_MAX) continue;
    seen++;
    CHECK(first_of[i] < i && b.events[i].valid && !b.events[i].id_generated);
    CHECK(strcmp(b.events[first_of[i]].id, b.events[i].id) == 0);
  }
  CHECK(seen == dups);
  events_batch_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    CHECK(crypto_init() == 0); /* generated ids draw random bits */
    char err[256];
    CHECK(pricing_load(NULL, err, sizeof(err)) == 0); /* events_prepare prices llm_calls */
    ready = 1;
  }
  run(data, size, EVENTS_ENTRY_BATCH);
  run(data, size, EVENTS_ENTRY_SINGLE);
  return 0;
}
