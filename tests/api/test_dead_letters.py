"""Dead letters (R-ING-6; docs/dead-letters.md): events that passed
validation but could not be stored, listed, inspected, replayed, deleted and
expired after 7 days, with their depth on /readyz and /metrics.

Failures are injected with the --dev hooks: POST /v1/dev/ingest
{"fail_events": n} (the next n event appends of ingestion fail, so they
become dead letters) and POST /v1/dev/dead-letters/fail-replays {"n": n}
(the org's next n replays fail as a store failure would; an admin key).
POST /v1/dev/dead-letters/expire (a platform administrator) runs the expiry
now. The events table is checked with SQL on the server's database (dbdirect).
"""

import json

import pytest

import dbdirect
from accounts import advance_clock, create_user, login
from apikeys import add_member, call_with_key, make_key, plain_session, sql
from conftest import UUID_RE, KeelServer, assert_problem, json_body_of_size, wait_until
from ingest_helpers import ev, ingest_org, post_batch, post_event, unique_id

DAY_S = 24 * 3600
TTL_S = 7 * DAY_S
DL = "/v1/dead-letters"


# --- helpers ----------------------------------------------------------------


def dev_post(server, path, body=None):
    with plain_session() as s:
        if body is None:
            return s.post(server.url + path, timeout=30)
        return s.post(server.url + path, json=body, timeout=30)


def arm_ingest_failures(server, n):
    r = dev_post(server, "/v1/dev/ingest", {"fail_events": n})
    assert r.status_code == 200, r.text


def arm_replay_failures(server, org, n):
    r = call_with_key(server, org.key, "/v1/dev/dead-letters/fail-replays", method="POST",
                      json={"n": n})
    assert r.status_code == 200, r.text
    assert r.json() == {"fail_replays": n}


_platform_admins = {}


