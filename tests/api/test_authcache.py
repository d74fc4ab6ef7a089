"""The session-authentication cache (docs/internals/authcache.md) never
changes an answer: a change written through this server applies to the very
next request even when the previous one was answered from the cache (logout,
role change, org deletion, org update); a change written by another process
is seen within the cache's one-second bound; refusals are decided from the
store; the I/O-thread path of GET /v1/orgs/{org} still slides the session.
"""

import re
import time

import pytest
import requests

import dbdirect
from accounts import advance_clock, create_user, login
from conftest import SLOW_FACTOR, KeelServer, assert_problem
from tenancy_helpers import Team, create_org, new_owner

COOKIE = "__Host-keel_session"
# The bound is one second; the rest is slack for the poll and the machine.
CROSS_PROCESS_BOUND_S = 1.5


@pytest.fixture(scope="module")
def server(keel_bin, tmp_path_factory):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-authcache"))
    srv.start(["--set", "auth.login_per_ip_per_min=100000"])
    yield srv
    srv.stop()


# --- helpers -------------------------------------------------------------------------


def plain_session():
    s = requests.Session()
    s.trust_env = False  # never route 127.0.0.1 through an environment proxy
    return s


def cache_hits(server):
    """keel_authcache_lookups_total hits per table, from /metrics."""
    with plain_session() as s:
        text = s.get(server.url + "/metrics", timeout=10).text
    hits = {}
    for table, n in re.findall(
            r'^keel_authcache_lookups_total\{table="(\w+)",result="hit"\} (\d+)$', text, re.M):
        hits[table] = int(n)
    return hits


def get_with_cookie(session, url, cookie):
    """A GET carrying exactly this session cookie (not the session's jar)."""
    return session.get(url, cookies={COOKIE: cookie})


def sql(server, statement, args=()):
    """One write on the live database from this (another) process."""
    n = dbdirect.execute(server, statement, *args)
    assert n == 1, (statement, args, n)


def poll(fn, bound_s):
    """Calls fn until it returns a truthy value; returns (value, seconds)."""
    start = time.monotonic()
    deadline = start + bound_s * SLOW_FACTOR
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v, time.monotonic() - start
        time.sleep(0.02)


def warm(session, url, times=2):
    """GETs url until answered from the cache (the first GET fills it)."""
    for _ in range(times):
        r = session.get(url)
        assert r.status_code == 200, r.text
    return r


# --- changes made through this server apply at once ------------------------------------


def test_repeated_reads_are_served_from_the_cache(server):
    s, _, org = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    before = cache_hits(server)
    bodies = [warm(s, url, 1).json() for _ in range(3)]
    after = cache_hits(server)
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["id"] == org["id"] and bodies[0]["role"] == "owner"
    for table in ("sessions", "users", "memberships"):
        assert after.get(table, 0) >= before.get(table, 0) + 2, (table, before, after)


def test_logout_refuses_the_old_cookie_at_once(server, http):
    s, _, org = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    cookie = s.cookies[COOKIE]
    warm(s, url)  # the second GET is answered from the cache
    assert get_with_cookie(http, url, cookie).status_code == 200
    r = s.post(server.url + "/v1/auth/logout")
    assert r.status_code == 204, r.text
    assert_problem(get_with_cookie(http, url, cookie), 401, "unauthorized")
    assert_problem(get_with_cookie(http, url, cookie), 401, "unauthorized")
    assert_problem(get_with_cookie(http, server.url + "/v1/auth/me", cookie), 401,
                   "unauthorized")


def test_role_change_applies_to_the_next_request(server):
    team = Team(server)
    member = team.sessions["member"]
    url = team.url()
    assert warm(member, url).json()["role"] == "member"
    r = team.sessions["owner"].patch(team.url(f"/members/{team.users['member']['id']}"),
                                     json={"role": "viewer"})
    assert r.status_code == 200, r.text
    body = member.get(url).json()
    assert body["role"] == "viewer"  # not the cached rendering for "member"
    # By slug as well (another cache entry, dropped by the same write).
    assert member.get(f"{server.url}/v1/orgs/{team.org['slug']}").json()["role"] == "viewer"


def test_demotion_refuses_the_next_request(server):
    team = Team(server)
    admin = team.sessions["admin"]
    members_url = team.url("/members")
    warm(admin, members_url)
    r = team.sessions["owner"].patch(team.url(f"/members/{team.users['admin']['id']}"),
                                     json={"role": "member"})
    assert r.status_code == 200, r.text
    assert_problem(admin.get(members_url), 403, "forbidden")


def test_removed_member_gets_404_next(server):
    team = Team(server)
    viewer = team.sessions["viewer"]
    warm(viewer, team.url())
    r = team.sessions["owner"].delete(team.url(f"/members/{team.users['viewer']['id']}"))
    assert r.status_code == 204, r.text
    assert_problem(viewer.get(team.url()), 404, "not_found")


