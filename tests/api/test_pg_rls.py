"""Row-level security and partitions of the PostgreSQL schema (PostgreSQL runs
only; src/store/migrations/postgres/0002_security.sql).

- The RLS lint, on the catalogs: every table with an org_id column
  (partitions included) has row-level security enabled AND forced; every
  INSERT/UPDATE/ALL policy has a WITH CHECK; the app role owns nothing, is
  not superuser and has no BYPASSRLS; every view is security_invoker.
- Direct SQL as the app role: with no org set nothing is visible; with
  app.org_id set only that org's rows are; a row naming another org cannot
  be written; the audit log cannot be updated or deleted; the system and
  user contexts see what they are meant to and no more.
- Partitions: keel_ensure_partitions is idempotent, creates the months
  ahead, moves rows out of the DEFAULT partition and protects what it
  creates; keel_drop_partitions_before drops only whole old partitions. Both
  called by the app role (SECURITY DEFINER).

Needs no keel binary: psycopg2 against a copy of the migrated template.
"""

import uuid
from contextlib import contextmanager

import pytest

import pgtest

pytestmark = pgtest.postgres_only

NIL = "00000000-0000-0000-0000-000000000000"

# One row per tenant table, for the org %(org)s. users are not tenant data
# (no org_id, no RLS) and are inserted separately.
SEED = {
    "memberships": "INSERT INTO memberships(org_id, user_id, role, created_at)"
                   " VALUES (%(org)s, %(user)s, 'owner', now())",
    "invitations": "INSERT INTO invitations(org_id, id, email, email_norm, role, token_hash,"
                   " created_at, expires_at) VALUES (%(org)s, gen_random_uuid(), 'i@x', 'i@x',"
                   " 'member', convert_to(gen_random_uuid()::text, 'UTF8'), now(),"
                   " now() + interval '1 day')",
    "outbox": "INSERT INTO outbox(id, org_id, to_email, template, subject, body, created_at)"
              " VALUES (gen_random_uuid(), %(org)s, 'o@x', 't', 's', 'b', now())",
    "audit_log": "INSERT INTO audit_log(org_id, seq, id, at, actor_type, action, result,"
                 " prev_hash, hash) VALUES (%(org)s, %(seq)s, gen_random_uuid(), now(), 'system',"
                 " 'test.seed', 'success', decode('00', 'hex'), decode('00', 'hex'))",
    "api_keys": "INSERT INTO api_keys(org_id, id, name, environment, live, scopes, prefix,"
                " key_hash, created_at) VALUES (%(org)s, gen_random_uuid(), 'k', 'test', FALSE, 1,"
                " 'kl_test_', convert_to(gen_random_uuid()::text, 'UTF8'), now())",
    "events": "INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at,"
              " severity, data, metadata, tags, seq, hash) VALUES (%(org)s,"
              " gen_random_uuid()::text, 's1', 'a1', 'custom', now(), now(), 'info', '{}', '{}',"
              " '[]', 1, decode('00', 'hex'))",
    "sessions": "INSERT INTO sessions(org_id, id, agent_id, started_at, chain_head, updated_at)"
                " VALUES (%(org)s, gen_random_uuid()::text, 'a1', now(), decode('00', 'hex'),"
                " now())",
    "dead_letters": "INSERT INTO dead_letters(org_id, id, received_at, error, payload)"
                    " VALUES (%(org)s, gen_random_uuid(), now(), 'e', '{}')",
    "usage_hourly": "INSERT INTO usage_hourly(org_id, hour, api_key_id, agent_id, model, events,"
                    " llm_calls, input_tokens, output_tokens, reasoning_tokens,"
                    " cache_read_tokens, cache_write_tokens, cost_nano, stored_bytes)"
                    " VALUES (%(org)s, date_trunc('hour', now()), '', gen_random_uuid()::text,"
                    " '', 1, 0, 0, 0, 0, 0, 0, 0, 0)",
    "usage_notifications": "INSERT INTO usage_notifications(org_id, period_start, threshold, id,"
                           " quota, used, created_at) VALUES (%(org)s,"
                           " now() - random() * interval '1000 days', 80, gen_random_uuid(), 100,"
                           " 80, now())",
    "rollup_hourly": "INSERT INTO rollup_hourly(org_id, hour, agent_id, model, provider,"
                     " api_key_id) VALUES (%(org)s, date_trunc('hour', now()),"
                     " gen_random_uuid()::text, '', '', '" + NIL + "')",
    "rollup_tools": "INSERT INTO rollup_tools(org_id, agent_id, hour, tool_name)"
                    " VALUES (%(org)s, gen_random_uuid()::text, date_trunc('hour', now()), 't')",
    "analytics_agents": "INSERT INTO analytics_agents(org_id, agent_id, first_seen, last_seen)"
                        " VALUES (%(org)s, gen_random_uuid()::text, now(), now())",
    "analytics_users": "INSERT INTO analytics_users(org_id, user_id, first_week)"
                       " VALUES (%(org)s, gen_random_uuid()::text, now())",
    "analytics_user_weeks": "INSERT INTO analytics_user_weeks(org_id, user_id, week)"
                            " VALUES (%(org)s, gen_random_uuid()::text, now())",
}
TENANT_TABLES = sorted(SEED) + ["orgs"]


