"""API keys over HTTP: management routes (create, list, get, update, revoke),
who may manage them, plan key limits at N and N+1, every bad key shape,
revocation and expiry, the org binding, the scope matrix, audit entries,
last_used_at batching, `keel key create`, and the log canary (the full key
never appears in logs, other responses, audit entries or the database).

Routes that need a given scope or bind a key to {org} are the --dev probes
/v1/dev/keys/{ingest,read,admin}-probe and /v1/dev/orgs/{org}/key-probe.
"""

import calendar
import json
import re
import signal
import sqlite3
import time

import pytest

import dbdirect
from accounts import advance_clock, create_user, login
from apikeys import (KEY_RE, add_member, call_with_key, checksum, create_key, db_path, forge_key,
                     make_key, new_org, plain_session, set_plan, sql)
from conftest import KeelServer, assert_problem, run_keel, wait_until

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")


def server_now(server):
    """The server's clock (the test clock moves it), as epoch seconds."""
    now = advance_clock(server, 0)["now"]
    return calendar.timegm(time.strptime(now[:19], "%Y-%m-%dT%H:%M:%S"))


def rfc3339(epoch_s):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def audit_entries(org, action):
    r = org.owner.get(f"{org.server.url}/v1/orgs/{org.id}/audit-log",
                      params={"action": action, "limit": 200}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]


# --- creation -----------------------------------------------------------------


def test_create_returns_the_key_once(server):
    org = new_org(server)
    r = create_key(org, name="ci", scopes=["read", "ingest"], environment="staging")
    assert r.status_code == 201, r.text
    assert r.headers.get("Cache-Control") == "no-store"
    doc = r.json()
    key = doc["key"]
    assert KEY_RE.match(key) and key.startswith("kl_live_")
    assert key[-6:] == checksum(key[:36])
    assert UUID_RE.match(doc["id"])
    assert r.headers["Location"] == f"/v1/orgs/{org.id}/api-keys/{doc['id']}"
    assert doc["prefix"] == key[:12]
    assert doc["name"] == "ci"
    assert doc["environment"] == "staging"
    assert doc["live"] is True
    assert doc["scopes"] == ["ingest", "read"]
    assert doc["status"] == "active"
    assert doc["created_by"] == org.user["id"]
    assert doc["last_used_at"] is None and doc["expires_at"] is None
    assert doc["revoked_at"] is None and doc["rate_limit_per_min"] is None
    # Never again: not in the list, not in the key's own document.
    listed = org.owner.get(org.keys_url).json()["data"]
    got = org.owner.get(f"{org.keys_url}/{doc['id']}").json()
    assert [k["id"] for k in listed] == [doc["id"]]
    for d in (listed[0], got):
        assert "key" not in d
        assert key not in json.dumps(d)
        assert d["prefix"] == key[:12]
    # Only the HMAC is stored.
    rows = sql(server, "SELECT key_hash, prefix FROM api_keys WHERE id = ?", doc["id"])
    assert len(rows) == 1 and len(rows[0][0]) == 32 and rows[0][1] == key[:12]


def test_create_test_key_and_defaults(server):
    org = new_org(server)
    doc = make_key(org, live=False, scopes=["admin"])
    assert doc["key"].startswith("kl_test_")
    assert doc["environment"] == "test" and doc["live"] is False
    r = call_with_key(server, doc["key"])
    assert r.status_code == 200, r.text
    assert r.json()["key"]["live"] is False
    assert r.json()["key"]["environment"] == "test"


@pytest.fixture(scope="module")
def validation_org(server):
    return new_org(server)


