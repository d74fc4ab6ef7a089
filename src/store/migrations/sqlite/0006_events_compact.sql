-- keel schema v6 (SQLite): a smaller events table (≤ 1 KiB per 600-byte
-- event, indexes included). The org and API key ids are stored as their 16
-- raw bytes (BLOB; PostgreSQL: uuid) instead of 36 characters of text: the
-- org id is repeated in the table and in every index. prev_hash is gone: it
-- is the hash of the event before in the session (seq - 1), which the chain
-- verifier recomputes anyway.
CREATE TABLE events_v6 (
  org_id BLOB NOT NULL,              -- 16 bytes
  id TEXT NOT NULL,                  -- the client's id, or a generated UUIDv7
  session_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  type TEXT NOT NULL,
  ts INTEGER NOT NULL,               -- the event's timestamp (µs)
  received_at INTEGER NOT NULL,
  severity TEXT NOT NULL,
  data TEXT NOT NULL,                -- canonical JSON object
  metadata TEXT NOT NULL,            -- canonical JSON object
  tags TEXT NOT NULL,                -- canonical JSON array of strings
  api_key_id BLOB,                   -- 16 bytes; NULL: not ingested through a key
  cost_nano INTEGER NOT NULL DEFAULT 0,
  cost_flags INTEGER NOT NULL DEFAULT 0,
  seq INTEGER NOT NULL,              -- 1-based position in the session's chain
  hash BLOB NOT NULL,                -- SHA-256(hash of seq - 1, or zeros || canonical(event))
  PRIMARY KEY (org_id, id)
) STRICT, WITHOUT ROWID;
-- No keel release could store events before this schema (the ingestion
-- routes arrive with it), so the old table is empty; the guard makes the
-- migration fail rather than drop rows if it is not.
CREATE TEMP TABLE migration_0006_guard (rows INTEGER CHECK (rows = 0));
INSERT INTO migration_0006_guard SELECT count(*) FROM events;
DROP TABLE migration_0006_guard;
DROP TABLE events;
ALTER TABLE events_v6 RENAME TO events;
CREATE UNIQUE INDEX events_session_seq ON events(org_id, session_id, seq);
CREATE INDEX events_ts ON events(org_id, ts);
CREATE INDEX events_type_ts ON events(org_id, type, ts);
CREATE INDEX events_agent_ts ON events(org_id, agent_id, ts);
