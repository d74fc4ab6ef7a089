"""Direct access to a keel server's database, on either backend.

Some tests read what keel stored, or change it behind keel's back (a plan the
API cannot set yet, an expired key, a damaged hash chain). They write SQLite's
dialect with `?` placeholders; the helpers here run it on the server's store:

  SQLite      DATA_DIR/keel.db (SQLite takes turns with the running server);
  PostgreSQL  the database conftest gave the server's data directory
              (database_for), as the owner role keel_owner.

  sql(target, statement, *args)      → rows as tuples ([] for a write)
  execute(target, statement, *args)  → the number of rows changed
  rows(target, statement, *args)     → rows as dicts
  script(target, [(statement, args), ...])  several statements, one transaction

target is a KeelServer (its data_dir) or a data directory.

On PostgreSQL the statement is translated only as far as the placeholders (`?`
→ `%s`); everything else must be valid in both dialects. Values that differ
by backend go through the helpers:

  uuid_value(text)   uuid columns: 16 raw bytes in SQLite's events tables
                     (schema 0006, `org_id`/`api_key_id`), native uuid on PostgreSQL
  ts_value(us)       a timestamp given as µs since the epoch (SQLite's int64;
                     timestamptz on PostgreSQL)
  true_value / false_value   booleans (0/1 in SQLite)

Results are made backend-neutral: timestamptz → int µs since the epoch, bytea →
bytes, json/jsonb → the JSON text, uuid → its text.

Row-level security: keel_owner is subject to FORCE ROW LEVEL SECURITY too. Reads
run with app.system=on (the system policy: SELECT across every org). Writes
(INSERT, UPDATE, DELETE) run once per org they touch with app.org_id set: the
orgs are found with a SELECT of the statement's own WHERE clause (or its
inserted org_id / orgs.id); pass org=... to name it yourself.
"""

import datetime as dt
import os
import re
import sqlite3
from pathlib import Path

import pgtest

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# data directory (absolute path) → PostgreSQL database name; filled by conftest
# when it starts a keel on that directory, or here on first use.
_DATABASES = {}


def enabled():
    return pgtest.enabled()


def _key(data_dir):
    return os.path.abspath(str(data_dir))


def database_for(data_dir):
    """The PostgreSQL database of a data directory, created on first use (a
    copy of the migrated template)."""
    k = _key(data_dir)
    name = _DATABASES.get(k)
    if name is None:
        name = pgtest.create_db()
        _DATABASES[k] = name
    return name


def empty_database_for(data_dir):
    """PostgreSQL: gives data_dir a new, empty database owned by keel_owner
    (not migrated: for tests of `keel migrate` on a new store); returns its name."""
    name = pgtest.create_db(prefix="keel_e")  # a name; replaced by an empty one
    pgtest.drop_db(name)
    con = pgtest.connect(pgtest.SUPER, "postgres")
    try:
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 OWNER "{pgtest.OWNER}"')
    finally:
        con.close()
    _DATABASES[_key(data_dir)] = name
    return name


def drop_databases():
    """Drops every database database_for created (best effort)."""
    for k, name in list(_DATABASES.items()):
        try:
            pgtest.drop_db(name)
        except Exception:  # noqa: BLE001 - best effort at session end
            pass
        _DATABASES.pop(k, None)


def store_url(data_dir, owner=False):
    """The KEEL_STORE_URL of a data directory's database: the app role keel
    serves as, or the owner (keel migrate)."""
    return pgtest.url(pgtest.OWNER if owner else pgtest.APP, database_for(data_dir))


def data_dir_of(target):
    return Path(getattr(target, "data_dir", target))


def db_path(target):
    """SQLite only: the server's keel.db."""
    return str(data_dir_of(target) / "keel.db")


# --- values that differ by backend -------------------------------------------------


def uuid_value(text):
    """A uuid for the columns SQLite keeps as 16 raw bytes (events.org_id,
    events.api_key_id: schema 0006); native uuid (text here) on PostgreSQL."""
    if enabled():
        return str(text)
    return bytes.fromhex(str(text).replace("-", ""))


def ts_value(us):
    """A timestamp given as µs since the epoch."""
    if enabled():
        return EPOCH + dt.timedelta(microseconds=int(us))
    return int(us)


true_value = True  # sqlite3 stores True as 1
false_value = False


# --- running statements ------------------------------------------------------------


def _sqlite_connect(target, readonly):
    if readonly:
        return sqlite3.connect(f"file:{db_path(target)}?mode=ro", uri=True, timeout=30)
    return sqlite3.connect(db_path(target), timeout=30)


_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")


def _pg_statement(statement):
    """SQLite's `?` → psycopg2's `%s` (outside string literals); `%` escaped."""
    s = statement.replace("%", "%%")
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group(0) == "?" else m.group(0), s)


def _count_placeholders(fragment):
    return sum(1 for m in _PLACEHOLDER.finditer(fragment) if m.group(0) == "?")


def _pg_value(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        d = v - EPOCH
        return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds
    if isinstance(v, memoryview):
        return v.tobytes()
    return v


def _pg_connect(target):
    import psycopg2
    import psycopg2.extensions
    import psycopg2.extras

    con = pgtest.connect(pgtest.OWNER, database_for(data_dir_of(target)), autocommit=False)
    # JSON as its text (as SQLite returns it); timestamps are converted by _pg_value.
    psycopg2.extras.register_default_json(con, loads=lambda s: s)
    psycopg2.extras.register_default_jsonb(con, loads=lambda s: s)
    return con


_WRITE = re.compile(r"^\s*(UPDATE|DELETE|INSERT)\b", re.I)
_UPDATE = re.compile(r"^\s*UPDATE\s+(\w+)\s+SET\s+(.*?)\s+WHERE\s+(.*)$", re.I | re.S)
_UPDATE_ALL = re.compile(r"^\s*UPDATE\s+(\w+)\s+SET\s+", re.I | re.S)
_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+(\w+)(?:\s+WHERE\s+(.*))?$", re.I | re.S)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\((.*)\)\s*$", re.I | re.S)


