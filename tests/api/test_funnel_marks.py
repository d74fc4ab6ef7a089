"""Funnels from funnel_marks (migration 0012; docs/analytics.md, "Funnels").

A funnel whose steps have no match, by session, is answered from
funnel_marks: each event's type and time packed per session and hour by the
writer. A match on any step, or by=user, reads the events instead. Both must
give the answer the documented rule gives; these tests check both against a
reference computed here, on data made to be awkward: sessions across hours,
events out of order and at the same instant, a window edge, repeated step
types, a session over many batches. The marks of events stored before
the migration are written by the migration itself (checked by running it
again on a database whose marks were dropped).
"""

import datetime as dt
import random

import pytest

import dbdirect
from conftest import KeelServer, run_keel
from ingest_helpers import ev, ingest_org, post_batch

HOUR_US = 3_600_000_000
TYPES = ["session_start", "llm_call", "tool_call", "tool_result", "tool_error", "session_end",
         "error", "custom"]
LETTER = {t: chr(ord("a") + i) for i, t in enumerate(
    ["session_start", "session_end", "llm_call", "tool_call", "tool_result", "tool_error",
     "agent_action", "error", "guardrail", "feedback", "health_check", "custom"])}


DATA = {"llm_call": {"model": "m-1", "provider": "acme"},
        "tool_call": {"tool_name": "search"},
        "tool_result": {"tool_name": "search"},
        "tool_error": {"tool_name": "search", "error": "boom"}}


def event(sid, typ, us, **members):
    return ev(sid, typ, agent_id="fm-agent", timestamp=stamp(us), data=DATA.get(typ, {}),
              **members)


def stamp(us):
    t = dt.datetime.fromtimestamp(us // 1_000_000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def now_us():
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1_000_000)


def reference(events, steps, window_days):
    """The documented rule: per session, its events in the window in time
    order (at one instant in step order), each moving the session on when it
    satisfies the next step."""
    to = now_us() + 5 * 60 * 1_000_000
    frm = now_us() - window_days * 86_400 * 1_000_000
    per = {}
    for sid, typ, us in events:
        if not frm <= us < to:
            continue
        mask = [i for i, s in enumerate(steps) if s == typ]
        if mask:
            per.setdefault(sid, []).append((us, mask[0], set(mask)))
    counts = [0] * len(steps)
    for items in per.values():
        items.sort(key=lambda x: (x[0], x[1]))
        p = 0
        for _, _, mask in items:
            if p < len(steps) and p in mask:
                counts[p] += 1
                p += 1
    return counts


def funnel(server, key, steps, match=False, by="session", window="7d"):
    from apikeys import call_with_key
    body = {"steps": [{"type": t, **({"match": {"metadata.all": True}} if match else {})}
                      for t in steps], "by": by, "window": window}
    r = call_with_key(server, key, "/v1/analytics/funnel", method="POST", json=body)
    assert r.status_code == 200, r.text
    return [s["count"] for s in r.json()["steps"]]


def make_events(rng, n_sessions, now):
    """(session, type, µs) triples and the events to send."""
    triples, sent = [], []
    for s in range(n_sessions):
        sid = f"fm-{s}"
        # Some sessions straddle the 7-day edge; most are well inside.
        if s % 7 == 0:
            base = now - 7 * 86_400_000_000 - rng.randint(-3, 3) * 1_800_000_000
        else:
            base = now - rng.randint(2, 8 * 24) * HOUR_US + rng.randint(0, HOUR_US)
        t = base
        for k in range(rng.randint(3, 30)):
            typ = "session_start" if k == 0 else rng.choice(TYPES)
            r = rng.random()
            if r < 0.15:
                us = t  # the same instant as the one before
            elif r < 0.3:
                us = t - rng.randint(1, 600_000_000)  # out of order, sometimes an hour back
            else:
                t += rng.randint(1, 900_000_000)  # up to 15 minutes on: sessions cross hours
                us = t
            us = min(us, now - 60_000_000)
            # Nothing within 2 minutes of the 7-day edge: it moves while the test runs.
            edge = now - 7 * 86_400_000_000
            if abs(us - edge) < 120_000_000:
                us = edge + (240_000_000 if us >= edge else -240_000_000)
            triples.append((sid, typ, us))
            sent.append(event(sid, typ, us, metadata={"all": True}))
    return triples, sent


@pytest.fixture(scope="module")
def dataset(server):
    rng = random.Random(12)
    org = ingest_org(server)
    triples, sent = make_events(rng, 90, now_us())
    rng.shuffle(sent)
    for i in range(0, len(sent), 100):
        r = post_batch(server, org.key, sent[i:i + 100])
        assert r.status_code == 202 and r.json()["accepted"] == len(sent[i:i + 100]), r.text
    return org, triples


