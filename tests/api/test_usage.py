"""Usage metering, plan quotas, notifications and the usage API
(R-MTR-1..5, R-MTR-7; docs/usage.md).

The quota server runs with a plans.file override giving small quotas:
free 10 (hard stop), pro 10 with overage to 2x (20), enterprise 10 without
overage but with 20 % grace (12). Every test makes its own org.
"""

import datetime
import json
import time

import pytest

from accounts import advance_clock
from apikeys import add_member, call_with_key, make_key, plain_session, set_plan, sql
from conftest import KeelServer, assert_problem, wait_until
from ingest_helpers import ev, ingest_org, llm, post_batch, post_event, uuid_blob

SMALL_PLANS = {"plans": [
    {"id": "free", "limits": {"events_per_month": 10},
     "overage": {"allowed": False, "cap_permille": 1000}, "grace_permille": 0},
    {"id": "pro", "limits": {"events_per_month": 10},
     "overage": {"allowed": True, "nano_usd_per_1000_events": 100000000, "cap_permille": 2000}},
    {"id": "enterprise", "limits": {"events_per_month": 10},
     "overage": {"allowed": False, "cap_permille": 1000}, "grace_permille": 200},
]}


def small_plans_args(make_tmp):
    path = make_tmp("plans") / "plans.json"
    path.write_text(json.dumps(SMALL_PLANS))
    return ["--set", f"plans.file={path}"]


