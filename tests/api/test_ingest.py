"""POST /v1/events and /v1/events/batch: the ingestion pipeline (docs/events.md).

The validation rules themselves are unit-tested table by table in
tests/unit/test_events.c, and prices in test_pricing.c; here the same rules
are checked through HTTP (field paths, codes, mixed batches, limits at N and
N + 1), with the answers, idempotency (concurrent clients included), what
lands in the events and sessions tables, backpressure, shutdown and auth.
"""

import json
import re
import signal
import threading
import time

import pytest
import requests

from apikeys import add_member, call_with_key, make_key, plain_session, sql
from conftest import assert_problem, json_body_of_size, wait_until
from ingest_helpers import ev, ingest_org, llm, post_batch, post_event, unique_id, uuid_blob
from tenancy_helpers import create_org

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def org(server):
    return ingest_org(server)


def stored(server, org_id, event_id):
    return sql(server, "SELECT session_id, seq, cost_nano, cost_flags, api_key_id FROM events"
               " WHERE org_id = ? AND id = ?", uuid_blob(org_id), event_id)


def count_events(server, org_id, session_id=None):
    if session_id is None:
        return sql(server, "SELECT count(*) FROM events WHERE org_id = ?",
                   uuid_blob(org_id))[0][0]
    return sql(server, "SELECT count(*) FROM events WHERE org_id = ? AND session_id = ?",
               uuid_blob(org_id), session_id)[0][0]


# --- answers --------------------------------------------------------------


def test_single_event_202_after_commit(server, org):
    sid = unique_id("s")
    e = ev(sid, "session_start")
    r = post_event(server, org.key, e)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body == {"accepted": 1, "duplicates": 0, "rejected": 0, "id": e["id"], "errors": [],
                    "request_id": r.headers["X-Request-Id"]}
    # 202 comes after the commit: the row is there as soon as the answer is.
    assert stored(server, org.id, e["id"])[0][:2] == (sid, 1)


def test_single_event_without_id_gets_uuidv7(server, org):
    r = post_event(server, org.key, ev(unique_id("s"), id=None))
    assert r.status_code == 202, r.text
    eid = r.json()["id"]
    assert UUID7.match(eid), eid
    assert len(stored(server, org.id, eid)) == 1


def test_batch_answer_counts_and_api_key_recorded(server, org):
    sid = unique_id("s")
    events = [ev(sid, "session_start"), llm(sid), ev(sid, "tool_call", data={"tool_name": "grep"}),
              ev(sid, "session_end")]
    r = post_batch(server, org.key, events)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"], body["errors"]) == (4, 0, 0, [])
    assert body["request_id"] == r.headers["X-Request-Id"]
    assert "id" not in body
    key_id = call_with_key(server, org.key).json()["key"]["id"]
    seqs = [stored(server, org.id, e["id"])[0] for e in events]
    assert [s[1] for s in seqs] == [1, 2, 3, 4]
    assert {s[4] for s in seqs} == {uuid_blob(key_id)}


def test_session_row_rollup(server, org):
    sid = unique_id("s")
    events = [
        ev(sid, "session_start", agent_id="planner", timestamp="2026-01-01T00:00:00Z",
           tags=["a", "b"]),
        llm(sid, input_tokens=1000, output_tokens=300, reasoning_tokens=100,
            cache_read_tokens=200, cache_write_tokens=50),
        llm(sid, input_tokens=10, output_tokens=5),
        ev(sid, "tool_call", data={"tool_name": "search"}),
        ev(sid, "tool_error", data={"tool_name": "search", "error": "boom"}),
        ev(sid, "custom", tags=["b", "c"]),
        ev(sid, "session_end", timestamp="2026-01-01T00:05:00Z"),
    ]
    r = post_batch(server, org.key, events)
    assert r.status_code == 202 and r.json()["accepted"] == 7, r.text
    row = sql(server, "SELECT agent_id, status, event_count, tool_count, error_count, llm_count,"
              " input_tokens, output_tokens, reasoning_tokens, cache_read_tokens,"
              " cache_write_tokens, tags, chain_seq, started_at, ended_at FROM sessions"
              " WHERE org_id = ? AND id = ?", org.id, sid)[0]
    assert row[:11] == ("planner", "completed", 7, 1, 1, 2, 1010, 305, 100, 200, 50)
    assert json.loads(row[11]) == ["a", "b", "c"]
    assert row[12] == 7
    assert row[14] - row[13] == 300 * 10**6


