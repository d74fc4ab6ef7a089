-- keel schema v8 (SQLite): usage metering (R-MTR-2..5).
--
-- usage_hourly: what the org's accepted events added, per UTC hour of their
-- received time, API key, agent and model. The writer upserts it in the same
-- transaction as the events (store/usage.c), so it never disagrees with the
-- events table. The table is small (rows per org per hour, not per event),
-- so org_id is TEXT like the other small tables, not the 16-byte blob of
-- the events table. '' stands for "none" in api_key_id (not through a key)
-- and model (not an llm_call), so the key columns are never NULL.
CREATE TABLE usage_hourly (
  org_id TEXT NOT NULL,
  hour INTEGER NOT NULL,             -- µs, start of the UTC hour (received time)
  api_key_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  model TEXT NOT NULL,
  events INTEGER NOT NULL,
  llm_calls INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL,
  cache_read_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL,
  cost_nano INTEGER NOT NULL,
  stored_bytes INTEGER NOT NULL,     -- canonical bytes of the events
  PRIMARY KEY (org_id, hour, api_key_id, agent_id, model)
) STRICT, WITHOUT ROWID;

-- Quota notifications (80 % and 100 %): one row per org, period and
-- threshold — the unique key is what makes the mail to the owners, written
-- in the same transaction, go out at most once.
CREATE TABLE usage_notifications (
  org_id TEXT NOT NULL,
  period_start INTEGER NOT NULL,     -- µs
  threshold INTEGER NOT NULL,        -- percent of the quota: 80 | 100
  id TEXT NOT NULL,
  quota INTEGER NOT NULL,
  used INTEGER NOT NULL,             -- events counted when it was raised
  created_at INTEGER NOT NULL,
  PRIMARY KEY (org_id, period_start, threshold)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_notifications_created ON usage_notifications(org_id, created_at DESC, id DESC);