STEP_LISTS = [
    ["session_start", "llm_call", "tool_call", "tool_result", "session_end"],
    ["llm_call", "llm_call", "tool_call"],
    ["tool_call", "tool_error", "tool_call", "session_end"],
    ["custom"],
    ["error", "session_start"],
]


@pytest.mark.parametrize("steps", STEP_LISTS + [
    [random.Random(seed).choice(TYPES) for _ in range(random.Random(seed + 100).randint(1, 10))]
    for seed in range(6)])
def test_marks_and_events_agree_with_the_rule(server, dataset, steps):
    org, triples = dataset
    want = reference(triples, steps, 7)
    assert sum(want) > 0 or steps == ["error", "session_start"]
    assert funnel(server, org.key, steps) == want              # funnel_marks
    assert funnel(server, org.key, steps, match=True) == want  # the events


def test_wider_window(server, dataset):
    org, triples = dataset
    steps = STEP_LISTS[0]
    want = reference(triples, steps, 30)
    assert want != reference(triples, steps, 7)  # the edge sessions count now
    assert funnel(server, org.key, steps, window="30d") == want


def run_compaction(server):
    from apikeys import plain_session
    r = plain_session().post(server.url + "/v1/dev/jobs/analytics.marks_compact/run", timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def rows_by_hour(server, like):
    h = "(extract(epoch from hour) * 1000000)::bigint" if dbdirect.enabled() else "hour"
    got = dbdirect.rows(server, f"SELECT {h} AS h, marks FROM funnel_marks WHERE marks LIKE ?", like)
    by = {}
    for g in got:
        by.setdefault(g["h"], []).append(g["marks"])
    return by


def dirty_hours(server, before_us):
    h = "(extract(epoch from hour) * 1000000)::bigint" if dbdirect.enabled() else "hour"
    return {r["h"] for r in dbdirect.rows(server, f"SELECT {h} AS h FROM funnel_marks_dirty"
                                          " WHERE hour < ?", dbdirect.ts_value(before_us))}


def test_compaction(server, dataset):
    """The job rewrites each ended hour as a line per session, marks in time
    order; the answers do not change, and events arriving late for a
    compacted hour are counted, then compacted again."""
    org, triples = dataset
    ended = now_us() - 2 * HOUR_US  # hours the job takes (it takes those before now - 1 h)
    before = rows_by_hour(server, "fm-%")
    assert any(len(v) > 1 for h, v in before.items() if h < ended)  # something to merge
    assert dirty_hours(server, ended)
    run_compaction(server)
    after = rows_by_hour(server, "fm-%")
    assert set(after) == set(before)
    for h, marks in after.items():
        if h >= ended:
            continue
        assert len(marks) == 1, h
        lines = [line for line in marks[0].split("\n") if line]
        sessions = [line.split(" ")[0] for line in lines]
        assert sessions == sorted(set(sessions))
        for line in lines:
            m = line.split(" ")[1]
            offsets = [m[i + 1:i + 9] for i in range(0, len(m), 9)]
            assert offsets == sorted(offsets)
    assert not {h for h in dirty_hours(server, ended)} & set(after)
    for steps in STEP_LISTS:
        want = reference(triples, steps, 7)
        assert funnel(server, org.key, steps) == want
        assert funnel(server, org.key, steps, match=True) == want
    # Late events for a compacted hour: a new row, the hour dirty again.
    hour = max(h for h in after if h < ended - 24 * HOUR_US)
    late = [("fm-3", "tool_call", hour + 5), ("fm-late", "session_start", hour + 7),
            ("fm-late", "llm_call", hour + 9)]
    r = post_batch(server, org.key, [event(sid, typ, us, metadata={"all": True})
                                     for sid, typ, us in late])
    assert r.status_code == 202 and r.json()["accepted"] == 3, r.text
    triples = triples + late
    assert len(rows_by_hour(server, "fm-%")[hour]) == 2
    assert hour in dirty_hours(server, ended)
    for steps in STEP_LISTS:
        assert funnel(server, org.key, steps) == reference(triples, steps, 7)
    run_compaction(server)
    assert len(rows_by_hour(server, "fm-%")[hour]) == 1
    for steps in STEP_LISTS:
        assert funnel(server, org.key, steps) == reference(triples, steps, 7)
    dataset[1][:] = triples  # later tests see the late events too


def test_marks_format(server):
    org = ingest_org(server)
    now = now_us()
    hour = now - now % HOUR_US - 5 * HOUR_US
    sent = [event("fmt-1", "session_start", hour + 1),
            event("fmt-2", "llm_call", hour + 2),
            event("fmt-1", "tool_error", hour + HOUR_US - 1),
            event("fmt-1", "custom", hour + HOUR_US)]
    r = post_batch(server, org.key, sent)
    assert r.status_code == 202 and r.json()["accepted"] == 4, r.text
    got = dbdirect.rows(server, "SELECT first_id, marks FROM funnel_marks"
                        " WHERE first_id IN (?, ?, ?, ?) ORDER BY hour",
                        *[e["id"] for e in sent])
    # A row per hour of the batch, keyed by its first event there; a line per session.
    assert [(g["first_id"], g["marks"]) for g in got] == [
        (sent[0]["id"], "fmt-1 " + LETTER["session_start"] + "00000001"
         + LETTER["tool_error"] + "d693a3ff\n"
         + "fmt-2 " + LETTER["llm_call"] + "00000002\n"),
        (sent[3]["id"], "fmt-1 " + LETTER["custom"] + "00000000\n")]


def test_session_over_many_batches(server):
    org = ingest_org(server)
    now = now_us()
    hour = now - now % HOUR_US - 2 * HOUR_US
    cycle = ["session_start", "llm_call", "tool_call", "tool_result"]
    triples, sent = [], []
    for k in range(2100):
        typ = cycle[k % 4]
        triples.append(("long-1", typ, hour + 1000 * k))
        sent.append(event("long-1", typ, hour + 1000 * k))
    for i in range(0, len(sent), 100):
        r = post_batch(server, org.key, sent[i:i + 100])
        assert r.status_code == 202 and r.json()["accepted"] == len(sent[i:i + 100]), r.text
    got = dbdirect.rows(server, "SELECT marks FROM funnel_marks WHERE marks LIKE ?", "long-1 %")
    assert sorted(len(g["marks"]) for g in got) == [len("long-1 \n") + 9 * 100] * 21
    steps = ["session_start", "tool_result", "session_start", "llm_call", "session_end"]
    want = reference(triples, steps, 7)
    assert want == [1, 1, 1, 1, 0]
    assert funnel(server, org.key, steps) == want


def test_single_events_share_rows(server):
    """Single events (a batch each) append their lines to the row the writer
    inserted last for the org and hour, up to 896 characters a row."""
    from ingest_helpers import post_event
    org = ingest_org(server)
    now = now_us()
    hour = now - now % HOUR_US - 3 * HOUR_US
    triples = []
    for k in range(120):
        sid, typ, us = f"one-{k % 7}", TYPES[k % len(TYPES)], hour + 1000 * k
        triples.append((sid, typ, us))
        r = post_event(server, org.key, event(sid, typ, us))
        assert r.status_code == 202, r.text
    got = dbdirect.rows(server, "SELECT marks FROM funnel_marks WHERE marks LIKE ?", "one-%")
    lines = [line for g in got for line in g["marks"].split("\n") if line]
    assert len(lines) == 120                     # a line per event ...
    assert all(len(g["marks"]) <= 896 for g in got)
    assert len(got) <= 120 * len("one-0 a00000000\n") // 896 + 2  # ... about 50 to a row
    for steps in STEP_LISTS:
        assert funnel(server, org.key, steps) == reference(triples, steps, 7)


def test_migration_writes_marks_of_stored_events(keel_bin, tmp_path):
    srv = KeelServer(keel_bin, tmp_path / "k")
    srv.start()
    try:
        org = ingest_org(srv)
        triples, sent = make_events(random.Random(5), 25, now_us())
        for i in range(0, len(sent), 100):
            r = post_batch(srv, org.key, sent[i:i + 100])
            assert r.status_code == 202, r.text
        steps = STEP_LISTS[0]
        want = reference(triples, steps, 7)
        assert sum(want) > 0
        assert funnel(srv, org.key, steps) == want
    finally:
        srv.stop()
    # As a database migrated before 0012: no marks table, the migration not applied.
    version = 4 if dbdirect.enabled() else 12
    dbdirect.script(srv, [("DROP TABLE funnel_marks", ()), ("DROP TABLE funnel_marks_dirty", ()),
                          ("DELETE FROM schema_migrations WHERE version = ?", (version,))])
    r = run_keel(["migrate", "--data-dir", str(srv.data_dir)], cwd=str(srv.workdir))
    assert r.returncode == 0, r.stdout + r.stderr
    n = dbdirect.sql(srv, "SELECT count(*) FROM funnel_marks")[0][0]
    assert n > 0
    again = KeelServer(keel_bin, tmp_path / "k2")  # its own log; the same data
    again.start(["--data-dir", str(srv.data_dir)])
    try:
        assert funnel(again, org.key, steps) == want
        assert funnel(again, org.key, steps, match=True) == want
        more = STEP_LISTS[2]
        assert funnel(again, org.key, more) == reference(triples, more, 7)
        # The migration's rows (a row per session-hour) are compacted like the writer's.
        assert dirty_hours(srv, now_us())  # srv: the data directory `again` serves
        run_compaction(again)
        assert not dirty_hours(srv, now_us() - 2 * HOUR_US)
        assert funnel(again, org.key, steps) == want
    finally:
        again.stop()
