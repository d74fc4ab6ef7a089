"""Sign-up, verification, login, sessions, CSRF, lockout, per-IP limit and
password reset, against the real binary (R-IAM-1..4, R-AUD-2).

The module's server allows a large per-IP budget, so the many sign-ins here
are not throttled; the limit itself is tested on a fresh server.
"""

import hashlib
import json
import re
import time
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import requests

import dbdirect
from accounts import (
    DEFAULT_PASSWORD,
    advance_clock,
    create_user,
    login,
    new_user_session,
    post_login,
    unique_email,
)
from conftest import KeelServer, assert_problem, run_keel

COOKIE = "__Host-keel_session"
PUBLIC_ORIGIN = "http://127.0.0.1:8080"  # the default public_url's origin


@pytest.fixture(scope="module")
def server(keel_bin, tmp_path_factory):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-auth"))
    srv.start(["--set", "auth.login_per_ip_per_min=100000"])
    yield srv
    srv.stop()


@pytest.fixture
def http():
    s = requests.Session()
    s.trust_env = False
    yield s
    s.close()


# --- helpers ----------------------------------------------------------------


def db_read(server, sql, *args):
    """A read on the server's database (either backend: dbdirect)."""
    return dbdirect.sql(server, sql, *args)


def db_write(server, statements):
    """Runs (sql, args) pairs in one transaction on the live database (the
    server's writer takes turns through SQLite's locks)."""
    dbdirect.script(server, statements)


def audit(server, action, resource_id=None):
    """Audit rows (platform chain) for action, oldest first, as dicts."""
    sql = ("SELECT actor_type, actor_id, resource_id, result, details FROM audit_log"
           " WHERE org_id = '00000000-0000-0000-0000-000000000000' AND action = ?")
    args = [action]
    if resource_id is not None:
        sql += " AND resource_id = ?"
        args.append(resource_id)
    rows = db_read(server, sql + " ORDER BY seq", *args)
    return [{"actor_type": r[0], "actor_id": r[1], "resource_id": r[2], "result": r[3],
             "details": json.loads(r[4])} for r in rows]


def user_id_of(server, email):
    rows = db_read(server, "SELECT id FROM users WHERE email_norm = ?", email.lower())
    return rows[0][0] if rows else None


def mails(server, to, template=None):
    """mail.outbox log events sent to an address (--dev servers log them)."""
    return [e for e in server.events("mail.outbox")
            if e.get("to") == to and (template is None or e.get("template") == template)]


def token_from_last_mail(server, to, template):
    found = mails(server, to, template)
    assert found, f"no {template} mail to {to} in the log"
    link = found[-1]["link"]
    return parse_qs(urlparse(link).query)["token"][0], link


def post(http, server, path, body, **kw):
    return http.post(server.url + path, json=body, timeout=60, **kw)


def signup(http, server, email, password=DEFAULT_PASSWORD, name="Signed Up", **extra):
    return post(http, server, "/v1/auth/signup",
                {"email": email, "password": password, "name": name, **extra})