@pytest.mark.parametrize("body,field,code", [
    ({"scopes": ["read"]}, "name", "required"),
    ({"name": "", "scopes": ["read"]}, "name", "too_short"),
    ({"name": "n" * 101, "scopes": ["read"]}, "name", "too_long"),
    ({"name": "x"}, "scopes", "required"),
    ({"name": "x", "scopes": []}, "scopes", "too_short"),
    ({"name": "x", "scopes": ["write"]}, "scopes[0]", "not_allowed"),
    ({"name": "x", "scopes": ["read", "read"]}, "scopes[1]", "not_allowed"),
    ({"name": "x", "scopes": [1]}, "scopes[0]", "wrong_type"),
    ({"name": "x", "scopes": "read"}, "scopes", "wrong_type"),
    ({"name": "x", "scopes": ["read"], "environment": "prod"}, "environment", "not_allowed"),
    ({"name": "x", "scopes": ["read"], "live": "yes"}, "live", "wrong_type"),
    ({"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at",
     "out_of_range"),
    ({"name": "x", "scopes": ["read"], "expires_at": "tomorrow"}, "expires_at", "invalid_format"),
    ({"name": "x", "scopes": ["read"], "rate_limit_per_min": 0}, "rate_limit_per_min",
     "out_of_range"),
    ({"name": "x", "scopes": ["read"], "rate_limit_per_min": 1000000001}, "rate_limit_per_min",
     "out_of_range"),
    ({"name": "x", "scopes": ["read"], "key": "kl_live_mine"}, "key", "unknown_field"),
])
def test_create_validation(validation_org, body, field, code):
    org = validation_org
    r = org.owner.post(org.keys_url, json=body)
    problem = assert_problem(r, 400, "validation_failed")
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in problem["errors"]], problem
    assert org.owner.get(org.keys_url).json()["data"] == []


def test_name_length_limit_at_n(server):
    org = new_org(server)
    assert make_key(org, name="n" * 100)["name"] == "n" * 100


# --- who may manage keys --------------------------------------------------------


def test_only_owner_and_admin_manage_keys(server):
    org = new_org(server, plan="team")
    key = make_key(org)
    admin, _ = add_member(org, "admin")
    r = create_key(org, session=admin, name="by admin")
    assert r.status_code == 201, r.text
    assert admin.get(org.keys_url).status_code == 200
    for role in ("member", "viewer"):
        s, user = add_member(org, role)
        assert_problem(create_key(org, session=s), 403, "forbidden")
        assert_problem(s.get(org.keys_url), 403, "forbidden")
        assert_problem(s.get(f"{org.keys_url}/{key['id']}"), 403, "forbidden")
        assert_problem(s.patch(f"{org.keys_url}/{key['id']}", json={"name": "x"}), 403, "forbidden")
        assert_problem(s.delete(f"{org.keys_url}/{key['id']}"), 403, "forbidden")
        denials = [e for e in audit_entries(org, "permission.denied") if e["actor"]["id"] == user["id"]]
        assert len(denials) >= 5, denials
    # Not a member at all: the org does not exist for them.
    stranger_org = new_org(server)
    assert_problem(stranger_org.owner.get(org.keys_url), 404, "not_found")
    assert_problem(create_key(org, session=stranger_org.owner), 404, "not_found")
    # No session.
    assert_problem(plain_session().get(org.keys_url), 401, "unauthorized")
    # Cookie without the CSRF header on a change.
    s = plain_session()
    s.cookies.update(org.owner.cookies)
    assert_problem(s.post(org.keys_url, json={"name": "x", "scopes": ["read"]}), 403, "csrf_failed")


def test_an_api_key_cannot_manage_keys(server):
    org = new_org(server)
    key = make_key(org, scopes=["admin", "read", "ingest"])
    r = call_with_key(server, key["key"], f"/v1/orgs/{org.id}/api-keys")
    assert_problem(r, 401, "unauthorized")  # session routes take a session only


# --- plan limits -------------------------------------------------------------------


def test_plan_key_limits_free_and_pro(server):
    org = new_org(server)
    keys = [make_key(org, name=f"k{i}") for i in range(2)]  # N = 2: accepted
    r = create_key(org, name="third")  # N + 1: refused
    problem = assert_problem(r, 403, "plan_limit_reached")
    assert problem["limit"] == "api_keys"
    assert problem["limit_value"] == 2
    assert problem["plan"] == "free"
    assert problem["upgrade_url"].endswith("/billing")
    # Revoking one makes room; revoked keys do not count.
    assert org.owner.delete(f"{org.keys_url}/{keys[0]['id']}").status_code == 204
    make_key(org, name="replacement")
    assert_problem(create_key(org, name="again"), 403, "plan_limit_reached")
    # Pro: 10.
    set_plan(server, org.id, "pro")
    for i in range(8):
        make_key(org, name=f"pro{i}")
    problem = assert_problem(create_key(org, name="eleventh"), 403, "plan_limit_reached")
    assert problem["limit_value"] == 10 and problem["plan"] == "pro"
    active = [k for k in org.owner.get(org.keys_url, params={"limit": 200}).json()["data"]]
    assert len(active) == 10


