-- keel schema v9 (SQLite): analytics rollups (R-QRY-3, R-QRY-4, R-QRY-5, R-QRY-7).
-- Kept current by the writer in the same transaction as the events
-- (src/store/rollups.c): one upsert per distinct key per ingestion batch.
-- Every key and index starts with org_id (16 raw bytes, as in events), so
-- each analytics query reads one org's range of one b-tree. Times are
-- INTEGER µs since the Unix epoch, UTC; money INTEGER nano-USD.

-- Per org, hour of the event timestamp, agent, model, provider, API key.
-- model and provider are '' for events other than llm_call; api_key_id is
-- the nil UUID (16 zero bytes) for events ingested through a session.
CREATE TABLE rollup_hourly (
  org_id BLOB NOT NULL,
  hour INTEGER NOT NULL,             -- start of the hour (µs)
  agent_id TEXT NOT NULL,
  model TEXT NOT NULL,
  provider TEXT NOT NULL,
  api_key_id BLOB NOT NULL,
  events INTEGER NOT NULL DEFAULT 0,
  session_starts INTEGER NOT NULL DEFAULT 0,
  session_ends INTEGER NOT NULL DEFAULT 0,
  llm_calls INTEGER NOT NULL DEFAULT 0,
  tool_calls INTEGER NOT NULL DEFAULT 0,
  errors INTEGER NOT NULL DEFAULT 0,        -- events counted as errors (any kind below)
  error_events INTEGER NOT NULL DEFAULT 0,  -- type error
  tool_errors INTEGER NOT NULL DEFAULT 0,   -- tool_error, or a tool_* status error/timeout
  llm_errors INTEGER NOT NULL DEFAULT 0,    -- llm_call status error/timeout
  other_errors INTEGER NOT NULL DEFAULT 0,  -- any other event of severity error/critical
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  reasoning_tokens INTEGER NOT NULL DEFAULT 0,
  cache_read_tokens INTEGER NOT NULL DEFAULT 0,
  cache_write_tokens INTEGER NOT NULL DEFAULT 0,
  cost_nano INTEGER NOT NULL DEFAULT 0,
  latency_count INTEGER NOT NULL DEFAULT 0,
  latency_sum_us INTEGER NOT NULL DEFAULT 0,
  latency_hist BLOB,                 -- llm_call latency_ms sketch (store/rollups.h); NULL: none
  PRIMARY KEY (org_id, hour, agent_id, model, provider, api_key_id)
) STRICT, WITHOUT ROWID;
-- An agent's hours (performance, health).
CREATE INDEX rollup_hourly_agent ON rollup_hourly(org_id, agent_id, hour);

-- Tool statistics per org, agent, hour, tool.
CREATE TABLE rollup_tools (
  org_id BLOB NOT NULL,
  agent_id TEXT NOT NULL,
  hour INTEGER NOT NULL,
  tool_name TEXT NOT NULL,
  calls INTEGER NOT NULL DEFAULT 0,  -- tool_call events
  errors INTEGER NOT NULL DEFAULT 0, -- tool_error, or a tool_* status error/timeout
  duration_count INTEGER NOT NULL DEFAULT 0,
  duration_sum_us INTEGER NOT NULL DEFAULT 0,
  duration_max_us INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, agent_id, hour, tool_name)
) STRICT, WITHOUT ROWID;

-- Agents seen, with their first and last event timestamps.
CREATE TABLE analytics_agents (
  org_id BLOB NOT NULL,
  agent_id TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  events INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, agent_id)
) STRICT, WITHOUT ROWID;

-- Cohorts: end users (metadata.user_id), their first week and each week
-- they were active (weeks start Monday 00:00 UTC, µs).
CREATE TABLE analytics_users (
  org_id BLOB NOT NULL,
  user_id TEXT NOT NULL,
  first_week INTEGER NOT NULL,
  PRIMARY KEY (org_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX analytics_users_first ON analytics_users(org_id, first_week);
CREATE TABLE analytics_user_weeks (
  org_id BLOB NOT NULL,
  user_id TEXT NOT NULL,
  week INTEGER NOT NULL,
  PRIMARY KEY (org_id, user_id, week)
) STRICT, WITHOUT ROWID;

-- Agent performance walks an agent's sessions by start time. Written once
-- per session and batch, and rewritten only when started_at moves.
CREATE INDEX sessions_agent_started ON sessions(org_id, agent_id, started_at);