def test_cost_priced_unknown_and_client_supplied(server, org):
    sid = unique_id("s")
    priced = llm(sid, model="gpt-4o", input_tokens=1000, output_tokens=200)
    unknown = llm(sid, model="no-such-model-xyz", provider="nobody")
    client = llm(sid, model="gpt-4o", cost_usd="0.25")
    r = post_batch(server, org.key, [priced, unknown, client])
    assert r.status_code == 202 and r.json()["accepted"] == 3, r.text
    # data/prices.json: gpt-4o from 2024-10-02 costs 2.50 USD per million input
    # tokens and 10.00 per million output tokens: 1 000 × 2.5e-6 + 200 × 1e-5
    # = 0.0045 USD = 4 500 000 nano-USD.
    cost, flags = stored(server, org.id, priced["id"])[0][2:4]
    assert (cost, flags) == (4_500_000, 0)
    ucost, uflags = stored(server, org.id, unknown["id"])[0][2:4]
    assert ucost == 0 and uflags & 1  # PRICING_UNPRICED
    ccost, cflags = stored(server, org.id, client["id"])[0][2:4]
    assert ccost == 250_000_000 and cflags & 2  # PRICING_CLIENT_SUPPLIED
    total = sql(server, "SELECT cost_nano FROM sessions WHERE org_id = ? AND id = ?", org.id,
                sid)[0][0]
    assert total == cost + ccost


# --- validation through HTTP ------------------------------------------------

BAD = [
    # (mutation of a valid llm_call, field (relative to the event), code)
    (lambda e: e.pop("session_id"), "session_id", "required"),
    (lambda e: e.update(session_id=""), "session_id", "too_short"),
    (lambda e: e.update(session_id="s" * 129), "session_id", "too_long"),
    (lambda e: e.update(id="has space"), "id", "invalid_format"),
    (lambda e: e.update(id="x" * 65), "id", "too_long"),
    (lambda e: e.update(type="llm-call"), "type", "not_allowed"),
    (lambda e: e.update(severity="fatal"), "severity", "not_allowed"),
    (lambda e: e.update(timestamp="yesterday"), "timestamp", "invalid_format"),
    (lambda e: e.update(timestamp="2999-01-01T00:00:00Z"), "timestamp", "in_future"),
    (lambda e: e.update(tags="x"), "tags", "wrong_type"),
    (lambda e: e.update(tags=["t"] * 33), "tags", "too_long"),
    (lambda e: e.update(metadata=[]), "metadata", "wrong_type"),
    (lambda e: e.update(colour="red"), "colour", "unknown_field"),
    (lambda e: e["data"].pop("model"), "data.model", "required"),
    (lambda e: e["data"].update(input_tokens="5"), "data.input_tokens", "wrong_type"),
    (lambda e: e["data"].update(input_tokens=-1), "data.input_tokens", "out_of_range"),
    (lambda e: e["data"].update(output_tokens=10, reasoning_tokens=11), "data.output_tokens",
     "inconsistent_tokens"),
    (lambda e: e["data"].update(status="meh"), "data.status", "not_allowed"),
    (lambda e: e["data"].update(cost_usd="1e3"), "data.cost_usd", "invalid_format"),
    (lambda e: e["data"].update(pad="x" * 33000), "data", "too_large"),
]


