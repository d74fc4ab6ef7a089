"""Platform administration (R-IAM-11) and `keel bootstrap`.

Admin routes: only users with the platform-admin flag (everyone else 403,
and the denial is audited); overview counts; org and user search with
cursor pages; plan changes (audited on the org's chain); suspension (kills
live sessions at once, blocks login; audited on the platform chain).

Entries of the platform chain (nil org id) have no API of their own yet, so
those assertions read the database file, read-only.
"""

import re
from types import SimpleNamespace

import pytest
import requests

import dbdirect
from accounts import create_user, login, new_user_session, post_login, unique_email
from conftest import KeelServer, assert_problem, run_keel

PLATFORM = "00000000-0000-0000-0000-000000000000"
BOOT_RE = re.compile(
    r"^keel: first start — administrator (\S+) / password (\S+) ; organisation (\S+) \((\S+)\)$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def bootstrap(data_dir, *extra):
    r = run_keel(["bootstrap", "--data-dir", data_dir, *extra], timeout=60)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def boot(keel_bin, tmp_path_factory):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-admin"))
    m = BOOT_RE.match(bootstrap(srv.data_dir).stdout.strip())
    email, password, slug, org_id = m.groups()
    srv.start()
    admin = login(srv, email, password)
    yield SimpleNamespace(server=srv, admin=admin, org_id=org_id, slug=slug, email=email,
                          admin_id=admin.login_body["user"]["id"])
    srv.stop()


def audit_rows(srv, org_id, action):
    """Audit rows of a chain straight from the store (read-only)."""
    return dbdirect.rows(srv, "SELECT seq, actor_type, actor_id, resource_id, result, details"
                         " FROM audit_log WHERE org_id = ? AND action = ? ORDER BY seq",
                         org_id, action)


def url(b, path):
    return b.server.url + path


ADMIN_ROUTES = [
    ("GET", "/v1/admin/overview", None),
    ("GET", "/v1/admin/orgs", None),
    ("PATCH", "/v1/admin/orgs/{org_id}", {"plan": "pro"}),
    ("GET", "/v1/admin/users", None),
    ("POST", "/v1/admin/users/{user_id}/suspend", None),
    ("POST", "/v1/admin/users/{user_id}/unsuspend", None),
]


def fill(b, path, user_id):
    return path.replace("{org_id}", b.org_id).replace("{user_id}", user_id)


# --- who may use the admin routes -----------------------------------------


def test_non_admin_is_403_and_denials_are_audited(boot):
    s, user = new_user_session(boot.server)
    plan_before = boot.admin.get(url(boot, f"/v1/admin/orgs?q={boot.slug}")).json()["data"][0]["plan"]
    if plan_before == "pro":
        boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), json={"plan": "free"})
        plan_before = "free"
    before = len(audit_rows(boot.server, PLATFORM, "permission.denied"))
    for method, path, body in ADMIN_ROUTES:
        r = s.request(method, url(boot, fill(boot, path, boot.admin_id)), json=body)
        assert_problem(r, 403, "forbidden")
    denials = audit_rows(boot.server, PLATFORM, "permission.denied")[before:]
    assert len(denials) == len(ADMIN_ROUTES)
    assert all(d["actor_id"] == user["id"] and d["result"] == "failure" for d in denials)
    # Nothing was changed by the refused calls.
    org = boot.admin.get(url(boot, f"/v1/admin/orgs?q={boot.slug}")).json()["data"][0]
    assert org["plan"] == plan_before
    assert boot.admin.get(url(boot, "/v1/auth/me")).status_code == 200  # not suspended


def test_no_session_is_401(boot, http):
    for method, path, body in ADMIN_ROUTES:
        r = http.request(method, url(boot, fill(boot, path, boot.admin_id)), json=body)
        assert_problem(r, 401, "unauthorized")


def test_admin_changes_need_csrf(boot):
    _, user = new_user_session(boot.server)
    token = boot.admin.headers.pop("X-CSRF-Token")
    try:
        r = boot.admin.post(url(boot, f"/v1/admin/users/{user['id']}/suspend"))
        assert_problem(r, 403, "csrf_failed")
        r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), json={"plan": "team"})
        assert_problem(r, 403, "csrf_failed")
    finally:
        boot.admin.headers["X-CSRF-Token"] = token
    u = boot.admin.get(url(boot, "/v1/admin/users"), params={"q": user["email"]}).json()["data"][0]
    assert u["suspended"] is False


