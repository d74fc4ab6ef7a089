"""Tenant isolation over HTTP (R-TEN-4), driven by the OpenAPI document.

Two orgs, A and B, each with an owner, a member, a pending invitation and
an API key. The routes come from GET /v1/openapi.json, so a route added
later is covered without touching this file:

- every operation whose path has {org}, called by A's owner with B's id or
  slug (and a plausible, valid body): 404, never 403 — existence is not
  revealed;
- every operation with {org} and another id, called by A's owner on A's
  path with B's resource ids (members, invitations, API keys …): 404;
- after all of that, B's lists read exactly as before (nothing read,
  changed, deleted or inserted in B);
- every list of A (GET {org} routes without other ids) names nothing of B;
- without a session, every route that is not public answers 401;
- a cookie-authenticated state change without X-CSRF-Token answers 403;
- the same checks hold under concurrent requests from several orgs.

Each check is one test per operation (the ids show method and path). The
operations are read from the fragments the build merges into the served
document (docs/openapi/*.json), and a first test checks that the running
server serves exactly those, so the parametrisation cannot drift from the
binary. An operation whose handler answers 501 (documented, not built yet)
is skipped with that reason. A 403 where 404 is expected fails saying so.
"""

import itertools
import json
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import requests

from accounts import create_user, login, new_user_session, unique_email
from conftest import REPO, assert_problem

# Routes anyone may call: they are not expected to answer 401. Adding a
# public route is a decision: add it here.
PUBLIC = {
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/v1/openapi.json"),
    ("get", "/v1/plans"),
    ("post", "/v1/auth/signup"), ("post", "/v1/auth/verify"), ("post", "/v1/auth/login"),
    ("post", "/v1/auth/password/forgot"), ("post", "/v1/auth/password/reset"),
    ("get", "/v1/invitations/{token}"),
    ("get", "/v1/auth/oidc/{provider}/start"), ("get", "/v1/auth/oidc/{provider}/callback"),
    ("post", "/v1/webhooks/stripe"),
    ("post", "/v1/dev/clock"), ("get", "/v1/dev/slow"), ("post", "/v1/dev/ingest"),
    ("post", "/v1/dev/jobs/{job}/run"),
}
METHODS = ("get", "post", "put", "patch", "delete")
PARAM_RE = re.compile(r"\{([a-z_]+)\}")


# --- the OpenAPI document ----------------------------------------------------


def source_document():
    """The OpenAPI document as tools/openapi.py merges it at build time."""
    doc = None
    for f in sorted((REPO / "docs" / "openapi").glob("*.json")):
        frag = json.loads(f.read_text(encoding="utf-8"))
        if doc is None:
            doc = frag
            continue
        for path, item in frag.get("paths", {}).items():
            doc["paths"].setdefault(path, {}).update(item)
        for kind, entries in frag.get("components", {}).items():
            doc.setdefault("components", {}).setdefault(kind, {}).update(entries)
    return doc


SOURCE = source_document()
ALL_OPS = sorted((m, p) for p, item in SOURCE["paths"].items() for m in item if m in METHODS)


def op_id(key):
    return f"{key[0].upper()} {key[1]}"


def served_operations(srv):
    r = requests.get(srv.url + "/v1/openapi.json", timeout=30)
    assert r.status_code == 200
    doc = r.json()
    return {(m, p): SimpleNamespace(method=m, path=p, op=op, doc=doc)
            for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS}


def resolve(doc, schema):
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def sample(doc, schema, name, ids):
    """A valid-looking value for schema: enough to get past validation, so
    a request that reached the wrong org would really act."""
    schema = resolve(doc, schema or {})
    if "allOf" in schema:
        out = {}
        for part in schema["allOf"]:
            v = sample(doc, part, name, ids)
            if isinstance(v, dict):
                out.update(v)
        return out
    if "example" in schema and not isinstance(schema["example"], (dict, list)):
        if schema.get("type") != "string" or "…" not in str(schema["example"]):
            return schema["example"]
    if "enum" in schema:
        return schema["enum"][-1]  # e.g. roles: the least privileged
    t = schema.get("type")
    if t == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: sample(doc, v, k, ids) for k, v in props.items()
                if k in schema.get("required", []) or not resolve(doc, v).get("readOnly")}
    if t == "array":
        item = sample(doc, schema.get("items", {}), name, ids)
        return [item] * max(1, schema.get("minItems", 1))
    if t == "integer":
        return max(1, schema.get("minimum", 1))
    if t == "number":
        return max(1, schema.get("minimum", 1))
    if t == "boolean":
        return schema.get("default", True)
    # strings
    fmt = schema.get("format")
    if fmt == "email" or name == "email":
        return unique_email("iso-victim")
    if fmt == "date-time":
        return "2099-01-01T00:00:00Z"
    if name.endswith("_id") or fmt == "uuid":
        return ids.get("user", "01a00000-0000-7000-8000-000000000000")
    if name == "slug":
        return "iso-" + unique_email("s").split("@")[0].replace(".", "-")[-20:].lower()
    if name == "confirm":
        return ids.get("org_name", "x")
    n = max(1, schema.get("minLength", 1))
    return ("isolation-probe" * 4)[: max(n, min(15, schema.get("maxLength", 15)))]


