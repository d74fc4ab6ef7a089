"""The query routes over ingested telemetry (docs/query.md): GET /v1/sessions,
/v1/sessions/{id}, /v1/sessions/{id}/verify, /v1/events, /v1/events/{id}.

One module-scoped server and a small known dataset, posted once: every list
is checked against the order and filter computed here from what was sent,
walking every page. Tampering with the stored chain is done with SQL on the
server's database (dbdirect; in an org of its own, so the other tests keep their data).
"""

import base64
import datetime as dt

import pytest

import dbdirect
import hashchain_ref
from apikeys import add_member, make_key, plain_session, sql
from conftest import assert_problem
from ingest_helpers import ev, get, ingest_org, llm, post_batch, unique_id, uuid_blob

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
ZERO_HASH = "0" * 64
ROUTES = ["/v1/sessions", "/v1/sessions/alpha", "/v1/sessions/alpha/verify", "/v1/events",
          "/v1/events/some-id"]


def at(seconds):
    """T0 + seconds as RFC 3339 (microseconds) and as µs since the epoch."""
    t = T0 + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), int(t.timestamp()) * 1_000_000 + t.microsecond


# --- the dataset ------------------------------------------------------------------

# (session id, agent, tags, [(type, offset s, severity, data)])
SESSIONS = [
    ("alpha", "agent-a", ["prod", "eu"], [
        ("session_start", 0, "info", None),
        ("llm_call", 1, "info", {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
                                 "output_tokens": 200}),
        ("tool_call", 2, "info", {"tool_name": "search", "ratio": 0.1, "big": 1e21}),
        ("tool_result", 3, "info", {"tool_name": "search", "text": "line\nnext \u00e9 \U0001F600"}),
        ("session_end", 4, "info", None),
    ]),
    ("beta", "agent-b", ["prod"], [
        ("session_start", 10, "info", None),
        ("error", 11, "error", {"message": "boom"}),
        ("custom", 12, "debug", None),
    ]),
    ("gamma", "agent-a", ["staging"], [
        ("session_start", 20, "info", None),
        ("guardrail", 21, "warn", None),
        ("llm_call", 22, "info", {"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5,
                                  "cost_usd": "0.5"}),
    ]),
    ("delta", "agent-b", [], [
        ("session_start", 20, "info", None),
        ("llm_call", 21, "info", {"model": "no-such-model-anywhere", "input_tokens": 10}),
        ("feedback", 22, "info", {"score": 1}),
    ]),
    ("eps", "agent-c", ['a"b', "x,y"], [
        ("session_start", 30, "info", None),
        ("custom", 30, "critical", None),
    ]),
    # 25 events at one instant: pages must split ties by id.
    ("flat", "agent-c", ["bulk"], [("session_start", 40, "info", None)]
     + [("custom", 40, "info", {"n": i}) for i in range(24)]),
] + [
    # 12 sessions that start at one instant.
    ("tie-%02d" % i, "agent-t", [], [("session_start", 50, "info", None)]) for i in range(12)
]


class Dataset:
    def __init__(self, org):
        self.org = org
        self.events = []    # what was sent, enriched with ts_us
        self.sessions = {}  # id -> {agent, tags, started_us, status}


def post_sessions(server, org, specs):
    """Posts the sessions' events (one batch) and returns what was sent."""
    sent = []
    for sid, agent, tags, events in specs:
        for etype, offset, severity, data in events:
            stamp, us = at(offset)
            members = {"agent_id": agent, "timestamp": stamp, "severity": severity, "tags": tags}
            if data is not None:
                members["data"] = data
            e = ev(sid, etype, **members)
            e["ts_us"] = us
            sent.append(e)
    body = [{k: v for k, v in e.items() if k != "ts_us"} for e in sent]
    for i in range(0, len(body), 100):
        r = post_batch(server, org.key, body[i:i + 100])
        assert r.status_code == 202 and r.json()["accepted"] == len(body[i:i + 100]), r.text
    return sent