# --- overview ----------------------------------------------------------------


def test_overview_counts(boot):
    before = boot.admin.get(url(boot, "/v1/admin/overview"))
    assert before.status_code == 200, before.text
    o = before.json()
    assert o["events_today"] == 0 and o["events_week"] == 0
    assert o["active_window_days"] == 7
    assert o["orgs"] >= 1 and o["users"] >= 1
    assert 1 <= o["active_orgs"] <= o["orgs"]  # bootstrap's org.created is recent
    create_user(boot.server)
    create_user(boot.server)
    after = boot.admin.get(url(boot, "/v1/admin/overview")).json()
    assert after["users"] == o["users"] + 2


def test_active_orgs_window(keel_bin, tmp_path_factory):
    """An org is active while its chain saw an entry (or a membership was
    created) in the last 7 days; logins (platform chain) do not count."""
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-admin-active"))
    email, password, _, org_id = BOOT_RE.match(bootstrap(srv.data_dir).stdout.strip()).groups()
    srv.start()
    try:
        admin = login(srv, email, password)
        assert admin.get(srv.url + "/v1/admin/overview").json()["active_orgs"] == 1
        r = admin.post(srv.url + "/v1/dev/clock", json={"advance_seconds": 8 * 86400})
        assert r.status_code == 200
        admin = login(srv, email, password)  # a login: platform chain only
        o = admin.get(srv.url + "/v1/admin/overview").json()
        assert o["active_orgs"] == 0 and o["orgs"] == 1
        r = admin.patch(f"{srv.url}/v1/admin/orgs/{org_id}", json={"plan": "pro"})
        assert r.status_code == 200, r.text
        assert admin.get(srv.url + "/v1/admin/overview").json()["active_orgs"] == 1
    finally:
        srv.stop()


# --- lists -------------------------------------------------------------------


def pages(b, path, params):
    out, cursor = [], None
    for _ in range(1000):
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        r = b.admin.get(url(b, path), params=p)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"data", "next_cursor"}
        out.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("endless pages")


def test_users_list_search_and_pages(boot):
    tag = unique_email("findme").split("@")[0]
    made = [create_user(boot.server, email=f"{tag}-{i}@Example.com", name=f"Person {i}")
            for i in range(5)]
    got = pages(boot, "/v1/admin/users", {"q": tag.upper(), "limit": 2})
    assert [len(p) for p in got] == [2, 2, 1]
    flat = [u for p in got for u in p]
    assert [u["id"] for u in flat] == sorted(u["id"] for u in made)  # id (creation) order
    u = flat[0]
    assert set(u) == {"id", "email", "name", "verified", "platform_admin", "suspended", "created_at"}
    assert u["email"].lower() == made[0]["email"].lower()
    assert u["verified"] is True and u["platform_admin"] is False and u["suspended"] is False
    assert "password" not in str(u).lower() and "hash" not in str(u)
    # Search by name too; no match is an empty page.
    by_name = boot.admin.get(url(boot, "/v1/admin/users"), params={"q": "person 3"}).json()
    assert any(x["id"] == made[3]["id"] for x in by_name["data"])
    none = boot.admin.get(url(boot, "/v1/admin/users"), params={"q": "zz-nobody-zz"}).json()
    assert none == {"data": [], "next_cursor": None}
    # Without q: everyone, the bootstrap admin first.
    everyone = [x for p in pages(boot, "/v1/admin/users", {"limit": 200}) for x in p]
    assert everyone[0]["id"] == boot.admin_id and everyone[0]["platform_admin"] is True


def test_search_wildcards_are_literal(boot):
    for q in ("%", "_", "\\"):
        r = boot.admin.get(url(boot, "/v1/admin/users"), params={"q": q})
        assert r.status_code == 200
        assert r.json()["data"] == [], q
        r = boot.admin.get(url(boot, "/v1/admin/orgs"), params={"q": q})
        assert r.json()["data"] == [], q


