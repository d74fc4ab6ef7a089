"""Rate limits on key-authenticated requests (R-ING-8): per key and per org,
GCRA, limits from the plan with the per-key override; 429 problem+json with
Retry-After (whole seconds, >= 1) and the RateLimit-Policy / RateLimit
headers (docs/api-keys.md), RateLimit on successful answers too, and the
decisions in /metrics.

Buckets refill in real time (free: one request per 0.6 s per key), so the
burst tests send back to back on one connection and allow for refills that
the elapsed time explains.
"""

import math
import time

from accounts import advance_clock
from apikeys import (call_with_key, make_key, new_org, parse_ratelimit, plain_session, set_plan)
from conftest import assert_problem

KEY_T = 60.0 / 100  # free plan: 100 per key per minute
ORG_T = 60.0 / 200  # free plan: 200 per org per minute


def burst(server, key, n, path="/v1/whoami"):
    """n requests back to back on one connection: (responses, elapsed s)."""
    s = plain_session()
    t0 = time.monotonic()
    out = [call_with_key(server, key, path, session=s) for _ in range(n)]
    return out, time.monotonic() - t0


def until_refused(server, key, limit, path="/v1/whoami"):
    """Sends until the first 429 (at most 2*limit + 20): (allowed responses,
    the 429, elapsed s)."""
    s = plain_session()
    t0 = time.monotonic()
    allowed = []
    for _ in range(2 * limit + 20):
        r = call_with_key(server, key, path, session=s)
        if r.status_code == 429:
            return allowed, r, time.monotonic() - t0
        assert r.status_code == 200, r.text
        allowed.append(r)
    raise AssertionError(f"no 429 after {len(allowed)} requests")


def refills(elapsed, t):
    """Requests a bucket can have regained in elapsed seconds."""
    return math.ceil(elapsed / t) + 1


def test_free_key_burst_then_429(server):
    org = new_org(server)
    key = make_key(org)
    allowed, refused, elapsed = until_refused(server, key["key"], 100)
    assert 100 <= len(allowed) <= 100 + refills(elapsed, KEY_T), (len(allowed), elapsed)
    if elapsed < KEY_T:
        assert len(allowed) == 100
    # Every success carries both headers; remaining counts down.
    first = allowed[0]
    assert first.headers["RateLimit-Policy"] == '"key";q=100;w=60, "org";q=200;w=60'
    rl = parse_ratelimit(first.headers["RateLimit"])
    assert rl["key"]["r"] == 99 and rl["org"]["r"] == 199
    assert rl["key"]["t"] == 1  # one request spent: full again in 0.6 s, rounded up
    remaining = [parse_ratelimit(r.headers["RateLimit"])["key"]["r"] for r in allowed]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] <= 1
    # The refusal.
    problem = assert_problem(refused, 429, "rate_limited")
    assert key["prefix"] in problem["detail"] and key["key"] not in problem["detail"]
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= math.ceil(KEY_T)  # one emission interval at most, in whole seconds
    assert refused.headers["RateLimit-Policy"] == '"key";q=100;w=60, "org";q=200;w=60'
    rl = parse_ratelimit(refused.headers["RateLimit"])
    assert rl == {"key": {"r": 0, "t": rl["key"]["t"]}}
    assert 59 <= rl["key"]["t"] <= 61
    # Waiting Retry-After (on the test clock) lets one through, and only one.
    advance_clock(server, retry)
    r = call_with_key(server, key["key"])
    assert r.status_code == 200, r.text
    # Retry-After is rounded up, so up to one more may have refilled.
    assert parse_ratelimit(r.headers["RateLimit"])["key"]["r"] <= 1
    # A full minute refills the bucket.
    advance_clock(server, 61)
    rl = parse_ratelimit(call_with_key(server, key["key"]).headers["RateLimit"])
    assert rl["key"]["r"] == 99


def test_retry_after_follows_the_formula(server):
    """Override 2 per minute: T = 30 s. After the burst of 2, the next waits
    (tat - tau) - now = 30 s minus the time since the burst, in whole
    seconds rounded up."""
    org = new_org(server)
    key = make_key(org, rate_limit_per_min=2)
    responses, _ = burst(server, key["key"], 2)
    assert [r.status_code for r in responses] == [200, 200]
    assert parse_ratelimit(responses[1].headers["RateLimit"])["key"] == {"r": 0, "t": 60}
    r = call_with_key(server, key["key"])
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) in (29, 30)
    advance_clock(server, 10)
    r = call_with_key(server, key["key"])
    assert int(r.headers["Retry-After"]) in (19, 20)
    advance_clock(server, 20)
    assert call_with_key(server, key["key"]).status_code == 200
    r = call_with_key(server, key["key"])
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) in (29, 30)