@pytest.fixture(scope="module")
def data(server):
    org = ingest_org(server)
    d = Dataset(org)
    d.events = post_sessions(server, org, SESSIONS)
    for sid, agent, tags, events in SESSIONS:
        types = [t for t, *_ in events]
        status = "error" if "error" in types else "completed" if "session_end" in types else "active"
        d.sessions[sid] = {"agent": agent, "tags": tags, "started_us": at(events[0][1])[1],
                           "status": status}
    return d


@pytest.fixture(scope="module")
def other(server, data):
    """Org B: its own key and one session that shares a name with org A's."""
    org = ingest_org(server)
    org.events = post_sessions(server, org, [("alpha", "agent-z", [], [
        ("session_start", 5, "info", None), ("custom", 6, "info", None)])])
    return org


def expected_events(d, **f):
    match = {k: v for k, v in f.items() if k not in ("from_us", "to_us")}
    rows = [e for e in d.events
            if all(e[k] == v for k, v in match.items())
            and f.get("from_us", -2**63) <= e["ts_us"] < f.get("to_us", 2**63)]
    return [e["id"] for e in sorted(rows, key=lambda e: (e["ts_us"], e["id"]), reverse=True)]


def expected_sessions(d, pred=lambda s: True):
    rows = [(s["started_us"], sid) for sid, s in d.sessions.items() if pred(s)]
    return [sid for _, sid in sorted(rows, reverse=True)]


def walk(server, key, path, limit, **params):
    """Every page of a list; checks the page shapes. Returns the items."""
    items, cursor = [], None
    for _ in range(1000):
        q = dict(params, limit=limit)
        if cursor:
            q["cursor"] = cursor
        r = get(server, key, path, params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"data", "next_cursor"}, body
        assert len(body["data"]) <= limit
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert isinstance(cursor, str) and cursor
    raise AssertionError("the list never ended")


def ids(items):
    out = [i["id"] for i in items]
    assert len(out) == len(set(out)), "a row appeared twice"
    return out


# --- events list ---------------------------------------------------------------------


def test_events_newest_first_every_page(server, data):
    want = expected_events(data)
    assert len(want) == 53
    for limit in (1, 7, 50, 200):
        assert ids(walk(server, data.org.key, "/v1/events", limit)) == want, limit


@pytest.mark.parametrize("filters", [
    {"type": "llm_call"},
    {"type": "custom"},
    {"type": "agent_action"},
    {"session_id": "flat"},
    {"session_id": "beta"},
    {"session_id": "nobody"},
    {"agent_id": "agent-a"},
    {"agent_id": "agent-c"},
    {"severity": "error"},
    {"severity": "critical"},
    {"severity": "info"},
    {"type": "llm_call", "agent_id": "agent-b"},
    {"type": "custom", "severity": "critical"},
    {"session_id": "flat", "type": "custom"},
    {"session_id": "alpha", "severity": "info", "agent_id": "agent-a"},
])
def test_events_filters(server, data, filters):
    want = expected_events(data, **filters)
    assert ids(walk(server, data.org.key, "/v1/events", 4, **filters)) == want
    assert ids(walk(server, data.org.key, "/v1/events", 200, **filters)) == want


def test_events_time_range(server, data):
    frm, frm_us = at(11)
    to, to_us = at(40)
    want = expected_events(data, from_us=frm_us, to_us=to_us)
    assert want and len(want) < 53
    got = walk(server, data.org.key, "/v1/events", 3, **{"from": frm, "to": to})
    assert ids(got) == want
    # from inclusive, to exclusive: the 25 events at +40 s are out, the one at +11 s in.
    assert all(e["timestamp"] != to for e in got)
    assert any(e["timestamp"] == frm for e in got)
    # With other filters and indexes.
    for extra in ({"type": "custom"}, {"agent_id": "agent-b"}, {"session_id": "gamma"},
                  {"severity": "warn"}):
        want = expected_events(data, from_us=frm_us, to_us=to_us, **extra)
        got = walk(server, data.org.key, "/v1/events", 2, **{"from": frm, "to": to}, **extra)
        assert ids(got) == want, extra
    # An offset is the same instant.
    got = walk(server, data.org.key, "/v1/events", 50, **{"from": "2026-03-01T13:00:40+01:00"})
    assert ids(got) == expected_events(data, from_us=at(40)[1])
    # An empty range.
    assert walk(server, data.org.key, "/v1/events", 50, **{"from": frm, "to": frm}) == []


