"""keel behind a transaction-mode pooler (R-TEN-3; docs/postgres.md).

PgBouncer in transaction mode hands each transaction whichever server
connection is free, so nothing may outlive a transaction on a connection:
the tenant setting is transaction-local (set_config(…, true)), and with
postgres.prepared_statements=false every statement travels with its values
instead of being prepared once per connection.

The test puts PgBouncer (fewer server connections than keel has clients)
between keel and the cluster and runs the leakage load of
test_pg_leakage.py through it: no error, no foreign row. The control runs
the same server with prepared statements on: through the pooler it must
fail, which shows the setting is what makes it work.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import pgtest
import dbdirect
from conftest import SLOW_FACTOR, KeelServer, _teardown_stop, wait_until
from pgtest import postgres_only
from test_pg_leakage import _load

pytestmark = postgres_only

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bouncer():
    """A PgBouncer in transaction mode on a free port, 4 server connections
    per database; run as the postgres user when the tests run as root
    (PgBouncer refuses root)."""
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed (tools/deps.sh installs it)")
    # Not under pytest's temporary root: that is private to this user, and
    # PgBouncer may run as another one.
    d = Path(tempfile.mkdtemp(prefix="keel-pgbouncer-"))
    port = _free_port()
    (d / "users.txt").write_text('"keel_app" ""\n"keel_owner" ""\n')
    (d / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={pgtest.host()} port={pgtest.port()}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {d}\n"
        "auth_type = trust\n"
        f"auth_file = {d}/users.txt\n"
        "pool_mode = transaction\n"
        "default_pool_size = 4\n"
        "max_client_conn = 200\n"
        f"logfile = {d}/pgbouncer.log\n"
        f"pidfile = {d}/pgbouncer.pid\n"
    )
    argv = [PGBOUNCER, str(d / "pgbouncer.ini")]
    if os.geteuid() == 0:
        uid = pwd.getpwnam("postgres").pw_uid
        for p in [d, *d.iterdir()]:
            os.chown(p, uid, -1)
        argv = ["runuser", "-u", "postgres", "--", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def accepting():
        import socket

        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return proc.poll() is not None

    wait_until(accepting, 10 * SLOW_FACTOR)
    assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pooled_server(keel_bin, tmp_path_factory, bouncer):
    """Factory: a --dev keel whose store URL goes through the pooler to the
    database of its data directory (the one the CLI helpers reach too)."""
    started = []

    def make(prepared):
        srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel"))
        started.append(srv)
        db = dbdirect.database_for(srv.data_dir)
        url = f"postgres://{pgtest.APP}@127.0.0.1:{bouncer}/{db}"
        args = ["--set", "postgres.pool_size=8",
                "--set", f"postgres.prepared_statements={'true' if prepared else 'false'}"]
        return srv.start(args, {"KEEL_STORE_URL": url})

    yield make
    _teardown_stop(*started)


def test_through_a_transaction_pooler_no_error_no_foreign_row(pooled_server):
    srv = pooled_server(prepared=False)
    foreign, errors = _load(srv, seed=3)
    assert errors == []
    assert foreign == []


def test_control_prepared_statements_break_behind_the_pooler(pooled_server):
    """The same load with statements prepared per connection: transactions
    land on server connections that never saw their statements, or where
    another client's statement holds the name."""
    srv = pooled_server(prepared=True)
    try:
        _, errors = _load(srv, seed=4)
    except AssertionError as e:  # the set-up of the load (orgs, keys) failed already
        errors = [str(e)]
    assert errors, "prepared statements worked through a transaction pooler: the test proves nothing"
    store_errors = [line for line in srv.log_text().splitlines()
                    if '"level":"error"' in line and '"event":"store.' in line]
    # A statement prepared on another server connection is missing here, or
    # one of this client's names is already taken there.
    assert any("prepared statement" in line for line in store_errors), store_errors[:3]
