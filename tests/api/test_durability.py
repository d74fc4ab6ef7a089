"""Crash durability of ingestion (docs/events.md "The answer"; docs/hash-chain.md).

Several clients ingest batches with unique ids into a handful of shared
sessions while keel is killed with SIGKILL at random moments and restarted on
the same data directory, over and over. A 202 promises that its events are
durably stored, so at the end:

- every event id acknowledged with 202 (accepted, or a duplicate: a retry of
  an event already stored) is in the events table; the primary key keeps it
  there once;
- nothing is stored that no client sent;
- every session's hash chain verifies from the rows alone, recomputed with
  the reference implementation (hashchain_ref.py): seq contiguous from 1,
  prev_hash links, every hash, and the session row's chain_seq, chain_head
  and event_count;
- an acknowledged batch sent again is answered with duplicates only, and a
  batch is stored whole or not at all (one SAVEPOINT in one group commit).

Clients retry some unacknowledged batches with the same ids (before and after
restarts), so duplicates and exactly-once are exercised across crashes.
KEEL_DURABILITY_SEED=<n> replays a run's random choices (the seed is printed
in every failure message; the kill timing still depends on the machine).
"""

import os
import random
import threading
import time
import uuid

import requests

import dbdirect
import hashchain_ref as ref
from apikeys import sql
from conftest import SLOW_FACTOR
from ingest_helpers import ingest_org

KILLS = 30
CLIENTS = 4
SESSIONS = ["dur-s%d" % i for i in range(5)]
REQUEST_TIMEOUT_S = 10 * SLOW_FACTOR
# Per incarnation: wait this long for a first acknowledgement before killing
# anyway (a kill before any request reaches keel exercises start-up only).
FIRST_ACK_WAIT_S = 5 * SLOW_FACTOR
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Life:
    """The current keel process: clients ask for its URL; the killer swaps it."""

    def __init__(self, fresh_server, data_dir):
        self.fresh_server = fresh_server
        self.data_dir = data_dir
        self.cv = threading.Condition()
        self.url = None
        self.gen = 0  # incarnation number
        self.acks = 0  # 202s of the current incarnation
        self.server = None
        self.all = []  # every incarnation, for the sanitizer check
        self.stopping = False

    def start(self):
        """A new keel on the same data directory (its own workdir and log)."""
        srv = self.fresh_server(extra_args=["--data-dir", str(self.data_dir)])
        with self.cv:
            self.server = srv
            self.all.append(srv)
            self.url = srv.url
            self.gen += 1
            self.acks = 0
            self.cv.notify_all()
        return srv

    def kill(self):
        with self.cv:
            self.url = None
            srv = self.server
        srv.kill()  # SIGKILL, then waits for the process

    def current(self, timeout):
        """(url, incarnation), waiting for a live server; (None, gen) on timeout
        or when the run is stopping."""
        with self.cv:
            self.cv.wait_for(lambda: self.url or self.stopping, timeout)
            return self.url, self.gen

    def acked(self, gen):
        with self.cv:
            if gen == self.gen:
                self.acks += 1
                self.cv.notify_all()

    def wait_ack(self, timeout):
        with self.cv:
            return self.cv.wait_for(lambda: self.acks > 0, timeout)

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()


