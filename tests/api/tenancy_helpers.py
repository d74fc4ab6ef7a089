"""Helpers for the organisation-area tests (test_orgs, test_members,
test_invitations): orgs made over HTTP, members of every role made through
real invitations, and read-only looks at the database (audit log).

The only direct database write is set_plan (an org's plan), which the tests
need to reach plan limits; plan changes belong to billing, not to this area.
"""

import uuid

import dbdirect

from accounts import create_user, login, unique_email
from conftest import assert_problem

ROLES = ("owner", "admin", "member", "viewer")


def db_path(server):
    """SQLite only: the server's keel.db."""
    return str(server.data_dir) + "/keel.db"


def set_plan(server, org_id, plan):
    """UPDATE orgs.plan on the test database (the server reads it per request)."""
    n = dbdirect.execute(server, "UPDATE orgs SET plan = ? WHERE id = ?", plan, org_id)
    assert n == 1, f"no org {org_id}"


def query(server, sql, args=()):
    """A read-only query on the test database (either backend); rows as dicts."""
    return dbdirect.rows(server, sql, *args)


def audit(server, org_id, action=None):
    """Audit entries of org_id's chain (oldest first), optionally one action."""
    sql = "SELECT * FROM audit_log WHERE org_id = ?"
    args = [org_id]
    if action:
        sql += " AND action = ?"
        args.append(action)
    return query(server, sql + " ORDER BY seq", args)


def create_org(server, session, name=None, slug=None):
    body = {"name": name or f"Org {uuid.uuid4().hex[:8]}"}
    if slug is not None:
        body["slug"] = slug
    r = session.post(server.url + "/v1/orgs", json=body)
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()


def invite(server, session, org_ref, email, role="member"):
    """POST an invitation; returns its JSON (with the dev-mode token)."""
    r = session.post(f"{server.url}/v1/orgs/{org_ref}/invitations",
                     json={"email": email, "role": role})
    assert r.status_code == 201, (r.status_code, r.text)
    body = r.json()
    assert "token" in body, "the test server runs with --dev: the token is in the answer"
    return body


def accept(server, session, token):
    return session.post(f"{server.url}/v1/invitations/{token}/accept")


def add_member(server, owner_session, org_ref, role):
    """A new user who joined org_ref with role through an invitation. Returns
    (session, user)."""
    user = create_user(server)
    inv = invite(server, owner_session, org_ref, user["email"], role)
    s = login(server, user["email"], user["password"])
    r = accept(server, s, inv["token"])
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json()["role"] == role
    return s, user


class Team:
    """An org with one user of each role: sessions[role], users[role]."""

    def __init__(self, server, plan="team"):
        self.server = server
        owner = create_user(server)
        self.sessions = {"owner": login(server, owner["email"], owner["password"])}
        self.users = {"owner": owner}
        self.org = create_org(server, self.sessions["owner"])
        set_plan(server, self.org["id"], plan)
        for role in ("admin", "member", "viewer"):
            s, u = add_member(server, self.sessions["owner"], self.org["id"], role)
            self.sessions[role] = s
            self.users[role] = u

    @property
    def id(self):
        return self.org["id"]

    def url(self, path=""):
        return f"{self.server.url}/v1/orgs/{self.org['id']}{path}"


def new_owner(server):
    """A signed-in user owning a fresh free org: (session, user, org)."""
    user = create_user(server)
    s = login(server, user["email"], user["password"])
    return s, user, create_org(server, s)


def assert_forbidden(resp):
    return assert_problem(resp, 403, "forbidden")


__all__ = ["ROLES", "Team", "accept", "add_member", "assert_forbidden", "audit", "create_org",
           "db_path", "invite", "login", "new_owner", "query", "set_plan", "unique_email"]
