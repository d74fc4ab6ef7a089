"""Team management over HTTP (R-IAM-8): list members, change roles, remove,
leave, transfer ownership; admins and owners; the last owner; every change
audited.
"""

import base64
import json

import pytest

from accounts import create_user
from conftest import KeelServer, assert_problem
from tenancy_helpers import (
    Team,
    add_member,
    assert_forbidden,
    audit,
    create_org,
    set_plan,
)


@pytest.fixture(scope="module")
def server(keel_bin, tmp_path_factory):
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-members"))
    srv.start(["--set", "auth.login_per_ip_per_min=100000"])
    yield srv
    srv.stop()


def roles_of(team, session=None):
    r = (session or team.sessions["owner"]).get(team.url("/members"))
    assert r.status_code == 200, r.text
    return {m["user_id"]: m["role"] for m in r.json()["data"]}


def test_list_fields_order_and_pages(server):
    team = Team(server)
    r = team.sessions["admin"].get(team.url("/members"))
    assert r.status_code == 200
    data = r.json()["data"]
    assert [m["role"] for m in data] == ["owner", "admin", "member", "viewer"]
    owner = team.users["owner"]
    assert data[0] == {"user_id": owner["id"], "email": owner["email"], "name": owner["name"],
                       "role": "owner", "joined_at": data[0]["joined_at"]}
    assert data[0]["joined_at"] <= data[1]["joined_at"] <= data[3]["joined_at"]
    assert r.json()["next_cursor"] is None

    p1 = team.sessions["owner"].get(team.url("/members"), params={"limit": 3}).json()
    assert len(p1["data"]) == 3 and p1["next_cursor"]
    p2 = team.sessions["owner"].get(team.url("/members"),
                                    params={"limit": 3, "cursor": p1["next_cursor"]}).json()
    assert [m["user_id"] for m in p1["data"] + p2["data"]] == [m["user_id"] for m in data]
    assert p2["next_cursor"] is None
    # A forged cursor whose join time no timestamp can hold (year 10000 and
    # later, or before 1970) is refused, not passed to the store.
    def forged(joined):
        text = f"{joined}.{owner['id']}".encode()
        return base64.urlsafe_b64encode(text).decode().rstrip("=")

    for bad in ({"limit": 0}, {"limit": 201}, {"cursor": "eHl6"},
                {"cursor": forged(9223372036854775807)}, {"cursor": forged(-1)}):
        assert_problem(team.sessions["owner"].get(team.url("/members"), params=bad), 400,
                       "invalid_parameter")


def test_owner_changes_roles(server):
    team = Team(server)
    owner = team.sessions["owner"]
    member_id = team.users["member"]["id"]
    r = owner.patch(team.url(f"/members/{member_id}"), json={"role": "admin"})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin" and r.json()["user_id"] == member_id
    assert team.sessions["member"].get(team.url("/members")).status_code == 200  # now an admin
    entries = audit(server, team.id, "member.role_changed")
    assert len(entries) == 1
    assert entries[0]["resource_id"] == member_id
    assert entries[0]["actor_id"] == team.users["owner"]["id"]
    assert json.loads(entries[0]["details"]) == {"from": "member", "to": "admin"}
    # Same role again: no change, no entry.
    assert owner.patch(team.url(f"/members/{member_id}"), json={"role": "admin"}).status_code == 200
    assert len(audit(server, team.id, "member.role_changed")) == 1
    # An owner may make another owner.
    viewer_id = team.users["viewer"]["id"]
    assert owner.patch(team.url(f"/members/{viewer_id}"), json={"role": "owner"}).json()["role"] \
        == "owner"
    assert roles_of(team)[viewer_id] == "owner"


