"""Account helpers for keel's black-box tests: users made with the CLI and
signed in over HTTP.

    from accounts import create_user, login, new_user_session

    session, user = new_user_session(server)              # a verified user, signed in
    r = session.post(server.url + "/v1/orgs", json={...}) # cookie + X-CSRF-Token sent

create_user runs `keel user create` (and `keel user promote` for admins) on
the server's data directory; it works while the server runs. login returns a
requests.Session holding the session cookie, with the CSRF header set for
every request it makes.

Per-IP limit: every sign-in from the tests comes from 127.0.0.1, and the
server allows auth.login_per_ip_per_min (default 30) a minute. When login
meets 429 on a --dev server, it moves the test clock by Retry-After seconds
(at most a few seconds at a time) and tries again, so long test modules do
not need to care. Pass retry_on_limit=False to see the 429.
"""

import itertools
import os
import time

import requests

from conftest import run_keel

DEFAULT_PASSWORD = "Passw0rd!x"
_counter = itertools.count(1)


def unique_email(prefix="user"):
    """A fresh address for this test run (never collides across runs)."""
    return f"{prefix}-{os.getpid()}-{int(time.time() * 1000)}-{next(_counter)}@example.com"


def _plain_session():
    s = requests.Session()
    s.trust_env = False  # never route 127.0.0.1 through an environment proxy
    return s


def _run(args):
    p = run_keel(args, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"keel {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def create_user(server, email=None, password=DEFAULT_PASSWORD, name="Test User", verified=True,
                admin=False):
    """Creates a user with the CLI on server's data directory. Returns a dict
    {id, email, password, name, verified, admin}. email None: a unique one."""
    email = email or unique_email()
    args = ["user", "create", "--email", email, "--name", name, "--data-dir", server.data_dir]
    if password is not None:
        args += ["--password", password]
    if verified:
        args.append("--verified")
    out = _run(args).splitlines()
    user_id = out[0].strip()
    if password is None:
        password = next(l.split(": ", 1)[1] for l in out[1:] if l.startswith("password: "))
    if admin:
        _run(["user", "promote", "--email", email, "--data-dir", server.data_dir])
    return {"id": user_id, "email": email, "password": password, "name": name,
            "verified": verified, "admin": admin}


def advance_clock(server, seconds):
    """Moves a --dev server's test clock forward."""
    with _plain_session() as s:
        r = s.post(server.url + "/v1/dev/clock", json={"advance_seconds": int(seconds)},
                   timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def post_login(server, email, password, session=None, retry_on_limit=True, **kw):
    """POST /v1/auth/login (waiting out the per-IP limit on the test clock
    when retry_on_limit). Returns the response."""
    s = session or _plain_session()
    for _ in range(20):
        r = s.post(server.url + "/v1/auth/login", json={"email": email, "password": password},
                   timeout=60, **kw)
        if r.status_code != 429 or not retry_on_limit:
            return r
        advance_clock(server, max(1, int(r.headers.get("Retry-After", "1"))))
    return r


def login(server, email, password=DEFAULT_PASSWORD, retry_on_limit=True):
    """Signs in; returns a requests.Session holding the cookie, with
    X-CSRF-Token set for every request. The login answer's JSON is kept in
    session.login_body."""
    s = _plain_session()
    r = post_login(server, email, password, session=s, retry_on_limit=retry_on_limit)
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    s.headers["X-CSRF-Token"] = body["csrf_token"]
    s.login_body = body
    return s


def new_user_session(server, **kw):
    """create_user(server, **kw) then login: returns (session, user dict)."""
    user = create_user(server, **kw)
    return login(server, user["email"], user["password"]), user