def test_events_ties_split_by_id(server, data):
    """25 events share one timestamp: every page boundary falls inside it."""
    got = walk(server, data.org.key, "/v1/events", 3, session_id="flat")
    assert len(got) == 25
    assert len({e["timestamp"] for e in got}) == 1
    assert ids(got) == sorted(ids(got), reverse=True)


def test_event_shape(server, data):
    sent = next(e for e in data.events if e["type"] == "tool_call")
    r = get(server, data.org.key, "/v1/events/" + sent["id"])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    e = r.json()
    assert set(e) == {"id", "session_id", "agent_id", "type", "timestamp", "received_at",
                      "severity", "data", "metadata", "tags", "cost_usd", "cost_flags",
                      "api_key_id", "seq", "hash", "prev_hash"}
    assert e["id"] == sent["id"] and e["session_id"] == "alpha" and e["agent_id"] == "agent-a"
    assert e["type"] == "tool_call" and e["severity"] == "info" and e["seq"] == 3
    assert e["timestamp"] == "2026-03-01T12:00:02.000000Z"
    assert e["received_at"].endswith("Z") and len(e["received_at"]) == 27
    assert e["data"] == {"tool_name": "search", "ratio": 0.1, "big": 1e21}
    assert e["metadata"] == {} and e["tags"] == ["prod", "eu"]
    assert e["cost_usd"] == "0.000000000" and e["cost_flags"] == []
    assert len(e["hash"]) == 64 and int(e["hash"], 16) >= 0
    # The stored canonical text comes back as it is: the real 0.1 is not
    # printed as 0.10000000000000001, 1e21 keeps its canonical form.
    assert '"ratio":0.1,' in r.text and '"big":1e+21' in r.text
    # The key that sent it.
    keys = data.org.owner.get(data.org.keys_url, timeout=30).json()["data"]
    assert e["api_key_id"] in {k["id"] for k in keys}
    # The list shows the same document.
    listed = [x for x in walk(server, data.org.key, "/v1/events", 200, session_id="alpha")
              if x["id"] == sent["id"]]
    assert listed == [e]


def test_event_ids_percent_encoded(server, data):
    e = data.events[0]
    r = get(server, data.org.key, "/v1/events/" + e["id"].replace("-", "%2D"))
    assert r.status_code == 200 and r.json()["id"] == e["id"]


def test_cost_usd(server, data):
    llm_calls = {e["session_id"]: e for e in walk(server, data.org.key, "/v1/events", 200,
                                                  type="llm_call")}
    # gpt-4o: $2.50 / M input, $10 / M output: 1000 in + 200 out = $0.0045.
    assert llm_calls["alpha"]["cost_usd"] == "0.004500000"
    assert llm_calls["alpha"]["cost_flags"] == []
    assert llm_calls["gamma"]["cost_usd"] == "0.500000000"
    assert "client_supplied" in llm_calls["gamma"]["cost_flags"]
    assert llm_calls["delta"]["cost_usd"] == "0.000000000"
    assert llm_calls["delta"]["cost_flags"] == ["unpriced"]
    r = get(server, data.org.key, "/v1/sessions/alpha")
    assert r.json()["session"]["cost_usd"] == "0.004500000"


# --- sessions list -------------------------------------------------------------------


def test_sessions_newest_first_every_page(server, data):
    want = expected_sessions(data)
    assert len(want) == 18 and want[:12] == ["tie-%02d" % i for i in range(11, -1, -1)]
    # gamma and delta start at the same instant: id descending.
    assert want.index("gamma") < want.index("delta")
    for limit in (1, 5, 50):
        assert ids(walk(server, data.org.key, "/v1/sessions", limit)) == want, limit


