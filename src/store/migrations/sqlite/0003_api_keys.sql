-- keel schema v3 (SQLite): API keys (R-KEY-1..6).
-- The key itself is never stored: key_hash is HMAC-SHA-256 of the full key
-- under a key derived from the server secret (domain/apikeys.h). Lookups on
-- the request path go by key_hash (unique index); management by (org_id, id).
-- Times are INTEGER microseconds since the Unix epoch (UTC).
CREATE TABLE api_keys (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,                    -- UUIDv7
  name TEXT NOT NULL,
  environment TEXT NOT NULL
    CHECK (environment IN ('production', 'staging', 'development', 'test')),
  live INTEGER NOT NULL CHECK (live IN (0, 1)),   -- kl_live_ (1) or kl_test_ (0)
  scopes INTEGER NOT NULL CHECK (scopes BETWEEN 1 AND 7), -- 1 ingest | 2 read | 4 admin
  prefix TEXT NOT NULL,                -- the first 12 characters, for display
  key_hash BLOB NOT NULL UNIQUE,
  created_by TEXT REFERENCES users(id), -- NULL: created by the CLI
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,                -- written in batches, at most once a minute
  expires_at INTEGER,
  revoked_at INTEGER,
  rate_limit_per_min INTEGER CHECK (rate_limit_per_min IS NULL OR rate_limit_per_min > 0),
  PRIMARY KEY (org_id, id)
) STRICT;
-- Plan limits count an org's active keys.
CREATE INDEX api_keys_active ON api_keys(org_id, revoked_at);
