"""Tenant isolation under load on PostgreSQL (R-TEN-3, R-TEN-4;
docs/internals/postgres.md).

Twenty orgs' clients run at once against one server whose reader pool is
smaller than the number of clients, so pooled connections pass from org to
org all the time. Each client mixes writes (event batches), reads (session
and event lists, single sessions) and the --dev isolation probe, which reads
every tenant table with NO org condition of its own — under the client's org
and with no org set at all — so row-level security is the only fence. Some
batches are made to fail in the writer on purpose (their transactions are
rolled back and retried one event at a time). Every answer is checked: no
row of another org may ever come back.

The control runs the same load with postgres.test_leaky_scope, which sets
the org with a session-level setting that outlives its transaction on the
pooled connection — the classic pooling bug. The same checks must then see
foreign rows: the test can fail.
"""

import random
import threading

import pytest

from apikeys import call_with_key
from ingest_helpers import ev, ingest_org, llm, post_batch
from pgtest import postgres_only
from test_dead_letters import arm_ingest_failures

pytestmark = postgres_only

ORGS = 20
ROUNDS = 12


def _load(server, seed):
    orgs = [ingest_org(server) for _ in range(ORGS)]
    by_id = {o.id: i for i, o in enumerate(orgs)}
    foreign = []  # (client, what, detail)
    errors = []
    lock = threading.Lock()

    def note(kind, client, what, detail):
        with lock:
            (foreign if kind == "foreign" else errors).append((client, what, detail))

    def client(i):
        org = orgs[i]
        rnd = random.Random(seed * 1000 + i)
        prefix = f"o{i}-"
        for n in range(ROUNDS):
            action = rnd.choice(["write", "write", "read", "read", "probe", "probe_none", "fail"])
            if action in ("write", "fail"):
                if action == "fail":
                    arm_ingest_failures(server, 1)
                sess = f"{prefix}s{n % 3}"
                batch = [ev(sess, "custom", data={"n": n}), llm(sess)]
                r = post_batch(server, org.key, batch)
                if r.status_code != 202:
                    note("error", i, "batch", f"{r.status_code} {r.text[:200]}")
            elif action == "read":
                r = call_with_key(server, org.key, "/v1/sessions?limit=100")
                if r.status_code != 200:
                    note("error", i, "sessions", f"{r.status_code} {r.text[:200]}")
                    continue
                for s in r.json()["data"]:
                    if not s["id"].startswith(prefix):
                        note("foreign", i, "sessions", s["id"])
                r = call_with_key(server, org.key, "/v1/events?limit=100")
                if r.status_code != 200:
                    note("error", i, "events", f"{r.status_code} {r.text[:200]}")
                    continue
                for e in r.json()["data"]:
                    if not e["session_id"].startswith(prefix):
                        note("foreign", i, "events", e["session_id"])
            else:
                unscoped = action == "probe_none"
                path = "/v1/dev/store/rls-probe" + ("?unscoped=1" if unscoped else "")
                r = call_with_key(server, org.key, path)
                if r.status_code != 200:
                    note("error", i, "probe", f"{r.status_code} {r.text[:200]}")
                    continue
                for row in r.json()["rows"]:
                    if unscoped or row["org_id"] != org.id:
                        other = by_id.get(row["org_id"], "?")
                        note("foreign", i, f"probe {row['table']}", f"org {other}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(ORGS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    return foreign, errors


def _server(fresh_server, leaky):
    args = ["--set", "postgres.pool_size=4", "--set", "ingest.queue_max=100000"]
    if leaky:
        args += ["--set", "postgres.test_leaky_scope=true"]
    return fresh_server(extra_args=args)


def test_no_foreign_rows_under_concurrent_load(fresh_server):
    srv = _server(fresh_server, leaky=False)
    foreign, errors = _load(srv, seed=1)
    assert errors == []
    assert foreign == []


def test_control_session_level_setting_is_caught(fresh_server):
    """Broken on purpose: the same load must see other orgs' rows."""
    srv = _server(fresh_server, leaky=True)
    foreign, _ = _load(srv, seed=2)
    assert foreign, "the leak the control introduces went unseen: the load test cannot fail"
