"""Analytics (docs/analytics.md): GET /v1/analytics/{costs,tokens,latency,errors},
POST /v1/analytics/funnel, GET /v1/analytics/cohorts, GET /v1/agents,
/v1/agents/{id}/performance and /v1/agents/{id}/health.

A generated dataset with known answers is ingested once through
POST /v1/events/batch (timestamps in the past, relative to now); every
figure is checked against what is computed here from what was sent:
costs and tokens exactly, latency percentiles within the sketch's
documented 1 % relative error, funnels, cohorts and the health inputs.
"""

import datetime as dt
import math

import pytest

from apikeys import make_key, plain_session
from conftest import assert_problem
from ingest_helpers import ev, get, ingest_org, post_batch

NOW = dt.datetime.now(dt.timezone.utc)
# Three days ago, ten minutes past an hour: every event of a session is in one hour.
BASE = NOW.replace(minute=10, second=0, microsecond=0) - dt.timedelta(days=3)
ALPHA = 0.01


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def monday(t):
    d = t.date() - dt.timedelta(days=t.weekday())
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)


class Data:
    def __init__(self):
        self.events = []
        self.cost = {}       # model -> nano USD
        self.tokens = {}     # model -> [input, output]
        self.latency = {}    # model -> [ms]
        self.errors = {}     # agent -> (events, errors)
        self.durations = {}  # agent -> [session durations ms] of ended sessions
        self.sessions = {}   # agent -> (runs, completed, errored)


def add(d, e, agent, t):
    e["agent_id"] = agent
    e["timestamp"] = stamp(t)
    d.events.append(e)
    ev_count, err_count = d.errors.get(agent, (0, 0))
    d.errors[agent] = (ev_count + 1, err_count)


def build():
    d = Data()
    lat = 1.0
    for agent, model, n_sessions in (("bot-a", "m-fast", 20), ("bot-b", "m-slow", 5)):
        runs = completed = errored = 0
        for s in range(n_sessions):
            sid = f"{agent}-s{s}"
            t0 = BASE + dt.timedelta(minutes=s)
            add(d, ev(sid, "session_start", metadata={"user_id": f"user-{s % 4}"}), agent, t0)
            for k in range(5):
                ms = lat if agent == "bot-a" else 1000.0 + 100 * k + s
                lat += 1.0
                data = {"model": model, "provider": "acme", "input_tokens": 100 + k,
                        "output_tokens": 10 + k, "latency_ms": ms, "cost_usd": "0.001000000"}
                add(d, ev(sid, "llm_call", data=data, metadata={"user_id": f"user-{s % 4}"}),
                    agent, t0 + dt.timedelta(seconds=1 + k))
                d.cost[model] = d.cost.get(model, 0) + 1_000_000
                tok = d.tokens.setdefault(model, [0, 0])
                tok[0] += 100 + k
                tok[1] += 10 + k
                d.latency.setdefault(model, []).append(ms)
            add(d, ev(sid, "tool_call", data={"tool_name": "search", "duration_ms": 20.0 + s}),
                agent, t0 + dt.timedelta(seconds=10))
            add(d, ev(sid, "tool_call", data={"tool_name": "fetch", "duration_ms": 5.0}),
                agent, t0 + dt.timedelta(seconds=11))
            runs += 1
            if agent == "bot-b" and s == 0:
                add(d, ev(sid, "error", severity="error", data={"message": "boom"}), agent,
                    t0 + dt.timedelta(seconds=12))
                ev_count, err_count = d.errors[agent]
                d.errors[agent] = (ev_count, err_count + 1)
                errored += 1
            if s % 5 != 4:  # every fifth session never ends
                add(d, ev(sid, "session_end"), agent, t0 + dt.timedelta(seconds=20 + s))
                d.durations.setdefault(agent, []).append((20 + s) * 1000.0)
                if not (agent == "bot-b" and s == 0):
                    completed += 1
        d.sessions[agent] = (runs, completed, errored)
    return d


