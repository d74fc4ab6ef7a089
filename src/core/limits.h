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

/* --- Ingestion: the event contract (domain/events.c, docs/events.md) ----- */
/* The body limit of the ingestion routes is LIMIT_BODY_INGEST above (config
 * http.ingest_body_max); every limit below is a property of the contract and
 * not configurable, so the same batch is valid on every keel. Lengths are in
 * UTF-8 bytes, like every length in docs/errors.md. */

/* Events in one batch: one batch is one slot in the writer's group commit and
 * one response listing per-event results; clients with more split them. */
#define LIMIT_INGEST_BATCH_EVENTS 100
/* Nesting depth of a whole ingestion body, checked before any event is
 * looked at: above the per-event depth below plus the envelope (body, events
 * array, event) so that an event that is merely too deep gets its own error
 * (and the others are kept), while an absurd body is refused whole. */
#define LIMIT_INGEST_BODY_DEPTH 64
/* Errors listed per event in the response: enough to fix an event in one
 * round trip; 100 events of garbage still answer in a few KiB. Past it the
 * event is still rejected and the omission is counted. */
#define LIMIT_INGEST_ERRORS_PER_EVENT 8
/* Event id: a UUID (36) or ULID (26) with room for a client prefix; it is the
 * dedup key of an org, so it is indexed and must stay short. */
#define LIMIT_EVENT_ID_MAX 64
/* Session and agent ids: client-chosen names ("support-bot/eu-1"), indexed
 * and shown in lists. */
#define LIMIT_EVENT_SESSION_ID_MAX 128
#define LIMIT_EVENT_AGENT_ID_MAX   128
/* Timestamp text: the longest RFC 3339 form keel reads (9 fractional digits
 * and an offset) is 35 bytes; anything longer is not a timestamp. */
#define LIMIT_EVENT_TIMESTAMP_MAX 40
/* How far in the future (µs after the received time) a timestamp may lie:
 * tolerates client clock skew, refuses events that would sort after
 * everything still to come. */
#define LIMIT_EVENT_FUTURE_SKEW_US 300000000 /* 5 minutes */
/* data, serialised in the canonical form (docs/hash-chain.md): a generous
 * prompt/response excerpt; whole transcripts belong in object storage. A
 * batch may hold at most LIMIT_BODY_INGEST in all, so not every event of a
 * full batch can be this large. */
#define LIMIT_EVENT_DATA_MAX (32 * 1024)
/* metadata, serialised the same way: labels and correlation ids, not
 * payloads. */
#define LIMIT_EVENT_METADATA_MAX (8 * 1024)
/* Nesting depth of data and of metadata, the object itself being level 1:
 * every consumer (canonical form, storage, exports) recurses over them. */
#define LIMIT_EVENT_DEPTH 32
/* Tags per event and bytes per tag: short labels used as list filters. */
#define LIMIT_EVENT_TAGS    32
#define LIMIT_EVENT_TAG_MAX 64
/* llm_call provider ("openai", "bedrock") and model: model names with a host
 * prefix or an inference-profile ARN run past 100 bytes. */
#define LIMIT_EVENT_PROVIDER_MAX 64
#define LIMIT_EVENT_MODEL_MAX    256
/* tool_* tool name and call id: identifiers, not text. */
#define LIMIT_EVENT_TOOL_NAME_MAX 128
#define LIMIT_EVENT_CALL_ID_MAX   128
/* tool_* error text: a message and a short trace; longer output belongs in
 * data under another name (still bounded by LIMIT_EVENT_DATA_MAX). */
#define LIMIT_EVENT_ERROR_MAX 4096
/* Token counts of one llm_call: a billion tokens is orders of magnitude past
 * any context window, and keeps sums over a session far from int64 limits. */
#define LIMIT_EVENT_TOKENS_MAX 1000000000
/* latency_ms / duration_ms: one week; more is a unit mix-up (µs or ns). */
#define LIMIT_EVENT_DURATION_MS_MAX 604800000
/* Client-supplied cost_usd: a million dollars for one call is a unit error;
 * in nano-USD (the internal money unit) it is 10^15, far from int64 limits. */