def set_cookie_attrs(resp):
    """The Set-Cookie header split into (name, value, {attr_lower: value})."""
    raw = resp.headers.get("Set-Cookie")
    assert raw, f"no Set-Cookie in {dict(resp.headers)}"
    parts = [p.strip() for p in raw.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v
    return name, value, attrs


def cookie_get(server, path, cookie, headers=None):
    with requests.Session() as s:
        s.trust_env = False
        return s.get(server.url + path, headers={"Cookie": f"{COOKIE}={cookie}", **(headers or {})},
                     timeout=30)


def cookie_post(server, path, cookie, body=None, headers=None):
    with requests.Session() as s:
        s.trust_env = False
        return s.post(server.url + path, json=body,
                      headers={"Cookie": f"{COOKIE}={cookie}", **(headers or {})}, timeout=30)


def add_orgs(server, user_id, n, role="member"):
    """n orgs with user_id as a member, written straight into the store."""
    now = int(time.time() * 1e6)
    ids, stmts = [], []
    for i in range(n):
        oid = str(uuid.uuid4())
        slug = f"t-{uuid.uuid4().hex[:16]}"
        ids.append(oid)
        stmts.append(("INSERT INTO orgs(id, name, slug, created_at, updated_at)"
                      " VALUES(?, ?, ?, ?, ?)",
                      (oid, f"Org {i}", slug, dbdirect.ts_value(now), dbdirect.ts_value(now))))
        stmts.append(("INSERT INTO memberships(org_id, user_id, role, created_at)"
                      " VALUES(?, ?, ?, ?)", (oid, user_id, role, dbdirect.ts_value(now + i))))
    db_write(server, stmts)
    return ids


# --- the whole journey ------------------------------------------------------


def test_signup_verify_login_me_logout(server, http):
    email = unique_email("journey")
    r = signup(http, server, email)
    assert r.status_code == 201, r.text
    assert r.json() == {"status": "verification_sent"}
    uid = user_id_of(server, email)
    assert uid
    token, link = token_from_last_mail(server, email, "verify")
    assert link.startswith(PUBLIC_ORIGIN + "/verify?token=")
    assert len(token) == 43

    # Unverified: the right password answers 403, a wrong one 401.
    assert_problem(post_login(server, email, DEFAULT_PASSWORD), 403, "email_not_verified")
    assert_problem(post_login(server, email, "Wrong0ne!x"), 401, "invalid_credentials")

    r = post(http, server, "/v1/auth/verify", {"token": token})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "verified"}
    assert audit(server, "user.verified", uid)[-1]["actor_id"] == uid

    r = post_login(server, email, DEFAULT_PASSWORD)
    assert r.status_code == 200, r.text
    name, cookie, attrs = set_cookie_attrs(r)
    assert name == COOKIE and cookie
    assert "httponly" in attrs
    assert attrs.get("samesite") == "Strict"
    assert attrs.get("path") == "/"
    assert "secure" not in attrs  # plain HTTP without a trusted proxy
    assert "domain" not in attrs
    assert attrs.get("max-age") == str(7 * 86400)
    body = r.json()
    assert body["user"]["id"] == uid
    assert body["user"]["email"] == email
    assert body["user"]["verified"] is True
    assert body["user"]["platform_admin"] is False
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", body["user"]["created_at"])
    assert body["orgs"] == [] and body["active_org_id"] is None
    csrf = body["csrf_token"]
    assert csrf

    r = cookie_get(server, "/v1/auth/me", cookie)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["user"]["id"] == uid and me["csrf_token"] == csrf and me["orgs"] == []

    r = cookie_post(server, "/v1/auth/logout", cookie, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204, r.text
    _, cleared, attrs = set_cookie_attrs(r)
    assert cleared == "" and attrs.get("max-age") == "0"

    # The old cookie is dead, even replayed.
    assert_problem(cookie_get(server, "/v1/auth/me", cookie), 401, "unauthorized")
    assert_problem(cookie_post(server, "/v1/auth/logout", cookie, headers={"X-CSRF-Token": csrf}),
                   401, "unauthorized")

    # Audit trail, platform chain.
    assert audit(server, "auth.signup", uid)[-1]["result"] == "success"
    logins = audit(server, "auth.login", uid)
    assert [l["details"]["reason"] for l in logins] == ["email_not_verified", "wrong_password",
                                                       "ok"]
    assert [l["result"] for l in logins] == ["failure", "failure", "success"]
    assert logins[-1]["actor_type"] == "user" and logins[-1]["actor_id"] == uid
    out = audit(server, "auth.logout", uid)
    assert len(out) == 1 and out[0]["actor_id"] == uid


def test_logout_revokes_every_session(server):
    s1, user = new_user_session(server)
    s2 = login(server, user["email"], user["password"])
    assert s1.post(server.url + "/v1/auth/logout").status_code == 204
    assert_problem(s2.get(server.url + "/v1/auth/me"), 401, "unauthorized")


def test_secrets_never_logged(server, http):
    email = unique_email("secret")
    pw = "Sekr3tPassw0rdXyz"
    assert signup(http, server, email, password=pw).status_code == 201
    post_login(server, email, pw)
    post_login(server, email, pw + "nope")
    text = server.log_text()
    assert pw not in text
    rows = db_read(server, "SELECT details FROM audit_log")
    assert all(pw not in r[0] for r in rows)


# --- sign-up ----------------------------------------------------------------


def test_signup_existing_email_same_answer(server, http):
    user = create_user(server)
    r = signup(http, server, user["email"].upper(), password="Other0nePass")
    assert r.status_code == 201 and r.json() == {"status": "verification_sent"}
    assert mails(server, user["email"], "account_exists")
    assert db_read(server, "SELECT count(*) FROM users WHERE email_norm = ?",
                   user["email"].lower())[0][0] == 1
    # The password did not change.
    assert post_login(server, user["email"], user["password"]).status_code == 200
    assert audit(server, "auth.signup", user["id"])[-1]["result"] == "failure"


def test_signup_again_while_unverified_resends_verification(server, http):
    email = unique_email("again")
    assert signup(http, server, email).status_code == 201
    first, _ = token_from_last_mail(server, email, "verify")
    r = signup(http, server, email)
    assert r.status_code == 201 and r.json() == {"status": "verification_sent"}
    second, _ = token_from_last_mail(server, email, "verify")
    assert first != second
    assert post(http, server, "/v1/auth/verify", {"token": second}).status_code == 200


@pytest.mark.parametrize("body,field,code", [
    ({"email": "not-an-email", "password": "Passw0rdX", "name": "N"}, "email", "invalid_format"),
    ({"email": "a@b", "password": "Passw0rdX", "name": "N"}, "email", "invalid_format"),
    ({"email": "x@example.com", "password": "Passw0r", "name": "N"}, "password", "too_short"),
    ({"email": "x@example.com", "password": "password1", "name": "N"}, "password", "too_weak"),
    ({"email": "x@example.com", "password": "PASSWORD1", "name": "N"}, "password", "too_weak"),
    ({"email": "x@example.com", "password": "Passwordx", "name": "N"}, "password", "too_weak"),
    ({"email": "x@example.com", "password": "Aa1" + "x" * 126, "name": "N"}, "password",
     "too_long"),
    ({"email": "x@example.com", "password": "Passw0rdX"}, "name", "required"),
    ({"email": "x@example.com", "password": "Passw0rdX", "name": ""}, "name", "too_short"),
    ({"email": "x@example.com", "password": "Passw0rdX", "name": "a\u0001b"}, "name",
     "invalid_format"),
    ({"email": 5, "password": "Passw0rdX", "name": "N"}, "email", "wrong_type"),
    ({"email": "x@example.com", "password": "Passw0rdX", "name": "N", "admin": True}, "admin",
     "unknown_field"),
])
def test_signup_validation(server, http, body, field, code):
    p = assert_problem(post(http, server, "/v1/auth/signup", body), 400, "validation_failed")
    assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]}
                                              for e in p["errors"]], p


