"""Organisations over HTTP (R-TEN-1, R-IAM-6, R-IAM-10): create, list, read,
update, delete; slug and name rules; the orgs-per-user limit; and, for every
route of the organisation area (orgs, members, invitations), the role
matrix, foreign orgs (404), no session (401) and missing CSRF (403).
"""

import json
import uuid

import pytest
import requests

from accounts import create_user
from conftest import KeelServer, UUID_RE, assert_problem, run_keel
from tenancy_helpers import (
    Team,
    add_member,
    audit,
    create_org,
    invite,
    login,
    new_owner,
    query,
    set_plan,
    unique_email,
)


@pytest.fixture(scope="module")
def server(keel_bin, tmp_path_factory):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-orgs"))
    srv.start(["--set", "auth.login_per_ip_per_min=100000"])
    yield srv
    srv.stop()


def plain():
    s = requests.Session()
    s.trust_env = False
    return s


# --- create, read, list ---------------------------------------------------


def test_create_read_list(server):
    s, user, _ = new_owner(server)
    r = s.post(server.url + "/v1/orgs", json={"name": "Acme Labs, Inc."})
    assert r.status_code == 201, r.text
    org = r.json()
    assert UUID_RE.match(org["id"])
    assert org["name"] == "Acme Labs, Inc."
    assert org["slug"].startswith("acme-labs-inc")
    assert org["plan"] == "free"
    assert org["billing_status"] == "active"
    assert org["settings"] == {}
    assert org["role"] == "owner"
    assert org["created_at"] == org["updated_at"]
    assert org["created_at"].endswith("Z")
    assert r.headers["Location"] == f"/v1/orgs/{org['id']}"

    for ref in (org["id"], org["slug"]):
        g = s.get(f"{server.url}/v1/orgs/{ref}")
        assert g.status_code == 200, g.text
        assert g.json() == org

    lst = s.get(server.url + "/v1/orgs").json()
    assert lst["next_cursor"] is None
    assert [o["id"] for o in lst["data"]][-1] == org["id"]
    assert all(o["role"] == "owner" for o in lst["data"])

    rows = query(server, "SELECT user_id, role FROM memberships WHERE org_id = ?", (org["id"],))
    assert rows == [{"user_id": user["id"], "role": "owner"}]
    entries = audit(server, org["id"], "org.created")
    assert len(entries) == 1
    e = entries[0]
    assert e["actor_type"] == "user" and e["actor_id"] == user["id"]
    assert e["resource_id"] == org["id"] and e["result"] == "success"
    assert json.loads(e["details"]) == {"name": org["name"], "slug": org["slug"], "plan": "free"}


def test_list_pages(server):
    s, _, first = new_owner(server)
    second = create_org(server, s)
    third = create_org(server, s)
    ids = [first["id"], second["id"], third["id"]]
    p1 = s.get(server.url + "/v1/orgs", params={"limit": 2}).json()
    assert [o["id"] for o in p1["data"]] == ids[:2]
    assert p1["next_cursor"]
    p2 = s.get(server.url + "/v1/orgs", params={"limit": 2, "cursor": p1["next_cursor"]}).json()
    assert [o["id"] for o in p2["data"]] == ids[2:]
    assert p2["next_cursor"] is None
    p3 = s.get(server.url + "/v1/orgs", params={"limit": 3}).json()
    assert len(p3["data"]) == 3 and p3["next_cursor"] is None
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "!!"},
                {"cursor": "bm90LWFuLWlk"}):
        assert_problem(s.get(server.url + "/v1/orgs", params=bad), 400, "invalid_parameter")
    assert s.get(server.url + "/v1/orgs", params={"limit": 200}).status_code == 200


def test_slug_given_taken_and_generated(server):
    s, _, _ = new_owner(server)
    slug = "s" + uuid.uuid4().hex[:10]
    org = create_org(server, s, name="Anything", slug=slug)
    assert org["slug"] == slug
    other, _, _ = new_owner(server)
    r = other.post(server.url + "/v1/orgs", json={"name": "Copy", "slug": slug})
    assert_problem(r, 409, "slug_taken")
    # The same name twice: the second slug gets a 4-character suffix.
    name = "Gen " + uuid.uuid4().hex[:8]
    a = create_org(server, other, name=name)
    b = create_org(server, other, name=name)
    assert a["slug"] == name.lower().replace(" ", "-")
    assert b["slug"].startswith(a["slug"] + "-") and len(b["slug"]) == len(a["slug"]) + 5
    # A reserved or too short generated form gets one too.
    s3, _, _ = new_owner(server)
    assert create_org(server, s3, name="Admin")["slug"].startswith("admin-")