def test_validation_matrix_in_one_mixed_batch(server, org):
    sid = unique_id("s")
    events = []
    for mutate, _, _ in BAD:
        e = llm(sid)
        mutate(e)
        events.append(e)
    good = [ev(sid), llm(sid)]
    events.extend(good)
    r = post_batch(server, org.key, events)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, len(BAD)), body
    by_index = {}
    for err in body["errors"]:
        assert set(err) == {"index", "code", "field", "message"}
        assert err["message"]
        by_index.setdefault(err["index"], []).append((err["field"], err["code"]))
    for i, (_, field, code) in enumerate(BAD):
        assert (f"events[{i}].{field}", code) in by_index.get(i, []), (i, by_index.get(i))
    assert sorted(by_index) == list(range(len(BAD)))
    # Only the good ones are stored, linked one after the other.
    assert count_events(server, org.id, sid) == 2
    assert [stored(server, org.id, e["id"])[0][1] for e in good] == [1, 2]


@pytest.mark.parametrize("mutate,field,code", BAD[:8])
def test_single_event_invalid_is_400_with_relative_paths(server, org, mutate, field, code):
    e = llm(unique_id("s"))
    mutate(e)
    r = post_event(server, org.key, e)
    body = assert_problem(r, 400, "validation_failed")
    assert {"field": field, "code": code} in [{"field": x["field"], "code": x["code"]}
                                              for x in body["errors"]], body
    if "id" in e and isinstance(e["id"], str):
        assert stored(server, org.id, e["id"]) == []


def test_all_events_rejected_is_202_nothing_stored(server, org):
    sid = unique_id("s")
    r = post_batch(server, org.key, [ev(sid, type="nope"), ev(sid, severity="loud")])
    assert r.status_code == 202, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (0, 2)
    assert count_events(server, org.id, sid) == 0
    assert sql(server, "SELECT count(*) FROM sessions WHERE org_id = ? AND id = ?", org.id,
               sid)[0][0] == 0


@pytest.mark.parametrize("body,code", [
    (b"{", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"events": []} x', "invalid_json"),
    (b"[]", "validation_failed"),
    (b'{"events": {}}', "validation_failed"),
    (b'{"events": []}', "validation_failed"),
    (b'{"events": [], "extra": 1}', "validation_failed"),
    (b'{"evnts": []}', "validation_failed"),
])
def test_wholly_invalid_body_is_400(server, org, body, code):
    r = call_with_key(server, org.key, "/v1/events/batch", method="POST", data=body,
                      headers={"Content-Type": "application/json"})
    assert_problem(r, 400, code)


def test_batch_of_100_accepted_101_refused(server, org):
    sid = unique_id("s")
    r = post_batch(server, org.key, [ev(sid) for _ in range(100)])
    assert r.status_code == 202 and r.json()["accepted"] == 100, r.text
    sid2 = unique_id("s")
    r = post_batch(server, org.key, [ev(sid2) for _ in range(101)])
    body = assert_problem(r, 400, "validation_failed")
    assert body["errors"][0]["field"] == "events" and body["errors"][0]["code"] == "too_long"
    assert count_events(server, org.id, sid2) == 0


def _batch_of_size(n, sid):
    """A valid batch body of exactly n bytes (one event, padded metadata)."""
    e = ev(sid, metadata={"p": ""})
    empty = len(json.dumps({"events": [e]}, separators=(",", ":")).encode())
    e["metadata"]["p"] = "x" * (n - empty)
    out = json.dumps({"events": [e]}, separators=(",", ":")).encode()
    assert len(out) == n
    return out, e