def test_password_policy_boundaries(server, http):
    # 8 characters is enough, 7 is not; 128 bytes is allowed, 129 not.
    assert signup(http, server, unique_email("p8"), password="Passw0rd").status_code == 201
    assert_problem(signup(http, server, unique_email("p7"), password="Passw0r"), 400,
                   "validation_failed")
    assert signup(http, server, unique_email("p128"), password="Aa1" + "x" * 125).status_code == 201
    assert_problem(signup(http, server, unique_email("p129"), password="Aa1" + "x" * 126), 400,
                   "validation_failed")


def test_signup_with_invitation_is_verified(server, http):
    owner = create_user(server)
    org_id = add_orgs(server, owner["id"], 1, role="owner")[0]
    email = unique_email("invited")
    token = "inv-" + uuid.uuid4().hex
    now = int(time.time() * 1e6)
    db_write(server, [(
        "INSERT INTO invitations(org_id, id, email, email_norm, role, token_hash, invited_by,"
        " created_at, expires_at) VALUES(?, ?, ?, ?, 'member', ?, ?, ?, ?)",
        (org_id, str(uuid.uuid4()), email, email.lower(), hashlib.sha256(token.encode()).digest(),
         owner["id"], dbdirect.ts_value(now), dbdirect.ts_value(now + 7 * 86400 * 10**6)))])
    r = signup(http, server, unique_email("other"), invitation_token=token)
    assert_problem(r, 403, "invitation_email_mismatch")
    assert_problem(signup(http, server, email, invitation_token="nope"), 400, "invalid_token")
    r = signup(http, server, email, invitation_token=token)
    assert r.status_code == 201 and r.json() == {"status": "active"}
    assert not mails(server, email, "verify")
    assert post_login(server, email, DEFAULT_PASSWORD).status_code == 200