@pytest.mark.parametrize("slug,ok", [
    ("ab", False), ("abc", True), ("a" * 48, True), ("a" * 49, False),
    ("-abc", False), ("abc-", False), ("Abc", False), ("ab_c", False), ("a b", False),
    ("admin", False), ("api", False), ("www", False), ("billing", False), ("login", False),
])
def test_slug_rules(server, slug, ok):
    s, _, _ = new_owner(server)
    if ok:  # unique across runs, same length and alphabet
        slug = ("a" + uuid.uuid4().hex * 2)[:len(slug)]
    r = s.post(server.url + "/v1/orgs", json={"name": "Slug test", "slug": slug})
    if ok:
        assert r.status_code == 201, r.text
        assert r.json()["slug"] == slug
    else:
        body = assert_problem(r, 400, "validation_failed")
        assert [e["field"] for e in body["errors"]] == ["slug"], body


def test_slug_boundaries_exact(server):
    s, _, _ = new_owner(server)
    three = uuid.uuid4().hex[:3]
    forty_eight = ("b" + uuid.uuid4().hex * 2)[:48]
    assert create_org(server, s, slug=three)["slug"] == three
    assert create_org(server, s, slug=forty_eight)["slug"] == forty_eight


@pytest.mark.parametrize("name,ok", [
    ("A", True), ("n" * 100, True), ("n" * 101, False), ("é" * 100, True), ("é" * 101, False),
    ("", False), ("   ", False), ("tab\there", False),
])
def test_name_rules(server, name, ok):
    s, _, _ = new_owner(server)
    r = s.post(server.url + "/v1/orgs", json={"name": name})
    if ok:
        assert r.status_code == 201, r.text
        assert r.json()["name"] == name
    else:
        body = assert_problem(r, 400, "validation_failed")
        assert body["errors"][0]["field"] == "name"


