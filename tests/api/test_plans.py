"""GET /v1/plans: the plan registry, public (R-MTR-1)."""

import json

from conftest import assert_problem

REGISTRY = json.loads((__import__("pathlib").Path(__file__).resolve().parents[2]
                       / "data" / "plans.json").read_text())


def test_plans_public_and_complete(server, http):
    r = http.get(server.url + "/v1/plans")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    body = r.json()
    ids = [p["id"] for p in body["plans"]]
    assert ids == [p["id"] for p in REGISTRY["plans"]]
    assert {"free", "pro", "team", "enterprise"} <= set(ids)
    by_id = {p["id"]: p for p in body["plans"]}
    assert by_id["free"]["limits"]["members"] == 1
    assert by_id["free"]["limits"]["orgs_per_user"] == 3
    assert by_id["pro"]["limits"]["members"] == 5
    assert by_id["team"]["limits"]["members"] == -1
    # The registry as configured, plus the derived money strings and quota
    # counts (test_usage.py checks those).
    for p in body["plans"]:
        assert set(p.pop("prices_usd")) == {"month", "year", "overage_per_1000_events"}
        assert "events_per_month" in p.pop("quota")
    assert body == REGISTRY


def test_plans_follow_the_override_file(fresh_server, http, make_tmp):
    d = make_tmp("plans")
    override = d / "plans.json"
    override.write_text(json.dumps({"plans": [{"id": "pro", "limits": {"members": 7}}]}))
    srv = fresh_server(extra_args=["--set", f"plans.file={override}"])
    r = http.get(srv.url + "/v1/plans")
    assert r.status_code == 200
    pro = next(p for p in r.json()["plans"] if p["id"] == "pro")
    assert pro["limits"]["members"] == 7


def test_plans_methods(server, http):
    r = http.post(server.url + "/v1/plans", json={})
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]