def test_body_limit_n_and_n_plus_1(fresh_server):
    srv = fresh_server(extra_args=["--set", "http.ingest_body_max=4096"])
    o = ingest_org(srv)
    sid = unique_id("s")
    body, e = _batch_of_size(4096, sid)
    r = call_with_key(srv, o.key, "/v1/events/batch", method="POST", data=body,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    body, e2 = _batch_of_size(4097, sid)
    r = call_with_key(srv, o.key, "/v1/events/batch", method="POST", data=body,
                      headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")
    assert stored(srv, o.id, e2["id"]) == []
    # The single-event route has the same limit.
    r = call_with_key(srv, o.key, "/v1/events", method="POST",
                      data=json_body_of_size(4097, session_id=sid, type="custom"),
                      headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")


def test_wrong_content_type_is_415(server, org):
    r = call_with_key(server, org.key, "/v1/events/batch", method="POST",
                      data=json.dumps({"events": [ev("s")]}), headers={"Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")


# --- idempotency ------------------------------------------------------------


def test_duplicates_across_requests_and_within_a_batch(server, org):
    sid = unique_id("s")
    a, b = ev(sid), ev(sid)
    r = post_batch(server, org.key, [a, b, dict(a)])
    assert (r.json()["accepted"], r.json()["duplicates"]) == (2, 1), r.text
    r = post_batch(server, org.key, [a, b, ev(sid)])
    assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 2), r.text
    r = post_event(server, org.key, a)
    assert r.status_code == 202 and (r.json()["accepted"], r.json()["duplicates"]) == (0, 1)
    assert count_events(server, org.id, sid) == 3


def test_same_id_in_two_orgs_is_two_events(server, org):
    other = ingest_org(server)
    e = ev(unique_id("s"))
    assert post_event(server, org.key, e).json()["accepted"] == 1
    assert post_event(server, other.key, e).json()["accepted"] == 1
    assert len(stored(server, org.id, e["id"])) == 1
    assert len(stored(server, other.id, e["id"])) == 1


def test_concurrent_duplicates_stored_once(server, org):
    sids = [unique_id("s") for _ in range(3)]
    events = [ev(sids[i % 3]) for i in range(60)]
    clients, results, errors = 8, [], []
    barrier = threading.Barrier(clients)

    def client(n):
        try:
            s = plain_session()
            barrier.wait()
            for rnd in range(3):
                # Different clients send overlapping slices in different orders.
                batch = events[(n * 7) % 60:] + events[:(n * 7) % 60]
                batch = batch[rnd * 20:rnd * 20 + 50]
                r = post_batch(server, org.key, batch, session=s)
                results.append(r.json() if r.status_code == 202 else (r.status_code, r.text))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(isinstance(x, dict) for x in results), results
    batches = [(events[(n * 7) % 60:] + events[:(n * 7) % 60])[rnd * 20:rnd * 20 + 50]
               for n in range(clients) for rnd in range(3)]
    sent = {e["id"] for b in batches for e in b}
    assert sum(x["accepted"] for x in results) == len(sent)
    assert sum(x["accepted"] + x["duplicates"] for x in results) == sum(map(len, batches))
    for sid in sids:
        n = count_events(server, org.id, sid)
        seqs = [row[0] for row in sql(server, "SELECT seq FROM events WHERE org_id = ? AND"
                                      " session_id = ? ORDER BY seq", uuid_blob(org.id), sid)]
        assert seqs == list(range(1, n + 1))
    assert sum(count_events(server, org.id, sid) for sid in sids) == len(sent)


# --- auth -------------------------------------------------------------------


def test_no_credentials_401(server):
    r = plain_session().post(server.url + "/v1/events/batch", json={"events": [ev("s")]},
                             timeout=30)
    assert_problem(r, 401, "unauthorized")


def test_key_without_ingest_scope_403(server, org):
    read_only = make_key(org, scopes=["read"])["key"]
    e = ev(unique_id("s"))
    assert_problem(post_event(server, read_only, e), 403, "insufficient_scope")
    assert stored(server, org.id, e["id"]) == []


def test_session_ingest_by_role_and_org(server, org):
    e = ev(unique_id("s"))
    # The owner's session, org named by X-Keel-Org (CSRF token sent by the session).
    r = org.owner.post(server.url + "/v1/events", json=e, headers={"X-Keel-Org": org.id},
                       timeout=30)
    assert r.status_code == 202, r.text
    assert stored(server, org.id, e["id"])[0][4] is None  # no API key
    viewer, _ = add_member(org, "viewer")
    e2 = ev(unique_id("s"))
    r = viewer.post(server.url + "/v1/events", json=e2, headers={"X-Keel-Org": org.id},
                    timeout=30)
    assert_problem(r, 403, "forbidden")
    member, _ = add_member(org, "member")
    r = member.post(server.url + "/v1/events", json=e2, headers={"X-Keel-Org": org.id},
                    timeout=30)
    assert r.status_code == 202, r.text
    # Another org's owner naming this org: not a member → 404, nothing stored.
    stranger = ingest_org(server)
    e3 = ev(unique_id("s"))
    r = stranger.owner.post(server.url + "/v1/events", json=e3, headers={"X-Keel-Org": org.id},
                            timeout=30)
    assert_problem(r, 404, "not_found")
    assert stored(server, org.id, e3["id"]) == []


def test_key_ingests_into_its_own_org_only(server, org):
    other = ingest_org(server)
    e = ev(unique_id("s"))
    # X-Keel-Org is for sessions; a key's org is the key's.
    r = post_event(server, other.key, e, headers={"X-Keel-Org": org.id})
    assert r.status_code == 202, r.text
    assert stored(server, org.id, e["id"]) == []
    assert len(stored(server, other.id, e["id"])) == 1


# --- backpressure, metrics, shutdown ----------------------------------------


def _dev_ingest(srv, **body):
    r = plain_session().post(srv.url + "/v1/dev/ingest", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _metric(srv, name):
    text = plain_session().get(srv.url + "/metrics", timeout=30).text
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def test_backpressure_503_then_recovers(fresh_server):
    srv = fresh_server(extra_args=["--set", "ingest.queue_max=5"])
    o = ingest_org(srv)
    sid = unique_id("s")
    _dev_ingest(srv, hold=True)
    held = {}

    def first():
        held["r"] = post_batch(srv, o.key, [ev(sid) for _ in range(10)])

    t = threading.Thread(target=first)
    t.start()
    assert wait_until(lambda: _dev_ingest(srv)["pending_events"] == 10, 10)
    assert _metric(srv, "keel_ingest_queue_events") == 10
    e = ev(sid)
    r = post_event(srv, o.key, e)
    assert_problem(r, 503, "overloaded")
    assert r.headers["Retry-After"] == "1"
    assert _metric(srv, "keel_ingest_overloaded_total") == 1
    _dev_ingest(srv, hold=False)
    t.join(30)
    assert held["r"].status_code == 202 and held["r"].json()["accepted"] == 10
    r = post_event(srv, o.key, e)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    assert count_events(srv, o.id, sid) == 11
    assert _metric(srv, "keel_ingest_queue_events") == 0
    text = plain_session().get(srv.url + "/metrics", timeout=30).text
    assert 'keel_ingest_events_total{outcome="accepted"} 11' in text


def test_sigterm_answers_batches_waiting_for_the_writer(fresh_server):
    srv = fresh_server()
    o = ingest_org(srv)
    sid = unique_id("s")
    _dev_ingest(srv, hold=True)
    out = {}

    def send():
        out["r"] = post_batch(srv, o.key, [ev(sid) for _ in range(5)])

    t = threading.Thread(target=send)
    t.start()
    assert wait_until(lambda: _dev_ingest(srv)["pending_events"] == 5, 10)
    srv.send_signal(signal.SIGTERM)
    t.join(30)
    assert srv.wait(30) == 0
    assert out["r"].status_code == 202 and out["r"].json()["accepted"] == 5, out["r"].text
    assert count_events(srv, o.id, sid) == 5