def _split_top(text):
    """Splits a VALUES list at top-level commas."""
    out, depth, cur, quote = [], 0, "", False
    for ch in text:
        if ch == "'" :
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return out


def _org_column(cur, table):
    cur.execute("SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s", (table,))
    cols = {r[0] for r in cur.fetchall()}
    if "org_id" in cols:
        return "org_id"
    if table == "orgs":
        return "id"
    return None


def _orgs_of_write(cur, statement, args):
    """The orgs a write touches (None: the table has no org; run it as is)."""
    m = _INSERT.match(statement)
    if m:
        table, cols, values = m.group(1), m.group(2), m.group(3)
        col = _org_column(cur, table)
        if col is None:
            return None
        names = [c.strip() for c in cols.split(",")]
        exprs = _split_top(values)
        i = 0
        for name, expr in zip(names, exprs):
            if name == col:
                if expr == "?":
                    return [str(args[i])]
                return [expr.strip("'")]
            i += _count_placeholders(expr)
        return None
    m = _UPDATE.match(statement)
    if m:
        table, sets, where = m.groups()
        where_args = args[_count_placeholders(sets):]
    else:
        m = _DELETE.match(statement)
        if m:
            table, where = m.group(1), m.group(2)
            where_args = args
        else:
            m = _UPDATE_ALL.match(statement)
            if not m:
                return None
            table, where, where_args = m.group(1), None, ()
    col = _org_column(cur, table)
    if col is None:
        return None
    q = f"SELECT DISTINCT {col}::text FROM {table}"
    if where:
        q += " WHERE " + where
    cur.execute(_pg_statement(q), tuple(where_args))
    return [r[0] for r in cur.fetchall()]


def _pg_run(cur, statement, args, org):
    """Runs one statement inside the current transaction; returns (rows, rowcount)."""
    cur.execute("SELECT set_config('app.system', 'on', true)")
    pg_sql = _pg_statement(statement)
    if not _WRITE.match(statement):
        cur.execute(pg_sql, tuple(args))
        rows = [tuple(_pg_value(v) for v in r) for r in cur.fetchall()] if cur.description else []
        return rows, cur.rowcount
    orgs = [org] if org is not None else _orgs_of_write(cur, statement, args)
    if orgs is None:
        orgs = [None]
    rows, count = [], 0
    for o in orgs:
        cur.execute("SELECT set_config('app.org_id', %s, true)", ("" if o is None else str(o),))
        cur.execute(pg_sql, tuple(args))
        if cur.description:
            rows += [tuple(_pg_value(v) for v in r) for r in cur.fetchall()]
        count += max(cur.rowcount, 0)
    return rows, count


def script(target, statements, org=None):
    """Runs (statement, args) pairs in one transaction; returns the rows of the
    last one."""
    if not enabled():
        con = _sqlite_connect(target, readonly=False)
        try:
            with con:
                out = []
                for statement, args in statements:
                    out = con.execute(statement, tuple(args)).fetchall()
            return out
        finally:
            con.close()
    con = _pg_connect(target)
    try:
        with con:
            with con.cursor() as cur:
                out = []
                for statement, args in statements:
                    out, _ = _pg_run(cur, statement, tuple(args), org)
        return out
    finally:
        con.close()


def _one(target, statement, args, org, readonly):
    """(rows, column names, rowcount) of one statement."""
    if not enabled():
        con = _sqlite_connect(target, readonly)
        try:
            cur = con.execute(statement, tuple(args))
            rows = cur.fetchall()
            names = [d[0] for d in cur.description] if cur.description else []
            n = cur.rowcount
            con.commit()
            return rows, names, n
        finally:
            con.close()
    con = _pg_connect(target)
    try:
        with con:
            with con.cursor() as cur:
                rows, n = _pg_run(cur, statement, tuple(args), org)
                names = [d[0] for d in cur.description] if cur.description else []
        return rows, names, n
    finally:
        con.close()


def sql(target, statement, *args, org=None):
    """Runs one statement; returns its rows as tuples."""
    return _one(target, statement, args, org, readonly=False)[0]


def execute(target, statement, *args, org=None):
    """Runs one write; returns the number of rows it changed."""
    return _one(target, statement, args, org, readonly=False)[2]


def rows(target, statement, *args, org=None):
    """A read; rows as dicts (column name → value)."""
    out, names, _ = _one(target, statement, args, org, readonly=True)
    return [dict(zip(names, r)) for r in out]


def columns(target, table):
    """{column name: declared type, upper case} of a table: SQLite's declared
    types (INTEGER, TEXT, BLOB), PostgreSQL's data_type (UUID, JSONB, BYTEA …)."""
    if not enabled():
        return {r[1]: r[2].upper() for r in sql(target, "PRAGMA table_info(%s)" % table)}
    got = sql(target, "SELECT column_name, data_type FROM information_schema.columns"
              " WHERE table_schema = current_schema() AND table_name = ?", table)
    return {name: kind.upper() for name, kind in got}
