"""API-key helpers for keel's black-box tests (test_keys.py, test_ratelimit.py).

    from apikeys import new_org, make_key, call_with_key, forge_key

new_org signs a fresh user in and creates an org it owns (POST /v1/orgs);
make_key creates a key there (POST /v1/orgs/{org}/api-keys) and returns the
201 body, whose "key" is the full key. Plans and memberships the API cannot
set yet are set with SQL on the server's database (dbdirect: keel.db, where
SQLite takes turns with the running server, or its PostgreSQL database).

Key format (docs/api-keys.md): kl_live_ | kl_test_, 28 base62 characters,
then 6 base62 characters of CRC-32 over the first 36, so forge_key can make
well-formed keys that no org has.
"""

import os
import re
import secrets
import time
import zlib

import requests

import dbdirect
from accounts import create_user, login, new_user_session

KEY_RE = re.compile(r"^kl_(live|test)_[0-9A-Za-z]{34}$")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_slug_counter = [0]


def checksum(text):
    """The 6 base62 checksum characters of a key's first 36 characters."""
    v = zlib.crc32(text.encode())
    out = ""
    for _ in range(6):
        out = BASE62[v % 62] + out
        v //= 62
    return out


def forge_key(live=True):
    """A well-formed key (valid checksum) that no org has."""
    body = ("kl_live_" if live else "kl_test_") + "".join(secrets.choice(BASE62) for _ in range(28))
    return body + checksum(body)


def plain_session():
    s = requests.Session()
    s.trust_env = False
    return s


def db_path(server):
    """SQLite only: the server's keel.db."""
    return os.path.join(str(server.data_dir), "keel.db")


def sql(server, statement, *args):
    """Runs one statement on the server's database (either backend: dbdirect);
    returns the rows."""
    return dbdirect.sql(server, statement, *args)


def set_plan(server, org_id, plan):
    sql(server, "UPDATE orgs SET plan = ? WHERE id = ?", plan, org_id)


def unique_slug(prefix="keys"):
    _slug_counter[0] += 1
    return f"{prefix}-{os.getpid()}-{int(time.time() * 1000) % 10**9}-{_slug_counter[0]}"


class Org:
    """An org and its owner's signed-in session."""

    def __init__(self, server, session, user, body):
        self.server = server
        self.owner = session
        self.user = user
        self.id = body["id"]
        self.slug = body["slug"]
        self.body = body

    @property
    def keys_url(self):
        return f"{self.server.url}/v1/orgs/{self.id}/api-keys"


def new_org(server, plan=None, slug=None):
    session, user = new_user_session(server)
    r = session.post(server.url + "/v1/orgs", json={"name": "Keys Test", "slug": slug or unique_slug()},
                     timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    org = Org(server, session, user, r.json())
    if plan:
        set_plan(server, org.id, plan)
    return org


def add_member(org, role):
    """A new user with role in org (set with SQL), signed in: (session, user)."""
    user = create_user(org.server)
    sql(org.server, "INSERT INTO memberships(org_id, user_id, role, created_at) VALUES(?, ?, ?, ?)",
        org.id, user["id"], role, dbdirect.ts_value(int(time.time() * 1e6)))
    return login(org.server, user["email"], user["password"]), user


def create_key(org, session=None, **body):
    """POST /v1/orgs/{org}/api-keys; returns the response."""
    body.setdefault("name", "test key")
    body.setdefault("scopes", ["ingest", "read"])
    return (session or org.owner).post(org.keys_url, json=body, timeout=30)


def make_key(org, **body):
    """Creates a key; returns the 201 body (with "key")."""
    r = create_key(org, **body)
    assert r.status_code == 201, (r.status_code, r.text)
    doc = r.json()
    assert KEY_RE.match(doc["key"]), doc["key"]
    return doc


def call_with_key(server, key, path="/v1/whoami", session=None, method="GET", **kw):
    """A request authenticated by key (Authorization: Bearer)."""
    s = session or plain_session()
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = "Bearer " + key
    return s.request(method, server.url + path, headers=headers, timeout=30, **kw)


def parse_ratelimit(value):
    """'"key";r=42;t=18, "org";r=150;t=9' -> {"key": {"r": 42, "t": 18}, ...}"""
    out = {}
    for item in value.split(","):
        parts = [p.strip() for p in item.strip().split(";")]
        name = parts[0]
        assert name.startswith('"') and name.endswith('"'), value
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k] = int(v)
        out[name.strip('"')] = params
    return out
