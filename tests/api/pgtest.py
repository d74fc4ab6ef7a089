"""PostgreSQL conventions shared by the API tests (the dual-backend suite).

`make test` runs the API suite twice: on SQLite, then with
KEEL_TEST_BACKEND=postgres against a throwaway cluster that
tools/pg-cluster.sh starts on a free loopback port. That script exports:

  KEEL_TEST_BACKEND   "postgres" (unset or "sqlite": the SQLite run)
  KEEL_TEST_PG_HOST   127.0.0.1
  KEEL_TEST_PG_PORT   the cluster's port

and prepares, in the cluster:
  - the superuser "postgres" (trust authentication on loopback);
  - the owner role "keel_owner" (LOGIN, CREATEDB; runs `keel migrate`, owns
    every table);
  - the app role "keel_app" (LOGIN; not superuser, no BYPASSRLS; what
    `keel serve` connects as);
  - the database "keel_template", owned by keel_owner and migrated with
    `keel migrate`: every test database is a copy of it.

Helpers here: enabled(), url(role, dbname), create_db(), connect(role, dbname).
"""

import itertools
import os

import pytest

SUPER = "postgres"
OWNER = "keel_owner"
APP = "keel_app"
TEMPLATE = "keel_template"

_counter = itertools.count(1)


def enabled():
    return os.environ.get("KEEL_TEST_BACKEND", "") == "postgres"


def backend():
    return "postgres" if enabled() else "sqlite"


def host():
    return os.environ.get("KEEL_TEST_PG_HOST", "127.0.0.1")


def port():
    return int(os.environ.get("KEEL_TEST_PG_PORT", "5432"))


def url(role, dbname):
    return f"postgres://{role}@{host()}:{port()}/{dbname}"


def connect(role, dbname, autocommit=True):
    """A psycopg2 connection as role to dbname."""
    import psycopg2

    con = psycopg2.connect(host=host(), port=port(), user=role, dbname=dbname)
    con.autocommit = autocommit
    return con


def create_db(prefix="keel_t"):
    """A fresh database copied from the migrated template; returns its name."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    con = connect(SUPER, "postgres")
    try:
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" OWNER "{OWNER}"')
    finally:
        con.close()
    return name


def drop_db(name):
    con = connect(SUPER, "postgres")
    try:
        with con.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        con.close()


postgres_only = pytest.mark.skipif(not enabled(), reason="PostgreSQL backend only")