def body_for(o, ids):
    """(content type, body bytes) for an operation, or (None, None)."""
    rb = o.op.get("requestBody")
    if not rb:
        return None, None
    content = rb.get("content", {})
    if "application/json" in content:
        schema = content["application/json"].get("schema", {})
        return "application/json", json.dumps(sample(o.doc, schema, "", ids)).encode()
    if "text/csv" in content:
        return "text/csv", f"email,role\n{unique_email('iso-csv')},viewer\n".encode()
    ctype = next(iter(content))
    return ctype, b"{}"


def path_params(path):
    return PARAM_RE.findall(path)


def fill(path, org, ids):
    """The path with {org} = org and every other parameter an id of the
    kind the segment before it names (members → a user id, invitations →
    an invitation id, api-keys → a key id), from ids."""
    parts = path.split("/")
    out = []
    for i, seg in enumerate(parts):
        m = PARAM_RE.fullmatch(seg)
        if not m:
            out.append(seg)
        elif m.group(1) == "org":
            out.append(org)
        else:
            kind = parts[i - 1] if i else ""
            out.append(ids.get(kind) or ids.get(m.group(1)) or "01a00000-0000-7000-8000-0000000000ee")
    return "/".join(out)


def call(session, srv, o, path, ids, csrf=True):
    ctype, body = body_for(o, ids)
    headers = {"Content-Type": ctype} if ctype else {}
    if not csrf:
        headers["X-CSRF-Token"] = None  # requests drops headers set to None
    return session.request(o.method.upper(), srv.url + path, data=body, headers=headers, timeout=60)


def not_built(resp):
    return resp.status_code == 501


def describe(o, resp):
    return f"{o.method.upper()} {o.path} → {resp.status_code} {resp.text[:300]}"


# --- two tenants -------------------------------------------------------------