def org_insert(cur, org):
    cur.execute("INSERT INTO orgs(id, name, slug, created_at, updated_at)"
                " VALUES (%s, 'Org', %s, now(), now())", (org, "slug-" + org))


@contextmanager
def tx(con, org=None, user=None, system=False):
    """One transaction as whoever con is, with the store's RLS context."""
    cur = con.cursor()
    try:
        if org:
            cur.execute("SELECT set_config('app.org_id', %s, true)", (org,))
        if user:
            cur.execute("SELECT set_config('app.user_id', %s, true)", (user,))
        if system:
            cur.execute("SELECT set_config('app.system', 'on', true)")
        yield cur
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        cur.close()


def refused(con, sql, params=None, **ctx):
    """The statement fails (RLS WITH CHECK, a missing grant or the audit
    guard); returns PostgreSQL's message."""
    import psycopg2

    with pytest.raises(psycopg2.Error) as e:
        with tx(con, **ctx) as cur:
            cur.execute(sql, params)
    return str(e.value)


def count(con, table, **ctx):
    with tx(con, **ctx) as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


# --- the lint ----------------------------------------------------------------


def rls_problems(con):
    problems = []
    with con.cursor() as cur:
        cur.execute("""
            SELECT c.oid::regclass::text FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND c.relkind IN ('r', 'p')
              AND (c.relname = 'orgs' OR EXISTS (
                    SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                      AND a.attname = 'org_id' AND a.attnum > 0 AND NOT a.attisdropped))
              AND NOT (c.relrowsecurity AND c.relforcerowsecurity)""")
        problems += [f"{t}: row-level security not enabled and forced" for (t,) in cur.fetchall()]
        cur.execute("""
            SELECT c.oid::regclass::text FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                            AND a.attname = 'org_id' AND NOT a.attisdropped)
              AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                                AND p.polname = 'tenant')""")
        problems += [f"{t}: no tenant policy" for (t,) in cur.fetchall()]
        cur.execute("""
            SELECT polrelid::regclass::text, polname FROM pg_policy
            WHERE polcmd IN ('a', 'w', '*') AND polwithcheck IS NULL""")
        problems += [f"{t}: policy {p} (INSERT/UPDATE/ALL) has no WITH CHECK"
                     for t, p in cur.fetchall()]
        cur.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (pgtest.APP,))
        row = cur.fetchone()
        if row is None:
            problems.append(f"role {pgtest.APP} missing")
        else:
            if row[0]:
                problems.append(f"{pgtest.APP} is superuser")
            if row[1]:
                problems.append(f"{pgtest.APP} has BYPASSRLS")
        cur.execute("""
            SELECT c.oid::regclass::text FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
            WHERE r.rolname = %s""", (pgtest.APP,))
        problems += [f"{t} is owned by {pgtest.APP}" for (t,) in cur.fetchall()]
        cur.execute("""
            SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
            WHERE r.rolname = %s""", (pgtest.APP,))
        problems += [f"function {f} is owned by {pgtest.APP}" for (f,) in cur.fetchall()]
        cur.execute("""
            SELECT c.oid::regclass::text FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND c.relkind IN ('v', 'm')
              AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(c.reloptions, '{}')) o
                              WHERE lower(o) IN ('security_invoker=true', 'security_invoker=on',
                                                 'security_invoker=1'))""")
        problems += [f"view {v} is not security_invoker" for (v,) in cur.fetchall()]
    return problems


