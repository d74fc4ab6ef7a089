-- keel schema v11 (SQLite): agent performance reads only an index (R-QRY-4).
-- GET /v1/agents/{id}/performance walks an agent's sessions by start time
-- through sessions_agent_started (org_id, agent_id, started_at) and needs
-- each session's ended_at and status, which that index did not hold: one
-- table read per session (about 15 000 for 30 days of the busiest agent at
-- 10 million events), most of the route's time. The index is rebuilt with
-- ended_at and status after its key, so the walk never reads the table.
-- Write cost: the writer's per-batch session UPDATE sets ended_at and status
-- (src/store/events.c), and SQLite rewrites an index whose columns a SET
-- names, so each session a batch touches now also rewrites its entry here
-- (one index delete and insert per session and batch, not per event).
DROP INDEX sessions_agent_started;
CREATE INDEX sessions_agent_started ON sessions(org_id, agent_id, started_at, ended_at, status);