def test_expired_keys_do_not_count(server):
    org = new_org(server)
    soon = rfc3339(server_now(server) + 3600)
    make_key(org, expires_at=soon)
    make_key(org, expires_at=soon)
    assert_problem(create_key(org), 403, "plan_limit_reached")
    advance_clock(server, 3600 + 60)
    make_key(org)


# --- list, get, update, revoke ---------------------------------------------------------


def test_list_pages_and_filters(server):
    org = new_org(server, plan="pro")
    made = [make_key(org, name=f"k{i}") for i in range(5)]
    r = org.owner.get(org.keys_url, params={"limit": 2})
    page = r.json()
    assert [k["id"] for k in page["data"]] == [made[4]["id"], made[3]["id"]]
    seen = [k["id"] for k in page["data"]]
    while page["next_cursor"]:
        page = org.owner.get(org.keys_url, params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [k["id"] for k in page["data"]]
    assert seen == [m["id"] for m in reversed(made)]
    # Revoked keys are listed only on request.
    assert org.owner.delete(f"{org.keys_url}/{made[0]['id']}").status_code == 204
    ids = [k["id"] for k in org.owner.get(org.keys_url).json()["data"]]
    assert made[0]["id"] not in ids and len(ids) == 4
    full = org.owner.get(org.keys_url, params={"include_revoked": "true"}).json()["data"]
    revoked = [k for k in full if k["id"] == made[0]["id"]]
    assert revoked and revoked[0]["status"] == "revoked" and revoked[0]["revoked_at"]
    # Bad parameters.
    assert_problem(org.owner.get(org.keys_url, params={"limit": 0}), 400, "invalid_parameter")
    assert_problem(org.owner.get(org.keys_url, params={"limit": 201}), 400, "invalid_parameter")
    assert_problem(org.owner.get(org.keys_url, params={"cursor": "bogus"}), 400, "invalid_parameter")
    assert_problem(org.owner.get(org.keys_url, params={"include_revoked": "yes"}), 400,
                   "invalid_parameter")
    # A cursor of another org's list is refused.
    other = new_org(server, plan="pro")
    for i in range(3):
        make_key(other, name=f"o{i}")
    cur = other.owner.get(other.keys_url, params={"limit": 1}).json()["next_cursor"]
    assert cur
    assert_problem(org.owner.get(org.keys_url, params={"cursor": cur}), 400, "invalid_parameter")


def test_get_update_revoke_and_foreign_ids(server):
    org = new_org(server)
    other = new_org(server)
    mine = make_key(org, name="mine")
    theirs = make_key(other, name="theirs")
    url = f"{org.keys_url}/{mine['id']}"
    assert org.owner.get(url).json()["name"] == "mine"
    # Another org's key id under this org's path, an unknown id, a non-id: 404.
    for bad in (theirs["id"], "01a00000-0000-7000-8000-000000000000", "not-an-id"):
        assert_problem(org.owner.get(f"{org.keys_url}/{bad}"), 404, "not_found")
        assert_problem(org.owner.patch(f"{org.keys_url}/{bad}", json={"name": "x"}), 404, "not_found")
        assert_problem(org.owner.delete(f"{org.keys_url}/{bad}"), 404, "not_found")
    assert other.owner.get(f"{other.keys_url}/{theirs['id']}").json()["revoked_at"] is None
    # Update.
    r = org.owner.patch(url, json={"name": "renamed", "rate_limit_per_min": 7})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "renamed" and r.json()["rate_limit_per_min"] == 7
    r = org.owner.patch(url, json={"rate_limit_per_min": None})
    assert r.json()["rate_limit_per_min"] is None and r.json()["name"] == "renamed"
    assert_problem(org.owner.patch(url, json={}), 400, "validation_failed")
    assert_problem(org.owner.patch(url, json={"scopes": ["admin"]}), 400, "validation_failed")
    assert_problem(org.owner.patch(url, json={"rate_limit_per_min": 0}), 400, "validation_failed")
    assert_problem(org.owner.patch(url, json={"name": ""}), 400, "validation_failed")
    # Revoke: 204, then idempotent; a revoked key cannot change.
    assert call_with_key(server, mine["key"]).status_code == 200
    r = org.owner.delete(url)
    assert r.status_code == 204 and r.content == b""
    assert org.owner.delete(url).status_code == 204
    assert_problem(org.owner.patch(url, json={"name": "zombie"}), 409, "conflict")
    got = org.owner.get(url).json()
    assert got["status"] == "revoked" and got["revoked_at"]
    # Revocation applies at once (the cache entry is evicted).
    problem = assert_problem(call_with_key(server, mine["key"]), 401, "invalid_api_key")
    assert mine["prefix"] in problem["detail"] and "revoked" in problem["detail"]
    assert mine["key"] not in problem["detail"]
    # Revoked once: one audit entry.
    revoked = [e for e in audit_entries(org, "api_key.revoked") if e["resource"]["id"] == mine["id"]]
    assert len(revoked) == 1


def test_audit_entries_name_the_prefix_never_the_key(server):
    org = new_org(server)
    key = make_key(org, name="audited", scopes=["read"])
    url = f"{org.keys_url}/{key['id']}"
    org.owner.patch(url, json={"name": "audited-2", "rate_limit_per_min": 50})
    org.owner.delete(url)
    for action in ("api_key.created", "api_key.updated", "api_key.revoked"):
        entries = [e for e in audit_entries(org, action) if e["resource"]["id"] == key["id"]]
        assert len(entries) == 1, (action, entries)
        e = entries[0]
        assert e["actor"] == {"type": "user", "id": org.user["id"]}
        assert e["details"]["prefix"] == key["prefix"]
        assert e["details"]["scopes"] == ["read"]
        assert key["key"] not in json.dumps(e)
    upd = [e for e in audit_entries(org, "api_key.updated") if e["resource"]["id"] == key["id"]][0]
    assert upd["details"]["changes"] == {"name": {"from": "audited", "to": "audited-2"},
                                         "rate_limit_per_min": {"from": None, "to": 50}}


# --- verification: bad keys ------------------------------------------------------------


def test_every_bad_key_shape_is_401(server):
    org = new_org(server)
    good = make_key(org)
    revoked = make_key(org)
    org.owner.delete(f"{org.keys_url}/{revoked['id']}")
    k = good["key"]
    flipped = k[:20] + ("a" if k[20] != "a" else "b") + k[21:]
    cases = {
        "wrong prefix": "sk_live_" + k[8:],
        "upper-case tag": "KL_LIVE_" + k[8:],
        "truncated": k[:-1],
        "extended": k + "0",
        "not base62": k[:20] + "-" + k[21:],
        "bad checksum": flipped,
        "test tag on a live key": "kl_test_" + k[8:],
        "unknown": forge_key(),
        "unknown test": forge_key(live=False),
        "revoked": revoked["key"],
        "empty": "",
    }
    for what, bad in cases.items():
        r = call_with_key(server, bad)
        problem = assert_problem(r, 401, "invalid_api_key")
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), what
        if bad:
            assert bad not in problem["detail"], what
            assert bad not in json.dumps(dict(r.headers)), what
    # The detail names the display prefix for well-formed keys.
    p = assert_problem(call_with_key(server, cases["bad checksum"]), 401, "invalid_api_key")
    assert good["prefix"] in p["detail"] and "checksum" in p["detail"]
    p = assert_problem(call_with_key(server, cases["unknown"]), 401, "invalid_api_key")
    assert cases["unknown"][:12] in p["detail"] and "not recognised" in p["detail"]
    # Not a bearer token; no header at all.
    r = call_with_key(server, None, headers={"Authorization": "Basic " + k})
    assert_problem(r, 401, "invalid_api_key")
    r = call_with_key(server, None)
    assert_problem(r, 401, "unauthorized")
    assert r.headers.get("WWW-Authenticate") == 'Bearer realm="keel"'
    # Lower-case scheme and extra spaces are fine.
    r = call_with_key(server, None, headers={"Authorization": "bearer   " + k})
    assert r.status_code == 200, r.text
    # The good key still works after all that (negative caching is per key).
    assert call_with_key(server, k).status_code == 200