# --- verification tokens ------------------------------------------------------


def test_verify_token_single_use_and_unknown(server, http):
    email = unique_email("once")
    signup(http, server, email)
    token, _ = token_from_last_mail(server, email, "verify")
    assert post(http, server, "/v1/auth/verify", {"token": token}).status_code == 200
    assert_problem(post(http, server, "/v1/auth/verify", {"token": token}), 400, "invalid_token")
    assert_problem(post(http, server, "/v1/auth/verify", {"token": "x" * 43}), 400,
                   "invalid_token")
    assert_problem(post(http, server, "/v1/auth/verify", {"token": "short"}), 400,
                   "invalid_token")
    assert_problem(post(http, server, "/v1/auth/verify", {}), 400, "validation_failed")


def test_verify_token_expires_after_24h(server, http):
    email = unique_email("late")
    signup(http, server, email)
    token, _ = token_from_last_mail(server, email, "verify")
    advance_clock(server, 24 * 3600 + 1)
    assert_problem(post(http, server, "/v1/auth/verify", {"token": token}), 400, "invalid_token")
    assert_problem(post_login(server, email, DEFAULT_PASSWORD), 403, "email_not_verified")


# --- login ---------------------------------------------------------------------


def comparable(resp):
    body = resp.json()
    return (resp.status_code, resp.headers.get("Content-Type"), body["code"], body["title"],
            body.get("detail"))


def test_wrong_password_unknown_email_suspended_look_the_same(server):
    user = create_user(server)
    suspended = create_user(server)
    db_write(server, [("UPDATE users SET suspended = ? WHERE id = ?", (True, suspended["id"]))])
    wrong = post_login(server, user["email"], "Wrong0nePass")
    unknown = post_login(server, unique_email("nobody"), "Wrong0nePass")
    susp = post_login(server, suspended["email"], suspended["password"])
    assert_problem(wrong, 401, "invalid_credentials")
    assert comparable(wrong) == comparable(unknown) == comparable(susp)
    assert "Set-Cookie" not in wrong.headers and "Set-Cookie" not in susp.headers
    reasons = [a["details"]["reason"] for a in audit(server, "auth.login", suspended["id"])]
    assert reasons == ["suspended"]


def test_login_email_is_case_insensitive(server):
    user = create_user(server)
    assert post_login(server, user["email"].upper(), user["password"]).status_code == 200


def lock(server, email, n=10):
    for i in range(n):
        r = post_login(server, email, f"Wrong{i}Pass")
        assert_problem(r, 401, "invalid_credentials")


def test_lockout_after_10_failures_and_expiry(server):
    user = create_user(server)
    lock(server, user["email"])
    # Even the right password is refused while locked, without checking it.
    r = post_login(server, user["email"], user["password"])
    assert_problem(r, 423, "locked")
    retry = int(r.headers["Retry-After"])
    assert 890 <= retry <= 900, retry
    lockouts = audit(server, "auth.lockout", user["id"])
    assert len(lockouts) == 1 and lockouts[0]["details"]["failures"] == 10
    assert audit(server, "auth.login", user["id"])[-1]["details"]["reason"] == "locked"

    advance_clock(server, 899)
    assert_problem(post_login(server, user["email"], user["password"]), 423, "locked")
    advance_clock(server, 2)
    assert post_login(server, user["email"], user["password"]).status_code == 200

    # Success cleared the failures: 9 more do not lock.
    lock(server, user["email"], 9)
    assert post_login(server, user["email"], user["password"]).status_code == 200


