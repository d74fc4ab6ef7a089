-- keel schema for PostgreSQL 15: row-level security, the app role's grants
-- and partition maintenance.
--
-- Roles: the owner (keel_owner) runs the migrations and owns every table
-- and function; the app role (keel_app, what `keel serve` connects as) owns
-- nothing, is not superuser and has no BYPASSRLS. keel_grant_app (below)
-- gives it what it needs; the migration runner calls it after migrating.
--
-- Row-level security is ENABLEd and FORCEd on every table with an org_id
-- column (and on orgs, keyed by id), partitions included, so even the owner
-- goes through the policies. A transaction sees what its context allows
-- (src/store/db.h):
--   - db_scope (app.org_id = the org): that org's rows, read and write
--     (policy "tenant", FOR ALL, WITH CHECK: nothing can be written into
--     another org);
--   - db_as_system (app.system = 'on'): read every org's rows ("system_read",
--     SELECT only) for platform administration, API-key and invitation
--     lookups and background jobs; write only where a job must: delete
--     expired dead letters ("system_expire") and queue a mail that belongs
--     to no org ("system_mail": org_id IS NULL);
--   - db_as_user (app.user_id = the user): that user's memberships in any
--     org ("member_self") and the orgs they belong to ("member_read"), read
--     only: login, the org switcher, invitations.
-- No context: nothing at all. Tables without org_id (users, user_tokens,
-- login_failures, login_locks, server_settings, schema_migrations) are not
-- tenant data and have no policies.

-- --- policies -------------------------------------------------------------

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['memberships', 'invitations', 'outbox', 'audit_log', 'api_keys',
                           'events', 'sessions', 'dead_letters', 'usage_hourly',
                           'usage_notifications', 'rollup_hourly', 'rollup_tools',
                           'analytics_agents', 'analytics_users', 'analytics_user_weeks'] LOOP
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

-- orgs: keyed by id.
ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orgs FOR ALL
  USING (id = nullif(current_setting('app.org_id', true), '')::uuid)
  WITH CHECK (id = nullif(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY system_read ON orgs FOR SELECT
  USING (coalesce(current_setting('app.system', true), '') = 'on');
-- The orgs the app.user_id user belongs to. The subquery reads memberships
-- under its own policies: member_self lets it see that user's rows.
CREATE POLICY member_read ON orgs FOR SELECT
  USING (EXISTS (SELECT 1 FROM memberships m
                 WHERE m.org_id = orgs.id
                   AND m.user_id = nullif(current_setting('app.user_id', true), '')::uuid));

CREATE POLICY member_self ON memberships FOR SELECT
  USING (user_id = nullif(current_setting('app.user_id', true), '')::uuid);

-- The expiry job deletes old dead letters of every org.
CREATE POLICY system_expire ON dead_letters FOR DELETE
  USING (coalesce(current_setting('app.system', true), '') = 'on');

-- A mail about a user alone (password reset, verification) has no org.
CREATE POLICY system_mail ON outbox FOR INSERT
  WITH CHECK (org_id IS NULL AND coalesce(current_setting('app.system', true), '') = 'on');

-- --- partitions -------------------------------------------------------------

-- Gives every partition of parent the parent's protection: RLS enabled and
-- forced, and a copy of each of its policies (a partition read directly is
-- checked against its own policies, not the parent's). Idempotent.
CREATE FUNCTION keel_protect_partitions(parent regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
  part regclass;
  p record;
BEGIN
  FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = parent LOOP
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part);
    FOR p IN
      SELECT pol.polname,
             pol.polpermissive,
             CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                             WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS cmd,
             pg_get_expr(pol.polqual, pol.polrelid) AS qual,
             pg_get_expr(pol.polwithcheck, pol.polrelid) AS wcheck,
             coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                                             ELSE quote_ident(pg_get_userbyid(r)) END, ', ')
                       FROM unnest(pol.polroles) r), 'PUBLIC') AS roles
      FROM pg_policy pol
      WHERE pol.polrelid = parent
        AND NOT EXISTS (SELECT 1 FROM pg_policy q
                        WHERE q.polrelid = part AND q.polname = pol.polname)
    LOOP
      EXECUTE format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, part,
                     CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                     p.cmd, p.roles,
                     CASE WHEN p.qual IS NULL THEN '' ELSE ' USING (' || p.qual || ')' END,
                     CASE WHEN p.wcheck IS NULL THEN '' ELSE ' WITH CHECK (' || p.wcheck || ')' END);
    END LOOP;
  END LOOP;
END
$$;

-- The partitioned tables and their partition columns.
CREATE FUNCTION keel_partitioned_tables(OUT tbl regclass, OUT col name) RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, public
AS $$
  VALUES ('public.events'::regclass, 'ts'::name),
         ('public.audit_log'::regclass, 'at'::name),
         ('public.usage_hourly'::regclass, 'hour'::name)
$$;

-- Creates the monthly (UTC) partitions of events, audit_log and
-- usage_hourly from the current month to months_ahead months ahead, named
-- <table>_pYYYY_MM. Rows of a new month already in the DEFAULT partition
-- (written while that month had no partition) are moved into it: the new
-- month is built as a plain table, the rows are moved from the DEFAULT
-- partition, then it is attached. Idempotent; returns how many partitions
-- it created. Runs as the owner (SECURITY DEFINER) so the app role can call
-- it from a job; concurrent calls serialise on an advisory lock.
CREATE FUNCTION keel_ensure_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
  t record;
  i integer;
  lo timestamptz;
  hi timestamptz;
  part text;
  dflt regclass;
  created integer := 0;