def test_expired_key_is_401(server):
    org = new_org(server)
    at = rfc3339(server_now(server) + 86400 * 3)
    key = make_key(org, expires_at=at)
    assert key["expires_at"] == at
    assert call_with_key(server, key["key"]).status_code == 200  # now cached
    advance_clock(server, 86400 * 3 + 60)
    problem = assert_problem(call_with_key(server, key["key"]), 401, "invalid_api_key")
    assert "expired" in problem["detail"] and key["prefix"] in problem["detail"]
    assert org.owner.get(f"{org.keys_url}/{key['id']}").json()["status"] == "expired"


def test_deleted_org_and_suspended_creator(server):
    org = new_org(server, plan="pro")
    by_owner = make_key(org)
    sql(server, "UPDATE users SET suspended = ? WHERE id = ?", True, org.user["id"])
    p = assert_problem(call_with_key(server, by_owner["key"]), 401, "invalid_api_key")
    assert "suspended" in p["detail"]
    other = new_org(server)
    key = make_key(other)
    sql(server, "UPDATE orgs SET deleted_at = ? WHERE id = ?", dbdirect.ts_value(1), other.id)
    p = assert_problem(call_with_key(server, key["key"]), 401, "invalid_api_key")
    assert "deleted" in p["detail"]


def test_key_from_cli_and_another_secret(server, tmp_path):
    """A key made by the CLI works; a server with another secret refuses it."""
    org = new_org(server)
    r = run_keel(["key", "create", "--org", org.slug, "--name", "from cli", "--scopes", "read",
                  "--env", "test", "--data-dir", server.data_dir])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    key = lines[0]
    assert KEY_RE.match(key) and key.startswith("kl_test_")
    assert lines[1].startswith("id: ") and lines[2] == "prefix: " + key[:12]
    assert "not shown again" in r.stderr
    who = call_with_key(server, key)
    assert who.status_code == 200, who.text
    assert who.json()["key"]["scopes"] == ["read"]
    assert who.json()["org"]["slug"] == org.slug
    entry = [e for e in audit_entries(org, "api_key.created") if e["resource"]["id"] == lines[1][4:]]
    assert entry and entry[0]["actor"]["type"] == "system" and entry[0]["details"]["via"] == "cli"
    # The plan limit applies to the CLI too (free: 2).
    r = run_keel(["key", "create", "--org", org.id, "--data-dir", server.data_dir])
    assert r.returncode == 0, r.stderr
    r = run_keel(["key", "create", "--org", org.slug, "--data-dir", server.data_dir])
    assert r.returncode == 1 and "plan allows 2" in r.stderr
    # Usage errors.
    for args in (["--org", org.slug, "--scopes", "write"], ["--org", org.slug, "--env", "prod"],
                 ["--name", "x"], ["--org", org.slug, "--scopes", "read,read"]):
        r = run_keel(["key", "create", *args, "--data-dir", server.data_dir])
        assert r.returncode == 2, (args, r.stderr)
    r = run_keel(["key", "create", "--org", "no-such-org", "--data-dir", server.data_dir])
    assert r.returncode == 1 and "no such organisation" in r.stderr
    assert run_keel(["key", "create", "--help"]).returncode == 0
    # Another server secret: the same key is unknown there.
    other = KeelServer(server.binary, tmp_path / "other")
    other.data_dir.mkdir(parents=True)
    (other.data_dir / "keel.secret").write_text("ab" * 32 + "\n")
    if dbdirect.enabled():
        # The same database, served with another secret.
        other.start(env_overrides={"KEEL_STORE_URL": dbdirect.store_url(server.data_dir)})
    else:
        src = sqlite3.connect(db_path(server), timeout=30)
        dst = sqlite3.connect(str(other.data_dir / "keel.db"))
        src.backup(dst)
        src.close()
        dst.close()
        other.start()
    try:
        assert_problem(call_with_key(other, key), 401, "invalid_api_key")
    finally:
        other.stop()


