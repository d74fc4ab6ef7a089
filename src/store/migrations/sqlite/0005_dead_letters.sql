-- keel schema v5 (SQLite): what a dead letter needs to be listed, filtered
-- and replayed (R-ING-6). The payload is the event's canonical JSON
-- (docs/hash-chain.md); these columns repeat what the list shows without
-- parsing it, and keep what enrichment knew (the API key) for the replay.
ALTER TABLE dead_letters ADD COLUMN event_id TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN type TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN api_key_id TEXT;
ALTER TABLE dead_letters ADD COLUMN failed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
-- The org's list, newest first.
CREATE INDEX dead_letters_org_received ON dead_letters(org_id, received_at DESC, id DESC);