@pytest.mark.parametrize("filters,pred", [
    ({"agent_id": "agent-a"}, lambda s: s["agent"] == "agent-a"),
    ({"agent_id": "agent-t"}, lambda s: s["agent"] == "agent-t"),
    ({"agent_id": "nobody"}, lambda s: False),
    ({"status": "error"}, lambda s: s["status"] == "error"),
    ({"status": "completed"}, lambda s: s["status"] == "completed"),
    ({"status": "active"}, lambda s: s["status"] == "active"),
    ({"tag": "prod"}, lambda s: "prod" in s["tags"]),
    ({"tag": "eu"}, lambda s: "eu" in s["tags"]),
    ({"tag": 'a"b'}, lambda s: 'a"b' in s["tags"]),
    ({"tag": "x,y"}, lambda s: "x,y" in s["tags"]),
    ({"tag": "b"}, lambda s: False),
    ({"tag": "x"}, lambda s: False),
    ({"tag": "pro"}, lambda s: False),
    ({"agent_id": "agent-b", "status": "active"},
     lambda s: s["agent"] == "agent-b" and s["status"] == "active"),
    ({"tag": "prod", "status": "error"}, lambda s: "prod" in s["tags"] and s["status"] == "error"),
])
def test_sessions_filters(server, data, filters, pred):
    want = expected_sessions(data, pred)
    assert ids(walk(server, data.org.key, "/v1/sessions", 2, **filters)) == want


def test_sessions_time_range(server, data):
    frm, frm_us = at(10)
    to, to_us = at(50)
    want = expected_sessions(data, lambda s: frm_us <= s["started_us"] < to_us)
    assert want == ["flat", "eps", "gamma", "delta", "beta"]
    assert ids(walk(server, data.org.key, "/v1/sessions", 2, **{"from": frm, "to": to})) == want
    got = walk(server, data.org.key, "/v1/sessions", 50, **{"from": at(50)[0]})
    assert ids(got) == ["tie-%02d" % i for i in range(11, -1, -1)]


def test_session_shape(server, data):
    r = get(server, data.org.key, "/v1/sessions", params={"tag": "eu"})
    s = r.json()["data"][0]
    assert set(s) == {"id", "agent_id", "started_at", "ended_at", "status", "counts", "tokens",
                      "cost_usd", "tags", "chain", "updated_at"}
    assert s["id"] == "alpha" and s["agent_id"] == "agent-a" and s["status"] == "completed"
    assert s["started_at"] == "2026-03-01T12:00:00.000000Z"
    assert s["ended_at"] == "2026-03-01T12:00:04.000000Z"
    assert s["counts"] == {"events": 5, "tool_calls": 1, "errors": 0, "llm_calls": 1}
    assert s["tokens"] == {"input": 1000, "output": 200, "reasoning": 0, "cache_read": 0,
                           "cache_write": 0}
    assert s["tags"] == ["prod", "eu"]
    assert s["chain"]["seq"] == 5 and len(s["chain"]["head"]) == 64
    assert s["updated_at"].endswith("Z")
    beta = get(server, data.org.key, "/v1/sessions/beta").json()["session"]
    assert beta["ended_at"] is None and beta["status"] == "error"
    assert beta["counts"]["errors"] == 1


# --- session detail --------------------------------------------------------------------