# --- the org binding and scopes ----------------------------------------------------------


def test_key_is_bound_to_its_org(server):
    org = new_org(server)
    other = new_org(server)
    key = make_key(org)["key"]
    for ref in (org.id, org.slug):
        r = call_with_key(server, key, f"/v1/dev/orgs/{ref}/key-probe")
        assert r.status_code == 200, r.text
        assert r.json() == {"route": "/v1/dev/orgs/{org}/key-probe", "actor": "api_key",
                            "org_id": org.id}
    for ref in (other.id, other.slug, "no-such-org"):
        assert_problem(call_with_key(server, key, f"/v1/dev/orgs/{ref}/key-probe"), 404, "not_found")
    # The other org's key on this org's routes: 404 as well.
    their_key = make_key(other)["key"]
    assert_problem(call_with_key(server, their_key, f"/v1/dev/orgs/{org.id}/key-probe"), 404,
                   "not_found")
    # The session path of an AUTH_ANY route still works for members.
    r = org.owner.get(f"{server.url}/v1/dev/orgs/{org.id}/key-probe")
    assert r.status_code == 200 and r.json()["actor"] == "user"


SCOPE_SETS = [["ingest"], ["read"], ["admin"], ["ingest", "read"], ["ingest", "read", "admin"]]
PROBES = {"ingest": "/v1/dev/keys/ingest-probe", "read": "/v1/dev/keys/read-probe",
          "admin": "/v1/dev/keys/admin-probe"}


