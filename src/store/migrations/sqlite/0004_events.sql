-- keel schema v4 (SQLite): ingested events, sessions, dead letters (R-ING-*).
-- Every table is tenant data keyed by (org_id, ...), and every index starts
-- with org_id, so each query stays inside one org's range of the b-trees.
-- Times are INTEGER microseconds since the Unix epoch (UTC). Money is
-- INTEGER nano-USD. data, metadata and tags hold the canonical JSON of the
-- event (docs/hash-chain.md), so the chain can be recomputed from the rows.
-- No foreign key to orgs: the writer inserts these on the hot path and the
-- org is established by the API key that authenticated the batch.
CREATE TABLE events (
  org_id TEXT NOT NULL,
  id TEXT NOT NULL,                  -- the client's id, or a generated UUIDv7
  session_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  type TEXT NOT NULL,
  ts INTEGER NOT NULL,               -- the event's timestamp
  received_at INTEGER NOT NULL,
  severity TEXT NOT NULL,
  data TEXT NOT NULL,                -- canonical JSON object
  metadata TEXT NOT NULL,            -- canonical JSON object
  tags TEXT NOT NULL,                -- canonical JSON array of strings
  api_key_id TEXT,                   -- NULL: not ingested through a key
  cost_nano INTEGER NOT NULL DEFAULT 0,
  cost_flags INTEGER NOT NULL DEFAULT 0, -- domain/pricing.h enum pricing_flag bits
  seq INTEGER NOT NULL,              -- 1-based position in the session's chain
  prev_hash BLOB NOT NULL,           -- 32 bytes; zeros for a session's first event
  hash BLOB NOT NULL,                -- SHA-256(prev_hash || canonical(event))
  PRIMARY KEY (org_id, id)           -- the dedup key
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX events_session_seq ON events(org_id, session_id, seq);
CREATE INDEX events_ts ON events(org_id, ts);
CREATE INDEX events_type_ts ON events(org_id, type, ts);
CREATE INDEX events_agent_ts ON events(org_id, agent_id, ts);

-- One row per session, kept current by every append.
CREATE TABLE sessions (
  org_id TEXT NOT NULL,
  id TEXT NOT NULL,
  agent_id TEXT NOT NULL,            -- the agent of the session's first event
  started_at INTEGER NOT NULL,
  ended_at INTEGER,                  -- NULL until a session_end
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'error')),
  event_count INTEGER NOT NULL DEFAULT 0,
  tool_count INTEGER NOT NULL DEFAULT 0,
  error_count INTEGER NOT NULL DEFAULT 0,
  llm_count INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  reasoning_tokens INTEGER NOT NULL DEFAULT 0,
  cache_read_tokens INTEGER NOT NULL DEFAULT 0,
  cache_write_tokens INTEGER NOT NULL DEFAULT 0,
  cost_nano INTEGER NOT NULL DEFAULT 0,
  tags TEXT NOT NULL DEFAULT '[]',   -- union of the events' tags, bounded
  chain_seq INTEGER NOT NULL DEFAULT 0,  -- seq of the last event
  chain_head BLOB NOT NULL,          -- hash of the last event (zeros: none)
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (org_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_started ON sessions(org_id, started_at DESC);

-- Events that passed validation but could not be stored; replayable.
CREATE TABLE dead_letters (
  org_id TEXT NOT NULL,
  id TEXT NOT NULL,                  -- UUIDv7
  received_at INTEGER NOT NULL,
  error TEXT NOT NULL,
  payload TEXT NOT NULL,             -- the event as JSON
  PRIMARY KEY (org_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX dead_letters_received ON dead_letters(received_at);
