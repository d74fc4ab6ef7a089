-- keel schema v12 (SQLite): funnel marks (R-QRY-5).
-- A funnel by session needs, for every session with events in the window,
-- the type and timestamp of each of those events, in time order. Read from
-- events_type_ts that is one index entry (~100 bytes: org, type, ts, event
-- and session ids) per step event: about 1 million entries for a busy org's
-- week. funnel_marks keeps the same facts packed, written by the writer in
-- the same transaction as the events (like the rollups of 0009): one row per
-- ingestion batch and hour of its events' timestamps, inserted once and
-- never updated, so it costs the batch one b-tree insert.
--
-- first_id: the id of the batch's first event in that hour (event ids are
-- unique in an org, so the key is too).
-- marks: a line per session, "<session id> <marks>\n" (session ids hold no
-- space or newline), where marks are 9 characters per event: the type's
-- letter ('a' + its position in docs/events.md's list: a session_start,
-- b session_end, c llm_call, d tool_call, e tool_result, f tool_error,
-- g agent_action, h error, i guardrail, j feedback, k health_check,
-- l custom), then 8 lowercase hex digits, the timestamp's µs after the
-- start of the hour (< 3.6e9 < 16^8). In no particular order: the reader
-- sorts.
CREATE TABLE funnel_marks (
  org_id BLOB NOT NULL,
  hour INTEGER NOT NULL,             -- start of the hour (µs), floored
  first_id TEXT NOT NULL,
  marks TEXT NOT NULL,
  PRIMARY KEY (org_id, hour, first_id)
) STRICT, WITHOUT ROWID;

-- The hours whose rows the compaction job (analytics.marks_compact) has not
-- merged yet: the writer adds the hour with each row it inserts; the job
-- rewrites an hour that has ended as a few rows of a line per session, marks
-- in time order, and removes it from here.
CREATE TABLE funnel_marks_dirty (
  org_id BLOB NOT NULL,
  hour INTEGER NOT NULL,
  PRIMARY KEY (org_id, hour)
) STRICT, WITHOUT ROWID;

-- The events stored before this migration: a row per session and hour.
INSERT INTO funnel_marks(org_id, hour, first_id, marks)
SELECT org_id, hour, min(id), session_id || ' ' || group_concat(mark, '') || char(10)
FROM (SELECT org_id, id, ts - ((ts % 3600000000) + 3600000000) % 3600000000 AS hour, session_id,
             CASE type WHEN 'session_start' THEN 'a' WHEN 'session_end' THEN 'b'
                       WHEN 'llm_call' THEN 'c' WHEN 'tool_call' THEN 'd'
                       WHEN 'tool_result' THEN 'e' WHEN 'tool_error' THEN 'f'
                       WHEN 'agent_action' THEN 'g' WHEN 'error' THEN 'h'
                       WHEN 'guardrail' THEN 'i' WHEN 'feedback' THEN 'j'
                       WHEN 'health_check' THEN 'k' ELSE 'l' END
             || printf('%08x', ((ts % 3600000000) + 3600000000) % 3600000000) AS mark
      FROM events)
GROUP BY org_id, hour, session_id;
INSERT INTO funnel_marks_dirty(org_id, hour) SELECT DISTINCT org_id, hour FROM funnel_marks;
