/*
 * limits.h — every limit keel enforces, in one place, each with its reason.
 *
 * A limit here is tested at N (accepted) and N+1 (refused). Limits that an
 * operator may change are the defaults of a config setting (docs/
 * configuration.md names the setting).
 */
#ifndef KEEL_CORE_LIMITS_H
#define KEEL_CORE_LIMITS_H

/* --- HTTP framing ------------------------------------------------------- */

/* Default body limit for JSON API routes: control-plane bodies are small;
 * anything bigger is a mistake or an attack. */
#define LIMIT_BODY_DEFAULT (64 * 1024)
/* Body limit for ingestion routes (config http.ingest_body_max): 100 events
 * of up to ~10 KiB each. */
#define LIMIT_BODY_INGEST (1024 * 1024)
/* Hard ceiling for any configured body limit: keeps per-request memory bounded
 * (bodies are buffered in memory before parsing). */
#define LIMIT_BODY_CEILING (16 * 1024 * 1024)
/* Routes without a body (GET, DELETE) accept none at all. */
#define LIMIT_BODY_NONE 0
/* After a streamed (chunked) body passes its limit, keel reads and discards
 * up to this many further bytes so it can still answer 413 when the body
 * ends (the HTTP library cannot answer mid-body); past that it closes the
 * connection without an answer. Bounds the bandwidth an abuser can waste. */
#define LIMIT_BODY_DISCARD_MAX (4 * 1024 * 1024)
/* Longest request target (path + query) accepted: longer is a 414. Paths with
 * ids and a few filters fit comfortably. */
#define LIMIT_URL_MAX 2048
/* Most query parameters read from one URL (more is a 400). */
#define LIMIT_QUERY_PARAMS_MAX 32
/* Path segments matched by the router: routes are at most 8 deep. */
#define LIMIT_PATH_SEGMENTS_MAX 16
/* X-Request-Id accepted from a client: a sane token of 1..64 chars from
 * [A-Za-z0-9._-]; anything else is replaced by a generated id. */
#define LIMIT_REQUEST_ID_MAX 64
/* Per-request arena block: most requests never need a second block. */
#define LIMIT_ARENA_BLOCK (16 * 1024)
/* Response bodies are built in memory; lists are paged so this is generous. */
#define LIMIT_RESPONSE_MAX (32 * 1024 * 1024)

/* --- Connections (defaults of http.* settings) ------------------------- */

/* Concurrent connections per server: bounded file descriptors and memory. */
#define LIMIT_CONNECTIONS_DEFAULT 4096
/* Concurrent connections from one IP: one client cannot starve the rest. */
#define LIMIT_CONNECTIONS_PER_IP_DEFAULT 256
/* Idle connection timeout (seconds): slowloris protection, keep-alive reuse. */
#define LIMIT_CONNECTION_TIMEOUT_S 30
/* Shutdown: in-flight requests get this long to finish after SIGTERM. */
#define LIMIT_SHUTDOWN_GRACE_S 10

/* --- JSON --------------------------------------------------------------- */

/* Nesting depth of any JSON body: deeper documents are refused (stack and
 * CPU bound for every consumer of the data). */
#define LIMIT_JSON_DEPTH 32

/* --- Lists -------------------------------------------------------------- */

/* Page size: ?limit default and maximum (API.md conventions). */
#define LIMIT_PAGE_DEFAULT 50
#define LIMIT_PAGE_MAX     200
/* Opaque cursors are short base64url strings; longer ones are forged. */
#define LIMIT_CURSOR_MAX 256

/* --- Audit log (api/audit.c) -------------------------------------------- */

/* Entries in one audit export: an entry is 0.5–1 KiB of JSON (with its two
 * hashes), so a full export stays well inside LIMIT_RESPONSE_MAX; a longer
 * range is exported in parts (the export's next_cursor). */
#define LIMIT_AUDIT_EXPORT_ENTRIES 20000
/* Body of one export: a part ends before passing this (entries with large
 * details), leaving headroom under LIMIT_RESPONSE_MAX. */
#define LIMIT_AUDIT_EXPORT_BYTES (24 * 1024 * 1024)

/* --- Organisations and invitations (domain/tenancy.c) ------------------ */
/* Org display name, in characters (UTF-8): fits page titles and switchers. */
#define LIMIT_ORG_NAME_CHARS 100
/* Bytes a name of LIMIT_ORG_NAME_CHARS may take (4 per character) + NUL. */
#define LIMIT_ORG_NAME_SIZE (4 * LIMIT_ORG_NAME_CHARS + 1)
/* Org slugs: 3..48 of [a-z0-9-]: a DNS label (R-TEN-5) with room to spare. */
#define LIMIT_SLUG_MIN 3
#define LIMIT_SLUG_MAX 48
/* The settings document of an org, as compact JSON: small product
 * preferences; versioned tenant configuration (R-TEN-6) lives elsewhere. */
#define LIMIT_ORG_SETTINGS_MAX (16 * 1024)
/* Data rows of one invitation CSV upload: all of them are checked and applied
 * in one write job, so the job stays short. */
#define LIMIT_INVITE_CSV_ROWS 1000

/* --- Worker pool -------------------------------------------------------- */

/* Queued blocking jobs waiting for a worker before the server answers 503:
 * bounded memory under overload. */
#define LIMIT_WORKER_QUEUE_MAX 65536

/* --- API keys and rate limits (domain/apikeys.c, api/keys.c) ------------ */

/* Verified keys cached per process (positive and negative entries): a few
 * hundred bytes each, so ~7 MiB at most; more keys than this in active use
 * on one node only costs store lookups. */
#define APIKEY_CACHE_MAX 16384
/* last_used_at records waiting for the next batch write: at most one per key
 * per minute, flushed every few seconds; past this they are dropped (and
 * counted) rather than grow memory. */
#define APIKEY_TOUCHES_MAX 65536
/* Rate-limiter states (per key and per org) held per process: idle ones are
 * evicted first; a bound keeps memory flat under key churn (~100 B each). */
#define RATELIMIT_KEYS_MAX 262144

#endif