@pytest.fixture(scope="module")
def qserver(keel_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("keel-usage")
    path = d / "plans.json"
    path.write_text(json.dumps(SMALL_PLANS))
    srv = KeelServer(keel_bin, d / "srv")
    srv.start(["--set", f"plans.file={path}"])
    yield srv
    srv.stop()


def events(n, session="s-usage", **kw):
    return [ev(session, **kw) for _ in range(n)]


def usage(org, path="", **params):
    """GET …/usage{path} with the org's key (sessions expire when a test
    moves the clock by a month)."""
    r = call_with_key(org.server, org.key, f"/v1/orgs/{org.id}/usage{path}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def notifications(org):
    r = call_with_key(org.server, org.key, f"/v1/orgs/{org.id}/notifications")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def stored(server, org):
    return sql(server, "SELECT count(*) FROM events WHERE org_id = ?", uuid_blob(org.id))[0][0]


def blocks_audited(server, org):
    return sql(server, "SELECT count(*) FROM audit_log WHERE org_id = ? AND action = ?",
               org.id, "usage.quota_blocked")[0][0]


def today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


# --- plans ---------------------------------------------------------------------


def test_plans_show_prices_quotas_and_overage(server, http):
    r = http.get(server.url + "/v1/plans")
    assert r.status_code == 200
    p = {x["id"]: x for x in r.json()["plans"]}
    assert p["pro"]["prices_usd"] == {"month": "29.00", "year": "278.40",
                                      "overage_per_1000_events": "0.10"}
    assert p["team"]["prices_usd"]["overage_per_1000_events"] == "0.08"
    assert p["free"]["prices_usd"]["overage_per_1000_events"] == "0.00"
    for pid, q in (("free", 10000), ("pro", 1000000), ("team", 10000000),
                   ("enterprise", 100000000)):
        assert p[pid]["quota"]["events_per_month"] == q
        month = int(p[pid]["price_month_cents"])
        assert p[pid]["price_year_cents"] == month * 12 * 8 // 10  # -20 %
    assert p["pro"]["quota"]["overage_cap_multiple"] == 2.0
    assert p["pro"]["quota"]["overage_cap_events"] == 2000000
    assert p["free"]["quota"]["overage_allowed"] is False
    for x in p.values():
        for k in ("retention_days", "audit_retention_days", "allowed_models", "thinking_modes",
                  "grace_permille"):
            assert k in x


# --- quota boundaries ------------------------------------------------------------


def test_free_quota_boundaries(qserver):
    org = ingest_org(qserver, plan="free")
    r = post_batch(qserver, org.key, events(9))  # quota - 1
    assert r.status_code == 202 and r.json()["accepted"] == 9, r.text
    r = post_event(qserver, org.key, ev("s-usage"))  # quota
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    assert "Keel-Quota-Warning" not in r.headers
    r = post_event(qserver, org.key, ev("s-usage"))  # quota + 1
    body = assert_problem(r, 402, "quota_exceeded")
    assert body["quota"] == 10 and body["used"] == 10
    assert body["upgrade_url"].endswith("/billing")
    assert body["plan"] == "free"
    end = datetime.datetime.fromisoformat(body["period_end"].replace("Z", "+00:00"))
    assert end.day == 1 and end.hour == 0
    r = post_batch(qserver, org.key, events(3))
    assert_problem(r, 402, "quota_exceeded")
    assert stored(qserver, org) == 10
    assert blocks_audited(qserver, org) == 1  # at most once per org per hour
    u = usage(org)
    assert u["events"]["used"] == 10 and u["events"]["quota"] == 10
    assert u["events"]["percent"] == 100.0 and u["events"]["remaining"] == 0


def test_batch_straddling_the_quota(qserver):
    org = ingest_org(qserver, plan="free")
    assert post_batch(qserver, org.key, events(8)).json()["accepted"] == 8
    batch = events(5)
    batch.insert(1, {"session_id": "s-usage", "type": "nope"})  # invalid: not counted
    r = post_batch(qserver, org.key, batch)
    assert r.status_code == 202, r.text
    b = r.json()
    assert b["accepted"] == 2 and b["rejected"] == 4, b
    quota_errors = [e for e in b["errors"] if e["code"] == "quota_exceeded"]
    assert [e["index"] for e in quota_errors] == [3, 4, 5]
    assert [e["field"] for e in quota_errors] == ["events[3]", "events[4]", "events[5]"]
    assert any(e["index"] == 1 and e["code"] != "quota_exceeded" for e in b["errors"])
    assert [e["index"] for e in b["errors"]] == sorted(e["index"] for e in b["errors"])
    assert stored(qserver, org) == 10
    ids = {row[0] for row in sql(qserver, "SELECT id FROM events WHERE org_id = ?",
                                 uuid_blob(org.id))}
    assert batch[0]["id"] in ids and batch[2]["id"] in ids and batch[3]["id"] not in ids
    assert blocks_audited(qserver, org) == 1


def test_pro_overage_then_cap(qserver):
    org = ingest_org(qserver, plan="pro")
    assert post_batch(qserver, org.key, events(10)).json()["accepted"] == 10
    r = post_batch(qserver, org.key, events(5))  # overage, no warning
    assert r.json()["accepted"] == 5 and "Keel-Quota-Warning" not in r.headers
    u = usage(org)
    assert u["overage"]["allowed"] is True and u["overage"]["events"] == 5
    assert u["overage"]["price_per_1000_events_usd"] == "0.10"
    assert u["overage"]["cost_usd"] == "0.0005"
    assert u["overage"]["cap_events"] == 20 and u["events"]["limit"] == 20
    r = post_batch(qserver, org.key, events(6))  # 20 is the cap
    b = r.json()
    assert b["accepted"] == 5 and b["rejected"] == 1
    assert b["errors"][0]["code"] == "overage_cap_reached" and b["errors"][0]["index"] == 5
    r = post_event(qserver, org.key, ev("s-usage"))
    body = assert_problem(r, 402, "overage_cap_reached")
    assert body["limit"] == 20 and body["used"] == 20 and body["quota"] == 10
    assert stored(qserver, org) == 20


def test_grace_warns_then_blocks(qserver):
    org = ingest_org(qserver, plan="enterprise")  # 10, grace 20 % → 12
    r = post_batch(qserver, org.key, events(10))
    assert r.json()["accepted"] == 10 and "Keel-Quota-Warning" not in r.headers
    r = post_event(qserver, org.key, ev("s-usage"))
    assert r.status_code == 202
    assert r.headers["Keel-Quota-Warning"].startswith("grace; used=11; quota=10; limit=12")
    assert post_event(qserver, org.key, ev("s-usage")).status_code == 202
    assert_problem(post_event(qserver, org.key, ev("s-usage")), 402, "quota_exceeded")
    assert stored(qserver, org) == 12


def test_duplicates_and_rejected_events_do_not_count(qserver):
    org = ingest_org(qserver, plan="free")
    batch = events(5)
    assert post_batch(qserver, org.key, batch).json()["accepted"] == 5
    r = post_batch(qserver, org.key, batch)
    assert r.json()["duplicates"] == 5
    r = post_batch(qserver, org.key, [{"session_id": "x", "type": "bad"}] * 3)
    assert r.json()["rejected"] == 3
    assert usage(org)["events"]["used"] == 5
    assert post_batch(qserver, org.key, events(5)).json()["accepted"] == 5
    assert_problem(post_event(qserver, org.key, ev("s-usage")), 402, "quota_exceeded")


def test_concurrent_requests_cannot_overshoot(qserver):
    import concurrent.futures
    org = ingest_org(qserver, plan="free")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda i: post_batch(qserver, org.key, events(3, f"c{i}")), range(8)))
    accepted = sum(r.json()["accepted"] for r in rs if r.status_code == 202)
    assert accepted == 10
    assert stored(qserver, org) == 10


# --- notifications ------------------------------------------------------------------