def expire_now(server):
    """Runs the expiry as a platform administrator (one per server, signed
    in again when a test moved the clock past its session)."""
    user = _platform_admins.get(server.url)
    if user is None:
        user = _platform_admins[server.url] = create_user(server, admin=True)
        user["session"] = login(server, user["email"], user["password"])
    r = user["session"].post(server.url + "/v1/dev/dead-letters/expire", timeout=30)
    if r.status_code == 401:
        user["session"] = login(server, user["email"], user["password"])
        r = user["session"].post(server.url + "/v1/dev/dead-letters/expire", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def dead_letter_events(server, org, events):
    """Ingests events with every append failing: they all become dead
    letters. Returns {event id: dead letter} for them."""
    arm_ingest_failures(server, len(events))
    r = post_batch(server, org.key, events)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["dead_lettered"] == len(events), body
    assert body["accepted"] == 0, body
    wanted = {e["id"] for e in events}
    found = {d["event_id"]: d for d in list_all(server, org.key) if d["event_id"] in wanted}
    assert set(found) == wanted
    return found


def list_all(server, key, limit=200):
    out, cursor = [], None
    for _ in range(100):
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = call_with_key(server, key, DL, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("too many pages")


def dl_call(server, key, method, dl_id, suffix="", **kw):
    return call_with_key(server, key, f"{DL}/{dl_id}{suffix}", method=method, **kw)


def org_match(org_id):
    """SQL condition and arguments for the events table's org_id, which holds
    the id's 16 raw bytes (migration 0006); its text form is matched too.
    PostgreSQL: a uuid column."""
    if dbdirect.enabled():
        return "org_id = ?", (org_id,)
    return "(org_id = ? OR org_id = ?)", (bytes.fromhex(org_id.replace("-", "")), org_id)


def event_rows(server, org_id, event_id, columns):
    cond, args = org_match(org_id)
    return sql(server, f"SELECT {columns} FROM events WHERE {cond} AND id = ?", *args, event_id)


def stored_events(server, org_id, event_id):
    return event_rows(server, org_id, event_id, "session_id, seq")


def session_chain(server, org_id, session_id):
    """[(chain_seq, event_count)] of a session row."""
    cond, args = org_match(org_id)
    return sql(server, f"SELECT chain_seq, event_count FROM sessions WHERE {cond} AND id = ?",
               *args, session_id)


def readyz_depth(server):
    with plain_session() as s:
        r = s.get(server.url + "/readyz", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["checks"]["dead_letters"]


def metric(server, name):
    with plain_session() as s:
        r = s.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def table_depth(server):
    return sql(server, "SELECT count(*) FROM dead_letters")[0][0]


def audit_entries(org, action):
    r = org.owner.get(f"{org.server.url}/v1/orgs/{org.id}/audit-log",
                      params={"action": action, "limit": 200}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.fixture(scope="module")
def org(server):
    return ingest_org(server)


@pytest.fixture(scope="module")
def other_org(server):
    return ingest_org(server)


# --- creation by ingestion ----------------------------------------------------


def test_injected_failures_become_dead_letters(server, org):
    sid = unique_id("sess")
    events = [ev(sid), ev(sid, "llm_call", data={"model": "gpt-4o", "input_tokens": 10}), ev(sid)]
    arm_ingest_failures(server, 2)
    r = post_batch(server, org.key, events)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 1 and body["dead_lettered"] == 2, body
    dl_errors = [e for e in body["errors"] if e["code"] == "dead_lettered"]
    assert [e["index"] for e in dl_errors] == [0, 1]
    assert [e["field"] for e in dl_errors] == ["events[0]", "events[1]"]

    letters = {d["event_id"]: d for d in list_all(server, org.key)}
    assert events[2]["id"] not in letters
    assert len(stored_events(server, org.id, events[2]["id"])) == 1
    for e in events[:2]:
        d = letters[e["id"]]
        assert UUID_RE.match(d["id"])
        assert d["session_id"] == sid
        assert d["type"] == e["type"]
        assert d["attempts"] == 1
        assert d["error"] == "the store failed while writing the event"
        assert d["received_at"].endswith("Z") and d["failed_at"].endswith("Z")
        assert d["event"]["id"] == e["id"]
        assert d["event"]["session_id"] == sid
        assert d["event"]["agent_id"] == "default"
        assert stored_events(server, org.id, e["id"]) == []
    assert letters[events[1]["id"]]["event"]["data"]["model"] == "gpt-4o"
    assert set(letters[events[0]["id"]]) == {
        "id", "event_id", "session_id", "type", "api_key_id", "error", "received_at",
        "failed_at", "attempts", "event"}


def test_single_event_route_dead_letter(server, org):
    e = ev(unique_id("sess"), "tool_call", data={"tool_name": "search"}, tags=["a"])
    arm_ingest_failures(server, 1)
    r = post_event(server, org.key, e)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["dead_lettered"] == 1 and body["accepted"] == 0, body
    assert [x["code"] for x in body["errors"]] == ["dead_lettered"]
    found = [d for d in list_all(server, org.key) if d["event_id"] == e["id"]]
    assert len(found) == 1
    assert found[0]["event"]["tags"] == ["a"]
    assert found[0]["event"]["data"] == {"tool_name": "search"}


# --- list and inspect -----------------------------------------------------------


def test_inspect_one(server, org):
    e = ev(unique_id("sess"), "error", severity="error", metadata={"k": "v"})
    d = dead_letter_events(server, org, [e])[e["id"]]
    r = dl_call(server, org.key, "GET", d["id"])
    assert r.status_code == 200, r.text
    one = r.json()
    assert one == d
    assert one["event"]["severity"] == "error"
    assert one["event"]["metadata"] == {"k": "v"}
    assert r.headers.get("Cache-Control") == "no-store"
    # Upper-case ids name the same dead letter.
    r = dl_call(server, org.key, "GET", d["id"].upper())
    assert r.status_code == 200 and r.json()["id"] == d["id"]


def test_list_is_newest_first_and_paged(server):
    o = ingest_org(server)
    sid = unique_id("sess")
    first = [ev(sid) for _ in range(3)]
    dead_letter_events(server, o, first)
    advance_clock(server, 1)
    second = [ev(sid) for _ in range(4)]
    dead_letter_events(server, o, second)

    everything = list_all(server, o.key)
    assert len(everything) == 7
    keys = [(d["received_at"], d["id"]) for d in everything]
    assert keys == sorted(keys, reverse=True)
    assert {d["event_id"] for d in everything[:4]} == {e["id"] for e in second}

    # Pages of 2 walk the same rows in the same order, ties on received_at
    # (one batch shares it) broken by id.
    paged, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = call_with_key(server, o.key, DL, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 2
        paged += page["data"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 4
    assert [d["id"] for d in paged] == [d["id"] for d in everything]

    r = call_with_key(server, o.key, DL, params={"limit": 7})
    assert len(r.json()["data"]) == 7 and r.json()["next_cursor"] is None
    r = call_with_key(server, o.key, DL)
    assert len(r.json()["data"]) == 7  # default 50


def test_list_parameters(server, org):
    for limit in ("0", "201", "abc", "-1", "1.5"):
        r = call_with_key(server, org.key, DL, params={"limit": limit})
        body = assert_problem(r, 400, "invalid_parameter")
        assert body.get("parameter") == "limit"
    assert call_with_key(server, org.key, DL, params={"limit": "200"}).status_code == 200
    for cursor in ("garbage", "A" * 300, "", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"):
        r = call_with_key(server, org.key, DL, params={"cursor": cursor})
        body = assert_problem(r, 400, "invalid_parameter")
        assert body.get("parameter") == "cursor"


def test_cursor_is_bound_to_the_org(server, org, other_org):
    sid = unique_id("sess")
    dead_letter_events(server, org, [ev(sid), ev(sid)])
    r = call_with_key(server, org.key, DL, params={"limit": 1})
    cursor = r.json()["next_cursor"]
    assert cursor
    r = call_with_key(server, other_org.key, DL, params={"cursor": cursor})
    assert_problem(r, 400, "invalid_parameter")


def test_empty_list(server):
    o = ingest_org(server)
    r = call_with_key(server, o.key, DL)
    assert r.status_code == 200
    assert r.json() == {"data": [], "next_cursor": None}


# --- replay ------------------------------------------------------------------------


def test_replay_stores_the_event_once_in_its_chain(server, org):
    sid = unique_id("sess")
    before = ev(sid, "session_start")
    r = post_batch(server, org.key, [before])
    assert r.json()["accepted"] == 1
    e = ev(sid, "llm_call", data={"model": "gpt-4o", "input_tokens": 100, "output_tokens": 5})
    d = dead_letter_events(server, org, [e])[e["id"]]
    depth = readyz_depth(server)

    r = dl_call(server, org.key, "POST", d["id"], "/replay")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": d["id"], "outcome": "accepted", "event_id": e["id"],
                        "session_id": sid}
    assert readyz_depth(server) == depth - 1

    rows = stored_events(server, org.id, e["id"])
    assert rows == [(sid, 2)]  # linked after the session's first event
    row = event_rows(server, org.id, e["id"], "received_at, api_key_id, type")[0]
    assert row[2] == "llm_call"
    assert row[1] is not None  # the key that sent it
    key_id = event_rows(server, org.id, before["id"], "api_key_id")[0][0]
    assert row[1] == key_id
    assert session_chain(server, org.id, sid) == [(2, 2)]

    # The row is gone: inspect, replay and delete are 404 now.
    assert_problem(dl_call(server, org.key, "GET", d["id"]), 404, "not_found")
    assert_problem(dl_call(server, org.key, "POST", d["id"], "/replay"), 404, "not_found")
    assert_problem(dl_call(server, org.key, "DELETE", d["id"]), 404, "not_found")
    assert len(stored_events(server, org.id, e["id"])) == 1

    # A later event of the session chains after the replayed one.
    r = post_batch(server, org.key, [ev(sid)])
    assert r.json()["accepted"] == 1
    assert session_chain(server, org.id, sid) == [(3, 3)]


def test_replay_keeps_the_received_time(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    received = sql(server, "SELECT received_at FROM dead_letters WHERE id = ?", d["id"])[0][0]
    advance_clock(server, 3600)
    r = dl_call(server, org.key, "POST", d["id"], "/replay")
    assert r.status_code == 200, r.text
    got = event_rows(server, org.id, e["id"], "received_at, ts")[0]
    assert got == (received, received)  # no timestamp sent: the received time


def test_replay_of_an_already_stored_id_is_a_duplicate(server, org):
    sid = unique_id("sess")
    e = ev(sid, data={"n": 1})
    d = dead_letter_events(server, org, [e])[e["id"]]
    # The client retried and the event got stored meanwhile.
    r = post_event(server, org.key, e)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text

    r = dl_call(server, org.key, "POST", d["id"], "/replay")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "duplicate"
    assert r.json()["event_id"] == e["id"]
    assert len(stored_events(server, org.id, e["id"])) == 1
    assert sql(server, "SELECT count(*) FROM dead_letters WHERE id = ?", d["id"]) == [(0,)]
    assert_problem(dl_call(server, org.key, "GET", d["id"]), 404, "not_found")


def test_failed_replay_keeps_the_row_and_counts_the_attempt(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    depth = readyz_depth(server)
    arm_replay_failures(server, org, 2)
    for attempt in (2, 3):
        r = dl_call(server, org.key, "POST", d["id"], "/replay")
        assert_problem(r, 503, "service_unavailable")
        assert r.headers.get("Retry-After") == "1"
        one = dl_call(server, org.key, "GET", d["id"]).json()
        assert one["attempts"] == attempt
        assert one["error"] == "replay: the store failed while writing the event"
        assert one["failed_at"] >= d["failed_at"]
    assert stored_events(server, org.id, e["id"]) == []
    assert readyz_depth(server) == depth

    r = dl_call(server, org.key, "POST", d["id"], "/replay")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "accepted"
    assert len(stored_events(server, org.id, e["id"])) == 1

    failed = [a for a in audit_entries(org, "dead_letter.replayed")
              if a["resource"]["id"] == d["id"]]
    assert sorted(a["result"] for a in failed) == ["failure", "failure", "success"]


def test_replay_of_an_event_that_no_longer_validates(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    # A payload that cannot be read back (here broken on purpose).
    sql(server, "UPDATE dead_letters SET payload = ? WHERE id = ?",
        json.dumps({"id": e["id"], "session_id": e["session_id"], "type": "no_such_type"}),
        d["id"])
    r = dl_call(server, org.key, "POST", d["id"], "/replay")
    body = assert_problem(r, 422, "unprocessable")
    assert "type" in body["detail"]
    one = dl_call(server, org.key, "GET", d["id"]).json()
    assert one["attempts"] == 2
    assert one["error"].startswith("the event no longer passes validation")
    assert stored_events(server, org.id, e["id"]) == []
    assert dl_call(server, org.key, "DELETE", d["id"]).status_code == 204


def test_replay_and_delete_are_audited(server, org):
    sid = unique_id("sess")
    a, b = ev(sid), ev(sid)
    letters = dead_letter_events(server, org, [a, b])
    da, db = letters[a["id"]], letters[b["id"]]
    assert dl_call(server, org.key, "POST", da["id"], "/replay").status_code == 200
    assert dl_call(server, org.key, "DELETE", db["id"]).status_code == 204

    replayed = [x for x in audit_entries(org, "dead_letter.replayed")
                if x["resource"]["id"] == da["id"]]
    assert len(replayed) == 1
    entry = replayed[0]
    assert entry["resource"]["type"] == "dead_letter"
    assert entry["result"] == "success"
    assert entry["actor"]["type"] == "api_key"
    assert entry["details"]["event_id"] == a["id"]
    assert entry["details"]["outcome"] == "accepted"
    deleted = [x for x in audit_entries(org, "dead_letter.deleted")
               if x["resource"]["id"] == db["id"]]
    assert len(deleted) == 1
    assert deleted[0]["details"]["event_id"] == b["id"]
    assert deleted[0]["details"]["session_id"] == sid
    text = json.dumps(replayed + deleted)
    assert org.key not in text


# --- delete -------------------------------------------------------------------------


def test_delete_then_404(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    depth = readyz_depth(server)
    r = dl_call(server, org.key, "DELETE", d["id"])
    assert r.status_code == 204 and r.content == b""
    assert readyz_depth(server) == depth - 1
    assert_problem(dl_call(server, org.key, "DELETE", d["id"]), 404, "not_found")
    assert_problem(dl_call(server, org.key, "GET", d["id"]), 404, "not_found")
    assert stored_events(server, org.id, e["id"]) == []
    assert d["id"] not in {x["id"] for x in list_all(server, org.key)}


# --- ids, bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["not-a-uuid", "0" * 36, "0190f5c8-2c1a-7d3e-9b7a-1f2e3d4c5b6",
                                 "0190f5c8-2c1a-7d3e-9b7a-1f2e3d4c5b6ax", "x" * 300,
                                 "0190f5c8-2c1a-7d3e-9b7a-1f2e3d4c5b6a"])
def test_malformed_or_unknown_ids_are_404(server, org, bad):
    assert_problem(dl_call(server, org.key, "GET", bad), 404, "not_found")
    assert_problem(dl_call(server, org.key, "POST", bad, "/replay"), 404, "not_found")
    assert_problem(dl_call(server, org.key, "DELETE", bad), 404, "not_found")


def test_bodies(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    # Replay takes no body: any is refused before the handler runs.
    r = dl_call(server, org.key, "POST", d["id"], "/replay", json={})
    assert_problem(r, 413, "payload_too_large")
    r = dl_call(server, org.key, "DELETE", d["id"], data=b"x" * 10,
                headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")
    assert dl_call(server, org.key, "GET", d["id"]).status_code == 200  # still there
    # The dev hook's body: the default limit, JSON only, known members only.
    path = "/v1/dev/dead-letters/fail-replays"

    def hook(**kw):
        return call_with_key(server, org.key, path, method="POST", **kw)

    r = hook(data=json_body_of_size(70 * 1024), headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")
    r = hook(data="n=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(r, 415, "unsupported_media_type")
    assert_problem(hook(json={"n": 1, "x": 2}), 400, "validation_failed")
    assert_problem(hook(json={"n": -1}), 400, "validation_failed")
    assert_problem(hook(json={}), 400, "validation_failed")
    r = hook(data="{", headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "invalid_json")
    arm_replay_failures(server, org, 0)


# --- auth ------------------------------------------------------------------------------


def test_no_credentials_401(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    for method, path in (("GET", DL), ("GET", f"{DL}/{d['id']}"),
                         ("POST", f"{DL}/{d['id']}/replay"), ("DELETE", f"{DL}/{d['id']}")):
        r = call_with_key(server, None, path, method=method)
        assert_problem(r, 401, "unauthorized")


def test_key_without_admin_scope_403(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    weak = make_key(org, scopes=["ingest", "read"])["key"]
    for method, path in (("GET", DL), ("GET", f"{DL}/{d['id']}"),
                         ("POST", f"{DL}/{d['id']}/replay"), ("DELETE", f"{DL}/{d['id']}")):
        r = call_with_key(server, weak, path, method=method)
        assert_problem(r, 403, "insufficient_scope")
    assert dl_call(server, org.key, "GET", d["id"]).status_code == 200


def test_sessions_by_role(server, org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    hdr = {"X-Keel-Org": org.id}
    for role in ("member", "viewer"):
        s, _ = add_member(org, role)
        for method, path in (("GET", DL), ("GET", f"{DL}/{d['id']}"),
                             ("POST", f"{DL}/{d['id']}/replay"),
                             ("DELETE", f"{DL}/{d['id']}")):
            r = s.request(method, server.url + path, headers=hdr, timeout=30)
            assert_problem(r, 403, "forbidden")
    admin, _ = add_member(org, "admin")
    r = admin.get(server.url + DL, headers=hdr, timeout=30)
    assert r.status_code == 200, r.text
    assert d["id"] in {x["id"] for x in r.json()["data"]}
    r = admin.get(f"{server.url}{DL}/{d['id']}", headers=hdr, timeout=30)
    assert r.status_code == 200 and r.json()["event_id"] == e["id"]
    # Changes need the CSRF token like every cookie-authenticated change.
    no_csrf = plain_session()
    no_csrf.cookies.update(admin.cookies)
    r = no_csrf.delete(f"{server.url}{DL}/{d['id']}", headers=hdr, timeout=30)
    assert_problem(r, 403, "csrf_failed")
    # The owner replays through the session; the audit names the user.
    r = org.owner.post(f"{server.url}{DL}/{d['id']}/replay", headers=hdr, timeout=30)
    assert r.status_code == 200, r.text
    entry = [x for x in audit_entries(org, "dead_letter.replayed")
             if x["resource"]["id"] == d["id"]][0]
    assert entry["actor"] == {"type": "user", "id": org.user["id"]}
    assert len(stored_events(server, org.id, e["id"])) == 1


def test_session_of_a_non_member_org_is_404(server, org, other_org):
    r = other_org.owner.get(server.url + DL, headers={"X-Keel-Org": org.id}, timeout=30)
    assert_problem(r, 404, "not_found")


def test_other_orgs_key_sees_nothing(server, org, other_org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    assert d["id"] not in {x["id"] for x in list_all(server, other_org.key)}
    assert_problem(dl_call(server, other_org.key, "GET", d["id"]), 404, "not_found")
    assert_problem(dl_call(server, other_org.key, "POST", d["id"], "/replay"), 404, "not_found")
    assert_problem(dl_call(server, other_org.key, "DELETE", d["id"]), 404, "not_found")
    # Untouched: still there, never replayed into the other org.
    one = dl_call(server, org.key, "GET", d["id"]).json()
    assert one["attempts"] == 1
    assert stored_events(server, other_org.id, e["id"]) == []
    assert stored_events(server, org.id, e["id"]) == []


def test_dev_routes_need_dev(fresh_server):
    srv = fresh_server(dev=False)
    with plain_session() as s:
        for path in ("/v1/dev/dead-letters/expire", "/v1/dev/dead-letters/fail-replays"):
            assert_problem(s.post(srv.url + path, json={"n": 1}, timeout=30), 404, "not_found")


def test_dev_routes_need_credentials(server, org, other_org):
    with plain_session() as s:
        assert_problem(s.post(server.url + "/v1/dev/dead-letters/expire", timeout=30), 401,
                       "unauthorized")
        assert_problem(s.post(server.url + "/v1/dev/dead-letters/fail-replays", json={"n": 1},
                              timeout=30), 401, "unauthorized")
    # The expiry is platform-wide: an org's owner may not run it.
    r = org.owner.post(server.url + "/v1/dev/dead-letters/expire", timeout=30)
    assert_problem(r, 403, "forbidden")
    weak = make_key(org, scopes=["ingest", "read"])["key"]
    r = call_with_key(server, weak, "/v1/dev/dead-letters/fail-replays", method="POST",
                      json={"n": 1})
    assert_problem(r, 403, "insufficient_scope")


def test_replay_failures_are_armed_per_org(server, org, other_org):
    e = ev(unique_id("sess"))
    d = dead_letter_events(server, org, [e])[e["id"]]
    arm_replay_failures(server, other_org, 1)
    r = dl_call(server, org.key, "POST", d["id"], "/replay")
    assert r.status_code == 200, r.text  # armed for the other org only
    arm_replay_failures(server, other_org, 0)


# --- the gauge and the expiry ------------------------------------------------------------


def test_depth_on_readyz_and_metrics(server, org):
    before = readyz_depth(server)
    assert before == table_depth(server)
    assert metric(server, "keel_dead_letters_depth") == before
    sid = unique_id("sess")
    dead_letter_events(server, org, [ev(sid), ev(sid), ev(sid)])
    assert readyz_depth(server) == before + 3
    assert metric(server, "keel_dead_letters_depth") == before + 3
    assert table_depth(server) == before + 3


def test_expiry_after_seven_days(fresh_server):
    srv = fresh_server()
    o = ingest_org(srv)
    sid = unique_id("sess")
    old = dead_letter_events(srv, o, [ev(sid), ev(sid)])
    assert readyz_depth(srv) == 2
    assert expire_now(srv) == {"expired": 0, "depth": 2}

    advance_clock(srv, TTL_S - 10)
    young = dead_letter_events(srv, o, [ev(sid)])
    assert readyz_depth(srv) == 3
    assert expire_now(srv) == {"expired": 0, "depth": 3}  # 7 days less 10 s: kept

    advance_clock(srv, 11)  # the first two are 7 days + 1 s old
    assert expire_now(srv) == {"expired": 2, "depth": 1}
    left = list_all(srv, o.key)
    assert [d["event_id"] for d in left] == list(young)
    for d in old.values():
        assert_problem(dl_call(srv, o.key, "GET", d["id"]), 404, "not_found")
    assert readyz_depth(srv) == 1
    assert metric(srv, "keel_dead_letters_depth") == 1
    assert metric(srv, "keel_dead_letters_expired_total") == 2
    logged = srv.events("dead_letters.expired")
    assert logged and logged[-1]["rows"] == 2

    advance_clock(srv, TTL_S)
    assert expire_now(srv) == {"expired": 1, "depth": 0}
    assert readyz_depth(srv) == 0
    assert table_depth(srv) == 0


def test_expiry_job_runs_on_its_own(fresh_server):
    srv = fresh_server(extra_args=["--set", "dead_letters.expiry_interval_s=1"])
    o = ingest_org(srv)
    sid = unique_id("sess")
    dead_letter_events(srv, o, [ev(sid) for _ in range(3)])
    assert readyz_depth(srv) == 3
    advance_clock(srv, TTL_S + 1)
    assert wait_until(lambda: readyz_depth(srv) == 0, 10), srv.log_text()[-2000:]
    assert table_depth(srv) == 0
    assert metric(srv, "keel_dead_letters_expired_total") == 3
    assert metric(srv, "keel_dead_letters_expiry_runs_total{result=\"ok\"}") >= 1


def test_depth_follows_other_processes(fresh_server):
    """Rows changed behind the server's back (another process) are counted
    again at the next expiry run."""
    srv = fresh_server()
    o = ingest_org(srv)
    sid = unique_id("sess")
    letters = dead_letter_events(srv, o, [ev(sid), ev(sid)])
    assert readyz_depth(srv) == 2
    victim = next(iter(letters.values()))
    sql(srv, "DELETE FROM dead_letters WHERE id = ?", victim["id"])
    assert readyz_depth(srv) == 2  # not seen yet
    assert expire_now(srv) == {"expired": 0, "depth": 1}
    assert readyz_depth(srv) == 1


def test_depth_read_at_start(fresh_server, keel_bin, tmp_path_factory):
    srv = fresh_server()
    o = ingest_org(srv)
    sid = unique_id("sess")
    dead_letter_events(srv, o, [ev(sid) for _ in range(4)])
    assert srv.stop() == 0
    # A second process on the same data directory (its own log file).
    again = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-again"))
    again.start(extra_args=["--data-dir", str(srv.data_dir)])
    try:
        assert readyz_depth(again) == 4
        assert metric(again, "keel_dead_letters_depth") == 4
    finally:
        assert again.stop() == 0