def test_failures_outside_the_window_do_not_lock(server):
    user = create_user(server)
    lock(server, user["email"], 9)
    advance_clock(server, 15 * 60 + 1)
    lock(server, user["email"], 1)
    assert post_login(server, user["email"], user["password"]).status_code == 200


def test_lockout_of_unknown_email_looks_the_same(server):
    email = unique_email("ghost")
    lock(server, email)
    r = post_login(server, email, "Whatever1x")
    assert_problem(r, 423, "locked")
    assert 890 <= int(r.headers["Retry-After"]) <= 900
    assert any(a["details"]["email"] == email for a in audit(server, "auth.lockout"))


def test_per_ip_limit(fresh_server, http):
    srv = fresh_server(["--set", "auth.login_per_ip_per_min=3"])
    user = create_user(srv)
    for _ in range(3):
        r = post_login(srv, user["email"], "Wrong0nePass", retry_on_limit=False)
        assert r.status_code == 401
        assert "RateLimit" in r.headers and "RateLimit-Policy" in r.headers
    r = post_login(srv, user["email"], user["password"], retry_on_limit=False)
    assert_problem(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 20
    # One budget for sign-in, sign-up, forgot and reset.
    assert_problem(signup(http, srv, unique_email()), 429, "rate_limited")
    assert_problem(post(http, srv, "/v1/auth/password/forgot", {"email": user["email"]}), 429,
                   "rate_limited")
    assert_problem(post(http, srv, "/v1/auth/password/reset",
                        {"token": "x" * 43, "password": "Passw0rdX"}), 429, "rate_limited")
    advance_clock(srv, 61)
    assert post_login(srv, user["email"], user["password"], retry_on_limit=False).status_code == 200


# --- sessions -------------------------------------------------------------------


def test_session_expires_after_7_idle_days(server):
    s, _ = new_user_session(server)
    advance_clock(server, 7 * 86400 + 1)
    assert_problem(s.get(server.url + "/v1/auth/me"), 401, "unauthorized")


def test_session_slides_with_activity(server):
    s, _ = new_user_session(server)
    for _ in range(3):
        advance_clock(server, 5 * 86400)
        r = s.get(server.url + "/v1/auth/me")
        assert r.status_code == 200, r.text
        assert COOKIE in r.headers.get("Set-Cookie", "")  # re-issued


def test_tampered_cookie_refused(server):
    s, _ = new_user_session(server)
    cookie = s.cookies[COOKIE]
    head, payload, sig = cookie.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert_problem(cookie_get(server, "/v1/auth/me", f"{head}.{payload}.{flipped}"), 401,
                   "unauthorized")
    assert_problem(cookie_get(server, "/v1/auth/me", "garbage"), 401, "unauthorized")
    assert_problem(requests.get(server.url + "/v1/auth/me", timeout=10), 401, "unauthorized")


def test_secure_cookie_behind_trusted_proxy(fresh_server):
    srv = fresh_server(["--set", "http.trust_proxy=true"])
    user = create_user(srv)
    r = post_login(srv, user["email"], user["password"],
                   headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200, r.text
    _, _, attrs = set_cookie_attrs(r)
    assert "secure" in attrs and "httponly" in attrs and attrs["samesite"] == "Strict"
    r = post_login(srv, user["email"], user["password"])
    assert "secure" not in set_cookie_attrs(r)[2]


def test_cookie_of_user_in_50_orgs_fits(server):
    user = create_user(server, email=unique_email("m" * 40), name="N" * 100)
    add_orgs(server, user["id"], 50)
    r = post_login(server, user["email"], user["password"])
    assert r.status_code == 200, r.text
    assert len(r.json()["orgs"]) == 50
    raw = r.headers["Set-Cookie"]
    assert len(raw) < 4096, len(raw)
    cookie = set_cookie_attrs(r)[1]
    me = cookie_get(server, "/v1/auth/me", cookie)
    assert me.status_code == 200 and len(me.json()["orgs"]) == 50


def test_context_switch(server):
    s, user = new_user_session(server)
    other, _ = new_user_session(server)
    mine = add_orgs(server, user["id"], 2)
    foreign = add_orgs(server, other.login_body["user"]["id"], 1)[0]
    me = s.get(server.url + "/v1/auth/me").json()
    assert [o["id"] for o in me["orgs"]] == mine
    assert me["active_org_id"] is None  # no org at login

    r = s.post(server.url + "/v1/auth/context/switch", json={"org_id": mine[1]})
    assert r.status_code == 200, r.text
    assert r.json() == {"active_org_id": mine[1]}
    assert COOKIE in r.headers["Set-Cookie"]
    assert s.get(server.url + "/v1/auth/me").json()["active_org_id"] == mine[1]

    assert_problem(s.post(server.url + "/v1/auth/context/switch", json={"org_id": foreign}), 404,
                   "not_found")
    assert_problem(s.post(server.url + "/v1/auth/context/switch",
                          json={"org_id": str(uuid.uuid4())}), 404, "not_found")
    assert_problem(s.post(server.url + "/v1/auth/context/switch", json={}), 400,
                   "validation_failed")
    # The first org is active at the next login.
    again = login(server, user["email"], user["password"])
    assert again.login_body["active_org_id"] == mine[0]


# --- CSRF -----------------------------------------------------------------------


@pytest.mark.parametrize("path,body", [("/v1/auth/logout", None),
                                       ("/v1/auth/context/switch", {"org_id": "x"})])
def test_csrf_required_on_cookie_changes(server, path, body):
    s, user = new_user_session(server)
    csrf = s.headers.pop("X-CSRF-Token")
    before = len(audit(server, "auth.csrf_failed"))
    assert_problem(s.post(server.url + path, json=body), 403, "csrf_failed")
    assert_problem(s.post(server.url + path, json=body, headers={"X-CSRF-Token": "x" * 43}), 403,
                   "csrf_failed")
    other, _ = new_user_session(server)  # a token of another session
    assert_problem(s.post(server.url + path, json=body,
                          headers={"X-CSRF-Token": other.headers["X-CSRF-Token"]}), 403,
                   "csrf_failed")
    assert_problem(s.post(server.url + path, json=body,
                          headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}), 403,
                   "csrf_failed")
    assert len(audit(server, "auth.csrf_failed")) == before + 4
    r = s.post(server.url + path, json=body, headers={"X-CSRF-Token": csrf,
                                                      "Origin": PUBLIC_ORIGIN})
    assert r.status_code in (204, 404), r.text  # logout, or switch to an unknown org


# --- password reset --------------------------------------------------------------


def forgot(http, server, email):
    r = post(http, server, "/v1/auth/password/forgot", {"email": email})
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "reset_sent_if_account_exists"}
    return r