def test_scope_matrix(server):
    org = new_org(server, plan="team")
    for scopes in SCOPE_SETS:
        key = make_key(org, name="+".join(scopes), scopes=scopes)
        # whoami needs no particular scope.
        r = call_with_key(server, key["key"])
        assert r.status_code == 200 and r.json()["key"]["scopes"] == scopes
        for need, path in PROBES.items():
            for attempt in range(2):  # uncached, then cached (inline fast path)
                r = call_with_key(server, key["key"], path)
                if need in scopes:
                    assert r.status_code == 200, (scopes, need, r.text)
                    assert r.json()["actor"] == "api_key"
                    assert "RateLimit" in r.headers
                else:
                    p = assert_problem(r, 403, "insufficient_scope")
                    assert need in p["detail"] and key["prefix"] in p["detail"]
                    assert key["key"] not in p["detail"]
        denials = [e for e in audit_entries(org, "permission.denied")
                   if e["actor"]["id"] == key["prefix"]]
        missing = [n for n in PROBES if n not in scopes]
        assert len(denials) == 2 * len(missing), (scopes, denials)
        for e in denials:
            assert e["actor"]["type"] == "api_key"
            assert e["details"]["key_scopes"] == scopes
            assert key["key"] not in json.dumps(e)


def test_whoami(server):
    org = new_org(server, plan="pro")
    key = make_key(org, name="who", scopes=["ingest"], rate_limit_per_min=1234)
    r = call_with_key(server, key["key"])
    assert r.status_code == 200
    assert r.json() == {
        "org": {"id": org.id, "slug": org.slug, "name": "Keys Test", "plan": "pro"},
        "key": {"id": key["id"], "prefix": key["prefix"], "scopes": ["ingest"],
                "environment": "production", "live": True, "rate_limit_per_min": 1234},
        "plan": {"id": "pro", "name": "Pro", "rate_per_min_key": 5000, "rate_per_min_org": 10000},
    }
    assert r.headers["RateLimit-Policy"] == '"key";q=1234;w=60, "org";q=10000;w=60'
    # Sessions are not keys.
    assert_problem(org.owner.get(server.url + "/v1/whoami"), 401, "unauthorized")