def make_tenant(srv, admin, tag):
    owner_s, owner = new_user_session(srv)
    slug = f"iso-{tag}-{random.randrange(16**8):08x}"
    r = owner_s.post(srv.url + "/v1/orgs", json={"name": f"Isolation {tag.upper()}", "slug": slug})
    assert r.status_code == 201, r.text
    org = r.json()
    # Seats and keys beyond the free plan's.
    r = admin.patch(f"{srv.url}/v1/admin/orgs/{org['id']}", json={"plan": "team"})
    assert r.status_code == 200, r.text
    # A member (invited and joined).
    member = create_user(srv)
    r = owner_s.post(f"{srv.url}/v1/orgs/{org['id']}/invitations",
                     json={"email": member["email"], "role": "member"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]  # --dev answers carry it
    member_s = login(srv, member["email"], member["password"])
    r = member_s.post(f"{srv.url}/v1/invitations/{token}/accept")
    assert r.status_code == 200, r.text
    # A pending invitation.
    pending_email = unique_email(f"iso-pending-{tag}")
    r = owner_s.post(f"{srv.url}/v1/orgs/{org['id']}/invitations",
                     json={"email": pending_email, "role": "viewer"})
    assert r.status_code == 201, r.text
    inv_id = r.json()["id"]
    # An API key.
    r = owner_s.post(f"{srv.url}/v1/orgs/{org['id']}/api-keys",
                     json={"name": f"iso-key-{tag}", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    key = r.json()
    ids = {"members": member["id"], "user": member["id"], "invitations": inv_id,
           "api-keys": key["id"], "org_name": org["name"]}
    markers = {org["id"], slug, owner["id"], owner["email"], member["id"], member["email"],
               inv_id, pending_email, key["id"], key["prefix"]}
    return SimpleNamespace(org=org, slug=slug, owner=owner, owner_s=owner_s, member=member,
                           member_s=member_s, ids=ids, markers=markers, key=key)


def snapshot(world, t):
    """What t's owner reads from every list of t (GET operations with {org}
    and nothing else; the export is left out: reading it writes an entry)."""
    out = {}
    for key in LIST_OPS:
        if key[1].endswith("/export") or key not in world.served:
            continue
        r = t.owner_s.get(world.server.url + fill(key[1], t.org["id"], t.ids), timeout=60)
        if not_built(r):
            continue
        text = r.text
        if key[1].endswith("/audit-log") and r.status_code == 200:
            # t's owner's own exports (the list test reads them) are t's
            # business; any other new entry is not.
            body = r.json()
            body["data"] = [e for e in body["data"] if not (
                e["action"] == "audit.exported" and e["actor"]["id"] == t.owner["id"])]
            text = json.dumps(body, sort_keys=True)
        out[key[1]] = (r.status_code, text)
    return out


@pytest.fixture(scope="module")
def world(server):
    admin_user = create_user(server, admin=True)
    admin = login(server, admin_user["email"], admin_user["password"])
    w = SimpleNamespace(server=server, admin=admin, served=served_operations(server))
    w.a = make_tenant(server, admin, "a")
    w.b = make_tenant(server, admin, "b")
    w.b_before = snapshot(w, w.b)
    return w


def operation(world, key):
    o = world.served.get(key)
    assert o is not None, f"{op_id(key)} is in docs/openapi but not served: rebuild keel"
    return o


def skip_if_not_built(o, r):
    if r.status_code == 501:
        pytest.skip(f"{op_id((o.method, o.path))} answers 501: not built yet")


def has_params(path, others):
    params = path_params(path)
    if "org" not in params:
        return False
    extra = [p for p in params if p != "org"]
    return bool(extra) == others if others is not None else True


ORG_OPS = [k for k in ALL_OPS if has_params(k[1], None)]
ORG_ID_OPS = [k for k in ALL_OPS if has_params(k[1], True)]
LIST_OPS = [k for k in ALL_OPS if k[0] == "get" and has_params(k[1], False)]
ORG_GET_OPS = [k for k in ORG_OPS if k[0] == "get"]
PRIVATE_OPS = [k for k in ALL_OPS if k not in PUBLIC]
CHANGE_OPS = [k for k in PRIVATE_OPS if k[0] != "get"]


def test_served_document_is_the_source(world):
    """The parametrisation below comes from docs/openapi/*.json: the server
    must serve exactly those operations."""
    assert set(world.served) == set(ALL_OPS)
    for expected in ("/v1/orgs/{org}", "/v1/orgs/{org}/members", "/v1/orgs/{org}/audit-log"):
        assert ("get", expected) in ORG_OPS, ORG_OPS


# --- org A's users against org B ----------------------------------------------


@pytest.mark.parametrize("key", ORG_OPS, ids=op_id)
def test_foreign_org_is_404(world, key):
    srv, a, b = world.server, world.a, world.b
    o = operation(world, key)
    for ref in (b.org["id"], b.slug):
        for who in (a.owner_s, a.member_s):
            r = call(who, srv, o, fill(o.path, ref, b.ids), b.ids)
            skip_if_not_built(o, r)
            assert r.status_code != 403, "403 where 404 was expected (existence leaked): " + \
                describe(o, r)
            assert r.status_code == 404, describe(o, r)
            assert_problem(r, 404, "not_found")


@pytest.mark.parametrize("key", ORG_ID_OPS, ids=op_id)
def test_foreign_resource_id_under_own_org_is_404(world, key):
    srv, a, b = world.server, world.a, world.b
    o = operation(world, key)
    r = call(a.owner_s, srv, o, fill(o.path, a.org["id"], b.ids), b.ids)
    skip_if_not_built(o, r)
    assert r.status_code != 403, "403 where 404 was expected: " + describe(o, r)
    assert r.status_code == 404, describe(o, r)


@pytest.mark.parametrize("key", ORG_GET_OPS, ids=op_id)
def test_own_resources_are_found(world, key):
    """The control for the tests above: the same paths with A's own org and
    ids answer 200, so their 404s are about the tenant, not a broken path."""
    srv, a = world.server, world.a
    o = operation(world, key)
    r = a.owner_s.get(srv.url + fill(o.path, a.org["id"], a.ids), timeout=60)
    skip_if_not_built(o, r)
    assert r.status_code == 200, describe(o, r)


@pytest.mark.parametrize("key", LIST_OPS, ids=op_id)
def test_list_names_nothing_of_the_other_org(world, key):
    srv, a, b = world.server, world.a, world.b
    o = operation(world, key)
    for me, other in ((a, b), (b, a)):
        r = me.owner_s.get(srv.url + fill(o.path, me.org["id"], me.ids), timeout=60)
        skip_if_not_built(o, r)
        assert r.status_code == 200, describe(o, r)
        leaked = sorted(m for m in other.markers if m in r.text)
        assert not leaked, f"{o.path} of one org shows the other's {leaked}"


def test_lists_show_own_rows(world):
    """The control for the list test: A's lists do name A's member, its
    invitation and its key, so an absent B marker means something."""
    srv, a = world.server, world.a
    text = ""
    for key in LIST_OPS:
        if key[1].endswith("/export"):
            continue
        r = a.owner_s.get(srv.url + fill(key[1], a.org["id"], a.ids), timeout=60)
        if r.status_code == 200:
            text += r.text
    for m in (a.member["id"], a.ids["invitations"], a.key["prefix"]):
        assert m in text, m


def test_org_list_shows_own_orgs_only(world):
    srv, a, b = world.server, world.a, world.b
    r = a.owner_s.get(srv.url + "/v1/orgs")
    assert r.status_code == 200, r.text
    ids = {o["id"] for o in r.json()["data"]}
    assert a.org["id"] in ids and b.org["id"] not in ids


# --- authentication and CSRF on every operation ------------------------------


@pytest.mark.parametrize("key", PRIVATE_OPS, ids=op_id)
def test_no_session_is_401(world, key):
    srv, b = world.server, world.b
    o = operation(world, key)
    s = requests.Session()
    s.trust_env = False
    r = call(s, srv, o, fill(o.path, b.org["id"], b.ids), b.ids)
    skip_if_not_built(o, r)
    assert r.status_code == 401, ("not in PUBLIC but answers without credentials: "
                                  + describe(o, r))


def test_public_list_is_current():
    """Every PUBLIC entry that is always routed is documented: a stale
    entry would exempt a route that no longer exists."""
    always = {(m, p) for (m, p) in PUBLIC
              if not p.startswith("/v1/dev/") and "oidc" not in p and "webhooks" not in p}
    assert always <= set(ALL_OPS), always - set(ALL_OPS)


@pytest.mark.parametrize("key", CHANGE_OPS, ids=op_id)
def test_cookie_change_without_csrf_is_403(world, key):
    srv, a = world.server, world.a
    o = operation(world, key)
    s = requests.Session()
    s.trust_env = False
    s.cookies.update(a.owner_s.cookies)
    r = call(s, srv, o, fill(o.path, a.org["id"], a.ids), a.ids, csrf=False)
    skip_if_not_built(o, r)
    if r.status_code == 401 and r.json().get("code") == "invalid_api_key":
        pytest.skip(f"{op_id(key)} takes API keys only: a cookie is no credential there")
    assert r.status_code == 403, describe(o, r)
    assert r.json().get("code") == "csrf_failed", describe(o, r)


def test_csrf_token_of_another_session_is_refused(world):
    srv, a, b = world.server, world.a, world.b
    s = requests.Session()
    s.trust_env = False
    s.cookies.update(a.owner_s.cookies)
    s.headers["X-CSRF-Token"] = b.owner_s.headers["X-CSRF-Token"]
    r = s.patch(f"{srv.url}/v1/orgs/{a.org['id']}", json={"name": "Renamed by CSRF"})
    assert_problem(r, 403, "csrf_failed")


def test_other_org_is_unchanged_after_everything(world):
    """Nothing above read into, changed, deleted or inserted into B: every
    list of B reads as before (runs after the attacks, in file order)."""
    assert world.b_before, "no list of B could be read"
    assert snapshot(world, world.b) == world.b_before
    r = world.b.owner_s.get(f"{world.server.url}/v1/orgs/{world.b.org['id']}")
    assert r.status_code == 200 and r.json()["name"] == world.b.org["name"]


# --- under concurrent requests -------------------------------------------------


def test_isolation_under_concurrent_requests(world):
    srv = world.server
    tenants = [world.a, world.b] + [make_tenant(srv, world.admin, t) for t in ("c", "d")]
    gets = [k for k in LIST_OPS if not k[1].endswith("/export")]
    jobs = [(i, j, k) for i, j in itertools.product(range(len(tenants)), repeat=2)
            for k in gets] * 3
    random.Random(7).shuffle(jobs)
    cookies = [dict(t.owner_s.cookies) for t in tenants]
    errors = []
    lock = threading.Lock()

    def run(job):
        i, j, (method, path) = job
        target = tenants[j]
        r = requests.get(srv.url + fill(path, target.org["id"], target.ids), cookies=cookies[i],
                         timeout=60)
        if r.status_code == 501:
            return
        want = 200 if i == j else 404
        problem = None
        if r.status_code != want:
            problem = f"tenant {i} → {j}: GET {path} → {r.status_code} {r.text[:200]}"
        elif i == j:
            others = set().union(*(t.markers for k, t in enumerate(tenants) if k != i))
            leaked = sorted(m for m in others if m in r.text)
            if leaked:
                problem = f"tenant {i}: GET {path} shows {leaked}"
        if problem:
            with lock:
                errors.append(problem)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(run, jobs))
    assert len(jobs) >= 48
    assert not errors, "\n".join(errors[:20])
