-- keel schema for PostgreSQL 15: the SQLite migration 0011. Agent
-- performance walks an agent's sessions by start time and needs each
-- session's ended_at and status: sessions_agent_started holds them after
-- its key (the same columns as on SQLite), so the walk can be an index-only
-- scan instead of one heap read per session.
DROP INDEX sessions_agent_started;
CREATE INDEX sessions_agent_started ON sessions(org_id, agent_id, started_at, ended_at, status);