# --- fixtures ------------------------------------------------------------------


class World:
    """A fresh database with two orgs' rows in every tenant table.
    User u is a member of A and B, user v of B only."""


@pytest.fixture(scope="module")
def world():
    w = World()
    w.db = pgtest.create_db("keel_rls")
    w.app = pgtest.connect(pgtest.APP, w.db, autocommit=False)
    w.owner = pgtest.connect(pgtest.OWNER, w.db, autocommit=False)
    w.a, w.b = str(uuid.uuid4()), str(uuid.uuid4())
    w.u, w.v = str(uuid.uuid4()), str(uuid.uuid4())
    with tx(w.app) as cur:
        for user in (w.u, w.v):
            cur.execute("INSERT INTO users(id, email, email_norm, name, created_at, updated_at)"
                        " VALUES (%s, %s, %s, 'U', now(), now())", (user, user + "@x", user + "@x"))
    for org, members in ((w.a, [w.u]), (w.b, [w.u, w.v])):
        with tx(w.app, org=org) as cur:
            org_insert(cur, org)
            for i, user in enumerate(members):
                for table, sql in SEED.items():
                    if i and table != "memberships":
                        continue
                    cur.execute(sql, {"org": org, "user": user, "seq": 1})
    yield w
    w.app.close()
    w.owner.close()
    pgtest.drop_db(w.db)


@pytest.fixture
def fresh():
    db = pgtest.create_db("keel_part")
    app = pgtest.connect(pgtest.APP, db, autocommit=False)
    yield db, app
    app.close()
    pgtest.drop_db(db)


# --- the lint ------------------------------------------------------------------


def test_rls_lint(world):
    problems = rls_problems(world.owner)
    world.owner.rollback()
    assert not problems, "\n".join(problems)


def test_lint_sees_every_tenant_table(world):
    """The lint's query finds what it must (it would pass vacuously on an
    empty catalog)."""
    with tx(world.owner) as cur:
        cur.execute("""
            SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relrowsecurity AND c.relforcerowsecurity""")
        protected = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
        partitions = cur.fetchone()[0]
    assert partitions >= 5  # DEFAULT + this month + 3 ahead
    assert protected >= len(TENANT_TABLES) + 3 * 5


def test_lint_fires_on_each_broken_rule(fresh):
    """Each rule of the lint, broken on purpose in a scratch database: a
    table with org_id and no RLS, one with RLS not forced, a FOR ALL policy
    without WITH CHECK (next to an INSERT policy that has one), a table owned
    by the app role, a plain view."""
    db, _ = fresh
    su = pgtest.connect(pgtest.SUPER, db, autocommit=True)
    try:
        with su.cursor() as cur:
            cur.execute("CREATE TABLE lint_open (org_id uuid, x int)")
            cur.execute("CREATE TABLE lint_unforced (org_id uuid)")
            cur.execute("ALTER TABLE lint_unforced ENABLE ROW LEVEL SECURITY")
            cur.execute("CREATE TABLE lint_nocheck (org_id uuid)")
            cur.execute("ALTER TABLE lint_nocheck ENABLE ROW LEVEL SECURITY")
            cur.execute("ALTER TABLE lint_nocheck FORCE ROW LEVEL SECURITY")
            cur.execute("CREATE POLICY lint_ins ON lint_nocheck FOR INSERT WITH CHECK (true)")  # fine
            cur.execute("CREATE POLICY lint_all ON lint_nocheck USING (true)")
            cur.execute("CREATE TABLE lint_owned (id int)")
            cur.execute(f"ALTER TABLE lint_owned OWNER TO {pgtest.APP}")
            cur.execute("CREATE VIEW lint_view AS SELECT 1 AS one")
        owner = pgtest.connect(pgtest.OWNER, db, autocommit=False)
        try:
            problems = "\n".join(rls_problems(owner))
        finally:
            owner.close()
    finally:
        su.close()
    for needle in ("lint_open", "lint_unforced", "policy lint_all", "lint_owned", "view lint_view"):
        assert needle in problems, (needle, problems)