def test_orgs_list_search(boot):
    r = boot.admin.get(url(boot, "/v1/admin/orgs"), params={"q": "DEFAU"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 1
    o = data[0]
    assert set(o) == {"id", "name", "slug", "plan", "billing_status", "members", "created_at",
                      "deleted"}
    assert o["id"] == boot.org_id and o["name"] == "Default" and o["slug"] == "default"
    assert o["members"] >= 1 and o["deleted"] is False
    assert o["billing_status"] == "active"
    # Orgs made through the API show up, found by slug or by name.
    s, _ = new_user_session(boot.server)
    made = []
    for i in range(3):
        r = s.post(url(boot, "/v1/orgs"), json={"name": f"Zeta Works {i}", "slug": f"zeta-{i}-x"})
        if r.status_code == 404 and "no route" in r.text:
            pytest.skip("POST /v1/orgs is not built yet")
        if r.status_code == 403:  # the free plan's orgs-per-user limit
            s, _ = new_user_session(boot.server)
            r = s.post(url(boot, "/v1/orgs"), json={"name": f"Zeta Works {i}", "slug": f"zeta-{i}-x"})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    got = [o for p in pages(boot, "/v1/admin/orgs", {"q": "zeta", "limit": 2}) for o in p]
    assert [o["id"] for o in got] == made
    assert [o["id"] for o in boot.admin.get(url(boot, "/v1/admin/orgs"),
                                            params={"q": "zeta-1-x"}).json()["data"]] == [made[1]]


@pytest.mark.parametrize("path", ["/v1/admin/users", "/v1/admin/orgs"])
def test_list_parameters_refused(boot, path):
    for params, name in [({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
                         ({"limit": "x"}, "limit"), ({"q": "q" * 129}, "q"),
                         ({"cursor": "bogus"}, "cursor"), ({"cursor": "A" * 40}, "cursor")]:
        body = assert_problem(boot.admin.get(url(boot, path), params=params), 400,
                              "invalid_parameter")
        assert body["parameter"] == name
    assert boot.admin.get(url(boot, path), params={"q": "q" * 128}).status_code == 200


def test_cursor_of_one_list_is_refused_by_the_other(boot):
    create_user(boot.server)
    create_user(boot.server)
    c = boot.admin.get(url(boot, "/v1/admin/users"), params={"limit": 1}).json()["next_cursor"]
    assert c
    assert boot.admin.get(url(boot, "/v1/admin/users"), params={"limit": 1, "cursor": c}).status_code == 200
    body = assert_problem(boot.admin.get(url(boot, "/v1/admin/orgs"), params={"cursor": c}), 400,
                          "invalid_parameter")
    assert body["parameter"] == "cursor"


# --- plan changes -----------------------------------------------------------


def org_log(b, action):
    r = b.admin.get(url(b, f"/v1/orgs/{b.org_id}/audit-log"), params={"action": action})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_plan_change_is_applied_and_audited_on_the_org_chain(boot):
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), json={"plan": "enterprise"})
    assert r.status_code == 200, r.text
    start = r.json()["plan"]
    assert start == "enterprise"
    before = len(org_log(boot, "org.plan_changed"))
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), json={"plan": "team"})
    assert r.status_code == 200, r.text
    assert r.json()["plan"] == "team" and r.json()["id"] == boot.org_id
    listed = boot.admin.get(url(boot, "/v1/admin/orgs"), params={"q": boot.slug}).json()["data"][0]
    assert listed["plan"] == "team"
    log = org_log(boot, "org.plan_changed")
    assert len(log) == before + 1
    e = log[0]
    assert e["details"] == {"from": "enterprise", "to": "team"}
    assert e["actor"] == {"type": "user", "id": boot.admin_id}
    assert e["resource"] == {"type": "org", "id": boot.org_id}
    # The same plan again changes nothing and writes nothing.
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), json={"plan": "team"})
    assert r.status_code == 200 and r.json()["plan"] == "team"
    assert len(org_log(boot, "org.plan_changed")) == before + 1
    # Not on the platform chain.
    assert all(row["resource_id"] != boot.org_id
               for row in audit_rows(boot.server, PLATFORM, "org.plan_changed"))