def test_password_reset_revokes_sessions(server, http):
    s, user = new_user_session(server)
    forgot(http, server, user["email"])
    token, link = token_from_last_mail(server, user["email"], "reset")
    assert link.startswith(PUBLIC_ORIGIN + "/reset-password?token=")
    assert audit(server, "auth.password_reset_requested", user["id"])[-1]["result"] == "success"

    r = post(http, server, "/v1/auth/password/reset", {"token": token, "password": "weak"})
    assert_problem(r, 400, "validation_failed")
    new_pw = "N3wPassword!"
    r = post(http, server, "/v1/auth/password/reset", {"token": token, "password": new_pw})
    assert r.status_code == 200, r.text
    assert_problem(s.get(server.url + "/v1/auth/me"), 401, "unauthorized")
    assert_problem(post_login(server, user["email"], user["password"]), 401,
                   "invalid_credentials")
    assert post_login(server, user["email"], new_pw).status_code == 200
    # Single use.
    assert_problem(post(http, server, "/v1/auth/password/reset",
                        {"token": token, "password": "An0therPass"}), 400, "invalid_token")
    assert len(audit(server, "auth.password_reset", user["id"])) == 1


def test_forgot_answers_the_same_for_unknown_and_unverified(server, http):
    ghost = unique_email("ghost")
    unverified = create_user(server, verified=False)
    a = forgot(http, server, ghost)
    b = forgot(http, server, unverified["email"])
    assert a.json() == b.json()
    assert not mails(server, ghost) and not mails(server, unverified["email"], "reset")