# --- direct SQL as the app role ---------------------------------------------------------


def test_no_context_sees_nothing(world):
    for table in TENANT_TABLES:
        assert count(world.app, table) == 0, f"{table} visible without an org"


def test_org_sees_only_its_rows(world):
    for org, other in ((world.a, world.b), (world.b, world.a)):
        with tx(world.app, org=org) as cur:
            for table in TENANT_TABLES:
                key = "id" if table == "orgs" else "org_id"
                cur.execute(f"SELECT count(*), count(*) FILTER (WHERE {key} <> %s) FROM {table}",
                            (org,))
                n, foreign = cur.fetchone()
                assert n >= 1, f"{table}: the org's own rows are not visible"
                assert foreign == 0, f"{table}: another org's rows are visible"


def test_insert_into_another_org_fails(world):
    for table, sql in SEED.items():
        params = {"org": world.b, "user": world.v, "seq": 99}
        msg = refused(world.app, sql, params, org=world.a)
        assert "row-level security" in msg, f"{table}: {msg}"
    msg = refused(world.app, "INSERT INTO orgs(id, name, slug, created_at, updated_at)"
                  " VALUES (gen_random_uuid(), 'X', 'x-other', now(), now())", org=world.a)
    assert "row-level security" in msg


def test_update_cannot_move_a_row_to_another_org(world):
    msg = refused(world.app, "UPDATE api_keys SET org_id = %s", (world.b,), org=world.a)
    assert "row-level security" in msg
    # Nor touch the other org's rows: the update sees none of them.
    with tx(world.app, org=world.a) as cur:
        cur.execute("UPDATE api_keys SET name = 'hijacked' WHERE org_id = %s", (world.b,))
        assert cur.rowcount == 0


def test_audit_log_is_append_only(world):
    for sql in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log",
                "TRUNCATE audit_log"):
        msg = refused(world.app, sql, org=world.a)
        assert "permission denied" in msg, msg
    # The owner too: the trigger refuses.
    for sql in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        msg = refused(world.owner, sql, org=world.a)
        assert "append-only" in msg, msg
    # Appending still works, and the chain cannot fork: a seq at or below the
    # org's last one is refused.
    with tx(world.app, org=world.a) as cur:
        cur.execute(SEED["audit_log"], {"org": world.a, "seq": 2})
    msg = refused(world.app, SEED["audit_log"], {"org": world.a, "seq": 2}, org=world.a)
    assert "duplicate audit_log seq" in msg


def test_system_reads_every_org_and_writes_almost_nothing(world):
    for table in TENANT_TABLES:
        with tx(world.app, system=True) as cur:
            cur.execute(f"SELECT count(DISTINCT {'id' if table == 'orgs' else 'org_id'})"
                        f" FROM {table}")
            assert cur.fetchone()[0] >= 2, f"{table}: system does not see both orgs"
    # No writes into an org's data...
    msg = refused(world.app, SEED["api_keys"], {"org": world.a}, system=True)
    assert "row-level security" in msg
    with tx(world.app, system=True) as cur:
        cur.execute("UPDATE sessions SET agent_id = 'x'")
        assert cur.rowcount == 0
        cur.execute("DELETE FROM api_keys")
        assert cur.rowcount == 0
    # ...but a mail that belongs to no org, and not one of an org.
    with tx(world.app, system=True) as cur:
        cur.execute("INSERT INTO outbox(id, org_id, to_email, template, subject, body,"
                    " created_at) VALUES (gen_random_uuid(), NULL, 'r@x', 'reset', 's', 'b',"
                    " now())")
    msg = refused(world.app, SEED["outbox"], {"org": world.a}, system=True)
    assert "row-level security" in msg
    # A user-less mail is invisible to the orgs.
    with tx(world.app, org=world.a) as cur:
        cur.execute("SELECT count(*) FROM outbox WHERE org_id IS NULL")
        assert cur.fetchone()[0] == 0
    # The dead-letter expiry deletes across orgs (in a transaction rolled back).
    with world.app.cursor() as cur:
        cur.execute("SELECT set_config('app.system', 'on', true)")
        cur.execute("DELETE FROM dead_letters WHERE received_at < now() + interval '1 hour'")
        assert cur.rowcount >= 2
    world.app.rollback()
    # Without the system context the same delete reaches nothing.
    with tx(world.app) as cur:
        cur.execute("DELETE FROM dead_letters")
        assert cur.rowcount == 0