BEGIN
  IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
    RAISE EXCEPTION 'keel_ensure_partitions: months_ahead must be 0..120, not %', months_ahead
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('keel.partitions', 0));
  FOR t IN SELECT * FROM keel_partitioned_tables() LOOP
    SELECT c.oid::regclass INTO dflt
      FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
      WHERE h.inhparent = t.tbl AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    FOR i IN 0..months_ahead LOOP
      lo := date_trunc('month', now()) + make_interval(months => i);
      hi := lo + interval '1 month';
      part := format('%s_p%s', (SELECT relname FROM pg_class WHERE oid = t.tbl),
                     to_char(lo, 'YYYY_MM'));
      CONTINUE WHEN to_regclass(format('public.%I', part)) IS NOT NULL;
      EXECUTE format('CREATE TABLE public.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                     part, t.tbl);
      IF dflt IS NOT NULL THEN
        -- The DEFAULT partition's policies would hide other orgs' rows from
        -- the owner too (FORCE): lift FORCE for this transaction only (the
        -- ALTER holds an exclusive lock until commit; no one else ever sees
        -- it lifted), and tell the audit guard that this delete is a move.
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', dflt);
        PERFORM set_config('keel.partition_move', 'on', true);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *)'
                       ' INSERT INTO public.%I SELECT * FROM moved', dflt, t.col, t.col, part)
          USING lo, hi;
        PERFORM set_config('keel.partition_move', '', true);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', dflt);
      END IF;
      EXECUTE format('ALTER TABLE %s ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                     t.tbl, part, lo, hi);
      created := created + 1;
    END LOOP;
    PERFORM keel_protect_partitions(t.tbl);
  END LOOP;
  RETURN created;
END
$$;

-- Drops the partitions of tbl (events, audit_log or usage_hourly) that lie
-- entirely before cutoff (upper bound <= cutoff): retention by whole months.
-- The DEFAULT partition is never dropped. Returns how many were dropped.
CREATE FUNCTION keel_drop_partitions_before(tbl regclass, cutoff timestamptz) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
DECLARE
  p record;
  upper_bound timestamptz;
  dropped integer := 0;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM keel_partitioned_tables() k WHERE k.tbl = $1) THEN
    RAISE EXCEPTION 'keel_drop_partitions_before: % is not a partitioned keel table', tbl
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF cutoff IS NULL THEN
    RAISE EXCEPTION 'keel_drop_partitions_before: cutoff is NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('keel.partitions', 0));
  FOR p IN
    SELECT c.oid::regclass AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
    WHERE h.inhparent = $1
  LOOP
    CONTINUE WHEN p.bound = 'DEFAULT';
    upper_bound := (regexp_match(p.bound, 'TO \(''([^'']+)''\)'))[1]::timestamptz;
    IF upper_bound IS NOT NULL AND upper_bound <= cutoff THEN
      EXECUTE format('DROP TABLE %s', p.part);
      dropped := dropped + 1;
    END IF;
  END LOOP;
  RETURN dropped;
END
$$;

-- The audit guard of 0001, now also letting keel_ensure_partitions move
-- rows out of the DEFAULT partition: only the table's owner, inside that
-- function (keel.partition_move set for the transaction), may delete.
CREATE OR REPLACE FUNCTION keel_audit_log_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  last bigint;
BEGIN
  IF TG_OP = 'DELETE' AND coalesce(current_setting('keel.partition_move', true), '') = 'on'
     AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
  THEN
    RETURN OLD;
  END IF;
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

-- --- the app role ------------------------------------------------------------

-- Grants role_name what `keel serve` needs, and nothing it must not have:
-- every table read/write, except the audit log (read, append) and
-- schema_migrations (read); the keel functions it calls. Partitions get no
-- grants: the app reaches them through their parent only. Run by the owner
-- after the migrations; idempotent.
CREATE FUNCTION keel_grant_app(role_name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
  r record;
  t record;
BEGIN
  SELECT rolname, rolsuper, rolbypassrls, oid INTO r FROM pg_roles WHERE rolname = role_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'keel_grant_app: role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create it first: CREATE ROLE ' || quote_ident(coalesce(role_name, '?'))
                   || ' LOGIN (not superuser, no BYPASSRLS).';
  END IF;
  IF r.rolsuper OR r.rolbypassrls THEN
    RAISE EXCEPTION 'keel_grant_app: role "%" is superuser or has BYPASSRLS; the app role must not bypass row-level security', role_name
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relowner = r.oid) THEN
    RAISE EXCEPTION 'keel_grant_app: role "%" owns tables; the app role must own nothing', role_name
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role_name);
  FOR t IN
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  LOOP
    EXECUTE format('REVOKE ALL ON public.%I FROM %I', t.relname, role_name);
    IF t.relname = 'audit_log' THEN
      EXECUTE format('GRANT SELECT, INSERT ON public.%I TO %I', t.relname, role_name);
    ELSIF t.relname = 'schema_migrations' THEN
      EXECUTE format('GRANT SELECT ON public.%I TO %I', t.relname, role_name);
    ELSE
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO %I', t.relname, role_name);
    END IF;
  END LOOP;
  EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', role_name);
  EXECUTE format('GRANT EXECUTE ON FUNCTION public.keel_ensure_partitions(integer) TO %I', role_name);
  EXECUTE format('GRANT EXECUTE ON FUNCTION public.keel_drop_partitions_before(regclass, timestamptz) TO %I', role_name);
END
$$;

-- Only the owner runs the maintenance functions unless granted.
REVOKE EXECUTE ON FUNCTION keel_ensure_partitions(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION keel_drop_partitions_before(regclass, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION keel_grant_app(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION keel_protect_partitions(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION keel_partitioned_tables() FROM PUBLIC;

-- The DEFAULT partitions of 0001, then this month and the next three.
SELECT keel_protect_partitions(tbl) FROM keel_partitioned_tables();
SELECT keel_ensure_partitions(3);