def test_notifications_once_per_threshold(qserver):
    org = ingest_org(qserver, plan="free")
    post_batch(qserver, org.key, events(7))
    assert notifications(org) == []
    post_batch(qserver, org.key, events(1))  # 8 = 80 %
    got = wait_until(lambda: notifications(org), 5)
    assert [n["threshold"] for n in got] == [80]
    assert got[0]["quota"] == 10 and got[0]["used"] == 8
    post_batch(qserver, org.key, events(1))
    post_batch(qserver, org.key, events(3))  # 10 = 100 %, 2 refused
    got = wait_until(lambda: len(notifications(org)) == 2 and notifications(org), 5)
    assert sorted(n["threshold"] for n in got) == [80, 100]
    post_batch(qserver, org.key, events(2))  # blocked: nothing new
    time.sleep(0.2)
    assert len(notifications(org)) == 2
    mails = sql(qserver, "SELECT to_email, subject FROM outbox WHERE org_id = ? AND template = ?",
                org.id, "usage_threshold")
    assert len(mails) == 2
    assert {m[0] for m in mails} == {org.user["email"]}
    assert sorted("80%" in m[1] for m in mails) == [False, True]


# --- rollover, restart, reconciliation ---------------------------------------------


def next_month_seconds():
    now = datetime.datetime.now(datetime.timezone.utc)
    first = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
             + datetime.timedelta(days=32)).replace(day=1)
    return int((first - now).total_seconds()) + 3600