@pytest.mark.parametrize("body,field", [
    ({"plan": "platinum"}, "plan"), ({"plan": ""}, "plan"), ({"plan": 3}, "plan"), ({}, "plan"),
    ({"plan": "pro", "name": "x"}, "name"), ({"plan": "p" * 40}, "plan"),
])
def test_plan_change_validation(boot, body, field):
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), json=body)
    problem = assert_problem(r, 400, "validation_failed")
    assert field in [e["field"] for e in problem["errors"]], problem


def test_plan_change_unknown_org_and_bad_bodies(boot):
    for ref in ("01a00000-0000-7000-8000-000000000000", "default", "not-an-id"):
        r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{ref}"), json={"plan": "pro"})
        assert_problem(r, 404, "not_found")
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), data="plan=pro",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(r, 415, "unsupported_media_type")
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{boot.org_id}"), data="{",
                         headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "invalid_json")


def test_admin_need_not_be_a_member(boot):
    """The path parameter is not resolved for the caller's membership: an
    admin changes the plan of an org it does not belong to."""
    s, _ = new_user_session(boot.server)
    r = s.post(url(boot, "/v1/orgs"), json={"name": "Outsider Org"})
    if r.status_code == 404 and "no route" in r.text:
        pytest.skip("POST /v1/orgs is not built yet")
    assert r.status_code == 201, r.text
    org_id = r.json()["id"]
    # Not a member: the tenant route is 404 for the admin...
    assert_problem(boot.admin.get(url(boot, f"/v1/orgs/{org_id}/audit-log")), 404, "not_found")
    # ...the admin route works.
    r = boot.admin.patch(url(boot, f"/v1/admin/orgs/{org_id}"), json={"plan": "pro"})
    assert r.status_code == 200, r.text
    assert r.json()["plan"] == "pro"
    # The org's owner sees the change on the org's own chain.
    r = s.get(url(boot, f"/v1/orgs/{org_id}/audit-log"), params={"action": "org.plan_changed"})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["details"]["to"] == "pro"


# --- suspension ----------------------------------------------------------------


def suspend(b, user_id, on=True):
    return b.admin.post(url(b, f"/v1/admin/users/{user_id}/{'suspend' if on else 'unsuspend'}"))


def test_suspend_kills_sessions_and_blocks_login_unsuspend_restores(boot):
    s, user = new_user_session(boot.server)
    assert s.get(url(boot, "/v1/auth/me")).status_code == 200
    # Kept aside: a 401 clears the cookie in s, and the old token must stay
    # dead even after the suspension is lifted.
    old_cookies = requests.utils.dict_from_cookiejar(s.cookies)
    r = suspend(boot, user["id"])
    assert r.status_code == 200, r.text
    assert r.json()["suspended"] is True and r.json()["id"] == user["id"]
    # The live session ends at once.
    assert_problem(s.get(url(boot, "/v1/auth/me")), 401, "unauthorized")
    # Login is refused like a wrong password.
    r = post_login(boot.server, user["email"], user["password"])
    assert_problem(r, 401, "invalid_credentials")
    # Listed as suspended.
    listed = boot.admin.get(url(boot, "/v1/admin/users"), params={"q": user["email"]}).json()
    assert listed["data"][0]["suspended"] is True
    # Suspending again changes nothing and writes no second entry.
    assert suspend(boot, user["id"]).status_code == 200
    rows = [r for r in audit_rows(boot.server, PLATFORM, "user.suspended")
            if r["resource_id"] == user["id"]]
    assert len(rows) == 1
    assert rows[0]["actor_type"] == "user" and rows[0]["actor_id"] == boot.admin_id
    # Unsuspend: login works again; the old session stays dead.
    r = suspend(boot, user["id"], on=False)
    assert r.status_code == 200 and r.json()["suspended"] is False
    stale = requests.get(url(boot, "/v1/auth/me"), cookies=old_cookies, timeout=30)
    assert_problem(stale, 401, "unauthorized")
    s2 = login(boot.server, user["email"], user["password"])
    assert s2.get(url(boot, "/v1/auth/me")).status_code == 200
    rows = [r for r in audit_rows(boot.server, PLATFORM, "user.unsuspended")
            if r["resource_id"] == user["id"]]
    assert len(rows) == 1
    # Unsuspending a user who is not suspended writes nothing.
    assert suspend(boot, user["id"], on=False).status_code == 200
    assert len([r for r in audit_rows(boot.server, PLATFORM, "user.unsuspended")
                if r["resource_id"] == user["id"]]) == 1


