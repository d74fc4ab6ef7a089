-- keel schema v12 (SQLite): funnel marks (R-QRY-5).
-- A funnel by session needs, for every session with events in the window,
-- the type and timestamp of each of those events, in time order. Read from
-- events_type_ts that is one index entry (~100 bytes: org, type, ts, event
-- and session ids) per step event: about 1 million entries for a busy org's
-- week. funnel_marks keeps the same facts packed per session and hour, kept
-- current by the writer in the same transaction as the events (like the
-- rollups of 0009): a week is one row per session-hour.
--
-- marks: 9 characters per event, in append order (the reader sorts): the
-- type's letter ('a' + its position in docs/events.md's list:
-- a session_start, b session_end, c llm_call, d tool_call, e tool_result,
-- f tool_error, g agent_action, h error, i guardrail, j feedback,
-- k health_check, l custom), then 8 lowercase hex digits: the timestamp's µs
-- after the start of the hour (< 3.6e9 < 16^8).
-- chunk: the event's seq / 1024, so that a row holds at most 1 024 events and
-- an append never rewrites a long row.
CREATE TABLE funnel_marks (
  org_id BLOB NOT NULL,
  hour INTEGER NOT NULL,             -- start of the hour (µs), floored
  session_id TEXT NOT NULL,
  chunk INTEGER NOT NULL,
  marks TEXT NOT NULL,
  PRIMARY KEY (org_id, hour, session_id, chunk)
) STRICT, WITHOUT ROWID;

-- The events stored before this migration.
INSERT INTO funnel_marks(org_id, hour, session_id, chunk, marks)
SELECT org_id, hour, session_id, chunk, group_concat(mark, '')
FROM (SELECT org_id, ts - ((ts % 3600000000) + 3600000000) % 3600000000 AS hour, session_id,
             seq / 1024 AS chunk,
             CASE type WHEN 'session_start' THEN 'a' WHEN 'session_end' THEN 'b'
                       WHEN 'llm_call' THEN 'c' WHEN 'tool_call' THEN 'd'
                       WHEN 'tool_result' THEN 'e' WHEN 'tool_error' THEN 'f'
                       WHEN 'agent_action' THEN 'g' WHEN 'error' THEN 'h'
                       WHEN 'guardrail' THEN 'i' WHEN 'feedback' THEN 'j'
                       WHEN 'health_check' THEN 'k' ELSE 'l' END
             || printf('%08x', ((ts % 3600000000) + 3600000000) % 3600000000) AS mark
      FROM events)
GROUP BY org_id, hour, session_id, chunk;