def test_reset_token_expires_after_1h(server, http):
    user = create_user(server)
    forgot(http, server, user["email"])
    token, _ = token_from_last_mail(server, user["email"], "reset")
    advance_clock(server, 3601)
    assert_problem(post(http, server, "/v1/auth/password/reset",
                        {"token": token, "password": "N3wPassword!"}), 400, "invalid_token")
    assert post_login(server, user["email"], user["password"]).status_code == 200


def test_reset_ends_lockout_and_retires_older_links(server, http):
    user = create_user(server)
    forgot(http, server, user["email"])
    older, _ = token_from_last_mail(server, user["email"], "reset")
    forgot(http, server, user["email"])
    newer, _ = token_from_last_mail(server, user["email"], "reset")
    lock(server, user["email"])
    assert_problem(post_login(server, user["email"], user["password"]), 423, "locked")
    r = post(http, server, "/v1/auth/password/reset", {"token": newer, "password": "N3wPassword!"})
    assert r.status_code == 200, r.text
    assert post_login(server, user["email"], "N3wPassword!").status_code == 200
    assert_problem(post(http, server, "/v1/auth/password/reset",
                        {"token": older, "password": "Th1rdPassword"}), 400, "invalid_token")


# --- bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/auth/signup", "/v1/auth/login", "/v1/auth/verify",
                                  "/v1/auth/password/forgot", "/v1/auth/password/reset"])
def test_malformed_bodies(server, http, path):
    url = server.url + path
    j = {"Content-Type": "application/json"}
    assert_problem(http.post(url, data=b"{", headers=j), 400, "invalid_json")
    assert_problem(http.post(url, data=b"[]", headers=j), 400, "invalid_json")
    assert_problem(http.post(url, headers=j), 400, "invalid_json")
    assert_problem(http.post(url, data=b"{}", headers={"Content-Type": "text/plain"}), 415,
                   "unsupported_media_type")
    big = b'{"email":"' + b"a" * (64 * 1024) + b'"}'
    assert_problem(http.post(url, data=big, headers=j), 413, "payload_too_large")
    r = http.post(url, json={"email": ["x"], "password": 1, "token": 2, "name": False})
    assert_problem(r, 400, "validation_failed")


def test_wrong_methods(server, http):
    r = http.get(server.url + "/v1/auth/login")
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


# --- CLI and mail without --dev ------------------------------------------------------


def test_cli_user_create_and_promote(server):
    user = create_user(server, password=None, admin=True)
    assert len(user["password"]) >= 16
    r = post_login(server, user["email"], user["password"])
    assert r.status_code == 200 and r.json()["user"]["platform_admin"] is True
    promoted = audit(server, "user.promoted", user["id"])
    assert len(promoted) == 1 and promoted[0]["actor_type"] == "system"
    dup = run_keel(["user", "create", "--email", user["email"], "--data-dir", server.data_dir])
    assert dup.returncode == 1 and "exists" in dup.stderr and user["password"] not in dup.stderr
    missing = run_keel(["user", "promote", "--email", unique_email(), "--data-dir",
                        server.data_dir])
    assert missing.returncode == 1
    bad = run_keel(["user", "create", "--email", "x@example.com", "--password", "weak",
                    "--data-dir", server.data_dir])
    assert bad.returncode == 2
    assert run_keel(["user", "frobnicate"]).returncode == 2
    assert run_keel(["user", "create", "--help"]).returncode == 0


def test_links_not_logged_without_dev(fresh_server, http):
    srv = fresh_server(dev=False)
    email = unique_email("prod")
    assert signup(http, srv, email).status_code == 201
    assert not srv.events("mail.outbox")
    rows = db_read(srv, "SELECT template, body FROM outbox WHERE to_email = ?", email)
    assert len(rows) == 1 and rows[0][0] == "verify"
    assert "/verify?token=" in rows[0][1]
    token = rows[0][1].split("token=")[1].split()[0]
    assert token not in srv.log_text()
    stored = db_read(srv, "SELECT token_hash FROM user_tokens")[0][0]
    assert stored == hashlib.sha256(token.encode()).digest()