def test_create_body_errors(server):
    s, _, _ = new_owner(server)
    url = server.url + "/v1/orgs"
    assert_problem(s.post(url, json={}), 400, "validation_failed")
    b = assert_problem(s.post(url, json={"name": "X", "plan": "team"}), 400, "validation_failed")
    assert b["errors"][0] == {"field": "plan", "code": "unknown_field",
                              "message": b["errors"][0]["message"]}
    b = assert_problem(s.post(url, json={"name": 5}), 400, "validation_failed")
    assert b["errors"][0]["code"] == "wrong_type"
    assert_problem(s.post(url, data="{", headers={"Content-Type": "application/json"}), 400,
                   "invalid_json")
    assert_problem(s.post(url, data="[]", headers={"Content-Type": "application/json"}), 400,
                   "invalid_json")
    deep = "[" * 40 + "]" * 40
    assert_problem(s.post(url, data='{"name":' + deep + "}",
                          headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert_problem(s.post(url, data="name=x", headers={"Content-Type": "text/plain"}), 415,
                   "unsupported_media_type")
    big = json.dumps({"name": "x", "pad": "y" * (64 * 1024)})
    assert_problem(s.post(url, data=big, headers={"Content-Type": "application/json"}), 413,
                   "payload_too_large")


# --- the orgs-per-user limit (free plan: 3) ---------------------------------


def test_orgs_per_user_limit(server):
    s, user, first = new_owner(server)  # 1
    create_org(server, s)  # 2
    third = create_org(server, s)  # 3: at the limit
    r = s.post(server.url + "/v1/orgs", json={"name": "Fourth"})
    body = assert_problem(r, 403, "plan_limit_reached")
    assert body["limit"] == "orgs_per_user" and body["limit_value"] == 3
    assert body["plan"] == "free"
    assert body["upgrade_url"].endswith("/billing")
    assert len(s.get(server.url + "/v1/orgs").json()["data"]) == 3
    # Paid orgs do not count: one moved to pro frees a place.
    set_plan(server, third["id"], "pro")
    assert create_org(server, s)["plan"] == "free"
    assert_problem(s.post(server.url + "/v1/orgs", json={"name": "Fifth"}), 403,
                   "plan_limit_reached")
    # Deleted orgs do not count either.
    assert s.delete(f"{server.url}/v1/orgs/{first['id']}").status_code == 204
    assert create_org(server, s)


# --- update --------------------------------------------------------------------


def test_update_fields_and_audit(server):
    s, user, org = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    new_slug = "u" + uuid.uuid4().hex[:12]
    r = s.patch(url, json={"name": "Renamed", "slug": new_slug, "settings": {"theme": "dark"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["slug"], body["settings"]) == ("Renamed", new_slug,
                                                              {"theme": "dark"})
    assert body["updated_at"] > org["updated_at"]
    assert body["created_at"] == org["created_at"]
    assert s.get(f"{server.url}/v1/orgs/{new_slug}").json() == body
    assert s.get(f"{server.url}/v1/orgs/{org['slug']}").status_code == 404
    entries = audit(server, org["id"], "org.updated")
    assert len(entries) == 1
    assert json.loads(entries[0]["details"])["fields"] == ["name", "slug", "settings"]
    # Only what changed is named; nothing changed: no entry.
    assert s.patch(url, json={"name": "Renamed", "settings": {"theme": "light"}}).status_code == 200
    assert json.loads(audit(server, org["id"], "org.updated")[-1]["details"])["fields"] == \
        ["settings"]
    assert s.patch(url, json={"name": "Renamed"}).status_code == 200
    assert s.patch(url, json={}).status_code == 200
    assert len(audit(server, org["id"], "org.updated")) == 2


def test_update_errors(server):
    s, _, org = new_owner(server)
    _, _, other = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    assert_problem(s.patch(url, json={"slug": other["slug"]}), 409, "slug_taken")
    b = assert_problem(s.patch(url, json={"slug": "No"}), 400, "validation_failed")
    assert b["errors"][0]["field"] == "slug"
    b = assert_problem(s.patch(url, json={"settings": [1]}), 400, "validation_failed")
    assert b["errors"][0]["field"] == "settings"
    b = assert_problem(s.patch(url, json={"plan": "pro"}), 400, "validation_failed")
    assert b["errors"][0] == {"field": "plan", "code": "unknown_field",
                              "message": b["errors"][0]["message"]}
    assert_problem(s.patch(url, json={"name": ""}), 400, "validation_failed")
    assert s.get(url).json()["slug"] == org["slug"]


def test_settings_size_limit(server):
    s, _, org = new_owner(server)
    url = f"{server.url}/v1/orgs/{org['id']}"
    empty = len(json.dumps({"k": ""}, separators=(",", ":")))
    at_limit = {"k": "x" * (16 * 1024 - empty)}
    assert len(json.dumps(at_limit, separators=(",", ":"))) == 16 * 1024
    r = s.patch(url, json={"settings": at_limit})
    assert r.status_code == 200, r.text
    assert s.get(url).json()["settings"] == at_limit
    over = {"k": "x" * (16 * 1024 - empty + 1)}
    b = assert_problem(s.patch(url, json={"settings": over}), 400, "validation_failed")
    assert b["errors"][0]["field"] == "settings" and b["errors"][0]["code"] == "too_long"


# --- delete ----------------------------------------------------------------------


def test_delete_is_soft_and_hides_the_org(server):
    team = Team(server, plan="pro")
    url = team.url()
    r = team.sessions["owner"].delete(url)
    assert r.status_code == 204 and r.content == b""
    for role, s in team.sessions.items():
        assert_problem(s.get(url), 404, "not_found")
        assert team.id not in [o["id"] for o in s.get(server.url + "/v1/orgs").json()["data"]]
    assert_problem(team.sessions["owner"].delete(url), 404, "not_found")
    rows = query(server, "SELECT deleted_at FROM orgs WHERE id = ?", (team.id,))
    assert rows[0]["deleted_at"] is not None
    entries = audit(server, team.id, "org.deleted")
    assert len(entries) == 1 and entries[0]["actor_id"] == team.users["owner"]["id"]


# --- every route: roles, foreign orgs, no session, CSRF ------------------------------

NIL = "00000000-0000-7000-8000-000000000000"
CSV = "email,role\n"

# (method, path, body, content type, permitted roles). Paths: {org}, {user}
# (the member of the team), {nobody} (a user id that is no member), {inv}.
ROUTES = [
    ("GET", "/v1/orgs/{org}", None, None, {"owner", "admin", "member", "viewer"}),
    ("PATCH", "/v1/orgs/{org}", {"settings": {"k": 1}}, None, {"owner", "admin"}),
    ("GET", "/v1/orgs/{org}/members", None, None, {"owner", "admin"}),
    ("PATCH", "/v1/orgs/{org}/members/{user}", {"role": "member"}, None, {"owner", "admin"}),
    ("DELETE", "/v1/orgs/{org}/members/{nobody}", None, None, {"owner", "admin"}),
    ("POST", "/v1/orgs/{org}/transfer-ownership", {"user_id": "{nobody}"}, None, {"owner"}),
    ("GET", "/v1/orgs/{org}/invitations", None, None, {"owner", "admin"}),
    ("POST", "/v1/orgs/{org}/invitations", {"email": "{email}", "role": "viewer"}, None,
     {"owner", "admin"}),
    ("POST", "/v1/orgs/{org}/invitations/import", CSV, "text/csv", {"owner", "admin"}),
    ("DELETE", "/v1/orgs/{org}/invitations/{nobody}", None, None, {"owner", "admin"}),
    ("POST", "/v1/orgs/{org}/invitations/{nobody}/resend", None, None, {"owner", "admin"}),
    # Destructive ones last.
    ("DELETE", "/v1/orgs/{org}", None, None, {"owner"}),
]


def fill(template, values):
    if isinstance(template, str):
        for k, v in values.items():
            template = template.replace("{" + k + "}", v)
        return template
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    return template


def send(session, server, method, path, body, ctype, values, headers=None):
    kw = {"headers": dict(headers or {})}
    if ctype:
        kw["data"] = body
        kw["headers"]["Content-Type"] = ctype
    elif body is not None:
        kw["json"] = fill(body, values)
    return session.request(method, server.url + fill(path, values), **kw)


def test_role_matrix(server):
    """Each role on each route: permitted → anything but 403; else 403
    forbidden, audited as permission.denied."""
    team = Team(server)
    values = {"org": team.id, "user": team.users["member"]["id"], "nobody": NIL}
    denied = 0
    for method, path, body, ctype, allowed in ROUTES:
        for role in ("viewer", "member", "admin", "owner"):
            values["email"] = unique_email("matrix")
            r = send(team.sessions[role], server, method, path, body, ctype, values)
            where = f"{role} {method} {path}: {r.status_code} {r.text[:200]}"
            if role in allowed:
                assert r.status_code < 400 or r.status_code == 404, where
                assert r.status_code != 403, where
            else:
                assert_problem(r, 403, "forbidden")
                denied += 1
    entries = audit(server, team.id, "permission.denied")
    assert len(entries) == denied
    assert {json.loads(e["details"])["role"] for e in entries} == {"viewer", "member", "admin"}


def test_leave_allowed_for_every_role(server):
    team = Team(server)
    for role in ("viewer", "member", "admin"):
        r = team.sessions[role].post(team.url("/leave"))
        assert r.status_code == 204, (role, r.text)
        assert_problem(team.sessions[role].get(team.url()), 404, "not_found")
    assert_problem(team.sessions["owner"].post(team.url("/leave")), 409, "last_owner")
    assert len(audit(server, team.id, "member.left")) == 3


def test_foreign_org_is_404_everywhere(server):
    """A member of org A naming org B (by id or slug), or B's members and
    invitations through A, always gets 404."""
    a = Team(server)
    b = Team(server)
    b_inv = invite(server, b.sessions["owner"], b.id, unique_email("b"), "viewer")
    for ref in (b.id, b.org["slug"]):
        values = {"org": ref, "user": b.users["member"]["id"], "nobody": NIL,
                  "email": unique_email("x")}
        for method, path, body, ctype, _ in ROUTES:
            r = send(a.sessions["owner"], server, method, path, body, ctype, values)
            assert_problem(r, 404, "not_found")
        assert_problem(a.sessions["owner"].post(f"{server.url}/v1/orgs/{ref}/leave"), 404,
                       "not_found")
    # B's member and B's invitation through A's path.
    o = a.sessions["owner"]
    assert_problem(o.patch(a.url(f"/members/{b.users['member']['id']}"), json={"role": "viewer"}),
                   404, "not_found")
    assert_problem(o.delete(a.url(f"/members/{b.users['member']['id']}")), 404, "not_found")
    assert_problem(o.post(a.url("/transfer-ownership"),
                          json={"user_id": b.users["owner"]["id"]}), 404, "not_found")
    assert_problem(o.delete(a.url(f"/invitations/{b_inv['id']}")), 404, "not_found")
    assert_problem(o.post(a.url(f"/invitations/{b_inv['id']}/resend")), 404, "not_found")
    # B is untouched.
    assert b.sessions["member"].get(b.url()).json()["role"] == "member"
    lst = b.sessions["owner"].get(b.url("/invitations"), params={"status": "pending"}).json()
    assert b_inv["id"] in [i["id"] for i in lst["data"]]


ALL_SESSION_ROUTES = [(m, p, b, c) for m, p, b, c, _ in ROUTES] + [
    ("GET", "/v1/orgs", None, None),
    ("POST", "/v1/orgs", {"name": "x"}, None),
    ("POST", "/v1/orgs/{org}/leave", None, None),
    ("POST", "/v1/invitations/{token}/accept", None, None),
]


def test_no_session_is_401(server):
    team = Team(server, plan="pro")
    values = {"org": team.id, "user": team.users["member"]["id"], "nobody": NIL,
              "email": unique_email("x"), "token": "t" * 43}
    with plain() as anon:
        for method, path, body, ctype in ALL_SESSION_ROUTES:
            r = send(anon, server, method, path, body, ctype, values)
            assert_problem(r, 401, "unauthorized")
    assert team.sessions["owner"].get(team.url()).status_code == 200


def test_missing_csrf_is_403(server):
    team = Team(server, plan="pro")
    values = {"org": team.id, "user": team.users["member"]["id"], "nobody": NIL,
              "email": unique_email("x"), "token": "t" * 43}
    owner = team.sessions["owner"]
    token = owner.headers.pop("X-CSRF-Token")
    try:
        for method, path, body, ctype in ALL_SESSION_ROUTES:
            if method == "GET":
                continue
            r = send(owner, server, method, path, body, ctype, values)
            assert_problem(r, 403, "csrf_failed")
            r = send(owner, server, method, path, body, ctype, values,
                     headers={"X-CSRF-Token": token[:-2] + "xx"})
            assert_problem(r, 403, "csrf_failed")
    finally:
        owner.headers["X-CSRF-Token"] = token
    # Nothing happened.
    assert owner.get(team.url()).status_code == 200
    assert len(owner.get(team.url("/members")).json()["data"]) == 4


# --- the CLI ----------------------------------------------------------------------


def test_cli_org_create(server):
    user = create_user(server)
    slug = "cli-" + uuid.uuid4().hex[:8]
    p = run_keel(["org", "create", "--name", "From CLI", "--slug", slug, "--owner",
                  user["email"].upper(), "--plan", "pro", "--data-dir", server.data_dir])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert UUID_RE.match(lines[0]) and lines[1] == f"slug: {slug}"
    s = login(server, user["email"], user["password"])
    org = s.get(f"{server.url}/v1/orgs/{slug}").json()
    assert (org["id"], org["plan"], org["role"]) == (lines[0], "pro", "owner")
    e = audit(server, org["id"], "org.created")
    assert len(e) == 1 and e[0]["actor_type"] == "system"

    p = run_keel(["org", "create", "--name", "Generated Name", "--owner", user["email"],
                  "--data-dir", server.data_dir])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1] == "slug: generated-name" or \
        p.stdout.splitlines()[1].startswith("slug: generated-name-")

    cases = [
        (["--name", "X", "--owner", "nobody-" + unique_email()], 1, "no user"),
        (["--name", "X", "--slug", slug, "--owner", user["email"]], 1, "taken"),
        (["--name", "X", "--slug", "No", "--owner", user["email"]], 1, "slug"),
        (["--name", "X", "--plan", "gold", "--owner", user["email"]], 1, "plan"),
        (["--owner", user["email"]], 2, "required"),
        (["--name", "X"], 2, "required"),
        (["--name", "X", "--owner", "not-an-email"], 2, "email"),
        (["--name", "X", "--owner", user["email"], "--bogus"], 2, "unknown flag"),
    ]
    for args, code, text in cases:
        p = run_keel(["org", "create", *args, "--data-dir", server.data_dir])
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert text in p.stderr, (args, p.stderr)
    p = run_keel(["org", "create", "--help"])
    assert p.returncode == 0 and "--owner EMAIL" in p.stdout
    assert run_keel(["org"]).returncode == 2
    # The free-org limit applies to the CLI too (1 free org so far: 2 more).
    run_keel(["org", "create", "--name", "F2", "--owner", user["email"], "--data-dir",
              server.data_dir])
    run_keel(["org", "create", "--name", "F3", "--owner", user["email"], "--data-dir",
              server.data_dir])
    p = run_keel(["org", "create", "--name", "F4", "--owner", user["email"], "--data-dir",
                  server.data_dir])
    assert p.returncode == 1 and "orgs_per_user" in p.stderr
