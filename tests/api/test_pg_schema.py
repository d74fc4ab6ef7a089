"""The PostgreSQL schema against the store's SQL (PostgreSQL runs only).

- Every statement of src/store/*.c, rewritten as the PostgreSQL backend
  rewrites the portable dialect, PREPAREs as the app role in a migrated
  database (tools/pg_sql_check.py does the work).
- The PostgreSQL schema has every table and column of the SQLite schema
  (the same statements run on both).

Neither needs the keel binary.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import pgtest

pytestmark = pgtest.postgres_only

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "tools" / "pg_sql_check.py"


@pytest.fixture(scope="module")
def db():
    name = pgtest.create_db("keel_schema")
    yield name
    pgtest.drop_db(name)


def test_every_store_statement_prepares(db):
    r = subprocess.run(
        [sys.executable, str(CHECKER), "--json", "--host", pgtest.host(), "--port",
         str(pgtest.port()), "--user", pgtest.APP, "--dbname", db],
        capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1), f"pg_sql_check failed to run:\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    # Sanity: the extraction found the statements (138 when this was written).
    assert out["statements"] >= 100, out
    failed = out["failures"]
    assert not failed, f"{len(failed)} of {out['statements']} statements do not prepare:\n\n" + \
        "\n\n".join(f"{f['file']}: {f['sql']}\n  => {f['error']}" for f in failed)


def test_checker_finds_the_hot_statements():
    r = subprocess.run([sys.executable, str(CHECKER), "--list"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for needle in ("INSERT INTO events(", "INSERT INTO usage_hourly(", "INSERT INTO rollup_hourly(",
                   "INSERT INTO audit_log(", "UPDATE sessions SET", "DELETE FROM dead_letters",
                   "FROM api_keys k JOIN orgs o"):
        assert needle in text, f"pg_sql_check --list misses {needle!r}"
    assert "@ts(" in text and "@us(" in text


def _sqlite_schema():
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for f in sorted((REPO / "src" / "store" / "migrations" / "sqlite").glob("*.sql")):
            con.executescript(f.read_text())
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')} for t in tables}
    finally:
        con.close()


def test_same_tables_and_columns_as_sqlite(db):
    try:
        want = _sqlite_schema()
    except sqlite3.Error as e:  # an SQLite without STRICT tables
        pytest.skip(f"cannot build the SQLite schema here: {e}")
    con = pgtest.connect(pgtest.OWNER, db)
    try:
        with con.cursor() as cur:
            cur.execute("""
                SELECT c.relname, a.attname FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition""")
            got = {}
            for t, col in cur.fetchall():
                got.setdefault(t, set()).add(col)
    finally:
        con.close()
    problems = []
    for t, cols in sorted(want.items()):
        if t not in got:
            problems.append(f"table {t} missing")
        elif cols - got[t]:
            problems.append(f"{t}: columns missing: {sorted(cols - got[t])}")
    for t in sorted(set(got) - set(want)):
        problems.append(f"table {t} not in the SQLite schema")
    assert not problems, "\n".join(problems)


# --- the values the store binds, executed ------------------------------------------
#
# PREPARE checks types; these run statements with the values src/store/*.c
# actually binds where those are sentinels ("" or "g" for "from the start",
# NULL for "any", the telemetry time bounds, conflicts of the upserts), sent
# as untyped text as the backend sends them. Each runs in a transaction that
# is rolled back, as the app role, in the context its store function sets.

ORG = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
USER = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
TIME_MIN, TIME_MAX = -62135596800000000, 253402300800000000
NOW = 1795000000000000
H32 = "\\x" + "00" * 32

# (file, a fragment that identifies the statement, parameters, context, runs)
CASES = [
    ("orgs.c", "CAST(m.user_id AS text) > $3", [ORG, 0, "", 10], "org", 1),
    ("orgs.c", "CAST(o.id AS text) > $2", [USER, "", 10], "user", 1),
    ("orgs.c", "(CAST(o.id AS text) = $2 OR o.slug = $2)", [USER, "some-slug"], "user", 1),
    ("keys.c", "(CAST(id AS text) = $1 OR slug = $1)", ["some-slug"], "system", 1),
    ("invitations.c", "CAST(i.id AS text) < $3 AND @ts($2) = @ts($2) ORDER",
     [ORG, NOW, "g", 10], "org", 1),
    ("keys.c", "(k.id < $2 OR $2 IS NULL)", [ORG, None, 0, 10], "org", 1),
    ("keys.c", "COALESCE(u.suspended, FALSE)", [H32], "system", 1),
    ("keys.c", "rate_limit_per_min = CASE WHEN $4 = 1", [ORG, USER, None, 1, None], "org", 1),
    ("admin.c", "FROM orgs o WHERE (CAST($1 AS text) IS NULL", [None, None, 10], "system", 1),
    ("admin.c", "FROM orgs o WHERE (CAST($1 AS text) IS NULL", ["%a\\_b%", ORG, 10], "system", 1),
    ("admin.c", "FROM users WHERE (CAST($1 AS text) IS NULL", [None, None, 10], "system", 1),
    ("admin.c", "CASE WHEN $2 THEN 1 ELSE 0 END", [USER, 1, NOW], "system", 1),
    ("audit.c", "ORDER BY seq DESC LIMIT $7", [ORG, None, None, 0, 0, 0, 10], "org", 1),
    ("audit.c", "ORDER BY seq ASC LIMIT $7", [ORG, "org.", USER, NOW, NOW, 5, 10], "org", 1),
    ("telemetry.c", "WHERE org_id = $1 AND ts >= @ts($2)",
     [ORG, TIME_MIN, TIME_MAX, "", 2001, None, None, None, None], "org", 1),
    ("telemetry.c", "AND session_id = $9 AND seq > 0",
     [ORG, TIME_MIN, TIME_MAX, "", 2001, "info", None, None, "s1"], "org", 1),
    ("telemetry.c", "FROM sessions WHERE org_id = $1 AND started_at >= @ts($2)",
     [ORG, TIME_MIN, TIME_MAX, "", 2001, None, None], "org", 1),
    ("events.c", "INSERT INTO events(",
     [ORG, "e1", "s1", "a1", "custom", NOW, NOW, "info", "{}", "{}", "[]", None, 0, 0, 1, H32],
     "org", 2),
    ("events.c", "UPDATE sessions SET ended_at = @ts($4)",
     [ORG, "s1", NOW, None, "active"] + [1] * 10 + [None, 1, H32, NOW], "org", 1),
    ("usage.c", "INSERT INTO usage_hourly(",
     [ORG, NOW - NOW % 3600000000, "", "a1", ""] + [1] * 9, "org", 2),
    ("usage.c", "sum(CASE WHEN type = 'llm_call'", [ORG, 0, NOW], "org", 1),
    ("usage.c", "AND NOT u.suspended", [ORG], "org", 1),
    ("rollups.c", "INSERT INTO rollup_hourly(",
     [ORG, NOW - NOW % 3600000000, "a1", "", "", "00000000-0000-0000-0000-000000000000"]
     + [1] * 18 + [None], "org", 2),
    ("rollups.c", "INSERT INTO rollup_tools(", [ORG, "a1", NOW, "t", 1, 0, 1, 5, 5], "org", 2),
    ("rollups.c", "INSERT INTO analytics_agents(", [ORG, "a1", NOW, NOW, 1], "org", 2),
    ("rollups.c", "INSERT INTO analytics_users(", [ORG, "u1", NOW], "org", 2),
    ("users.c", "INSERT INTO users(", [USER, "a@x", "a@x", "A", None, 0, 1, NOW], "none", 1),
    ("users.c", "UPDATE users SET verified = TRUE", [NOW, USER], "none", 1),
    ("deadletters.c", "DELETE FROM dead_letters WHERE (org_id, id) IN", [NOW, 100], "system", 1),
]


def _statements():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import pg_sql_check
    finally:
        sys.path.pop(0)
    includes = [str(REPO / "src")] + [str(REPO / d) for d in ("build", "build-b")
                                      if (REPO / d).is_dir()]
    return pg_sql_check, pg_sql_check.extract(str(REPO / "src" / "store"), includes)


def test_store_values_execute(db):
    import psycopg2

    checker, statements = _statements()
    con = pgtest.connect(pgtest.APP, db, autocommit=False)
    problems = []
    try:
        for n, (fname, frag, params, ctx, runs) in enumerate(CASES):
            found = [s for f, s in statements if f.endswith(fname) and frag in s]
            if len(found) < 1:
                problems.append(f"{fname}: no statement with {frag!r}")
                continue
            for sql in found:
                cur = con.cursor()
                try:
                    if ctx == "org":
                        cur.execute("SELECT set_config('app.org_id', %s, true)", (ORG,))
                    elif ctx == "user":
                        cur.execute("SELECT set_config('app.user_id', %s, true)", (USER,))
                    elif ctx == "system":
                        cur.execute("SELECT set_config('app.system', 'on', true)")
                    cur.execute(f"PREPARE s{n} AS {checker.to_postgres(sql)}")
                    args = [None if p is None else str(p) for p in params]
                    marks = ", ".join(["%s"] * len(args))
                    for _ in range(runs):
                        cur.execute(f"EXECUTE s{n}({marks})" if args else f"EXECUTE s{n}", args)
                except psycopg2.Error as e:
                    problems.append(f"{fname}: {sql}\n  params {params}\n  => {e.pgerror or e}")
                finally:
                    con.rollback()
                    cur.close()
    finally:
        con.close()
    assert not problems, "\n\n".join(problems)
