-- keel schema v1 (SQLite): server-wide settings.
-- Times are INTEGER microseconds since the Unix epoch (UTC).
CREATE TABLE server_settings (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