def test_user_context_sees_own_memberships_and_orgs(world):
    with tx(world.app, user=world.u) as cur:
        cur.execute("SELECT org_id::text, user_id::text FROM memberships")
        rows = cur.fetchall()
        assert sorted(rows) == sorted([(world.a, world.u), (world.b, world.u)])
        cur.execute("SELECT id::text FROM orgs")
        assert sorted(r[0] for r in cur.fetchall()) == sorted([world.a, world.b])
        for table in TENANT_TABLES:
            if table not in ("orgs", "memberships"):
                cur.execute(f"SELECT count(*) FROM {table}")
                assert cur.fetchone()[0] == 0, f"{table} visible to the user context"
    with tx(world.app, user=world.v) as cur:
        cur.execute("SELECT id::text FROM orgs")
        assert [r[0] for r in cur.fetchall()] == [world.b]
        cur.execute("SELECT count(*) FROM memberships WHERE user_id <> %s", (world.v,))
        assert cur.fetchone()[0] == 0
    # Read only.
    msg = refused(world.app, "INSERT INTO memberships(org_id, user_id, role, created_at)"
                  " VALUES (%s, %s, 'owner', now())", (world.a, world.v), user=world.v)
    assert "row-level security" in msg


def test_app_role_cannot_lift_the_protection(world):
    for sql in ("ALTER TABLE events NO FORCE ROW LEVEL SECURITY",
                "ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY",
                "DROP POLICY tenant ON sessions",
                "SELECT keel_grant_app('keel_app')",
                "SELECT count(*) FROM events_default"):
        msg = refused(world.app, sql)
        assert "must be owner" in msg or "permission denied" in msg, f"{sql}: {msg}"


# --- partitions ----------------------------------------------------------------


def month_name(cur, months_ahead):
    cur.execute("SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC')"
                " + make_interval(months => %s), 'YYYY_MM')", (months_ahead,))
    return cur.fetchone()[0]


def month_start(months_ahead, days=0):
    """SQL for the UTC start of the month months_ahead from now, plus days."""
    return (f"((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => "
            f"{int(months_ahead)}, days => {int(days)})) AT TIME ZONE 'UTC')")


def partitions(cur, table):
    cur.execute("SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
                " WHERE h.inhparent = %s::regclass ORDER BY 1", (table,))
    return [r[0] for r in cur.fetchall()]


PARTITIONED = ("events", "audit_log", "usage_hourly")


def test_ensure_partitions_is_idempotent_and_creates_months_ahead(fresh):
    db, app = fresh
    with tx(app) as cur:
        cur.execute("SELECT keel_ensure_partitions(3)")
        assert cur.fetchone()[0] == 0  # the migration made them
        cur.execute("SELECT keel_ensure_partitions(5)")
        assert cur.fetchone()[0] == 2 * len(PARTITIONED)
        cur.execute("SELECT keel_ensure_partitions(5)")
        assert cur.fetchone()[0] == 0
        for table in PARTITIONED:
            names = partitions(cur, table)
            assert f"{table}_default" in names
            for i in range(6):
                assert f"{table}_p{month_name(cur, i)}" in names, (table, i, names)
            assert len(names) == 7, names
    owner = pgtest.connect(pgtest.OWNER, db)
    try:
        assert rls_problems(owner) == []
    finally:
        owner.close()