def test_whoami_escapes_and_lists(server):
    """The whoami body is written by hand: strings that need escaping (quotes,
    backslashes, control characters, UTF-8) at their longest, every scope, a
    test key on the plan's own limit."""
    org = new_org(server, plan="team")
    # Set with SQL: the API refuses control characters in names, the store
    # does not, and the response must stay valid JSON whatever it holds.
    name = 'Q"\\ \u00e9\u2615' + "\x01" * 391
    assert len(name.encode()) == 400
    sql(server, "UPDATE orgs SET name = ? WHERE id = ?", name, org.id)
    key = make_key(org, scopes=["admin", "ingest", "read"], live=False)
    r = call_with_key(server, key["key"])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "org": {"id": org.id, "slug": org.slug, "name": name, "plan": "team"},
        "key": {"id": key["id"], "prefix": key["prefix"], "scopes": ["ingest", "read", "admin"],
                "environment": "test", "live": False, "rate_limit_per_min": 50000},
        "plan": {"id": "team", "name": "Team", "rate_per_min_key": 50000,
                 "rate_per_min_org": 100000},
    }
    assert "\\u0001" in r.text
    assert r.headers["RateLimit-Policy"] == '"key";q=50000;w=60, "org";q=100000;w=60'


# --- last_used_at --------------------------------------------------------------------------


def test_last_used_is_written_in_batches(server):
    org = new_org(server)
    key = make_key(org)
    url = f"{org.keys_url}/{key['id']}"
    for _ in range(5):
        assert call_with_key(server, key["key"]).status_code == 200
    got = wait_until(lambda: org.owner.get(url).json()["last_used_at"], timeout=10)
    assert got, "last_used_at was not written within 10 s"
    now = server_now(server)
    used = calendar.timegm(time.strptime(got[:19], "%Y-%m-%dT%H:%M:%S"))
    assert now - 30 <= used <= now


def test_shutdown_flushes_last_used(keel_bin, tmp_path):
    srv = KeelServer(keel_bin, tmp_path / "flush").start()
    try:
        org = new_org(srv)
        key = make_key(org)
        assert call_with_key(srv, key["key"]).status_code == 200
        assert srv.stop(signal.SIGTERM) == 0  # at once: before the 2 s flusher ran
        rows = sql(srv, "SELECT last_used_at FROM api_keys WHERE id = ?", key["id"])
        assert rows[0][0] is not None
    finally:
        srv.kill()


# --- the log canary -----------------------------------------------------------------------------


def test_log_canary(fresh_server):
    """Every path a key can take (200, each 401, 403, 404, 429, revocation),
    with debug logging; then the full key must appear nowhere: not in the
    log, not in any response other than the creation response, not in the
    database."""
    srv = fresh_server(env_overrides={"KEEL_LOG_LEVEL": "debug"})
    org = new_org(srv)
    responses = []

    def rec(r):
        responses.append(r)
        return r

    created = make_key(org, name="canary", scopes=["read"], rate_limit_per_min=2)
    key = created["key"]
    rec(call_with_key(srv, key))  # 200 (store, then cached)
    rec(call_with_key(srv, key, "/v1/dev/keys/read-probe"))  # 200
    rec(call_with_key(srv, key, "/v1/dev/keys/ingest-probe"))  # 403 (worker path)
    rec(call_with_key(srv, key, "/v1/dev/keys/admin-probe"))  # 403
    rec(call_with_key(srv, key, "/v1/whoami"))  # 429 (2 per minute)
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 403, 403, 429], statuses
    other = new_org(srv)
    rec(call_with_key(srv, key, f"/v1/dev/orgs/{other.id}/key-probe"))  # 404
    rec(call_with_key(srv, key[:-1]))  # 401 malformed
    rec(call_with_key(srv, key[:-1] + ("A" if key[-1] != "A" else "B")))  # 401 checksum
    rec(call_with_key(srv, key, headers={"Authorization": "Basic " + key}))
    rec(call_with_key(srv, None, headers={"Authorization": "Bearer " + key + "x"}))
    for r in [org.owner.get(org.keys_url), org.owner.get(f"{org.keys_url}/{created['id']}"),
              org.owner.patch(f"{org.keys_url}/{created['id']}", json={"name": "canary-2"}),
              org.owner.delete(f"{org.keys_url}/{created['id']}")]:
        rec(r)
    rec(call_with_key(srv, key))  # 401 revoked
    rec(org.owner.get(f"{srv.url}/v1/orgs/{org.id}/audit-log", params={"limit": 200}))
    rec(plain_session().get(srv.url + "/metrics"))
    assert responses[-3].status_code == 401
    wait_until(lambda: False, timeout=3)  # let the last_used_at flusher run
    assert srv.stop() == 0
    for r in responses:
        blob = r.text + json.dumps(dict(r.headers))
        assert key not in blob, (r.request.method, r.url, r.status_code)
        assert key[8:] not in blob
    log = srv.log_text()
    assert log.count("\n") > 20  # the log has content (debug level)
    assert "http.request" in log
    assert key not in log and key[8:36] not in log
    for name in ("keel.db", "keel.db-wal"):
        p = srv.data_dir / name
        if p.exists():
            assert key.encode() not in p.read_bytes()
            assert key[8:36].encode() not in p.read_bytes()


