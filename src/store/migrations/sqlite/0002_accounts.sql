-- keel schema v2 (SQLite): users, organisations, memberships, invitations,
-- single-use tokens, login throttling, the mail outbox and the audit log.
-- Times are INTEGER microseconds since the Unix epoch (UTC); ids are UUIDv7
-- text; booleans are 0/1.

CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL,                 -- as the user typed it
  email_norm TEXT NOT NULL UNIQUE,     -- lower-cased: uniqueness is case-insensitive
  name TEXT NOT NULL,
  password_hash TEXT,                  -- argon2id, libsodium's encoded string
  verified INTEGER NOT NULL DEFAULT 0,
  platform_admin INTEGER NOT NULL DEFAULT 0,
  suspended INTEGER NOT NULL DEFAULT 0,
  session_version INTEGER NOT NULL DEFAULT 1, -- bumped to revoke every session
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE orgs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  slug TEXT NOT NULL UNIQUE,
  plan TEXT NOT NULL DEFAULT 'free',
  billing_status TEXT NOT NULL DEFAULT 'active'
    CHECK (billing_status IN ('active', 'trialing', 'past_due', 'canceled')),
  settings TEXT NOT NULL DEFAULT '{}',
  created_by TEXT,
  deleted_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE memberships (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  user_id TEXT NOT NULL REFERENCES users(id),
  role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  created_at INTEGER NOT NULL,
  PRIMARY KEY (org_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX memberships_by_user ON memberships(user_id, org_id);

CREATE TABLE invitations (
  org_id TEXT NOT NULL REFERENCES orgs(id),
  id TEXT NOT NULL,
  email TEXT NOT NULL,
  email_norm TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
  token_hash BLOB NOT NULL UNIQUE,     -- SHA-256 of the token; the token is only mailed
  invited_by TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  accepted_at INTEGER,
  accepted_by TEXT,
  revoked_at INTEGER,
  PRIMARY KEY (org_id, id)
) STRICT;
-- At most one open invitation per address and org.
CREATE UNIQUE INDEX invitations_open ON invitations(org_id, email_norm)
  WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- Single-use tokens for email verification and password reset (hashed).
CREATE TABLE user_tokens (
  token_hash BLOB PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
) STRICT;
CREATE INDEX user_tokens_by_user ON user_tokens(user_id, purpose);

-- Failed logins by normalised email (known or not, so that throttling does
-- not reveal which addresses have accounts), and the resulting locks.
CREATE TABLE login_failures (
  email_norm TEXT NOT NULL,
  at INTEGER NOT NULL
) STRICT;
CREATE INDEX login_failures_by_email ON login_failures(email_norm, at);
CREATE TABLE login_locks (
  email_norm TEXT PRIMARY KEY,
  locked_until INTEGER NOT NULL
) STRICT;

-- Outgoing mail; a sender (a later release) delivers and marks sent_at.
CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  org_id TEXT,
  to_email TEXT NOT NULL,
  template TEXT NOT NULL,
  subject TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
) STRICT;
CREATE INDEX outbox_unsent ON outbox(created_at) WHERE sent_at IS NULL;

-- The audit log: append-only, hash-chained per org (docs/internals/audit.md).
-- Entries that belong to no org (logins, sign-ups, platform actions) chain
-- under the nil UUID.
CREATE TABLE audit_log (
  org_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL UNIQUE,
  at INTEGER NOT NULL,
  actor_type TEXT NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system')),
  actor_id TEXT,
  action TEXT NOT NULL,
  resource_type TEXT,
  resource_id TEXT,
  ip TEXT,
  user_agent TEXT,
  result TEXT NOT NULL CHECK (result IN ('success', 'failure')),
  details TEXT NOT NULL DEFAULT '{}',
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (org_id, seq)
) STRICT;
CREATE INDEX audit_log_by_action ON audit_log(org_id, action, seq);
CREATE INDEX audit_log_by_actor ON audit_log(org_id, actor_id, seq);
CREATE INDEX audit_log_by_time ON audit_log(org_id, at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only');
END;