def make_event(rng, eid, session):
    """One valid event; a mix of types, numbers (reals included), unicode,
    tags and metadata so the canonical form is exercised after recovery."""
    kind = rng.randrange(5)
    e = {"id": eid, "session_id": session, "agent_id": rng.choice(["planner", "worker-1"])}
    if kind == 0:
        e["type"] = "llm_call"
        inp = rng.randrange(100, 5000)
        e["data"] = {"provider": "openai", "model": "gpt-4o", "input_tokens": inp,
                     "output_tokens": rng.randrange(1, 900), "cache_read_tokens": inp // 2,
                     "latency_ms": rng.randrange(1, 10**6) / 8.0, "status": "ok"}
    elif kind == 1:
        e["type"] = "tool_call"
        e["data"] = {"tool_name": "search", "call_id": eid, "args": {"q": "caf\u00e9 \u4e16\u754c",
                                                                      "k": rng.randrange(10)}}
    elif kind == 2:
        e["type"] = "tool_error"
        e["severity"] = "error"
        e["data"] = {"tool_name": "http_get", "error": "timeout after 30s\n\tat fetch()",
                     "duration_ms": 30000.5}
    elif kind == 3:
        e["type"] = "custom"
        e["timestamp"] = "2026-01-0%dT10:00:00.%06d+02:00" % (rng.randrange(1, 10),
                                                                rng.randrange(10**6))
        e["data"] = {"reals": [0.1, -0.0, 1e21, rng.random()], "nested": {"b": [], "a": None}}
    else:
        e["type"] = "agent_action"
    if rng.random() < 0.5:
        e["tags"] = rng.sample(["prod", "eu", "\U0001f680", "beta"], rng.randrange(1, 3))
    if rng.random() < 0.5:
        e["metadata"] = {"trace_id": "%032x" % rng.getrandbits(128)}
    return e