# --- keel bootstrap ------------------------------------------------------------------------------

BOOT_KEY_RE = re.compile(r"^keel: API key for organisation default: (kl_live_[0-9A-Za-z]{34}) "
                         r"\(scopes ingest, read, admin; shown once\)$", re.M)


def test_bootstrap_prints_an_api_key_once(keel_bin, tmp_path):
    srv = KeelServer(keel_bin, tmp_path / "boot")
    r = run_keel(["bootstrap", "--data-dir", srv.data_dir], timeout=60)
    assert r.returncode == 0, r.stderr
    m = BOOT_KEY_RE.search(r.stderr)
    assert m, r.stderr
    key = m.group(1)
    assert key[-6:] == checksum(key[:36])
    assert key not in r.stdout and r.stdout.count("\n") == 1  # stdout keeps its one line
    again = run_keel(["bootstrap", "--data-dir", srv.data_dir], timeout=60)
    assert key not in again.stdout + again.stderr and "kl_live_" not in again.stderr
    srv.start()
    try:
        who = call_with_key(srv, key)
        assert who.status_code == 200, who.text
        assert who.json()["org"]["slug"] == "default"
        assert who.json()["key"]["scopes"] == ["ingest", "read", "admin"]
        for path in ("/v1/dev/keys/ingest-probe", "/v1/dev/keys/read-probe",
                     "/v1/dev/keys/admin-probe"):
            assert call_with_key(srv, key, path).status_code == 200
    finally:
        srv.stop()
    assert key not in srv.log_text()


def test_cached_keys_follow_org_delete_plan_change_and_suspension_at_once(server):
    """Changes made through the API reach keys that are already in the cache
    immediately, not after the cache TTL."""
    admin_user = create_user(server, admin=True)
    admin = login(server, admin_user["email"], admin_user["password"])

    org = new_org(server)
    key = make_key(org)["key"]
    r = call_with_key(server, key)  # warms the cache
    assert r.status_code == 200
    assert '"key";q=100;' in r.headers["RateLimit-Policy"]
    r = admin.patch(f"{server.url}/v1/admin/orgs/{org.id}", json={"plan": "pro"}, timeout=30)
    assert r.status_code == 200, r.text
    r = call_with_key(server, key)
    assert r.status_code == 200
    assert '"key";q=5000;' in r.headers["RateLimit-Policy"]

    r = admin.post(f"{server.url}/v1/admin/users/{org.user['id']}/suspend", timeout=30)
    assert r.status_code == 200, r.text
    assert_problem(call_with_key(server, key), 401, "invalid_api_key")
    r = admin.post(f"{server.url}/v1/admin/users/{org.user['id']}/unsuspend", timeout=30)
    assert r.status_code == 200, r.text
    assert call_with_key(server, key).status_code == 200

    other = new_org(server)
    other_key = make_key(other)["key"]
    assert call_with_key(server, other_key).status_code == 200
    r = other.owner.delete(f"{server.url}/v1/orgs/{other.id}", timeout=30)
    assert r.status_code == 204, r.text
    assert_problem(call_with_key(server, other_key), 401, "invalid_api_key")