def test_rollover_resets_the_quota(fresh_server, make_tmp):
    srv = fresh_server(extra_args=small_plans_args(make_tmp))
    org = ingest_org(srv, plan="free")
    post_batch(srv, org.key, events(10))
    assert_problem(post_event(srv, org.key, ev("s-usage")), 402, "quota_exceeded")
    start_before = usage(org)["period"]["start"]
    advance_clock(srv, next_month_seconds())
    r = plain_session().post(srv.url + "/v1/dev/jobs/usage.rollover/run", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    r = post_event(srv, org.key, ev("s-usage"))
    assert r.status_code == 202, r.text
    u = usage(org)
    assert u["period"]["start"] != start_before
    assert u["events"]["used"] == 1
    # the previous period's notifications stay; the new period has none yet
    assert all(n["period_start"] == start_before for n in notifications(org))


def test_restart_keeps_the_count_and_reconciles(fresh_server, make_tmp, keel_bin):
    args = small_plans_args(make_tmp)
    srv = fresh_server(extra_args=args)
    org = ingest_org(srv, plan="free")
    big = ingest_org(srv)  # enterprise, 10 with grace: use pro for room
    set_plan(srv, big.id, "pro")
    # a mixed run: llm calls, duplicates, rejected events
    mixed = [llm("s1"), llm("s1", model="gpt-4o-mini"), ev("s1"), ev("s2", agent_id="a2")]
    assert post_batch(srv, big.key, mixed).json()["accepted"] == 4
    assert post_batch(srv, big.key, mixed + [{"type": "bad"}]).json()["duplicates"] == 4
    post_batch(srv, org.key, events(8))
    srv.stop()
    again = KeelServer(keel_bin, make_tmp("restart"))  # own log, same data
    again.data_dir = srv.data_dir
    again.start(args + ["--data-dir", str(srv.data_dir)])
    try:
        org.server = big.server = again
        r = post_batch(again, org.key, events(3))
        assert r.json()["accepted"] == 2 and r.json()["rejected"] == 1, r.text
        assert post_batch(again, big.key, [llm("s3"), ev("s3")]).json()["accepted"] == 2
        for o in (org, big):
            r = o.owner.get(f"{again.url}/v1/orgs/{o.id}/usage/reconcile",
                            params={"day": today()}, timeout=30)
            assert r.status_code == 200, r.text
            rec = r.json()
            assert rec["consistent"] is True, rec
            assert rec["difference"] == {"events": 0, "llm_calls": 0, "cost_nano_usd": 0}
        rec = big.owner.get(f"{again.url}/v1/orgs/{big.id}/usage/reconcile",
                            params={"day": today()}, timeout=30).json()
        assert rec["records"]["events"] == 6 and rec["records"]["llm_calls"] == 3
        assert usage(big)["totals"]["llm_calls"] == 3
        r = plain_session().post(again.url + "/v1/dev/jobs/usage.reconcile/run", timeout=30)
        assert r.json()["status"] == "ok"
        assert not again.events("usage.reconcile_difference")
        m = plain_session().get(again.url + "/metrics", timeout=30).text
        assert 'keel_job_runs_total{job="usage.reconcile",result="ok"} 1' in m
        assert 'keel_job_last_duration_seconds{job="usage.refresh"}' in m
    finally:
        again.stop()


def test_metering_off(fresh_server, make_tmp):
    srv = fresh_server(extra_args=small_plans_args(make_tmp) + ["--set", "metering.enabled=false"])
    org = ingest_org(srv, plan="free")
    assert post_batch(srv, org.key, events(15)).json()["accepted"] == 15
    assert sql(srv, "SELECT count(*) FROM usage_hourly")[0][0] == 0


# --- timeseries and breakdown ---------------------------------------------------------


def test_timeseries_and_breakdown(qserver):
    org = ingest_org(qserver, plan="pro")
    key2 = make_key(org, scopes=["ingest"])["key"]
    post_batch(qserver, org.key, [llm("b1", model="m-a"), llm("b1", model="m-b"),
                                  ev("b1", agent_id="agent-x")])
    post_batch(qserver, key2, [llm("b2", model="m-a", input_tokens=10, output_tokens=5)])
    ts = usage(org, "/timeseries", bucket="hour")
    assert sum(b["events"] for b in ts["data"]) == 4
    assert ts["bucket"] == "hour" and len(ts["data"]) >= 24 * 28
    day = usage(org, "/timeseries", bucket="day")
    assert sum(b["events"] for b in day["data"]) == 4
    assert sum(b["llm_calls"] for b in day["data"]) == 3
    assert sum(b["input_tokens"] for b in day["data"]) == 2010
    by_model = {g["key"]: g for g in usage(org, "/breakdown", by="model")["data"]}
    assert set(by_model) == {"m-a", "m-b"} and by_model["m-a"]["events"] == 2
    by_agent = {g["key"]: g["events"] for g in usage(org, "/breakdown", by="agent")["data"]}
    assert by_agent == {"default": 3, "agent-x": 1}
    by_key = usage(org, "/breakdown", by="api_key", limit=1)["data"]
    assert len(by_key) == 1 and by_key[0]["events"] == 3
    u = usage(org)
    assert u["totals"]["events"] == 4 and u["totals"]["stored_bytes"] > 0
    assert u["projection"]["events"] >= 4 and u["period"]["days_left"] >= 0


@pytest.mark.parametrize("path,params,field", [
    ("/timeseries", {"bucket": "week"}, "bucket"),
    ("/timeseries", {"from": "yesterday"}, "from"),
    ("/timeseries", {"to": "2026-13-01"}, "to"),
    ("/timeseries", {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
    ("/timeseries", {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ("/breakdown", {"by": "color"}, "by"),
    ("/breakdown", {"by": "agent", "limit": "0"}, "limit"),
    ("/breakdown", {"by": "agent", "limit": "x"}, "limit"),
    ("/reconcile", {"day": ""}, "day"),
    ("/reconcile", {"day": "2026-02-30"}, "day"),
    ("/reconcile", {"day": "26-01-01"}, "day"),
])
def test_malformed_parameters(qserver, path, params, field):
    org = qserver_org(qserver)
    r = org.owner.get(f"{qserver.url}/v1/orgs/{org.id}/usage{path}", params=params, timeout=30)
    body = assert_problem(r, 400, "validation_failed")
    assert [e["field"] for e in body["errors"]] == [field], body


_shared = {}


def qserver_org(srv):
    if "org" not in _shared:
        _shared["org"] = ingest_org(srv, plan="pro")
    return _shared["org"]


# --- access --------------------------------------------------------------------------

ROUTES = ["/usage", "/usage/timeseries", "/usage/breakdown?by=agent",
          f"/usage/reconcile?day=2026-01-01", "/notifications"]


@pytest.mark.parametrize("route", ROUTES)
def test_isolation_and_roles(qserver, route):
    a = qserver_org(qserver)
    b = ingest_org(qserver, plan="pro")
    url_b = f"{qserver.url}/v1/orgs/{b.id}{route}"
    assert_problem(a.owner.get(url_b, timeout=30), 404, "not_found")
    assert_problem(plain_session().get(url_b, timeout=30), 401, "unauthorized")
    assert_problem(call_with_key(qserver, a.key, f"/v1/orgs/{b.id}{route}"), 404, "not_found")
    viewer, _ = add_member(b, "viewer")
    admin, _ = add_member(b, "admin")
    if "reconcile" in route:
        assert_problem(viewer.get(url_b, timeout=30), 403, "forbidden")
        read_key = make_key(b, scopes=["read"])["key"]
        assert_problem(call_with_key(qserver, read_key, f"/v1/orgs/{b.id}{route}"), 403,
                       "insufficient_scope")
        assert admin.get(url_b, timeout=30).status_code == 200
    else:
        assert viewer.get(url_b, timeout=30).status_code == 200
    assert call_with_key(qserver, b.key, f"/v1/orgs/{b.id}{route}").status_code == 200


def test_dev_job_route(qserver):
    r = plain_session().post(qserver.url + "/v1/dev/jobs/nope/run", timeout=30)
    assert_problem(r, 404, "not_found")
    for job in ("usage.rollover", "usage.refresh", "usage.reconcile"):
        r = plain_session().post(f"{qserver.url}/v1/dev/jobs/{job}/run", timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert qserver.events("job.run")