def test_org_limit_across_keys(server):
    """Free org: 200 per minute across its keys. Three keys (made on Pro,
    then the org moves to Free): two spend 100 each, the third is refused by
    the org's limit although its own bucket is full, and the refusals do not
    spend its own budget."""
    org = new_org(server, plan="pro")
    keys = [make_key(org, name="a"), make_key(org, name="b"),
            make_key(org, name="c", rate_limit_per_min=3)]
    set_plan(server, org.id, "free")  # the keys are not cached yet
    t0 = time.monotonic()
    a, _, _ = until_refused(server, keys[0]["key"], 100)
    b, _, _ = until_refused(server, keys[1]["key"], 100)
    elapsed = time.monotonic() - t0
    assert 200 <= len(a) + len(b) <= 200 + refills(elapsed, ORG_T) + refills(elapsed, KEY_T)
    # Key C: the org refuses it, and says so.
    allowed_c, refused, _ = until_refused(server, keys[2]["key"], 3)
    assert len(allowed_c) <= refills(time.monotonic() - t0, ORG_T)
    problem = assert_problem(refused, 429, "rate_limited")
    assert "organisation" in problem["detail"]
    rl = parse_ratelimit(refused.headers["RateLimit"])
    assert rl["org"]["r"] == 0 and rl["key"]["r"] == 3 - len(allowed_c)
    assert int(refused.headers["Retry-After"]) >= 1
    # More refusals by the org cost key C nothing: once the org has room
    # again (0.3 s per request), key C (3 per minute: 20 s per request) is
    # still let through.
    for _ in range(4):
        r = call_with_key(server, keys[2]["key"])
        assert r.status_code == 429 and "organisation" in r.json()["detail"]
    advance_clock(server, 1)
    r = call_with_key(server, keys[2]["key"])
    assert r.status_code == 200, r.text
    # A minute later the org has room for all.
    advance_clock(server, 61)
    assert call_with_key(server, keys[0]["key"]).status_code == 200


def test_per_key_override(server):
    org = new_org(server)
    key = make_key(org, rate_limit_per_min=5)
    responses, elapsed = burst(server, key["key"], 7)
    codes = [r.status_code for r in responses]
    assert codes == [200] * 5 + [429] * 2, codes
    assert responses[0].headers["RateLimit-Policy"] == '"key";q=5;w=60, "org";q=200;w=60'
    # Raise it: the new limit applies at once, from a full bucket.
    url = f"{org.keys_url}/{key['id']}"
    assert org.owner.patch(url, json={"rate_limit_per_min": 1000}).status_code == 200
    r = call_with_key(server, key["key"])
    assert r.status_code == 200, r.text
    assert r.headers["RateLimit-Policy"].startswith('"key";q=1000;w=60')
    assert parse_ratelimit(r.headers["RateLimit"])["key"]["r"] == 999
    # Clear it: back to the plan's 100.
    assert org.owner.patch(url, json={"rate_limit_per_min": None}).status_code == 200
    r = call_with_key(server, key["key"])
    assert r.headers["RateLimit-Policy"].startswith('"key";q=100;w=60')
    # A rename changes nothing about the bucket (no reset by renaming).
    spent = parse_ratelimit(r.headers["RateLimit"])["key"]["r"]
    assert org.owner.patch(url, json={"name": "renamed"}).status_code == 200
    r = call_with_key(server, key["key"])
    assert parse_ratelimit(r.headers["RateLimit"])["key"]["r"] < spent
    # The override is the key's, not the org's: a second key keeps 100.
    other = make_key(org)
    r = call_with_key(server, other["key"])
    assert r.headers["RateLimit-Policy"].startswith('"key";q=100;w=60')


def test_plan_limits(server):
    for plan, q_key, q_org in (("pro", 5000, 10000), ("team", 50000, 100000),
                               ("enterprise", 100000, 500000)):
        org = new_org(server, plan=plan)
        key = make_key(org)
        r = call_with_key(server, key["key"])
        assert r.status_code == 200
        assert r.headers["RateLimit-Policy"] == f'"key";q={q_key};w=60, "org";q={q_org};w=60'
        rl = parse_ratelimit(r.headers["RateLimit"])
        assert rl["key"]["r"] == q_key - 1 and rl["org"]["r"] == q_org - 1


def test_limits_apply_on_every_key_route(server):
    """The limit is the key's, whatever the route; failures before the
    limiter (scope, org binding) do not spend it."""
    org = new_org(server)
    key = make_key(org, scopes=["read"], rate_limit_per_min=3)
    assert call_with_key(server, key["key"], "/v1/dev/keys/ingest-probe").status_code == 403
    assert call_with_key(server, key["key"], "/v1/dev/orgs/nope/key-probe").status_code == 404
    codes = [call_with_key(server, key["key"], p).status_code
             for p in ("/v1/dev/keys/read-probe", "/v1/whoami", f"/v1/dev/orgs/{org.id}/key-probe",
                       "/v1/whoami")]
    assert codes == [200, 200, 200, 429], codes


def test_decisions_in_metrics(server):
    def decisions():
        text = plain_session().get(server.url + "/metrics").text
        out = {}
        for line in text.splitlines():
            if line.startswith("keel_ratelimit_decisions_total{"):
                name = line.split('result="')[1].split('"')[0]
                out[name] = int(line.rsplit(" ", 1)[1])
        return out

    before = decisions()
    org = new_org(server)
    key = make_key(org, rate_limit_per_min=1)
    assert call_with_key(server, key["key"]).status_code == 200
    assert call_with_key(server, key["key"]).status_code == 429
    after = decisions()
    assert after["allowed"] == before.get("allowed", 0) + 1
    assert after["limited_key"] == before.get("limited_key", 0) + 1
    assert "limited_org" in after
