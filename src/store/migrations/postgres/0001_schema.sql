-- keel schema for PostgreSQL 15: the final state of the SQLite migrations
-- 0001..0010 in one file, with native types. The same statements run on
-- both backends (src/store/*.c, the portable dialect of src/store/db.h), so
-- every table and column has the SQLite name.
--
-- Types:
--   - ids that are UUIDs in practice (orgs, users, keys, invitations, dead
--     letters, audit entries, mails, notifications; every org_id): uuid.
--     Ids chosen by clients (events.id, session_id, agent_id, end-user ids)
--     and ids that may be free text (audit actor_id / resource_id, which are
--     filtered by what the caller typed) stay text;
--   - every column the SQL reads with @us(col) or writes with @ts($n):
--     timestamptz (the backend rewrites @ts/@us to and from int64 µs);
--   - 0/1 flags: boolean (bound as '0'/'1', read back as 't'/'f' → 1/0);
--   - counters, token sums, nano-USD and µs durations that are plain numbers
--     (never @ts/@us): bigint;
--   - hashes, sketches: bytea.
--   - JSON is text everywhere, not jsonb. events.data / metadata / tags,
--     sessions.tags, dead_letters.payload and audit_log.details hold the
--     canonical JSON whose exact bytes are hashed into the event and audit
--     chains (docs/hash-chain.md, docs/internals/audit.md): jsonb would
--     reorder keys and respace the text, and the chains could no longer be
--     recomputed from the rows. orgs.settings is not hashed, but it is read
--     back byte for byte into a fixed-size buffer and returned as written,
--     so it stays text too.
--
-- Tenancy: every tenant table has org_id first in its primary key and in
-- its indexes, and row-level security (0002_security.sql) limits every
-- statement to the org the transaction set (app.org_id).
--
-- Partitions: events (by ts), audit_log (by at) and usage_hourly (by hour)
-- are partitioned by month (UTC). A partitioned table's primary key and
-- unique indexes must hold the partition column, so those keys carry it;
-- see each table. Each has a DEFAULT partition, so an insert never fails
-- for want of a partition; keel_ensure_partitions (0002) creates the months
-- ahead and moves rows out of the DEFAULT partition when a month is added.
--
-- schema_migrations is created by the migration runner, not here.

-- v1: server-wide settings.
CREATE TABLE server_settings (
  name text PRIMARY KEY,
  value text NOT NULL,
  updated_at timestamptz NOT NULL
);

-- v2: users, organisations, memberships, invitations, tokens, throttling,
-- the mail outbox and the audit log.
CREATE TABLE users (
  id uuid PRIMARY KEY,
  email text NOT NULL,                 -- as the user typed it
  email_norm text NOT NULL UNIQUE,     -- lower-cased: uniqueness is case-insensitive
  name text NOT NULL,
  password_hash text,                  -- argon2id, libsodium's encoded string
  verified boolean NOT NULL DEFAULT false,
  platform_admin boolean NOT NULL DEFAULT false,
  suspended boolean NOT NULL DEFAULT false,
  session_version bigint NOT NULL DEFAULT 1, -- bumped to revoke every session
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE orgs (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  slug text NOT NULL UNIQUE,
  plan text NOT NULL DEFAULT 'free',
  billing_status text NOT NULL DEFAULT 'active'
    CHECK (billing_status IN ('active', 'trialing', 'past_due', 'canceled')),
  settings text NOT NULL DEFAULT '{}', -- JSON object, returned as written
  created_by uuid,
  deleted_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE memberships (
  org_id uuid NOT NULL REFERENCES orgs(id),
  user_id uuid NOT NULL REFERENCES users(id),
  role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  created_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, user_id)
);
-- A user's orgs (login, the org switcher): the one index not led by org_id.
CREATE INDEX memberships_by_user ON memberships(user_id, org_id);

CREATE TABLE invitations (
  org_id uuid NOT NULL REFERENCES orgs(id),
  id uuid NOT NULL,
  email text NOT NULL,
  email_norm text NOT NULL,
  role text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
  token_hash bytea NOT NULL UNIQUE,    -- SHA-256 of the token; the token is only mailed
  invited_by uuid,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  accepted_at timestamptz,
  accepted_by uuid,
  revoked_at timestamptz,
  PRIMARY KEY (org_id, id)
);
-- At most one open invitation per address and org.
CREATE UNIQUE INDEX invitations_open ON invitations(org_id, email_norm)
  WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- Single-use tokens for email verification and password reset (hashed).
CREATE TABLE user_tokens (
  token_hash bytea PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users(id),
  purpose text NOT NULL CHECK (purpose IN ('verify', 'reset')),
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX user_tokens_by_user ON user_tokens(user_id, purpose);

-- Failed logins by normalised email, and the resulting locks.
CREATE TABLE login_failures (
  email_norm text NOT NULL,
  at timestamptz NOT NULL
);
CREATE INDEX login_failures_by_email ON login_failures(email_norm, at);
CREATE TABLE login_locks (
  email_norm text PRIMARY KEY,
  locked_until timestamptz NOT NULL
);

-- Outgoing mail. org_id is NULL for a mail about a user alone (password
-- reset, verification), written under db_as_system.
CREATE TABLE outbox (
  id uuid PRIMARY KEY,
  org_id uuid,
  to_email text NOT NULL,
  template text NOT NULL,
  subject text NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL,
  sent_at timestamptz,
  attempts bigint NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX outbox_unsent ON outbox(created_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_org ON outbox(org_id, created_at);

-- The audit log: append-only, hash-chained per org (docs/internals/audit.md).
-- Entries that belong to no org chain under the nil UUID. details is the
-- canonical JSON hashed into the chain: text, never jsonb (see the top).
-- Partitioned by month of at: the primary key (org_id, seq) becomes
-- (org_id, seq, at) and the unique id (org_id, id, at). The chain's
-- "one row per (org, seq)" is kept by the trigger audit_log_guard below
-- (an insert must extend the org's chain), since no unique index across
-- partitions can hold it.
CREATE TABLE audit_log (
  org_id uuid NOT NULL,
  seq bigint NOT NULL,
  id uuid NOT NULL,
  at timestamptz NOT NULL,
  actor_type text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system')),
  actor_id text,
  action text NOT NULL,
  resource_type text,
  resource_id text,
  ip text,
  user_agent text,
  result text NOT NULL CHECK (result IN ('success', 'failure')),
  details text NOT NULL DEFAULT '{}',
  prev_hash bytea NOT NULL,
  hash bytea NOT NULL,
  PRIMARY KEY (org_id, seq, at),
  UNIQUE (org_id, id, at)
) PARTITION BY RANGE (at);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CREATE INDEX audit_log_by_action ON audit_log(org_id, action, seq);
CREATE INDEX audit_log_by_actor ON audit_log(org_id, actor_id, seq);
CREATE INDEX audit_log_by_time ON audit_log(org_id, at);

-- Append-only. The app role has no UPDATE/DELETE grant on it (0002); this
-- trigger refuses them for everyone else too, and serialises the inserts of
-- one org so that the chain cannot fork: seq must follow the org's last
-- entry (a retry of the same seq is a unique violation, as on SQLite).
CREATE FUNCTION keel_audit_log_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  last bigint;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('keel.audit_log:' || NEW.org_id::text, 0));
  SELECT max(a.seq) INTO last FROM audit_log a WHERE a.org_id = NEW.org_id;
  IF last IS NOT NULL AND NEW.seq <= last THEN
    RAISE EXCEPTION 'duplicate audit_log seq % for org %', NEW.seq, NEW.org_id
      USING ERRCODE = 'unique_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION keel_audit_log_guard();

-- v3: API keys. key_hash is HMAC-SHA-256 of the full key.
CREATE TABLE api_keys (
  org_id uuid NOT NULL REFERENCES orgs(id),
  id uuid NOT NULL,
  name text NOT NULL,
  environment text NOT NULL
    CHECK (environment IN ('production', 'staging', 'development', 'test')),
  live boolean NOT NULL,               -- kl_live_ (true) or kl_test_ (false)
  scopes integer NOT NULL CHECK (scopes BETWEEN 1 AND 7), -- 1 ingest | 2 read | 4 admin
  prefix text NOT NULL,
  key_hash bytea NOT NULL UNIQUE,
  created_by uuid REFERENCES users(id), -- NULL: created by the CLI
  created_at timestamptz NOT NULL,
  last_used_at timestamptz,
  expires_at timestamptz,
  revoked_at timestamptz,
  rate_limit_per_min bigint CHECK (rate_limit_per_min IS NULL OR rate_limit_per_min > 0),
  PRIMARY KEY (org_id, id)
);
CREATE INDEX api_keys_active ON api_keys(org_id, revoked_at);

-- v4/v6/v10: ingested events. id is the client's id (text, or a generated
-- UUIDv7); org_id and api_key_id are uuid (the 16-byte BLOBs of SQLite).
-- data, metadata and tags are the canonical JSON hashed into the session's
-- chain: text, never jsonb (see the top).
--
-- Partitioned by month of ts. The dedup key (org_id, id) becomes the
-- primary key (org_id, id, ts), so on PostgreSQL an event is a duplicate
-- when its id AND its timestamp match one stored: a retried event carries
-- both, so retries are still absorbed, but the same id sent again with a
-- different timestamp is stored as a second event (SQLite refuses it).
-- store/events.c inserts with a plain ON CONFLICT DO NOTHING (no conflict
-- target), valid on both backends whatever the key. Likewise the chain
-- order (org_id, session_id, seq) cannot be unique across partitions; it is
-- a plain index here, the writer's session head (sessions.chain_seq) being
-- what assigns each seq once.
CREATE TABLE events (
  org_id uuid NOT NULL,
  id text NOT NULL,
  session_id text NOT NULL,
  agent_id text NOT NULL,
  type text NOT NULL,
  ts timestamptz NOT NULL,           -- the event's timestamp
  received_at timestamptz NOT NULL,
  severity text NOT NULL,
  data text NOT NULL,                -- canonical JSON object (hashed)
  metadata text NOT NULL,            -- canonical JSON object (hashed)
  tags text NOT NULL,                -- canonical JSON array of strings (hashed)
  api_key_id uuid,                   -- NULL: not ingested through a key
  cost_nano bigint NOT NULL DEFAULT 0,
  cost_flags bigint NOT NULL DEFAULT 0,
  seq bigint NOT NULL,               -- 1-based position in the session's chain
  hash bytea NOT NULL,               -- SHA-256(hash of seq - 1, or zeros || canonical(event))
  PRIMARY KEY (org_id, id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_session_seq ON events(org_id, session_id, seq);
CREATE INDEX events_ts ON events(org_id, ts);
CREATE INDEX events_type_ts ON events(org_id, type, ts, id, session_id);
CREATE INDEX events_agent_ts ON events(org_id, agent_id, ts);

-- One row per session, kept current by every append.
CREATE TABLE sessions (
  org_id uuid NOT NULL,
  id text NOT NULL,
  agent_id text NOT NULL,
  started_at timestamptz NOT NULL,
  ended_at timestamptz,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'error')),
  event_count bigint NOT NULL DEFAULT 0,
  tool_count bigint NOT NULL DEFAULT 0,
  error_count bigint NOT NULL DEFAULT 0,
  llm_count bigint NOT NULL DEFAULT 0,
  input_tokens bigint NOT NULL DEFAULT 0,
  output_tokens bigint NOT NULL DEFAULT 0,
  reasoning_tokens bigint NOT NULL DEFAULT 0,
  cache_read_tokens bigint NOT NULL DEFAULT 0,
  cache_write_tokens bigint NOT NULL DEFAULT 0,
  cost_nano bigint NOT NULL DEFAULT 0,
  tags text NOT NULL DEFAULT '[]',   -- canonical JSON array (union of the events' tags)
  chain_seq bigint NOT NULL DEFAULT 0,
  chain_head bytea NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX sessions_started ON sessions(org_id, started_at DESC, id DESC);
CREATE INDEX sessions_agent_started ON sessions(org_id, agent_id, started_at);

-- v4/v5: events that passed validation but could not be stored; replayable.
CREATE TABLE dead_letters (
  org_id uuid NOT NULL,
  id uuid NOT NULL,
  received_at timestamptz NOT NULL,
  error text NOT NULL,
  payload text NOT NULL,             -- the event's canonical JSON
  event_id text NOT NULL DEFAULT '',
  session_id text NOT NULL DEFAULT '',
  type text NOT NULL DEFAULT '',
  api_key_id uuid,
  failed_at timestamptz NOT NULL DEFAULT 'epoch',
  attempts bigint NOT NULL DEFAULT 1,
  PRIMARY KEY (org_id, id)
);
-- The expiry job walks every org's oldest rows (db_as_system): not led by org_id.
CREATE INDEX dead_letters_received ON dead_letters(received_at);
CREATE INDEX dead_letters_org_received ON dead_letters(org_id, received_at DESC, id DESC);

-- v8: usage metering. '' stands for "none" in api_key_id (text for that
-- reason) and model. Partitioned by month of hour; the primary key already
-- holds hour.
CREATE TABLE usage_hourly (
  org_id uuid NOT NULL,
  hour timestamptz NOT NULL,         -- start of the UTC hour (received time)
  api_key_id text NOT NULL,
  agent_id text NOT NULL,
  model text NOT NULL,
  events bigint NOT NULL,
  llm_calls bigint NOT NULL,
  input_tokens bigint NOT NULL,
  output_tokens bigint NOT NULL,
  reasoning_tokens bigint NOT NULL,
  cache_read_tokens bigint NOT NULL,
  cache_write_tokens bigint NOT NULL,
  cost_nano bigint NOT NULL,
  stored_bytes bigint NOT NULL,
  PRIMARY KEY (org_id, hour, api_key_id, agent_id, model)
) PARTITION BY RANGE (hour);
CREATE TABLE usage_hourly_default PARTITION OF usage_hourly DEFAULT;

CREATE TABLE usage_notifications (
  org_id uuid NOT NULL,
  period_start timestamptz NOT NULL,
  threshold integer NOT NULL,        -- percent of the quota: 80 | 100
  id uuid NOT NULL,
  quota bigint NOT NULL,
  used bigint NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, period_start, threshold)
);
CREATE INDEX usage_notifications_created ON usage_notifications(org_id, created_at DESC, id DESC);

-- v9: analytics rollups. api_key_id is the nil UUID for "no key".
CREATE TABLE rollup_hourly (
  org_id uuid NOT NULL,
  hour timestamptz NOT NULL,
  agent_id text NOT NULL,
  model text NOT NULL,
  provider text NOT NULL,
  api_key_id uuid NOT NULL,
  events bigint NOT NULL DEFAULT 0,
  session_starts bigint NOT NULL DEFAULT 0,
  session_ends bigint NOT NULL DEFAULT 0,
  llm_calls bigint NOT NULL DEFAULT 0,
  tool_calls bigint NOT NULL DEFAULT 0,
  errors bigint NOT NULL DEFAULT 0,
  error_events bigint NOT NULL DEFAULT 0,
  tool_errors bigint NOT NULL DEFAULT 0,
  llm_errors bigint NOT NULL DEFAULT 0,
  other_errors bigint NOT NULL DEFAULT 0,
  input_tokens bigint NOT NULL DEFAULT 0,
  output_tokens bigint NOT NULL DEFAULT 0,
  reasoning_tokens bigint NOT NULL DEFAULT 0,
  cache_read_tokens bigint NOT NULL DEFAULT 0,
  cache_write_tokens bigint NOT NULL DEFAULT 0,
  cost_nano bigint NOT NULL DEFAULT 0,
  latency_count bigint NOT NULL DEFAULT 0,
  latency_sum_us bigint NOT NULL DEFAULT 0,
  latency_hist bytea,                -- latency sketch (store/rollups.h); NULL: none
  PRIMARY KEY (org_id, hour, agent_id, model, provider, api_key_id)
);
CREATE INDEX rollup_hourly_agent ON rollup_hourly(org_id, agent_id, hour);

CREATE TABLE rollup_tools (
  org_id uuid NOT NULL,
  agent_id text NOT NULL,
  hour timestamptz NOT NULL,
  tool_name text NOT NULL,
  calls bigint NOT NULL DEFAULT 0,
  errors bigint NOT NULL DEFAULT 0,
  duration_count bigint NOT NULL DEFAULT 0,
  duration_sum_us bigint NOT NULL DEFAULT 0,
  duration_max_us bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, agent_id, hour, tool_name)
);

CREATE TABLE analytics_agents (
  org_id uuid NOT NULL,
  agent_id text NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  events bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, agent_id)
);

-- End users (metadata.user_id: the client's text) by first week.
CREATE TABLE analytics_users (
  org_id uuid NOT NULL,
  user_id text NOT NULL,
  first_week timestamptz NOT NULL,
  PRIMARY KEY (org_id, user_id)
);
CREATE INDEX analytics_users_first ON analytics_users(org_id, first_week);
CREATE TABLE analytics_user_weeks (
  org_id uuid NOT NULL,
  user_id text NOT NULL,
  week timestamptz NOT NULL,
  PRIMARY KEY (org_id, user_id, week)
);
