-- keel schema for PostgreSQL 15: the SQLite migration 0012 (funnel marks,
-- R-QRY-5; the format is described there). Not partitioned: a row is an
-- ingestion batch's hour, about 1/50 of the events' rows.
CREATE TABLE funnel_marks (
  org_id uuid NOT NULL,
  hour timestamptz NOT NULL,
  first_id text NOT NULL,
  marks text NOT NULL,
  PRIMARY KEY (org_id, hour, first_id)
);

CREATE TABLE funnel_marks_dirty (
  org_id uuid NOT NULL,
  hour timestamptz NOT NULL,
  PRIMARY KEY (org_id, hour)
);

-- The events stored before this migration (a row per session and hour),
-- read under the system context (events' policies apply to the owner too),
-- before the new table's own policies exist.
SELECT set_config('app.system', 'on', true);
INSERT INTO funnel_marks(org_id, hour, first_id, marks)
SELECT org_id, 'epoch'::timestamptz + hour_us * interval '1 microsecond', min(id),
       session_id || ' ' || string_agg(mark, '') || chr(10)
FROM (SELECT org_id, id, us - off AS hour_us, session_id,
             CASE type WHEN 'session_start' THEN 'a' WHEN 'session_end' THEN 'b'
                       WHEN 'llm_call' THEN 'c' WHEN 'tool_call' THEN 'd'
                       WHEN 'tool_result' THEN 'e' WHEN 'tool_error' THEN 'f'
                       WHEN 'agent_action' THEN 'g' WHEN 'error' THEN 'h'
                       WHEN 'guardrail' THEN 'i' WHEN 'feedback' THEN 'j'
                       WHEN 'health_check' THEN 'k' ELSE 'l' END
             || lpad(to_hex(off), 8, '0') AS mark
      FROM (SELECT org_id, id, us, ((us % 3600000000) + 3600000000) % 3600000000 AS off,
                   session_id, type
            FROM (SELECT org_id, id, (extract(epoch from ts) * 1000000)::bigint AS us, session_id,
                         type
                  FROM events) AS e) AS e2) AS x
GROUP BY org_id, hour_us, session_id;
INSERT INTO funnel_marks_dirty(org_id, hour) SELECT DISTINCT org_id, hour FROM funnel_marks;
SELECT set_config('app.system', '', true);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['funnel_marks', 'funnel_marks_dirty'] LOOP
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant ON public.%I FOR ALL
      USING (org_id = nullif(current_setting('app.org_id', true), '')::uuid)
      WITH CHECK (org_id = nullif(current_setting('app.org_id', true), '')::uuid)$p$, t);
    EXECUTE format($p$CREATE POLICY system_read ON public.%I FOR SELECT
      USING (coalesce(current_setting('app.system', true), '') = 'on')$p$, t);
  END LOOP;
END
$$;
