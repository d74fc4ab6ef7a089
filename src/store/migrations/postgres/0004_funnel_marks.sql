-- keel schema for PostgreSQL 15: the SQLite migration 0012 (funnel marks,
-- R-QRY-5; the format is described there). Not partitioned: a row is a
-- session-hour, about 1/20 of the events' rows.
CREATE TABLE funnel_marks (
  org_id uuid NOT NULL,
  hour timestamptz NOT NULL,
  session_id text NOT NULL,
  chunk integer NOT NULL,
  marks text NOT NULL,
  PRIMARY KEY (org_id, hour, session_id, chunk)
);

-- The events stored before this migration, read under the system context
-- (events' policies apply to the owner too), before the new table's own
-- policies exist.
SELECT set_config('app.system', 'on', true);
INSERT INTO funnel_marks(org_id, hour, session_id, chunk, marks)
SELECT org_id, 'epoch'::timestamptz + hour_us * interval '1 microsecond', session_id, chunk,
       string_agg(mark, '')
FROM (SELECT org_id, us - off AS hour_us, session_id, chunk,
             CASE type WHEN 'session_start' THEN 'a' WHEN 'session_end' THEN 'b'
                       WHEN 'llm_call' THEN 'c' WHEN 'tool_call' THEN 'd'
                       WHEN 'tool_result' THEN 'e' WHEN 'tool_error' THEN 'f'
                       WHEN 'agent_action' THEN 'g' WHEN 'error' THEN 'h'
                       WHEN 'guardrail' THEN 'i' WHEN 'feedback' THEN 'j'
                       WHEN 'health_check' THEN 'k' ELSE 'l' END
             || lpad(to_hex(off), 8, '0') AS mark
      FROM (SELECT org_id, us, ((us % 3600000000) + 3600000000) % 3600000000 AS off,
                   session_id, chunk, type
            FROM (SELECT org_id, (extract(epoch from ts) * 1000000)::bigint AS us, session_id,
                         (seq / 1024)::integer AS chunk, type
                  FROM events) AS e) AS e2) AS x
GROUP BY org_id, hour_us, session_id, chunk;
SELECT set_config('app.system', '', true);

ALTER TABLE funnel_marks ENABLE ROW LEVEL SECURITY;
ALTER TABLE funnel_marks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON funnel_marks FOR ALL
  USING (org_id = nullif(current_setting('app.org_id', true), '')::uuid)
  WITH CHECK (org_id = nullif(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY system_read ON funnel_marks FOR SELECT
  USING (coalesce(current_setting('app.system', true), '') = 'on');
