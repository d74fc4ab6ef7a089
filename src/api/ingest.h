/*
 * api/ingest.h — the ingestion pipeline's server-wide state (ingest.c).
 *
 * POST /v1/events and /v1/events/batch parse, validate and enrich on a
 * worker thread, then hand the batch to the store writer
 * (store_write_async) and suspend; the writer appends it inside its group
 * transaction and, after the commit, its callback sets the 202 answer and
 * resumes the request. docs/internals/ingest.md tells the whole path.
 */
#ifndef KEEL_API_INGEST_H
#define KEEL_API_INGEST_H

#include <stdint.h>

#include "core/buf.h"

struct api;
struct ingest;

/* Never NULL. */
struct ingest *ingest_start(struct api *api);
/* Frees; ingest_drain must have run when there was traffic. NULL is fine. */
void ingest_stop(struct ingest *in);
struct ingest *api_ingest(const struct api *api);

/*
 * Shutdown step, after the worker pool has drained and before the HTTP
 * server stops: releases batches held by the test hook and waits until every
 * batch handed to the writer has been committed (or dead-lettered) and its
 * request resumed. New batches are refused (503) from then on.
 */
void ingest_drain(struct ingest *in);

/* Events handed to the writer and not yet committed (backpressure). */
int64_t ingest_pending_events(const struct ingest *in);

/* Prometheus text for the area. 0, or -1 when out is full. */
int ingest_render_metrics(const struct ingest *in, struct buf *out);

#endif