def test_admin_cannot_touch_owners(server):
    team = Team(server)
    admin = team.sessions["admin"]
    owner_id = team.users["owner"]["id"]
    before = len(audit(server, team.id, "permission.denied"))
    assert_forbidden(admin.patch(team.url(f"/members/{owner_id}"), json={"role": "member"}))
    assert_forbidden(admin.patch(team.url(f"/members/{team.users['member']['id']}"),
                                 json={"role": "owner"}))
    assert_forbidden(admin.delete(team.url(f"/members/{owner_id}")))
    assert len(audit(server, team.id, "permission.denied")) == before + 3
    # What admins may do.
    r = admin.patch(team.url(f"/members/{team.users['member']['id']}"), json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert admin.delete(team.url(f"/members/{team.users['viewer']['id']}")).status_code == 204
    roles = roles_of(team)
    assert roles[owner_id] == "owner" and team.users["viewer"]["id"] not in roles


def test_last_owner_protections(server):
    team = Team(server)
    owner = team.sessions["owner"]
    owner_id = team.users["owner"]["id"]
    for role in ("admin", "member", "viewer"):
        assert_problem(owner.patch(team.url(f"/members/{owner_id}"), json={"role": role}), 409,
                       "last_owner")
    assert_problem(owner.delete(team.url(f"/members/{owner_id}")), 409, "last_owner")
    assert_problem(owner.post(team.url("/leave")), 409, "last_owner")
    assert roles_of(team)[owner_id] == "owner"
    # With a second owner the first may step down; then the second is the last.
    admin_id = team.users["admin"]["id"]
    assert owner.patch(team.url(f"/members/{admin_id}"), json={"role": "owner"}).status_code == 200
    assert owner.patch(team.url(f"/members/{owner_id}"), json={"role": "admin"}).status_code == 200
    second = team.sessions["admin"]
    assert_problem(second.patch(team.url(f"/members/{admin_id}"), json={"role": "viewer"}), 409,
                   "last_owner")
    assert_problem(second.post(team.url("/leave")), 409, "last_owner")
    # Two owners: one may leave, one may remove the other.
    assert second.patch(team.url(f"/members/{owner_id}"), json={"role": "owner"}).status_code == 200
    assert second.delete(team.url(f"/members/{owner_id}")).status_code == 204
    assert roles_of(team, second) == {admin_id: "owner", team.users["member"]["id"]: "member",
                                      team.users["viewer"]["id"]: "viewer"}


def test_remove_member(server):
    team = Team(server)
    owner = team.sessions["owner"]
    member_id = team.users["member"]["id"]
    r = owner.delete(team.url(f"/members/{member_id}"))
    assert r.status_code == 204 and r.content == b""
    assert_problem(team.sessions["member"].get(team.url()), 404, "not_found")
    assert_problem(owner.delete(team.url(f"/members/{member_id}")), 404, "not_found")
    assert_problem(owner.patch(team.url(f"/members/{member_id}"), json={"role": "admin"}), 404,
                   "not_found")
    assert_problem(owner.delete(team.url("/members/not-a-uuid")), 404, "not_found")
    entries = audit(server, team.id, "member.removed")
    assert len(entries) == 1 and entries[0]["resource_id"] == member_id
    assert json.loads(entries[0]["details"]) == {"role": "member"}
    assert member_id not in roles_of(team)


def test_leave(server):
    team = Team(server)
    r = team.sessions["viewer"].post(team.url("/leave"))
    assert r.status_code == 204
    assert_problem(team.sessions["viewer"].get(team.url()), 404, "not_found")
    assert_problem(team.sessions["viewer"].post(team.url("/leave")), 404, "not_found")
    entries = audit(server, team.id, "member.left")
    assert [e["actor_id"] for e in entries] == [team.users["viewer"]["id"]]


@pytest.mark.parametrize("body,field", [
    ({}, "role"), ({"role": "god"}, "role"), ({"role": "Owner"}, "role"), ({"role": 1}, "role"),
    ({"role": "admin", "extra": 1}, "extra"),
])
def test_role_body_validation(server, body, field):
    team = Team(server, plan="pro")
    r = team.sessions["owner"].patch(team.url(f"/members/{team.users['member']['id']}"),
                                     json=body)
    b = assert_problem(r, 400, "validation_failed")
    assert b["errors"][0]["field"] == field
    assert roles_of(team)[team.users["member"]["id"]] == "member"


def test_transfer_ownership(server):
    team = Team(server)
    owner = team.sessions["owner"]
    owner_id, member_id = team.users["owner"]["id"], team.users["member"]["id"]
    r = owner.post(team.url("/transfer-ownership"), json={"user_id": member_id})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin" and r.json()["id"] == team.id
    roles = roles_of(team)
    assert roles[member_id] == "owner" and roles[owner_id] == "admin"
    entries = audit(server, team.id, "org.ownership_transferred")
    assert len(entries) == 1
    assert json.loads(entries[0]["details"]) == {"from": owner_id, "to": member_id}
    # The former owner is an admin now: no more transfers, no deletion.
    assert_forbidden(owner.post(team.url("/transfer-ownership"), json={"user_id": owner_id}))
    assert_forbidden(owner.delete(team.url()))
    new_owner = team.sessions["member"]
    assert_problem(new_owner.post(team.url("/transfer-ownership"), json={"user_id": member_id}),
                   400, "validation_failed")
    assert_problem(new_owner.post(team.url("/transfer-ownership"),
                                  json={"user_id": "01900000-0000-7000-8000-000000000000"}),
                   404, "not_found")
    for bad in ({}, {"user_id": "nope"}, {"user_id": 5}, {"user_id": member_id, "x": 1}):
        assert_problem(new_owner.post(team.url("/transfer-ownership"), json=bad), 400,
                       "validation_failed")
    # Back to the first owner: every role can receive it.
    assert new_owner.post(team.url("/transfer-ownership"),
                          json={"user_id": owner_id}).status_code == 200
    assert roles_of(team)[owner_id] == "owner"


def test_owner_role_respects_free_org_limit(server):
    """Becoming an owner of a free org counts against the free-org limit (3)."""
    team = Team(server, plan="pro")
    member = team.users["member"]
    # The member owns 3 free orgs of their own.
    for i in range(3):
        create_org(server, team.sessions["member"], name=f"Own {i}")
    set_plan(server, team.id, "free")  # the team org was downgraded
    owner = team.sessions["owner"]
    b = assert_problem(owner.post(team.url("/transfer-ownership"), json={"user_id": member["id"]}),
                       403, "plan_limit_reached")
    assert b["limit"] == "orgs_per_user"
    assert_problem(owner.patch(team.url(f"/members/{member['id']}"), json={"role": "owner"}), 403,
                   "plan_limit_reached")
    assert roles_of(team)[member["id"]] == "member"
    set_plan(server, team.id, "pro")  # paid orgs do not count
    assert owner.post(team.url("/transfer-ownership"),
                      json={"user_id": member["id"]}).status_code == 200