@pytest.fixture(scope="module")
def data(server):
    org = ingest_org(server)
    d = build()
    for i in range(0, len(d.events), 100):
        r = post_batch(server, org.key, d.events[i:i + 100])
        assert r.status_code == 202 and r.json()["accepted"] == len(d.events[i:i + 100]), r.text
    d.org = org
    return d


@pytest.fixture(scope="module")
def other(server, data):
    org = ingest_org(server)
    r = post_batch(server, org.key, [ev("z1", "session_start", agent_id="bot-z",
                                        timestamp=stamp(BASE))])
    assert r.status_code == 202
    return org


def q(server, key, path, **params):
    r = get(server, key, path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def exact_quantile(values, p):
    v = sorted(values)
    return v[math.floor(p * (len(v) - 1))]


# --- series ---------------------------------------------------------------------------------


def test_costs_by_model(server, data):
    body = q(server, data.org.key, "/v1/analytics/costs", group_by="model", bucket="day")
    assert body["bucket"] == "day" and body["group_by"] == "model"
    by_model = {}
    for row in body["data"]:
        by_model[row["group"]] = by_model.get(row["group"], 0) + round(float(row["cost_usd"]) * 1e9)
    assert by_model == data.cost
    assert round(float(body["total_cost_usd"]) * 1e9) == sum(data.cost.values())
    # One day bucket holds all of it (the dataset spans minutes).
    assert len({row["bucket"] for row in body["data"]}) == 1


@pytest.mark.parametrize("group_by,expect", [("agent", {"bot-a", "bot-b"}),
                                             ("provider", {"acme"}), ("none", {None})])
def test_costs_other_groups(server, data, group_by, expect):
    body = q(server, data.org.key, "/v1/analytics/costs", group_by=group_by, bucket="week")
    assert {row["group"] for row in body["data"]} == expect
    assert sum(round(float(r["cost_usd"]) * 1e9) for r in body["data"]) == sum(data.cost.values())


def test_costs_by_api_key(server, data):
    body = q(server, data.org.key, "/v1/analytics/costs", group_by="api_key")
    assert len(body["data"]) == 1
    whoami = get(server, data.org.key, "/v1/whoami").json()
    key_id = whoami.get("key", {}).get("id") or whoami.get("key_id")
    if key_id:
        assert body["data"][0]["group"] == key_id


def test_costs_hourly_buckets(server, data):
    frm = stamp(BASE - dt.timedelta(hours=2))
    to = stamp(BASE + dt.timedelta(hours=2))
    body = q(server, data.org.key, "/v1/analytics/costs", bucket="hour", **{"from": frm, "to": to})
    hours = {row["bucket"] for row in body["data"]}
    assert hours == {BASE.replace(minute=0).strftime("%Y-%m-%dT%H:%M:%SZ")}
    # A range without the dataset is empty.
    body = q(server, data.org.key, "/v1/analytics/costs", **{"from": stamp(NOW - dt.timedelta(days=400)),
                                                             "to": stamp(NOW - dt.timedelta(days=300))})
    assert body["data"] == [] and body["total_cost_usd"] == "0.000000000"


def test_tokens_by_model(server, data):
    body = q(server, data.org.key, "/v1/analytics/tokens", group_by="model")
    got = {}
    for row in body["data"]:
        t = got.setdefault(row["group"], [0, 0])
        t[0] += row["tokens"]["input"]
        t[1] += row["tokens"]["output"]
    assert got == data.tokens


def test_latency_percentiles_within_error(server, data):
    body = q(server, data.org.key, "/v1/analytics/latency", bucket="week")
    assert body["group_by"] == "model"
    rows = {row["group"]: row for row in body["data"]}
    assert set(rows) == set(data.latency)
    for model, values in data.latency.items():
        row = rows[model]
        assert row["count"] == len(values)
        assert abs(row["mean_ms"] - sum(values) / len(values)) < 0.01
        for p, name in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            exact = exact_quantile(values, p)
            assert abs(row[name] - exact) <= ALPHA * exact + 1e-3, (model, name, row[name], exact)


def test_errors_by_agent(server, data):
    body = q(server, data.org.key, "/v1/analytics/errors", bucket="week")
    assert body["group_by"] == "agent"
    got = {}
    for row in body["data"]:
        e, x = got.get(row["group"], (0, 0))
        got[row["group"]] = (e + row["events"], x + row["errors"])
        assert row["by_type"]["error"] == row["errors"]
    assert got == data.errors
    b = [r for r in body["data"] if r["group"] == "bot-b"][0]
    assert abs(b["error_rate"] - b["errors"] / b["events"]) < 1e-6


# --- agents ------------------------------------------------------------------------------------


def test_agents_list_and_pages(server, data):
    body = q(server, data.org.key, "/v1/agents")
    assert [a["agent_id"] for a in body["data"]] == ["bot-a", "bot-b"]
    assert body["next_cursor"] is None
    a = body["data"][0]
    assert a["events"] == data.errors["bot-a"][0]
    assert a["last_activity"] >= a["first_seen"]
    page1 = q(server, data.org.key, "/v1/agents", limit=1)
    assert [x["agent_id"] for x in page1["data"]] == ["bot-a"] and page1["next_cursor"]
    page2 = q(server, data.org.key, "/v1/agents", limit=1, cursor=page1["next_cursor"])
    assert [x["agent_id"] for x in page2["data"]] == ["bot-b"] and page2["next_cursor"] is None


def test_agent_performance(server, data):
    for agent in ("bot-a", "bot-b"):
        body = q(server, data.org.key, f"/v1/agents/{agent}/performance", window="7d")
        runs, completed, errored = data.sessions[agent]
        assert (body["runs"], body["completed"], body["errored"]) == (runs, completed, errored)
        assert body["success_rate"] == pytest.approx(completed / (completed + errored), abs=1e-6)
        durs = data.durations[agent]
        assert body["avg_duration_ms"] == pytest.approx(sum(durs) / len(durs), abs=0.01)
        assert body["p95_duration_ms"] == pytest.approx(exact_quantile(durs, 0.95), abs=0.01)
        model = "m-fast" if agent == "bot-a" else "m-slow"
        assert round(float(body["cost_usd"]) * 1e9) == data.cost[model]
        assert body["tokens"]["input"] == data.tokens[model][0]
        tools = body["slowest_tools"]
        assert [t["tool_name"] for t in tools] == ["search", "fetch"]
        assert tools[0]["calls"] == runs and tools[0]["max_duration_ms"] == 20.0 + runs - 1
        assert tools[1]["avg_duration_ms"] == 5.0 and tools[1]["errors"] == 0


def test_agent_health(server, data):
    body = q(server, data.org.key, "/v1/agents/bot-a/health")
    dims = body["dimensions"]
    assert set(dims) == {"error_rate", "cost_efficiency", "tool_success", "latency", "completion"}
    assert sum(d["weight"] for d in dims.values()) == pytest.approx(1.0)
    assert dims["error_rate"]["score"] == 100 and dims["tool_success"]["score"] == 100
    assert dims["completion"]["completion_rate"] == pytest.approx(16 / 20)
    assert dims["completion"]["score"] == pytest.approx(80.0)
    # No history: cost efficiency is 100; p95 latency under 2 s: 100.
    assert dims["cost_efficiency"]["score"] == 100 and dims["latency"]["score"] == 100
    expected = round(0.3 * 100 + 0.2 * 100 + 0.2 * 100 + 0.15 * 100 + 0.15 * 80)
    assert body["score"] == expected
    assert body["previous_score"] is None and body["trend"] is None
    b = q(server, data.org.key, "/v1/agents/bot-b/health")
    rate = data.errors["bot-b"][1] / data.errors["bot-b"][0]
    assert b["dimensions"]["error_rate"]["error_rate"] == pytest.approx(rate, abs=1e-6)
    assert b["dimensions"]["error_rate"]["score"] == pytest.approx(100 * (1 - rate / 0.2), abs=0.1)
    # p95 of 1000..1424 ms: under 2 s.
    assert b["dimensions"]["latency"]["score"] == 100


# --- funnels and cohorts ----------------------------------------------------------------------------


def funnel(server, key, body, **params):
    return call(server, key, "/v1/analytics/funnel", body, **params)


def call(server, key, path, body, **params):
    from apikeys import call_with_key
    return call_with_key(server, key, path, method="POST", json=body, params=params)


def test_funnel_by_session(server, data):
    steps = [{"type": "session_start"}, {"type": "llm_call"}, {"type": "tool_call"},
             {"type": "error"}, {"type": "session_end"}]
    r = funnel(server, data.org.key, {"steps": steps, "window": "7d"})
    assert r.status_code == 200, r.text
    counts = [s["count"] for s in r.json()["steps"]]
    # 25 sessions start, all call the model and a tool; one errors, and it ended.
    assert counts == [25, 25, 25, 1, 1]
    assert r.json()["steps"][3]["conversion_from_previous"] == pytest.approx(1 / 25)
    # match narrows a step; two llm_call steps need two calls in order.
    steps = [{"type": "session_start"}, {"type": "tool_call", "match": {"data.tool_name": "fetch"}},
             {"type": "session_end"}]
    r = funnel(server, data.org.key, {"steps": steps})
    assert [s["count"] for s in r.json()["steps"]] == [25, 25, 20]
    steps = [{"type": "tool_call", "match": {"data.tool_name": "fetch"}},
             {"type": "tool_call", "match": {"data.tool_name": "search"}}]
    r = funnel(server, data.org.key, {"steps": steps})
    assert [s["count"] for s in r.json()["steps"]] == [25, 0]  # search comes before fetch


def test_funnel_by_user_and_csv(server, data):
    steps = [{"type": "session_start"}, {"type": "llm_call"}]
    r = funnel(server, data.org.key, {"steps": steps, "by": "user"})
    assert [s["count"] for s in r.json()["steps"]] == [4, 4]
    r = funnel(server, data.org.key, {"steps": steps, "by": "session"}, format="csv")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = r.text.strip().split("\r\n")
    assert lines[0] == "step,type,match,count,conversion_from_previous,conversion_from_first"
    assert lines[1].startswith("1,session_start,,25,")
    assert lines[2].startswith("2,llm_call,,25,1.000000")


def test_cohorts(server):
    org = ingest_org(server)
    this_week = monday(NOW)
    events = []
    # u1: weeks -2, -1, 0; u2: weeks -2, 0; u3: week -1.
    for user, weeks in (("u1", (2, 1, 0)), ("u2", (2, 0)), ("u3", (1,))):
        for w in weeks:
            t = max(this_week - dt.timedelta(weeks=w) + dt.timedelta(hours=1),
                    NOW - dt.timedelta(days=21)) if w else min(this_week + dt.timedelta(minutes=1), NOW)
            events.append(ev(f"{user}-{w}", "custom", metadata={"user_id": user}, timestamp=stamp(t)))
    assert post_batch(server, org.key, events).status_code == 202
    body = q(server, org.key, "/v1/analytics/cohorts", period="week", weeks=3)
    assert body["entity"] == "user"
    matrix = [(c["users"], c["retained"]) for c in body["cohorts"]]
    assert matrix == [(2, [2, 1, 2]), (1, [1, 0]), (0, [0])]
    r = get(server, org.key, "/v1/analytics/cohorts", params={"weeks": 3, "format": "csv"})
    assert r.headers["Content-Type"].startswith("text/csv")
    lines = r.text.strip().split("\r\n")
    assert lines[0] == "cohort_week,users,week_0,week_1,week_2"
    assert lines[1].endswith(",2,2,1,2") and lines[2].endswith(",1,1,0,")


# --- isolation, auth, parameters -----------------------------------------------------------------

GETS = ["/v1/analytics/costs", "/v1/analytics/tokens", "/v1/analytics/latency",
        "/v1/analytics/errors", "/v1/analytics/cohorts", "/v1/agents",
        "/v1/agents/bot-a/performance", "/v1/agents/bot-a/health"]


def test_other_org_sees_none(server, data, other):
    for path in GETS[:3]:
        assert q(server, other.key, path)["data"] == []
    rows = q(server, other.key, "/v1/analytics/errors")["data"]
    assert [(r["group"], r["events"]) for r in rows] == [("bot-z", 1)]
    assert [a["agent_id"] for a in q(server, other.key, "/v1/agents")["data"]] == ["bot-z"]
    for path in ("/v1/agents/bot-a/performance", "/v1/agents/bot-a/health"):
        assert_problem(get(server, other.key, path), 404, "not_found")
        r = other.owner.get(server.url + path, headers={"X-Keel-Org": other.id}, timeout=30)
        assert_problem(r, 404, "not_found")
    r = funnel(server, other.key, {"steps": [{"type": "llm_call"}]})
    assert r.json()["steps"][0]["count"] == 0
    # A session of org A's owner reads org A; a non-member is 404.
    r = data.org.owner.get(server.url + "/v1/agents", headers={"X-Keel-Org": data.org.id}, timeout=30)
    assert [a["agent_id"] for a in r.json()["data"]] == ["bot-a", "bot-b"]
    r = other.owner.get(server.url + "/v1/agents", headers={"X-Keel-Org": data.org.id}, timeout=30)
    assert_problem(r, 404, "not_found")


def test_unknown_agent_404(server, data):
    for path in ("/v1/agents/nobody/health", "/v1/agents/has%20space/performance",
                 "/v1/agents/" + "x" * 129 + "/health"):
        assert_problem(get(server, data.org.key, path), 404, "not_found")


def test_auth(server, data):
    for path in GETS:
        assert_problem(plain_session().get(server.url + path, timeout=30), 401, "unauthorized")
    key = make_key(data.org, scopes=["ingest"])["key"]
    for path in GETS:
        assert_problem(get(server, key, path), 403, "insufficient_scope")
    assert_problem(funnel(server, key, {"steps": [{"type": "llm_call"}]}), 403, "insufficient_scope")
    key = make_key(data.org, scopes=["read"])["key"]
    assert get(server, key, "/v1/analytics/costs").status_code == 200


def bad(r, field):
    assert_problem(r, 400, "validation_failed")
    fields = [e["field"] for e in r.json()["errors"]]
    assert field in fields, (field, r.json())


@pytest.mark.parametrize("params,field", [
    ({"group_by": "colour"}, "group_by"),
    ({"bucket": "month"}, "bucket"),
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
    ({"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"bucket": "hour", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "bucket"),
])
def test_bad_series_parameters(server, data, params, field):
    for path in GETS[:4]:
        bad(get(server, data.org.key, path, params=params), field)


def test_bad_windows_and_others(server, data):
    for path, params, field in (("/v1/agents/bot-a/performance", {"window": "8d"}, "window"),
                                ("/v1/agents/bot-a/health", {"window": "week"}, "window"),
                                ("/v1/analytics/cohorts", {"period": "month"}, "period"),
                                ("/v1/analytics/cohorts", {"weeks": "53"}, "weeks"),
                                ("/v1/analytics/cohorts", {"format": "xml"}, "format"),
                                ("/v1/agents", {"limit": "0"}, "limit"),
                                ("/v1/agents", {"cursor": "!!"}, "cursor")):
        bad(get(server, data.org.key, path, params=params), field)


@pytest.mark.parametrize("body,field", [
    ({"steps": [{"type": "llm_call"}] * 11}, "steps"),
    ({"steps": []}, "steps"),
    ({}, "steps"),
    ({"steps": [{"type": "nope"}]}, "steps[0].type"),
    ({"steps": [{"type": "llm_call", "match": {"model": "x"}}]}, "steps[0].match"),
    ({"steps": [{"type": "llm_call", "match": {"data.model": [1]}}]}, "steps[0].match"),
    ({"steps": [{"type": "llm_call"}], "by": "org"}, "by"),
    ({"steps": [{"type": "llm_call"}], "window": "91d"}, "window"),
    ({"steps": [{"type": "llm_call"}], "window": "7w"}, "window"),
    ({"steps": [{"type": "llm_call"}], "extra": 1}, "extra"),
])
def test_bad_funnels(server, data, body, field):
    bad(funnel(server, data.org.key, body), field)