def test_suspended_admin_loses_admin_routes(boot):
    other = create_user(boot.server, admin=True)
    s = login(boot.server, other["email"], other["password"])
    assert s.get(url(boot, "/v1/admin/overview")).status_code == 200
    assert suspend(boot, other["id"]).status_code == 200
    assert_problem(s.get(url(boot, "/v1/admin/overview")), 401, "unauthorized")
    assert suspend(boot, other["id"], on=False).status_code == 200


def test_suspend_errors(boot):
    for ref in ("01a00000-0000-7000-8000-000000000000", "nobody", "1"):
        assert_problem(suspend(boot, ref), 404, "not_found")
        assert_problem(suspend(boot, ref, on=False), 404, "not_found")
    # An administrator cannot lock itself out.
    assert_problem(suspend(boot, boot.admin_id), 409, "conflict")
    assert boot.admin.get(url(boot, "/v1/admin/overview")).status_code == 200


# --- keel bootstrap -----------------------------------------------------------


def test_bootstrap_prints_once_and_is_idempotent(keel_bin, tmp_path_factory, http):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-boot"))
    first = bootstrap(srv.data_dir)
    m = BOOT_RE.match(first.stdout.strip())
    assert m, first.stdout
    email, password, slug, org_id = m.groups()
    assert email == "admin@keel.local" and slug == "default" and UUID_RE.match(org_id)
    assert first.stdout.count("\n") == 1
    # The password meets the policy and is not trivially short.
    assert len(password) >= 16
    assert re.search(r"[A-Z]", password) and re.search(r"[a-z]", password)
    assert re.search(r"[0-9]", password)
    assert password not in first.stderr  # printed once, on stdout only
    again = bootstrap(srv.data_dir)
    assert again.stdout == "keel: already initialised\n"
    assert password not in again.stdout + again.stderr
    srv.start()
    try:
        s = login(srv, email, password)
        body = s.login_body
        assert body["user"]["platform_admin"] is True and body["user"]["verified"] is True
        assert [o["slug"] for o in body["orgs"]] == ["default"]
        assert body["orgs"][0]["role"] == "owner" and body["orgs"][0]["id"] == org_id
        assert s.get(srv.url + "/v1/admin/overview").json()["users"] == 1
        log = s.get(f"{srv.url}/v1/orgs/{org_id}/audit-log").json()["data"]
        created = [e for e in log if e["action"] == "org.created"]
        assert len(created) == 1 and created[0]["actor"] == {"type": "system", "id": None}
        assert [r["actor_type"] for r in audit_rows(srv, PLATFORM, "user.created")] == ["system"]
        # Bootstrapping a running installation does nothing either.
        assert bootstrap(srv.data_dir).stdout == "keel: already initialised\n"
    finally:
        srv.stop()


def test_bootstrap_with_email_and_on_a_used_store(make_tmp):
    d = make_tmp("boot-email") / "data"
    r = bootstrap(d, "--email", "Ops@Example.org")
    email = BOOT_RE.match(r.stdout.strip()).group(1)
    assert email.lower() == "ops@example.org"
    # A store that already has users (made any way) is left alone.
    d2 = make_tmp("boot-used") / "data"
    r = run_keel(["user", "create", "--email", "someone@example.com", "--password", "Passw0rd!x",
                  "--data-dir", d2], timeout=60)
    assert r.returncode == 0, r.stderr
    assert bootstrap(d2).stdout == "keel: already initialised\n"


@pytest.mark.parametrize("argv,code", [(["--email"], 2), (["--email", "not-an-email"], 2),
                                       (["--bogus"], 2), (["extra"], 2)])
def test_bootstrap_usage_errors(make_tmp, argv, code):
    r = run_keel(["bootstrap", "--data-dir", make_tmp("boot-usage") / "d", *argv])
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "first start" not in r.stdout


def test_bootstrap_help():
    r = run_keel(["bootstrap", "--help"])
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: keel bootstrap")
    assert "--email" in r.stdout and "--data-dir" in r.stdout
