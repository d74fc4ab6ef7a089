#!/usr/bin/env python3
"""Checks that every SQL statement of src/store/*.c prepares on PostgreSQL.

The statements are written once in keel's portable dialect (src/store/db.h)
and run on SQLite and PostgreSQL. This tool

  1. preprocesses each src/store/*.c with the C preprocessor (the SQL is
     built from adjacent string literals and #define'd column lists), then
     takes every run of adjacent string literals whose text starts with
     SELECT, INSERT, UPDATE, DELETE or WITH;
  2. rewrites it as the PostgreSQL backend does: $N unchanged,
     @ts(x) -> ('epoch'::timestamptz + (x)::bigint * interval '1 microsecond'),
     @us(x) -> (extract(epoch from (x)) * 1000000)::bigint;
  3. PREPAREs each one (parameters untyped, as the backend sends them) in a
     migrated database, as the app role, and prints every statement that
     fails with PostgreSQL's error.

Usage:
  tools/pg_sql_check.py [--host H] [--port P] [--user keel_app] [--dbname D]
                        [--src DIR] [--json] [--list]
Connection defaults come from KEEL_TEST_PG_HOST / KEEL_TEST_PG_PORT.
Exit status: 0 when every statement prepares, 1 when some fail, 2 on error.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A statement that opens with a comment (e.g. "/* SQLite only */ INSERT …") is
# one backend's variant, chosen in C by db_backend(): not checked here.
SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.I)
# Files under src/store/ whose literals are not statements of the dialect.
SKIP = {"backend.c", "db_util.c"}


def preprocess(path, include_dirs):
    """The translation unit's text after the preprocessor (no line markers).
    Falls back to preprocessing without its #include lines when a header
    cannot be found (the SQL macros are defined in the .c files)."""
    cmd = ["gcc", "-E", "-P", "-w"] + [f"-I{d}" for d in include_dirs] + [path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode == 0:
        return r.stdout
    with open(path, encoding="utf-8") as f:
        src = re.sub(r"(?m)^\s*#\s*include\b.*$", "", f.read())
    with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as tmp:
        tmp.write(src)
    try:
        r = subprocess.run(["gcc", "-E", "-P", "-w", tmp.name], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"cannot preprocess {path}: {r.stderr.strip()}")
        return r.stdout
    finally:
        os.unlink(tmp.name)


_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0", "a": "\a",
        "b": "\b", "f": "\f", "v": "\v", "?": "?"}


def unescape(body):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2:])
            out.append(chr(int(m.group(0), 16)))
            i += 2 + len(m.group(0))
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        else:
            out.append(_ESC.get(n, n))
            i += 2
    return "".join(out)


def string_runs(text):
    """Yields the concatenated text of every run of adjacent C string
    literals (comments are already gone after the preprocessor)."""
    i, n = 0, len(text)
    run = None
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            lit = unescape(text[i + 1:j])
            run = lit if run is None else run + lit
            i = j + 1
        elif c == "'":  # a character literal: skip it
            j = i + 1
            while text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            if run is not None:
                yield run
                run = None
        elif c.isspace():
            i += 1
        else:
            if run is not None:
                yield run
                run = None
            i += 1
    if run is not None:
        yield run


def extract(src_dir, include_dirs):
    """[(file, sql)] in file order, each distinct statement once per file."""
    out = []
    for path in sorted(glob.glob(os.path.join(src_dir, "*.c"))):
        if os.path.basename(path) in SKIP:
            continue
        seen = set()
        for s in string_runs(preprocess(path, include_dirs)):
            if SQL_START.match(s) and s not in seen:
                seen.add(s)
                out.append((os.path.relpath(path, ROOT), s))
    return out


def _rewrite_call(sql, name, fmt):
    """Replaces name(x) (balanced parentheses) by fmt.format(x)."""
    out, i = [], 0
    while True:
        k = sql.find(name + "(", i)
        if k < 0:
            out.append(sql[i:])
            return "".join(out)
        out.append(sql[i:k])
        j, depth = k + len(name) + 1, 1
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        inner = _rewrite_call(sql[k + len(name) + 1:j - 1], name, fmt)
        out.append(fmt.format(inner))
        i = j


def to_postgres(sql):
    """The backend's rewrite of the portable dialect."""
    sql = _rewrite_call(sql, "@ts", "('epoch'::timestamptz + ({})::bigint * interval '1 microsecond')")
    sql = _rewrite_call(sql, "@us", "(extract(epoch from ({})) * 1000000)::bigint")
    return sql


def check(conn, statements):
    """PREPAREs each statement; returns [(file, sql, pg_sql, error)] of failures."""
    failures = []
    cur = conn.cursor()
    for n, (path, sql) in enumerate(statements):
        pg = to_postgres(sql)
        try:
            cur.execute(f"PREPARE keel_check_{n} AS {pg}")
            cur.execute(f"DEALLOCATE keel_check_{n}")
        except Exception as e:  # psycopg2.Error
            msg = getattr(e, "pgerror", None) or str(e)
            failures.append((path, sql, pg, msg.strip()))
    cur.close()
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("KEEL_TEST_PG_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("KEEL_TEST_PG_PORT", "5432")))
    ap.add_argument("--user", default="keel_app")
    ap.add_argument("--dbname", default="keel_template")
    ap.add_argument("--src", default=os.path.join(ROOT, "src", "store"))
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--list", action="store_true", help="only list the statements found")
    a = ap.parse_args(argv)

    includes = [os.path.join(ROOT, "src")] + [
        d for d in (os.path.join(ROOT, "build"), os.path.join(ROOT, "build-b")) if os.path.isdir(d)]
    try:
        statements = extract(a.src, includes)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 2
    if a.list:
        for path, sql in statements:
            print(f"{path}: {sql}")
        print(f"{len(statements)} statements", file=sys.stderr)
        return 0

    import psycopg2

    try:
        conn = psycopg2.connect(host=a.host, port=a.port, user=a.user, dbname=a.dbname)
    except psycopg2.Error as e:
        print(f"cannot connect: {e}", file=sys.stderr)
        return 2
    conn.autocommit = True
    try:
        failures = check(conn, statements)
    finally:
        conn.close()

    if a.json:
        print(json.dumps({"statements": len(statements),
                          "failures": [{"file": f, "sql": s, "postgres_sql": p, "error": e}
                                       for f, s, p, e in failures]}, indent=1))
    else:
        for f, s, p, e in failures:
            print(f"--- {f}\n{s}\n  => {e}\n")
        print(f"{len(statements)} statements, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