def test_org_delete_then_404(server):
    team = Team(server)
    owner, member = team.sessions["owner"], team.sessions["member"]
    warm(owner, team.url())
    warm(member, team.url())
    assert owner.delete(team.url()).status_code == 204
    assert_problem(owner.get(team.url()), 404, "not_found")
    assert_problem(member.get(team.url()), 404, "not_found")
    assert_problem(member.get(f"{server.url}/v1/orgs/{team.org['slug']}"), 404, "not_found")


def test_org_update_shows_in_the_next_read(server):
    s, _, org = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    warm(s, url)
    r = s.patch(url, json={"name": "Renamed", "settings": {"theme": "dark"}})
    assert r.status_code == 200, r.text
    body = s.get(url).json()
    assert body["name"] == "Renamed" and body["settings"] == {"theme": "dark"}


def test_head_answers_like_get(server, http):
    s, _, org = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    get = warm(s, url)
    r = s.head(url)
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["Content-Length"]) == len(get.content)


def test_cached_session_refused_for_a_foreign_org(server):
    s1, _, org1 = new_owner(server)
    s2, _, _ = new_owner(server)
    warm(s1, f"{server.url}/v1/orgs/{org1['id']}")
    warm(s2, server.url + "/v1/auth/me")
    assert_problem(s2.get(f"{server.url}/v1/orgs/{org1['id']}"), 404, "not_found")
    assert_problem(s2.get(f"{server.url}/v1/orgs/{org1['slug']}"), 404, "not_found")


# --- changes made by another process: within the bound --------------------------------


def test_suspension_by_another_process_within_the_bound(server):
    user = create_user(server)
    s = login(server, user["email"], user["password"])
    org = create_org(server, s)
    url = f"{server.url}/v1/orgs/{org['id']}"
    warm(s, url, 3)
    sql(server, "UPDATE users SET suspended = ? WHERE id = ?", (True, user["id"]))
    refused, took = poll(lambda: s.get(url).status_code == 401, CROSS_PROCESS_BOUND_S)
    assert refused, f"still served {took:.2f} s after the suspension"
    assert_problem(s.get(url), 401, "unauthorized")


def test_role_change_by_another_process_within_the_bound(server):
    team = Team(server)
    member = team.sessions["member"]
    assert warm(member, team.url(), 3).json()["role"] == "member"
    sql(server, "UPDATE memberships SET role = 'viewer' WHERE org_id = ? AND user_id = ?",
        (team.id, team.users["member"]["id"]))
    seen, took = poll(lambda: member.get(team.url()).json()["role"] == "viewer",
                      CROSS_PROCESS_BOUND_S)
    assert seen, f"role still 'member' {took:.2f} s after the change"


def test_refusal_is_decided_from_the_store(server):
    """A demotion by another process, met while the cached role still allows
    the read, answers from the cache; once the cache says no it is decided
    from the store (never a stale 403 for a role the store has restored)."""
    team = Team(server)
    admin = team.sessions["admin"]
    admin_id = team.users["admin"]["id"]
    warm(admin, team.url("/members"))
    sql(server, "UPDATE memberships SET role = 'member' WHERE org_id = ? AND user_id = ?",
        (team.id, admin_id))
    refused, took = poll(lambda: admin.get(team.url("/members")).status_code == 403,
                         CROSS_PROCESS_BOUND_S)
    assert refused, f"still allowed {took:.2f} s after the demotion"
    sql(server, "UPDATE memberships SET role = 'admin' WHERE org_id = ? AND user_id = ?",
        (team.id, admin_id))
    # The cache now holds "member" (filled from the store by the refusal);
    # the next request must not be refused on it.
    assert admin.get(team.url("/members")).status_code == 200


# --- sessions on the I/O-thread path ----------------------------------------------------


@pytest.fixture
def clock_server(fresh_server):
    return fresh_server(["--set", "auth.login_per_ip_per_min=100000"])


def test_cached_session_slides_and_expires(clock_server):
    srv = clock_server
    s, _, org = new_owner(srv)
    url = f"{srv.url}/v1/orgs/{org['id']}"
    cookie = s.cookies[COOKIE]
    warm(s, url)
    advance_clock(srv, 2 * 3600)  # past SESSION_RENEW_AFTER_S
    before = cache_hits(srv)
    for _ in range(3):
        r = get_with_cookie(plain_session(), url, cookie)
        assert r.status_code == 200, r.text
        assert COOKIE in r.headers.get("Set-Cookie", "")  # re-issued on the cached path too
    after = cache_hits(srv)
    assert after["memberships"] >= before.get("memberships", 0) + 2, (before, after)
    # The cached claims end with the token's expiry (7 idle days).
    advance_clock(srv, 7 * 86400)
    assert_problem(get_with_cookie(plain_session(), url, cookie), 401, "unauthorized")
