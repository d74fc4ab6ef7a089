"""Invitations over HTTP (R-IAM-7, R-IAM-10): invite, preview, accept, the
invited address only, expiry, revoke, resend, lists, bulk CSV (row by row,
all or nothing), plan member limits at N and N+1, mails in the outbox,
tokens never stored or shown (except in development mode), every change
audited.
"""

import hashlib
import json
import re

import pytest
import requests

from accounts import advance_clock, create_user
from conftest import KeelServer, assert_problem
from tenancy_helpers import (
    Team,
    accept,
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

WEEK_S = 7 * 86400
PUBLIC_URL = "http://127.0.0.1:8080"  # the default public_url


@pytest.fixture(scope="module")
def server(keel_bin, tmp_path_factory):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-invitations"))
    srv.start(["--set", "auth.login_per_ip_per_min=100000"])
    yield srv
    srv.stop()


def plain():
    s = requests.Session()
    s.trust_env = False
    return s


def pro_owner(server):
    """A signed-in owner of a fresh org on the pro plan (5 members):
    (session, user with password, org)."""
    s, user, org = new_owner(server)
    set_plan(server, org["id"], "pro")
    return s, user, org


def relogin(server, user):
    """Sessions end after 7 idle days: sign in again after moving the clock."""
    return login(server, user["email"], user["password"])


def org_url(server, org, path=""):
    return f"{server.url}/v1/orgs/{org['id']}{path}"


def listing(server, session, org, **params):
    r = session.get(org_url(server, org, "/invitations"), params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- the whole path ------------------------------------------------------------


def test_invite_preview_accept(server):
    s, owner, org = pro_owner(server)
    invitee = create_user(server)
    r = s.post(org_url(server, org, "/invitations"),
               json={"email": invitee["email"].upper(), "role": "admin"})
    assert r.status_code == 201, r.text
    inv = r.json()
    token = inv.pop("token")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert inv["email"] == invitee["email"].upper()
    assert (inv["role"], inv["status"], inv["invited_by"]) == ("admin", "pending", owner["id"])
    assert "accepted_at" not in inv and "revoked_at" not in inv

    # Stored: the hash, never the token; the mail is in the outbox.
    rows = query(server, "SELECT token_hash, email_norm FROM invitations WHERE id = ?",
                 (inv["id"],))
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).digest()
    assert rows[0]["email_norm"] == invitee["email"].lower()
    mails = query(server, "SELECT * FROM outbox WHERE template = 'invitation' AND org_id = ?",
                  (org["id"],))
    assert len(mails) == 1
    assert mails[0]["to_email"] == invitee["email"].upper()
    assert f"{PUBLIC_URL}/invitations/{token}" in mails[0]["body"]
    assert org["name"] in mails[0]["subject"]
    logged = [e for e in server.events("mail.outbox") if e.get("template") == "invitation"
              and e.get("link", "").endswith(token)]
    assert len(logged) == 1

    with plain() as anon:
        p = anon.get(f"{server.url}/v1/invitations/{token}")
    assert p.status_code == 200, p.text
    assert p.json() == {"org": {"name": org["name"], "slug": org["slug"]}, "role": "admin",
                        "email": invitee["email"].upper(), "expires_at": inv["expires_at"]}

    joined = login(server, invitee["email"], invitee["password"])
    r = accept(server, joined, token)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin"
    assert r.json()["org"]["id"] == org["id"] and r.json()["org"]["role"] == "admin"
    members = {m["user_id"]: m["role"] for m in s.get(org_url(server, org, "/members")).json()["data"]}
    assert members == {owner["id"]: "owner", invitee["id"]: "admin"}
    assert joined.get(org_url(server, org, "/members")).status_code == 200

    # Used: gone for everyone.
    with plain() as anon:
        assert_problem(anon.get(f"{server.url}/v1/invitations/{token}"), 404, "not_found")
    assert_problem(accept(server, joined, token), 404, "not_found")
    listed = listing(server, s, org)["data"]
    assert listed[0]["id"] == inv["id"] and listed[0]["status"] == "accepted"
    assert "accepted_at" in listed[0]

    invited = audit(server, org["id"], "member.invited")
    assert len(invited) == 1 and invited[0]["resource_id"] == inv["id"]
    assert json.loads(invited[0]["details"]) == {"email": invitee["email"].upper(),
                                                 "role": "admin", "source": "api"}
    joined_e = audit(server, org["id"], "member.joined")
    assert len(joined_e) == 1
    assert joined_e[0]["actor_id"] == invitee["id"] and joined_e[0]["resource_id"] == invitee["id"]
    # The token is in no audit entry.
    assert not query(server, "SELECT 1 FROM audit_log WHERE CAST(details AS TEXT) LIKE ?", (f"%{token}%",))


def test_accept_needs_the_invited_email(server):
    s, _, org = pro_owner(server)
    invitee = create_user(server)
    inv = invite(server, s, org["id"], invitee["email"], "member")
    other, other_user = login_new(server)
    b = assert_problem(accept(server, other, inv["token"]), 403, "invitation_email_mismatch")
    assert b["detail"]
    denied = audit(server, org["id"], "invitation.accept_denied")
    assert len(denied) == 1 and denied[0]["actor_id"] == other_user["id"]
    assert denied[0]["result"] == "failure"
    assert_problem(other.get(org_url(server, org)), 404, "not_found")
    # Still pending for the right person.
    assert listing(server, s, org, status="pending")["data"][0]["id"] == inv["id"]
    ok = login(server, invitee["email"], invitee["password"])
    assert accept(server, ok, inv["token"]).status_code == 200


def login_new(server):
    u = create_user(server)
    return login(server, u["email"], u["password"]), u


def test_accept_when_already_member(server):
    s, owner, org = pro_owner(server)
    # The owner's own address cannot be invited; a member's neither.
    assert_problem(s.post(org_url(server, org, "/invitations"),
                          json={"email": owner["email"], "role": "viewer"}), 409,
                   "already_member")
    member_s, member = add_member(server, s, org["id"], "viewer")
    assert_problem(s.post(org_url(server, org, "/invitations"),
                          json={"email": member["email"].upper(), "role": "admin"}), 409,
                   "already_member")


def test_bad_tokens_are_404(server):
    s, _ = login_new(server)
    with plain() as anon:
        for t in ("x", "A" * 43, "A" * 44, "a" * 42 + "!", "%00" * 3):
            assert_problem(anon.get(f"{server.url}/v1/invitations/{t}"), 404, "not_found")
            assert_problem(s.post(f"{server.url}/v1/invitations/{t}/accept"), 404, "not_found")


@pytest.mark.parametrize("body,field,code", [
    ({"role": "member"}, "email", "required"),
    ({"email": "nope", "role": "member"}, "email", "invalid_format"),
    ({"email": "a b@example.com", "role": "member"}, "email", "invalid_format"),
    ({"email": "x@example.com"}, "role", "required"),
    ({"email": "x@example.com", "role": "owner"}, "role", "not_allowed"),
    ({"email": "x@example.com", "role": "member", "org": "x"}, "org", "unknown_field"),
    ({"email": 5, "role": "member"}, "email", "wrong_type"),
])
def test_invite_validation(server, body, field, code):
    s, _, org = pro_owner(server)
    b = assert_problem(s.post(org_url(server, org, "/invitations"), json=body), 400,
                       "validation_failed")
    assert (b["errors"][0]["field"], b["errors"][0]["code"]) == (field, code), b
    assert listing(server, s, org)["data"] == []


def test_invite_body_errors(server):
    s, _, org = pro_owner(server)
    url = org_url(server, org, "/invitations")
    assert_problem(s.post(url, data="{", headers={"Content-Type": "application/json"}), 400,
                   "invalid_json")
    assert_problem(s.post(url, data="email,role\n", headers={"Content-Type": "text/csv"}), 415,
                   "unsupported_media_type")
    big = json.dumps({"email": "x@example.com", "role": "member", "pad": "y" * 70000})
    assert_problem(s.post(url, data=big, headers={"Content-Type": "application/json"}), 413,
                   "payload_too_large")


def test_pending_invitation_conflicts(server):
    s, _, org = pro_owner(server)
    email = unique_email("twice")
    invite(server, s, org["id"], email, "member")
    assert_problem(s.post(org_url(server, org, "/invitations"),
                          json={"email": email.upper(), "role": "viewer"}), 409, "conflict")
    assert len(listing(server, s, org)["data"]) == 1


# --- plan limits -------------------------------------------------------------------


def test_free_plan_cannot_invite(server):
    s, _, org = new_owner(server)
    b = assert_problem(s.post(org_url(server, org, "/invitations"),
                              json={"email": unique_email(), "role": "member"}), 403,
                       "plan_limit_reached")
    assert (b["limit"], b["limit_value"], b["plan"]) == ("members", 1, "free")
    assert b["upgrade_url"] == PUBLIC_URL + "/billing"
    assert listing(server, s, org)["data"] == []
    assert not audit(server, org["id"], "member.invited")


def test_pro_plan_five_seats(server):
    """pro: 5 members. Owner + 4 pending = 5 (N) accepted; a 5th invitation
    (6 seats, N+1) refused; members and pending both count; a revoked one
    frees its seat."""
    s, _, org = pro_owner(server)
    invs = [invite(server, s, org["id"], unique_email("seat"), "member") for _ in range(4)]
    b = assert_problem(s.post(org_url(server, org, "/invitations"),
                              json={"email": unique_email(), "role": "member"}), 403,
                       "plan_limit_reached")
    assert (b["limit"], b["limit_value"], b["plan"]) == ("members", 5, "pro")
    # Accepting moves a seat from pending to members: still full.
    u = create_user(server, email=invs[0]["email"])
    assert accept(server, login(server, u["email"], u["password"]), invs[0]["token"]).status_code \
        == 200
    assert_problem(s.post(org_url(server, org, "/invitations"),
                          json={"email": unique_email(), "role": "member"}), 403,
                   "plan_limit_reached")
    assert s.delete(org_url(server, org, f"/invitations/{invs[1]['id']}")).status_code == 204
    invite(server, s, org["id"], unique_email("seat"), "viewer")
    assert_problem(s.post(org_url(server, org, "/invitations"),
                          json={"email": unique_email(), "role": "member"}), 403,
                   "plan_limit_reached")


def test_accept_rechecks_the_limit(server):
    s, _, org = pro_owner(server)
    u = create_user(server)
    inv = invite(server, s, org["id"], u["email"], "member")
    set_plan(server, org["id"], "free")  # downgraded meanwhile: 1 member
    joiner = login(server, u["email"], u["password"])
    b = assert_problem(accept(server, joiner, inv["token"]), 403, "plan_limit_reached")
    assert b["limit"] == "members"
    assert_problem(joiner.get(org_url(server, org)), 404, "not_found")
    set_plan(server, org["id"], "team")
    assert accept(server, joiner, inv["token"]).status_code == 200


# --- revoke, resend, lists -------------------------------------------------------------


def test_revoke(server):
    s, _, org = pro_owner(server)
    u = create_user(server)
    inv = invite(server, s, org["id"], u["email"], "viewer")
    r = s.delete(org_url(server, org, f"/invitations/{inv['id']}"))
    assert r.status_code == 204
    with plain() as anon:
        assert_problem(anon.get(f"{server.url}/v1/invitations/{inv['token']}"), 404, "not_found")
    assert_problem(accept(server, login(server, u["email"], u["password"]), inv["token"]), 404,
                   "not_found")
    assert_problem(s.delete(org_url(server, org, f"/invitations/{inv['id']}")), 409, "conflict")
    assert_problem(s.post(org_url(server, org, f"/invitations/{inv['id']}/resend")), 409,
                   "conflict")
    assert_problem(s.delete(org_url(server, org, "/invitations/01900000-0000-7000-8000-0000000000aa")),
                   404, "not_found")
    assert_problem(s.delete(org_url(server, org, "/invitations/nope")), 404, "not_found")
    listed = listing(server, s, org)["data"][0]
    assert listed["status"] == "revoked" and "revoked_at" in listed
    entries = audit(server, org["id"], "invitation.revoked")
    assert len(entries) == 1 and entries[0]["resource_id"] == inv["id"]
    # The address can be invited again.
    invite(server, s, org["id"], u["email"], "viewer")


def test_resend(server):
    s, _, org = pro_owner(server)
    u = create_user(server)
    inv = invite(server, s, org["id"], u["email"], "member")
    advance_clock(server, 3600)
    r = s.post(org_url(server, org, f"/invitations/{inv['id']}/resend"))
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["id"] == inv["id"] and again["status"] == "pending"
    assert again["token"] != inv["token"]
    assert again["expires_at"] > inv["expires_at"]
    with plain() as anon:
        assert_problem(anon.get(f"{server.url}/v1/invitations/{inv['token']}"), 404, "not_found")
        assert anon.get(f"{server.url}/v1/invitations/{again['token']}").status_code == 200
    assert len(query(server, "SELECT 1 FROM outbox WHERE to_email = ?", (u["email"],))) == 2
    entries = audit(server, org["id"], "invitation.resent")
    assert len(entries) == 1 and entries[0]["resource_id"] == inv["id"]
    joined = login(server, u["email"], u["password"])
    assert accept(server, joined, again["token"]).status_code == 200
    assert_problem(s.post(org_url(server, org, f"/invitations/{inv['id']}/resend")), 409,
                   "conflict")


def test_list_filters_and_pages(server):
    s, _, org = pro_owner(server)
    set_plan(server, org["id"], "team")
    invs = [invite(server, s, org["id"], unique_email("l"), "viewer") for _ in range(5)]
    s.delete(org_url(server, org, f"/invitations/{invs[0]['id']}"))
    u = create_user(server, email=invs[1]["email"])
    accept(server, login(server, u["email"], u["password"]), invs[1]["token"])
    all_ids = [i["id"] for i in listing(server, s, org)["data"]]
    assert all_ids == [i["id"] for i in reversed(invs)]  # newest first
    assert [i["id"] for i in listing(server, s, org, status="revoked")["data"]] == [invs[0]["id"]]
    assert [i["id"] for i in listing(server, s, org, status="accepted")["data"]] == [invs[1]["id"]]
    assert len(listing(server, s, org, status="pending")["data"]) == 3
    assert listing(server, s, org, status="expired")["data"] == []
    p1 = listing(server, s, org, limit=2)
    p2 = listing(server, s, org, limit=2, cursor=p1["next_cursor"])
    p3 = listing(server, s, org, limit=2, cursor=p2["next_cursor"])
    assert [i["id"] for i in p1["data"] + p2["data"] + p3["data"]] == all_ids
    assert p3["next_cursor"] is None
    for bad in ({"status": "open"}, {"limit": 0}, {"cursor": "zz"}):
        assert_problem(s.get(org_url(server, org, "/invitations"), params=bad), 400,
                       "invalid_parameter")


# --- expiry (own server: the clock moves) ------------------------------------------------


def test_expiry_after_seven_days(fresh_server):
    srv = fresh_server(extra_args=["--set", "auth.login_per_ip_per_min=100000"])
    s, owner, org = pro_owner(srv)
    u = create_user(srv)
    inv = invite(srv, s, org["id"], u["email"], "member")
    advance_clock(srv, WEEK_S - 60)  # N: still valid a minute before
    with plain() as anon:
        assert anon.get(f"{srv.url}/v1/invitations/{inv['token']}").status_code == 200
        advance_clock(srv, 61)  # N+1: a second past the week
        assert_problem(anon.get(f"{srv.url}/v1/invitations/{inv['token']}"), 404, "not_found")
    s = relogin(srv, owner)
    joiner = relogin(srv, u)
    assert_problem(accept(srv, joiner, inv["token"]), 404, "not_found")
    listed = listing(srv, s, org, status="expired")["data"]
    assert [i["id"] for i in listed] == [inv["id"]]
    assert listing(srv, s, org, status="pending")["data"] == []
    # An expired invitation holds no seat and can be replaced...
    again = invite(srv, s, org["id"], u["email"], "viewer")
    assert accept(srv, joiner, again["token"]).status_code == 200
    assert [i["id"] for i in listing(srv, s, org, status="expired")["data"]] == [inv["id"]]
    # ...and a replaced one cannot be resent.
    assert_problem(s.post(org_url(srv, org, f"/invitations/{inv['id']}/resend")), 409, "conflict")


def test_resend_revives_an_expired_invitation(fresh_server):
    srv = fresh_server(extra_args=["--set", "auth.login_per_ip_per_min=100000"])
    s, owner, org = pro_owner(srv)
    u = create_user(srv)
    inv = invite(srv, s, org["id"], u["email"], "member")
    advance_clock(srv, WEEK_S + 1)
    s = relogin(srv, owner)
    r = s.post(org_url(srv, org, f"/invitations/{inv['id']}/resend"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    joiner = login(srv, u["email"], u["password"])
    assert accept(srv, joiner, r.json()["token"]).status_code == 200


# --- secrets outside development mode ------------------------------------------------------


def test_no_token_without_dev(fresh_server):
    srv = fresh_server(extra_args=["--set", "auth.login_per_ip_per_min=100000"], dev=False)
    s, _, org = new_owner(srv)
    set_plan(srv, org["id"], "pro")
    email = unique_email("nodev")
    r = s.post(org_url(srv, org, "/invitations"), json={"email": email, "role": "member"})
    assert r.status_code == 201, r.text
    assert "token" not in r.json()
    r = s.post(org_url(srv, org, "/invitations/import"), data=f"email,role\n{unique_email()},viewer\n",
               headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and "token" not in r.json()["rows"][0]
    r = s.post(org_url(srv, org, f"/invitations/{r.json()['rows'][0]['invitation_id']}/resend"))
    assert r.status_code == 200 and "token" not in r.json()
    assert srv.events("mail.outbox") == []
    assert PUBLIC_URL + "/invitations/" not in srv.log_text()
    assert len(query(srv, "SELECT 1 FROM outbox WHERE template = 'invitation'")) == 3


# --- CSV --------------------------------------------------------------------------------------


def post_csv(server, session, org, text):
    return session.post(org_url(server, org, "/invitations/import"), data=text.encode(),
                        headers={"Content-Type": "text/csv; charset=utf-8"})


def test_csv_mixed_rows(server):
    s, owner, org = pro_owner(server)
    set_plan(server, org["id"], "team")
    _, member = add_member(server, s, org["id"], "member")
    pending = unique_email("pending")
    invite(server, s, org["id"], pending, "viewer")
    good1, good2, good3 = unique_email("g1"), unique_email("g2"), unique_email("g3")
    csv = (
        "Email , Role\r\n"
        f"{good1},admin\r\n"                      # 2 invited
        "not-an-email,member\r\n"                 # 3 invalid_email
        f"{unique_email('o')},owner\r\n"          # 4 unknown_role (owner cannot be invited)
        f"{member['email'].upper()},viewer\r\n"   # 5 already_member
        f"{pending},member\r\n"                   # 6 already_invited
        f"{good1.upper()},viewer\r\n"             # 7 duplicate_in_file
        "\r\n"                                    # blank: skipped
        f"\"{good2}\",\" Viewer \"\r\n"           # 9 invited (quoted, any case)
        f"{unique_email('x')},superuser\r\n"      # 10 unknown_role
        f"  {good3}  ,member"                     # 11 invited, no final newline
    )
    r = post_csv(server, s, org, csv)
    assert r.status_code == 200, r.text
    rep = r.json()
    got = [(row["line"], row["outcome"]) for row in rep["rows"]]
    assert got == [(2, "invited"), (3, "invalid_email"), (4, "unknown_role"),
                   (5, "already_member"), (6, "already_invited"), (7, "duplicate_in_file"),
                   (9, "invited"), (10, "unknown_role"), (11, "invited")]
    assert (rep["invited"], rep["rejected"]) == (3, 6)
    assert rep["rows"][6]["email"] == good2 and rep["rows"][6]["role"] == "Viewer"
    assert rep["rows"][8]["email"] == good3
    by_email = {i["email"]: i for i in listing(server, s, org, status="pending")["data"]}
    assert by_email[good1]["role"] == "admin"
    assert by_email[good2]["role"] == "viewer"
    assert by_email[good3]["role"] == "member"
    entries = [e for e in audit(server, org["id"], "member.invited")
               if json.loads(e["details"])["source"] == "csv"]
    assert sorted(json.loads(e["details"])["line"] for e in entries) == [2, 9, 11]
    # Dev mode: each invited row carries its token, which works.
    tokens = [row["token"] for row in rep["rows"] if row["outcome"] == "invited"]
    u = create_user(server, email=good2)
    assert accept(server, login(server, u["email"], u["password"]), tokens[1]).status_code == 200
    assert "token" not in rep["rows"][1]


def test_csv_all_or_nothing(server):
    """pro: 5 seats. Owner + 2 pending: 3 valid rows (6 seats) apply none;
    2 valid rows (5 seats, N) apply."""
    s, _, org = pro_owner(server)
    for _ in range(2):
        invite(server, s, org["id"], unique_email("pre"), "viewer")
    before = len(audit(server, org["id"]))
    rows = [unique_email("r") for _ in range(3)]
    csv = "email,role\n" + "".join(f"{e},member\n" for e in rows) + "bad,member\n"
    b = assert_problem(post_csv(server, s, org, csv), 403, "plan_limit_reached")
    assert (b["limit"], b["limit_value"], b["plan"]) == ("members", 5, "pro")
    assert b["upgrade_url"].endswith("/billing")
    assert [row["outcome"] for row in b["rows"]] == ["not_applied"] * 3 + ["invalid_email"]
    assert (b["invited"], b["rejected"], b["not_applied"]) == (0, 1, 3)
    assert len(listing(server, s, org)["data"]) == 2
    assert len(audit(server, org["id"])) == before
    assert not query(server, "SELECT 1 FROM outbox WHERE to_email IN (?, ?, ?)", tuple(rows))
    r = post_csv(server, s, org, "email,role\n" + "".join(f"{e},member\n" for e in rows[:2]))
    assert r.status_code == 200, r.text
    assert r.json()["invited"] == 2
    assert len(listing(server, s, org, status="pending")["data"]) == 4


@pytest.mark.parametrize("csv,field,code", [
    ("", "body", "required"),
    ("a@example.com,member\n", "line 1", "invalid_format"),
    ("email;role\na@example.com;member\n", "line 1", "invalid_format"),
    ("email,role,name\n", "line 1", "invalid_format"),
    ("email,role\na@example.com\n", "line 2", "invalid_format"),
    ("email,role\na@example.com,member,extra\n", "line 2", "invalid_format"),
    ("email,role\n\"a@example.com,member\n", "line 2", "invalid_format"),
])
def test_csv_malformed(server, csv, field, code):
    s, _, org = pro_owner(server)
    b = assert_problem(post_csv(server, s, org, csv), 400, "validation_failed")
    assert (b["errors"][0]["field"], b["errors"][0]["code"]) == (field, code), b
    assert listing(server, s, org)["data"] == []


def test_csv_not_utf8_and_media_type(server):
    s, _, org = pro_owner(server)
    r = s.post(org_url(server, org, "/invitations/import"), data=b"email,role\n\xff@x.io,member\n",
               headers={"Content-Type": "text/csv"})
    assert_problem(r, 400, "validation_failed")
    r = s.post(org_url(server, org, "/invitations/import"), json={"email": "a@example.com"})
    assert_problem(r, 415, "unsupported_media_type")


def test_csv_row_limit(server):
    """1000 rows (N) are judged and applied in one job; 1001 (N+1) refused."""
    s, _, org = pro_owner(server)
    set_plan(server, org["id"], "team")
    emails = [f"bulk{i}-{unique_email('b')}" for i in range(1001)]
    over = "email,role\n" + "".join(f"{e},viewer\n" for e in emails)
    b = assert_problem(post_csv(server, s, org, over), 400, "validation_failed")
    assert b["errors"][0]["code"] == "too_long"
    at = "email,role\n" + "".join(f"{e},viewer\n" for e in emails[:1000])
    r = post_csv(server, s, org, at)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["invited"] == 1000
    assert len(audit(server, org["id"], "member.invited")) == 1000