#define LIMIT_EVENT_COST_NUSD_MAX 1000000000000000LL
/* cost_usd given as a decimal string ("0.000123"): digits, one point. */
#define LIMIT_EVENT_COST_TEXT_MAX 32

/* Distinct tags kept on a session row (the union of its events' tags): a
 * long session must not grow its row without bound; past this, new tags are
 * dropped from the session (they stay on their events). */
#define LIMIT_SESSION_TAGS 64
/* Bytes of one event's canonical form or stored JSON column while appending:
 * the whole ingestion body bounds it, with room for the escaping. */
#define LIMIT_EVENT_CANONICAL_MAX (2 * LIMIT_BODY_INGEST)

/* --- Worker pool -------------------------------------------------------- */

/* Queued blocking jobs waiting for a worker before the server answers 503:
 * bounded memory under overload. */
#define LIMIT_WORKER_QUEUE_MAX 65536

/* --- Model prices (domain/pricing.c, cli_prices.c) ---------------------- */

/* Model names and aliases, in bytes: the llm_call model limit (host-qualified
 * and inference-profile names run past 100 bytes); a longer name is priced
 * as unknown. */
#define LIMIT_PRICE_MODEL_MAX 256
/* Provider names ("openai", "bedrock"): short identifiers. */
#define LIMIT_PRICE_PROVIDER_MAX 64
/* One price, in USD per million tokens: list prices stay below $1 000;
 * anything near this bound is a unit mistake in the file. */
#define LIMIT_PRICE_USD_PER_MTOK_MAX 1000000
/* Token counts of one call: orders of magnitude beyond any context window,
 * and small enough that tokens x price stays exact in int64 arithmetic. */
#define LIMIT_PRICE_TOKENS_MAX 1000000000000LL
/* Aliases per model and tiers per row: a handful in practice. */
#define LIMIT_PRICE_ALIASES_MAX 32
#define LIMIT_PRICE_TIERS_MAX   8
/* Rows in one price table (built-in, file, or one org's section): a LiteLLM
 * file holds a few thousand chat models. */
#define LIMIT_PRICE_ROWS_MAX 50000
/* Orgs with their own prices in the override file. */
#define LIMIT_PRICE_ORGS_MAX 10000

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

/* --- Session authentication cache (api/authcache.c) ----------------------- */

/* Each table is bounded by entries and by bytes; past either bound the least
 * recently used entries are evicted (and re-read on their next use), so a
 * node with more active sessions than this only pays store lookups.
 * Verified session tokens: ~1 KiB each (the signed part of the token and
 * its decoded claims), ~4 KiB for a cookie listing 30 orgs. */
#define AUTHCACHE_SESSIONS_MAX   16384
#define AUTHCACHE_SESSIONS_BYTES (16 * 1024 * 1024)
/* Users' session state (id, email, name, flags, session version): ~0.3 KiB. */
#define AUTHCACHE_USERS_MAX   16384
#define AUTHCACHE_USERS_BYTES (4 * 1024 * 1024)
/* Memberships (user, org as named in the request): the org with its
 * settings (up to LIMIT_ORG_SETTINGS_MAX) and its rendered JSON, so the byte
 * bound is what holds in the worst case (~450 entries of maximal settings). */
#define AUTHCACHE_MEMBERSHIPS_MAX   16384
#define AUTHCACHE_MEMBERSHIPS_BYTES (16 * 1024 * 1024)
/* How long a cached user or membership may stand in for the store (µs).
 * Changes written by this process apply at once (the store's write
 * generation); this bounds how late a change written by another process
 * (the CLI, another node) is seen. */
#define AUTHCACHE_MAX_AGE_US 1000000

/* Dead letters are kept for a week: long enough to notice (an alert on the
 * depth) and replay after an outage, short enough that a broken client does
 * not fill the disk. */
#define LIMIT_DEAD_LETTER_TTL_US (7LL * 24 * 3600 * 1000000)

#endif