def test_session_detail_pages_in_chain_order(server, data):
    pages, cursor, events = 0, None, []
    while True:
        params = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        r = get(server, data.org.key, "/v1/sessions/flat", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"session", "events", "next_cursor"}
        assert body["session"]["id"] == "flat" and body["session"]["counts"]["events"] == 25
        assert len(body["events"]) <= 10
        events += body["events"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [e["seq"] for e in events] == list(range(1, 26))
    sent = [e["id"] for e in data.events if e["session_id"] == "flat"]
    assert [e["id"] for e in events] == sent  # chain order is the order sent
    prev = ZERO_HASH
    for e in events:
        assert e["prev_hash"] == prev
        prev = e["hash"]
    assert prev == body["session"]["chain"]["head"]


def test_session_detail_hashes_recompute(server, data):
    """The events as returned recompute to their hashes with the Python
    reference of docs/hash-chain.md."""
    body = get(server, data.org.key, "/v1/sessions/alpha", params={"limit": 200}).json()
    prev = bytes(32)
    for e in body["events"]:
        h = hashchain_ref.chain_hash(prev, hashchain_ref.canonical_event(e))
        assert h.hex() == e["hash"], e
        prev = h
    assert prev.hex() == body["session"]["chain"]["head"]


def test_session_detail_empty_page_and_limit(server, data):
    r = get(server, data.org.key, "/v1/sessions/beta", params={"limit": 3})
    assert len(r.json()["events"]) == 3 and r.json()["next_cursor"] is None
    r = get(server, data.org.key, "/v1/sessions/beta", params={"limit": 2})
    cursor = r.json()["next_cursor"]
    r = get(server, data.org.key, "/v1/sessions/beta", params={"limit": 2, "cursor": cursor})
    assert [e["seq"] for e in r.json()["events"]] == [3] and r.json()["next_cursor"] is None


# --- verification ------------------------------------------------------------------------


def verify(server, key, sid):
    r = get(server, key, f"/v1/sessions/{sid}/verify")
    assert r.status_code == 200, r.text
    return r.json()


def test_verify_valid(server, data):
    for sid in ("alpha", "flat", "eps"):
        v = verify(server, data.org.key, sid)
        head = get(server, data.org.key, "/v1/sessions/" + sid).json()["session"]["chain"]
        assert v == {"session_id": sid, "valid": True, "events": head["seq"],
                     "failed_at_index": None, "reason": None, "chain_seq": head["seq"],
                     "head": head["head"]}


@pytest.fixture(scope="module")
def tampered(server):
    """An org of its own whose sessions are damaged one way each."""
    org = ingest_org(server)
    specs = [(name, "agent-v", [], [("session_start", 0, "info", None)]
              + [("custom", i, "info", {"i": i}) for i in range(1, 5)])
             for name in ("changed", "removed", "swapped", "truncated", "head", "intact")]
    post_sessions(server, org, specs)
    org_blob = uuid_blob(org.id)

    def events_sql(statement, *args):
        n = dbdirect.execute(server, statement, *args)
        assert n == 1, (statement, n)

    events_sql("UPDATE events SET data = '{\"i\":33}' WHERE org_id = ? AND session_id = 'changed'"
               " AND seq = 3", org_blob)
    events_sql("DELETE FROM events WHERE org_id = ? AND session_id = 'removed' AND seq = 3",
               org_blob)
    for a, b in ((2, -1), (3, 2), (-1, 3)):
        events_sql("UPDATE events SET seq = ? WHERE org_id = ? AND session_id = 'swapped'"
                   " AND seq = ?", b, org_blob, a)
    events_sql("DELETE FROM events WHERE org_id = ? AND session_id = 'truncated' AND seq = 5",
               org_blob)
    events_sql("UPDATE sessions SET chain_head = ? WHERE org_id = ? AND id = 'head'",
               bytes(32), org.id)
    return org


@pytest.mark.parametrize("sid,index,reason,events", [
    ("changed", 2, "hash_mismatch", 3),
    ("removed", 2, "missing_event", 3),
    ("swapped", 1, "hash_mismatch", 2),
    ("truncated", 4, "missing_event", 4),
    ("head", 4, "head_mismatch", 5),
])
def test_verify_detects_tampering(server, tampered, sid, index, reason, events):
    v = verify(server, tampered.key, sid)
    assert v["valid"] is False, v
    assert (v["failed_at_index"], v["reason"], v["events"]) == (index, reason, events), v
    assert v["chain_seq"] == 5


def test_verify_untouched_neighbour(server, tampered):
    assert verify(server, tampered.key, "intact")["valid"] is True


def test_tampered_rows_still_list(server, tampered):
    """A changed row is shown as stored; the lists keep working."""
    r = get(server, tampered.key, "/v1/sessions/changed")
    assert r.json()["events"][2]["data"] == {"i": 33}
    assert len(walk(server, tampered.key, "/v1/events", 200)) == 30 - 2  # two deleted


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/events", "/v1/sessions", "/v1/sessions/alpha"])
def test_limit_bounds(server, data, path):
    key = data.org.key
    for value, ok in (("1", True), ("200", True), ("50", True), ("0", False), ("201", False),
                      ("-1", False), ("abc", False), ("", False), ("1.5", False),
                      ("99999999999999999999", False)):
        r = get(server, key, path, params={"limit": value})
        if ok:
            assert r.status_code == 200, (value, r.text)
        else:
            body = assert_problem(r, 400, "validation_failed")
            assert [e["field"] for e in body["errors"]] == ["limit"], (value, body)
    r = get(server, key, path)
    items = r.json()["data" if path != "/v1/sessions/alpha" else "events"]
    assert len(items) <= 50
    r = get(server, key, path, params={"limit": 1})
    assert len(r.json()["data" if path != "/v1/sessions/alpha" else "events"]) == 1


def test_default_limit_is_50(server, data):
    r = get(server, data.org.key, "/v1/events")
    assert len(r.json()["data"]) == 50 and r.json()["next_cursor"]


@pytest.mark.parametrize("path", ["/v1/events", "/v1/sessions", "/v1/sessions/flat"])
def test_malformed_cursor(server, data, path):
    key = data.org.key
    other_kind = {"/v1/events": "/v1/sessions", "/v1/sessions": "/v1/events",
                  "/v1/sessions/flat": "/v1/events"}[path]
    foreign = get(server, key, other_kind, params={"limit": 1}).json()["next_cursor"]
    own = get(server, key, path, params={"limit": 1}).json()["next_cursor"]
    assert foreign and own
    raw = base64.urlsafe_b64decode(own + "=" * (-len(own) % 4))
    bad_id = base64.urlsafe_b64encode(raw[:9] + b"bad id!").rstrip(b"=").decode()
    for cursor in ("!!!", "AAAA", "a" * 300, foreign, bad_id, "e" * 13, own + "A"):
        r = get(server, key, path, params={"cursor": cursor})
        body = assert_problem(r, 400, "validation_failed")
        assert [e["field"] for e in body["errors"]] == ["cursor"], (cursor, body)
        assert body["errors"][0]["code"] == "invalid_format"


@pytest.mark.parametrize("path,name,value", [
    ("/v1/events", "type", "llm-call"),
    ("/v1/events", "type", ""),
    ("/v1/events", "severity", "fatal"),
    ("/v1/events", "severity", "INFO"),
    ("/v1/sessions", "status", "done"),
    ("/v1/events", "from", "yesterday"),
    ("/v1/events", "to", "2026-13-01T00:00:00Z"),
    ("/v1/sessions", "from", "2026-03-01"),
    ("/v1/events", "agent_id", "has space"),
    ("/v1/events", "session_id", "x" * 129),
    ("/v1/sessions", "agent_id", ""),
    ("/v1/sessions", "tag", ""),
    ("/v1/sessions", "tag", "t" * 65),
])
def test_bad_filter_values(server, data, path, name, value):
    body = assert_problem(get(server, data.org.key, path, params={name: value}), 400,
                          "validation_failed")
    assert [e["field"] for e in body["errors"]] == [name], body


def test_from_after_to(server, data):
    body = assert_problem(get(server, data.org.key, "/v1/events",
                              params={"from": at(10)[0], "to": at(5)[0]}), 400,
                          "validation_failed")
    assert body["errors"][0]["field"] == "from"


def test_empty_cursor_is_the_first_page(server, data):
    first = get(server, data.org.key, "/v1/events", params={"limit": 3}).json()
    assert get(server, data.org.key, "/v1/events", params={"limit": 3, "cursor": ""}).json() == first


def test_unknown_parameters_ignored(server, data):
    r = get(server, data.org.key, "/v1/events", params={"limit": 2, "colour": "blue"})
    assert r.status_code == 200 and len(r.json()["data"]) == 2


def test_tag_limits(server, data):
    r = get(server, data.org.key, "/v1/sessions", params={"tag": "t" * 64})
    assert r.status_code == 200 and r.json() == {"data": [], "next_cursor": None}


def test_unknown_ids_404(server, data):
    for path in ("/v1/sessions/nobody", "/v1/sessions/nobody/verify", "/v1/events/nobody",
                 "/v1/events/has%20space", "/v1/sessions/" + "x" * 129, "/v1/events/" + "x" * 65,
                 "/v1/events/batch"):
        assert_problem(get(server, data.org.key, path), 404, "not_found")


# --- authentication and isolation -------------------------------------------------------------


def test_no_credentials_401(server):
    for path in ROUTES:
        assert_problem(plain_session().get(server.url + path, timeout=30), 401, "unauthorized")


def test_key_without_read_scope_403(server, data):
    key = make_key(data.org, scopes=["ingest"])["key"]
    for path in ROUTES:
        assert_problem(get(server, key, path), 403, "insufficient_scope")
    # A read-only key is enough.
    key = make_key(data.org, scopes=["read"])["key"]
    assert get(server, key, "/v1/sessions/alpha").status_code == 200


def test_viewer_session_reads(server, data):
    session, _ = add_member(data.org, "viewer")
    headers = {"X-Keel-Org": data.org.id}
    r = session.get(server.url + "/v1/events", params={"limit": 200}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert ids(r.json()["data"]) == expected_events(data)
    r = session.get(server.url + "/v1/sessions/alpha/verify", headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["valid"] is True
    # The org named by slug works too.
    r = session.get(server.url + "/v1/sessions", headers={"X-Keel-Org": data.org.slug},
                    timeout=30)
    assert ids(r.json()["data"]) == expected_sessions(data)[:50]


def test_owner_session_matches_key(server, data):
    headers = {"X-Keel-Org": data.org.id}
    for path in ("/v1/sessions?limit=200", "/v1/sessions/gamma", "/v1/events?type=llm_call",
                 "/v1/events/" + data.events[3]["id"]):
        by_session = data.org.owner.get(server.url + path, headers=headers, timeout=30)
        by_key = get(server, data.org.key, path)
        assert by_session.status_code == by_key.status_code == 200
        assert by_session.json() == by_key.json()


def test_non_member_session_404(server, data, other):
    headers = {"X-Keel-Org": data.org.id}
    for path in ROUTES:
        r = other.owner.get(server.url + path, headers=headers, timeout=30)
        assert_problem(r, 404, "not_found")


def test_other_org_cannot_see(server, data, other):
    a_event = data.events[0]["id"]
    for path in ("/v1/sessions/beta", "/v1/sessions/beta/verify", "/v1/events/" + a_event):
        assert_problem(get(server, other.key, path), 404, "not_found")
        r = other.owner.get(server.url + path, headers={"X-Keel-Org": other.id}, timeout=30)
        assert_problem(r, 404, "not_found")
    # Lists show org B's rows only, even for a session id both orgs use.
    b_ids = {e["id"] for e in other.events}
    assert set(ids(walk(server, other.key, "/v1/events", 200))) == b_ids
    assert ids(walk(server, other.key, "/v1/sessions", 200)) == ["alpha"]
    assert ids(walk(server, other.key, "/v1/events", 200, session_id="alpha")) == \
        [e["id"] for e in reversed(other.events)]
    alpha = get(server, other.key, "/v1/sessions/alpha").json()
    assert alpha["session"]["agent_id"] == "agent-z"
    assert [e["id"] for e in alpha["events"]] == [e["id"] for e in other.events]
    assert verify(server, other.key, "alpha")["events"] == 2
    # And org A's lists never show org B's rows.
    a_ids = set(ids(walk(server, data.org.key, "/v1/events", 200)))
    assert not a_ids & b_ids
    # A cursor from org B is only a position: in org A it shows org A's rows.
    cursor = get(server, other.key, "/v1/events", params={"limit": 1}).json()["next_cursor"]
    r = get(server, data.org.key, "/v1/events", params={"cursor": cursor, "limit": 200})
    assert set(ids(r.json()["data"])) <= a_ids