class Client(threading.Thread):
    """Posts batches until told to stop; remembers what was acknowledged."""

    def __init__(self, num, life, key, seed, findings):
        super().__init__(daemon=True, name="durability-client-%d" % num)
        self.num = num
        self.life = life
        self.key = key
        self.rng = random.Random(seed)
        self.findings = findings
        self.stop_flag = threading.Event()
        self.http = requests.Session()
        self.http.trust_env = False
        self.next_id = 0
        self.sent = {}  # event id -> event, every event ever sent
        self.acked = {}  # event id -> (incarnation, time) of its first 202
        self.unacked = []  # batches never acknowledged
        self.acked_batches = []
        self.posts = self.errors = self.retries = self.resends = 0
        self.recovered = 0  # retries answered with duplicates: stored, but the 202 was lost
        self.error = None

    def new_batch(self):
        n = 1 if self.rng.random() < 0.2 else self.rng.randrange(2, 25)
        events = []
        for _ in range(n):
            self.next_id += 1
            eid = "c%d-%06d" % (self.num, self.next_id)
            events.append(make_event(self.rng, eid, self.rng.choice(SESSIONS)))
        for e in events:
            self.sent[e["id"]] = e
        # Batches of one go to POST /v1/events half of the time.
        return {"events": events, "single": n == 1 and self.rng.random() < 0.5}

    def pick(self):
        """(batch, why): a retry of an unacknowledged batch (same ids), a
        resend of an acknowledged one, or a new one."""
        r = self.rng.random()
        if self.unacked and r < 0.3:
            return self.unacked.pop(self.rng.randrange(len(self.unacked))), "retry"
        if self.acked_batches and r < 0.4 and self.rng.random() < 0.25:
            return self.rng.choice(self.acked_batches), "resend"
        return self.new_batch(), "new"

    def post(self, url, batch):
        """The 202 body, or None when not acknowledged."""
        headers = {"Authorization": "Bearer " + self.key}
        try:
            if batch["single"]:
                r = self.http.post(url + "/v1/events", json=batch["events"][0], headers=headers,
                                   timeout=REQUEST_TIMEOUT_S)
            else:
                r = self.http.post(url + "/v1/events/batch", json={"events": batch["events"]},
                                   headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException:
            return None
        if r.status_code != 202:
            if r.status_code not in (503,):
                self.findings.append("unexpected %d answer: %s" % (r.status_code, r.text[:300]))
            return None
        try:
            return r.json()
        except ValueError:
            self.findings.append("202 with a body that is not JSON: %r" % r.text[:300])
            return None

    def handle(self, batch, why, gen, body):
        n = len(batch["events"])
        if body is None:
            self.errors += 1
            if why != "resend":
                self.unacked.append(batch)
            return
        acc, dup, rej = body.get("accepted"), body.get("duplicates"), body.get("rejected")
        ids = [e["id"] for e in batch["events"]]
        if rej != 0 or acc + dup != n:
            self.findings.append("batch %s..%s (%s): answer %s" % (ids[0], ids[-1], why, body))
            return
        if why == "resend" and dup != n:
            self.findings.append("acknowledged batch %s..%s sent again was stored again: %s"
                                 % (ids[0], ids[-1], body))
        if acc and dup and why != "resend":
            self.findings.append("batch %s..%s (%s) stored in part: %d accepted, %d duplicates"
                                 % (ids[0], ids[-1], why, acc, dup))
        if why == "retry" and dup == n:
            self.recovered += 1
        now = time.monotonic()
        for eid in ids:
            self.acked.setdefault(eid, (gen, now))
        if why != "resend":
            self.acked_batches.append(batch)
        self.life.acked(gen)

    def run(self):
        try:
            while not self.stop_flag.is_set():
                url, gen = self.life.current(timeout=0.2)
                if not url:
                    continue
                batch, why = self.pick()
                self.posts += 1
                self.retries += why == "retry"
                self.resends += why == "resend"
                self.handle(batch, why, gen, self.post(url, batch))
        except Exception as e:  # reported by the test
            self.error = e

    def settle(self):
        """After the last restart: every batch still unacknowledged is sent
        once more with the same ids (stored before a crash: duplicates)."""
        pending, self.unacked = self.unacked, []
        for batch in pending:
            url, gen = self.life.current(timeout=REQUEST_TIMEOUT_S)
            self.handle(batch, "retry", gen, self.post(url, batch))


# --- the checks on the stored rows ---------------------------------------


def stored_canonical(row, json_columns=()):
    """The canonical bytes of a stored event, rebuilt from its columns with
    the reference implementation; also checks that data, metadata and tags
    are stored in their canonical form (unless a column is PostgreSQL's
    json/jsonb, json_columns: its text is PostgreSQL's own rendering)."""
    eid, session_id, agent_id, type_, ts, severity, data, metadata, tags = row
    values = {}
    for name, text in (("data", data), ("metadata", metadata), ("tags", tags)):
        v = ref.load_json(text)
        if name not in json_columns and ref.canonical_value(v) != text:
            raise AssertionError("event %s: %s is not stored in canonical form: %r"
                                 % (eid, name, text[:200]))
        values[name] = v
    return ref.canonical_event({"id": eid, "session_id": session_id, "agent_id": agent_id,
                                "type": type_, "timestamp": ref.format_timestamp(ts),
                                "severity": severity, **values})


def org_param(srv, table, org_id):
    """The org id as the table stores it: its text, or its 16 raw bytes when
    the column is a BLOB (the compact events table)."""
    types = dbdirect.columns(srv, table)
    return uuid.UUID(org_id).bytes if types.get("org_id") == "BLOB" else org_id


def check_chains(srv, org_id):
    """Problems found in the org's chains and session rows (empty: all good).
    prev_hash, when the table still has it, must be the previous row's hash."""
    problems = []
    types = dbdirect.columns(srv, "events")
    columns = set(types)
    json_columns = {c for c, t in types.items() if t in ("JSON", "JSONB")}
    prev_col = "prev_hash" if "prev_hash" in columns else "NULL"
    rows = sql(srv, "SELECT session_id, seq, %s, hash, id, session_id, agent_id, type, ts,"
               " severity, data, metadata, tags FROM events WHERE org_id = ?"
               " ORDER BY session_id, seq" % prev_col, org_param(srv, "events", org_id))
    chains = {}
    for r in rows:
        chains.setdefault(r[0], []).append(r)
    heads = {r[0]: r[1:] for r in sql(srv, "SELECT id, chain_seq, chain_head, event_count"
                                      " FROM sessions WHERE org_id = ?",
                                      org_param(srv, "sessions", org_id))}
    if set(heads) != set(chains):
        problems.append("sessions without events or events without a session row: rows %s,"
                        " chains %s" % (sorted(heads), sorted(chains)))
    computed = {}  # session -> (events, head) as recomputed here
    for sid, chain in sorted(chains.items()):
        prev = ref.ZERO_HASH
        broken = True  # until the loop ends without a break
        for want_seq, r in enumerate(chain, 1):
            seq, digest = r[1], bytes(r[3])
            where = "session %s seq %d (event %s)" % (sid, seq, r[4])
            if seq != want_seq:
                problems.append("%s: expected seq %d (gap or fork)" % (where, want_seq))
                break
            if r[2] is not None and bytes(r[2]) != prev:
                problems.append("%s: prev_hash %s does not link to %s"
                                % (where, bytes(r[2]).hex(), prev.hex()))
                break
            want = ref.chain_hash(prev, stored_canonical(r[4:], json_columns))
            if digest != want:
                problems.append("%s: hash %s, recomputed %s" % (where, digest.hex(), want.hex()))
                break
            prev = digest
        else:
            broken = False
        if broken:
            continue  # reported; the head cannot be checked past the break
        computed[sid] = (len(chain), prev)
        head = heads.get(sid)
        if head and (head[0] != len(chain) or bytes(head[1]) != prev or head[2] != len(chain)):
            problems.append("session %s row: chain_seq %d, event_count %d, chain_head %s; the"
                            " chain has %d events ending in %s" % (
                                sid, head[0], head[2], bytes(head[1]).hex(), len(chain),
                                prev.hex()))
    return problems, len(rows), computed


def call_verify_route(url, key, computed):
    """GET /v1/sessions/{id}/verify for each session, when the route exists:
    None when it does not (404 for a session that has events), else the
    problems found: not valid, or a count or head other than the ones
    recomputed here."""
    s = requests.Session()
    s.trust_env = False
    problems = []
    for sid, (events, head) in sorted(computed.items()):
        r = s.get("%s/v1/sessions/%s/verify" % (url, sid),
                  headers={"Authorization": "Bearer " + key}, timeout=REQUEST_TIMEOUT_S)
        if r.status_code in (404, 405):
            return None
        if r.status_code != 200:
            problems.append("verify %s: %d %s" % (sid, r.status_code, r.text[:300]))
            continue
        body = r.json()
        if body.get("valid") is not True:
            problems.append("verify %s: %s" % (sid, body))
        if "events" in body and body["events"] != events:
            problems.append("verify %s: %s events, the rows have %d" % (sid, body["events"],
                                                                        events))
        if "head" in body and body["head"] != head.hex():
            problems.append("verify %s: head %s, recomputed %s" % (sid, body["head"], head.hex()))
    return problems


# --- the test ------------------------------------------------------------


def test_acknowledged_events_survive_sigkill(fresh_server):
    seed = int(os.environ.get("KEEL_DURABILITY_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    first = fresh_server()
    life = Life(fresh_server, first.data_dir)
    with life.cv:
        life.server, life.url, life.gen = first, first.url, 1
        life.all.append(first)
    org = ingest_org(first)
    findings = []
    clients = [Client(i, life, org.key, rng.randrange(1 << 30), findings) for i in range(CLIENTS)]
    for c in clients:
        c.start()

    t0 = time.monotonic()
    kills = 0
    try:
        for _ in range(KILLS):
            # Most kills land while batches are in flight (after this
            # incarnation's first 202); some right after start-up.
            if rng.random() < 0.85:
                life.wait_ack(FIRST_ACK_WAIT_S)
            time.sleep(rng.uniform(0.0, 0.4))
            life.kill()
            kills += 1
            life.start()
        life.wait_ack(FIRST_ACK_WAIT_S)
        time.sleep(0.2)
    finally:
        for c in clients:
            c.stop_flag.set()
        life.stop()
        for c in clients:
            c.join(REQUEST_TIMEOUT_S * 2)
    run_s = time.monotonic() - t0
    with life.cv:
        life.stopping = False
    for c in clients:
        assert not c.is_alive(), "client %d did not stop" % c.num
        assert c.error is None, "client %d failed: %r (seed %d)" % (c.num, c.error, seed)
        c.settle()

    srv = life.server
    assert srv.running(), "keel died on its own:\n" + srv.log_text()[-3000:]
    # A killed incarnation is not a failure (the fixture skips servers that
    # are not running), but a sanitizer report it printed before the kill is.
    for i, inc in enumerate(life.all, 1):
        text = inc.log_text()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, "incarnation %d (%s): %s\n%s" % (
                i, inc.log_path, marker, text[max(0, text.index(marker) - 200):][:4000])
    sent = {eid: e for c in clients for eid, e in c.sent.items()}
    acked = {eid: a for c in clients for eid, a in c.acked.items()}
    total = {k: sum(getattr(c, k) for c in clients)
             for k in ("posts", "retries", "recovered", "resends", "errors")}
    stats = ("seed %d: %d kills in %.1f s; %d posts, %d not acknowledged; %d retries of"
             " unacknowledged batches (%d of them already stored: the 202 was lost in the"
             " crash); %d resends of acknowledged batches; %d events sent, %d acknowledged"
             % (seed, kills, run_s, total["posts"], total["errors"], total["retries"],
                total["recovered"], total["resends"], len(sent), len(acked)))
    print(stats)
    assert kills >= 20, stats
    assert len(acked) > 0 and total["retries"] > 0, stats
    assert not findings, "%s\n%s" % (stats, "\n".join(findings[:20]))

    org_events = org_param(first, "events", org.id)
    stored = {r[0] for r in sql(first, "SELECT id FROM events WHERE org_id = ?", org_events)}
    lost = sorted(set(acked) - stored)
    assert not lost, "%s\n%d acknowledged events are not stored, e.g. %s" % (
        stats, len(lost), ["%s (acknowledged by incarnation %d)" % (i, acked[i][0])
                           for i in lost[:10]])
    unknown = sorted(stored - set(sent))
    assert not unknown, "%s\nstored events no client sent: %s" % (stats, unknown[:10])

    # What was stored is what was sent (data, metadata, tags, session, type).
    # PostgreSQL's json/jsonb columns render their own text: compared canonically.
    json_cols = {c for c, t in dbdirect.columns(first, "events").items() if t in ("JSON", "JSONB")}
    names = ("id", "session_id", "type", "data", "metadata", "tags")
    for row in sql(first, "SELECT id, session_id, type, data, metadata, tags FROM events"
                   " WHERE org_id = ?", org_events):
        row = tuple(ref.canonical_value(ref.load_json(v)) if n in json_cols else v
                    for n, v in zip(names, row))
        e = sent[row[0]]
        want = (e["session_id"], e["type"], ref.canonical_value(e.get("data") or {}),
                ref.canonical_value(e.get("metadata") or {}), ref.canonical_value(e.get("tags")
                                                                                   or []))
        assert tuple(row[1:]) == want, "%s\nevent %s stored as %r, sent %r" % (stats, row[0],
                                                                               row[1:], e)

    problems, nrows, computed = check_chains(first, org.id)
    assert not problems, "%s\n%s" % (stats, "\n".join(problems[:20]))
    assert nrows == len(stored)

    verify = call_verify_route(srv.url, org.key, computed)
    if verify is None:
        print("GET /v1/sessions/{id}/verify is not available; the Python check stands alone")
    else:
        assert not verify, "%s\n%s" % (stats, "\n".join(verify))
        print("GET /v1/sessions/{id}/verify agrees on all %d sessions" % len(computed))