def test_ensure_partitions_moves_rows_out_of_default(fresh):
    db, app = fresh
    org = str(uuid.uuid4())
    at = month_start(8, days=3)
    with tx(app, org=org) as cur:
        cur.execute(f"INSERT INTO events(org_id, id, session_id, agent_id, type, ts, received_at,"
                    f" severity, data, metadata, tags, seq, hash) VALUES (%s, 'e1', 's1', 'a1',"
                    f" 'custom', {at}, now(), 'info', '{{}}', '{{}}', '[]', 1,"
                    f" decode('00', 'hex'))", (org,))
        cur.execute(f"INSERT INTO audit_log(org_id, seq, id, at, actor_type, action, result,"
                    f" prev_hash, hash) VALUES (%s, 1, gen_random_uuid(), {at}, 'system', 'x',"
                    f" 'success', decode('00', 'hex'), decode('00', 'hex'))", (org,))
        cur.execute(f"INSERT INTO usage_hourly(org_id, hour, api_key_id, agent_id, model, events,"
                    f" llm_calls, input_tokens, output_tokens, reasoning_tokens,"
                    f" cache_read_tokens, cache_write_tokens, cost_nano, stored_bytes)"
                    f" VALUES (%s, {at}, '', 'a1', '', 1, 0, 0, 0, 0, 0, 0, 0, 0)", (org,))
        for table in PARTITIONED:
            cur.execute(f"SELECT tableoid::regclass::text FROM {table}")
            assert [r[0] for r in cur.fetchall()] == [f"{table}_default"]
    with tx(app) as cur:
        cur.execute("SELECT keel_ensure_partitions(8)")
        assert cur.fetchone()[0] == 5 * len(PARTITIONED)
        month = month_name(cur, 8)
    with tx(app, org=org) as cur:
        for table in PARTITIONED:
            cur.execute(f"SELECT tableoid::regclass::text FROM {table}")
            assert [r[0] for r in cur.fetchall()] == [f"{table}_p{month}"], table
        # The moved audit entry still heads its chain.
        cur.execute("SELECT max(seq) FROM audit_log")
        assert cur.fetchone()[0] == 1
    owner = pgtest.connect(pgtest.OWNER, db)
    try:
        assert rls_problems(owner) == []
    finally:
        owner.close()


def test_drop_partitions_before_drops_whole_old_months_only(fresh):
    db, app = fresh
    org = str(uuid.uuid4())
    with tx(app, org=org) as cur:
        for i, m in enumerate((0, 2)):
            cur.execute(f"INSERT INTO events(org_id, id, session_id, agent_id, type, ts,"
                        f" received_at, severity, data, metadata, tags, seq, hash) VALUES (%s,"
                        f" %s, 's1', 'a1', 'custom', {month_start(m, days=1)}, now(), 'info',"
                        f" '{{}}', '{{}}', '[]', %s, decode('00', 'hex'))", (org, f"e{m}", i + 1))
    with tx(app) as cur:
        before = partitions(cur, "events")
        # A cutoff inside month 2: months 0 and 1 end before it, month 2 does not.
        cur.execute(f"SELECT keel_drop_partitions_before('events', {month_start(2, days=15)})")
        assert cur.fetchone()[0] == 2
        after = partitions(cur, "events")
        gone = {f"events_p{month_name(cur, 0)}", f"events_p{month_name(cur, 1)}"}
        assert set(before) - set(after) == gone
        assert "events_default" in after and f"events_p{month_name(cur, 2)}" in after
        # Nothing more to drop at the same cutoff; the other tables untouched.
        cur.execute(f"SELECT keel_drop_partitions_before('events', {month_start(2, days=15)})")
        assert cur.fetchone()[0] == 0
        assert len(partitions(cur, "audit_log")) == 5
    with tx(app, org=org) as cur:
        cur.execute("SELECT id FROM events ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == ["e2"]
    for sql in ("SELECT keel_drop_partitions_before('orgs', now())",
                "SELECT keel_drop_partitions_before('events', NULL)"):
        msg = refused(app, sql)
        assert "keel_drop_partitions_before" in msg, msg
