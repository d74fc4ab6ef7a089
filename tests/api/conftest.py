"""Black-box harness for keel's HTTP API tests.

The server under test is the real binary (env KEEL_BIN, default
<repo>/build/keel), started on an ephemeral port with its own data directory.
Nothing here knows keel's internals: tests speak HTTP (requests, or raw bytes
over a socket for framing cases) and read the JSON log.

Helpers importable by test modules (``from conftest import ...``):
  KeelServer, raw_http, RawConn, assert_problem, run_keel, keel_env,
  json_body_of_size, wait_until, SLOW_FACTOR

Fixtures: keel_bin, server (module-scoped, --dev), fresh_server (factory),
http (a requests.Session), make_tmp (a fresh directory).

Set KEEL_TEST_SLOW=1 (ASan, valgrind) to stretch every timeout sixfold, or
KEEL_TEST_SLOW=<factor> (a number above 1) for another factor.

Backends: with KEEL_TEST_BACKEND=postgres (tools/pg-cluster.sh, `make api-pg`;
conventions in pgtest.py) every keel started here gets KEEL_STORE_URL, the
database of its data directory (dbdirect.database_for: a copy of the migrated
template, created on first use, dropped at session end) as keel_app; `keel
migrate` gets the owner's URL. A test that passes --store or KEEL_STORE_URL
itself is left alone. @pytest.mark.sqlite_only("reason") skips a test that is
about the SQLite file itself on PostgreSQL. Unset (or "sqlite"): SQLite, as
always. The backend is in the report header and in every failure.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import requests

import dbdirect
import pgtest

REPO = Path(__file__).resolve().parents[2]


def _slow_factor():
    """KEEL_TEST_SLOW unset: 1; a number above 1: that factor; anything else
    (e.g. "1" or "yes"): 6."""
    v = os.environ.get("KEEL_TEST_SLOW", "")
    if not v:
        return 1.0
    try:
        f = float(v)
    except ValueError:
        return 6.0
    return f if f > 1 else 6.0


SLOW_FACTOR = _slow_factor()
START_TIMEOUT_S = 20.0 * SLOW_FACTOR
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Every KeelServer still running; the session teardown stops them all so a
# failing test can never leave a process behind.
_LIVE_SERVERS = []


def bin_path():
    return Path(os.environ.get("KEEL_BIN") or REPO / "build" / "keel")


def keel_env(overrides=None):
    """The environment a keel process gets: ours without any KEEL_* variable,
    then overrides (a value of None removes the variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def _arg_value(args, flag):
    """The value of `flag V` or `flag=V` in args (None when absent)."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def _has_store(args, env_overrides):
    return (_arg_value(args, "--store") is not None
            or "KEEL_STORE_URL" in (env_overrides or {}))


def store_env(args, env_overrides, cwd):
    """env_overrides plus, on PostgreSQL, the KEEL_STORE_URL of the data
    directory args name (default cwd/keel-data): the owner's for `keel migrate`,
    keel_app's for every other command."""
    if not pgtest.enabled() or _has_store(args, env_overrides):
        return env_overrides
    base = Path(cwd) if cwd is not None else Path.cwd()
    data_dir = _arg_value(args, "--data-dir") or "keel-data"
    data_dir = base / data_dir  # an absolute data_dir replaces base
    owner = bool(args) and args[0] == "migrate"
    return {**(env_overrides or {}), "KEEL_STORE_URL": dbdirect.store_url(data_dir, owner=owner)}


def run_keel(args, env_overrides=None, timeout=15, cwd=None):
    """Runs keel to completion (for commands that exit: version, migrate, a
    serve that must fail). Returns subprocess.CompletedProcess with text
    stdout and stderr. Pass cwd (a temporary directory) for commands that
    might create files: keel's default data dir is ./keel-data. A process that outlives timeout is killed and the
    test fails with subprocess.TimeoutExpired."""
    args = [str(a) for a in args]
    return subprocess.run(
        [str(bin_path()), *args],
        env=keel_env(store_env(args, env_overrides, cwd)),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout * SLOW_FACTOR,
    )


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate until it returns a truthy value (returned) or timeout
    seconds (times SLOW_FACTOR) pass (returns the last falsy value)."""
    deadline = time.monotonic() + timeout * SLOW_FACTOR
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class KeelServer:
    """One `keel serve` process on 127.0.0.1 with an ephemeral port."""

    def __init__(self, binary, workdir):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "keel.log"
        self.proc = None
        self.port = None
        self.url = None
        self.args = None
        self._log_file = None

    # --- lifecycle ------------------------------------------------------

    def start(self, extra_args=(), env_overrides=None, dev=True, config_file=None):
        assert self.proc is None, "KeelServer.start called twice"
        args = [str(self.binary), "serve"]
        extra = [str(a) for a in extra_args]
        if "--listen" not in extra:
            args += ["--listen", "127.0.0.1:0"]
        if "--data-dir" not in extra:
            args += ["--data-dir", str(self.data_dir)]
        if dev:
            args.append("--dev")
        if config_file is not None:
            args += ["--config", str(config_file)]
        args += extra
        self.args = args
        env_overrides = store_env(args[1:], env_overrides, self.workdir)
        # Output goes to a file, never a pipe that could fill and block keel.
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args,
            env=keel_env(env_overrides),
            cwd=str(self.workdir),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        _LIVE_SERVERS.append(self)
        try:
            self._wait_started()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_started(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if isinstance(line, dict) and line.get("event") == "server.started":
                    self.port = int(line["port"])
                    self.url = f"http://127.0.0.1:{self.port}"
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"keel exited with {self.proc.returncode} before server.started\n"
                    f"command: {self.args}\nlog:\n{self.log_text()}"
                )
            time.sleep(0.02)
        raise RuntimeError(
            f"keel did not log server.started within {START_TIMEOUT_S:.0f} s\n"
            f"command: {self.args}\nlog:\n{self.log_text()}"
        )

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code, or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout * SLOW_FACTOR)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig and waits for the exit code. A process that does not exit
        in time is killed and the test fails."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                raise AssertionError(
                    f"keel (pid {self.proc.pid}) did not exit within {timeout} s of "
                    f"signal {sig}; killed\nlog tail:\n{self.log_text()[-4000:]}"
                )
        self._close()
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close()

    def _close(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self in _LIVE_SERVERS and (self.proc is None or self.proc.poll() is not None):
            _LIVE_SERVERS.remove(self)

    # --- the log --------------------------------------------------------

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        """Every line of the log: parsed JSON objects, and raw strings for
        lines that are not JSON (sanitizer reports and the like)."""
        out = []
        for raw in self.log_text().splitlines():
            if not raw.strip():
                continue
            try:
                v = json.loads(raw)
            except ValueError:
                out.append(raw)
                continue
            out.append(v if isinstance(v, dict) else raw)
        return out

    def events(self, name):
        return [l for l in self.log_lines() if isinstance(l, dict) and l.get("event") == name]

    # --- convenience ----------------------------------------------------

    def __repr__(self):
        return f"<KeelServer pid={self.pid} url={self.url}>"


# libmicrohttpd's abort when a daemon is quiesced while its thread runs it.
# keel quiesces each daemon on its own I/O thread, so this must never appear.
MHD_QUIESCE_PANIC = "Failed to remove listen FD from epoll set"


def _stop_quietly(srv):
    """Stops srv if it still runs. Returns its exit code on SIGTERM, or None
    when it was not running (the test stopped it) or had to be killed."""
    rc = None
    if srv.running():
        try:
            rc = srv.stop(timeout=10)
        except AssertionError:
            rc = None  # killed by stop(); the test itself reports what matters
    srv.kill()
    return rc


def _teardown_stop(*servers):
    """Fixture teardown: servers still running are stopped with SIGTERM and
    must exit 0 (a crash or a sanitizer report at exit fails the test).
    Every server is stopped before any failure is reported."""
    problems = []
    for srv in servers:
        was_running = srv.running()
        rc = _stop_quietly(srv)
        if not was_running or rc == 0:
            continue
        tail = srv.log_text()[-4000:]
        problems.append(f"keel (pid {srv.pid}) exited with {rc} on SIGTERM at teardown\nlog tail:\n{tail}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _reap_servers():
    yield
    for srv in list(_LIVE_SERVERS):
        _stop_quietly(srv)
    if pgtest.enabled():
        dbdirect.drop_databases()


# --- the backend under test -------------------------------------------------


def _backend_label():
    if pgtest.enabled():
        return f"postgres ({pgtest.host()}:{pgtest.port()})"
    return "sqlite"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): about the SQLite file itself (WAL, keel.db, the data "
        "directory's layout, SQLite migrations); skipped on PostgreSQL")


def pytest_report_header(config):
    return f"keel store backend: {_backend_label()}"


def pytest_runtest_setup(item):
    m = item.get_closest_marker("sqlite_only")
    if m is not None and pgtest.enabled():
        reason = m.args[0] if m.args else m.kwargs.get("reason", "about the SQLite store")
        pytest.skip(f"SQLite only: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure says which backend it failed on: a "backend" section in its
    report, and [backend] before the message of the short summary line."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    rep.sections.append(("backend", _backend_label()))
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None and isinstance(getattr(crash, "message", None), str):
        crash.message = f"[{pgtest.backend()}] {crash.message}"


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"keel store backend: {_backend_label()}")


# --- fixtures -------------------------------------------------------------


@pytest.fixture(scope="session")
def keel_bin():
    p = bin_path()
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(
            f"keel binary not found or not executable: {p} "
            f"(build it with `ninja -C build keel` or set KEEL_BIN)",
            pytrace=False,
        )
    return p


@pytest.fixture(scope="module")
def server(keel_bin, tmp_path_factory):
    """A --dev server shared by the tests of one module."""
    srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel-shared"))
    srv.start()
    yield srv
    _teardown_stop(srv)


@pytest.fixture
def fresh_server(keel_bin, tmp_path_factory):
    """Factory: fresh_server(extra_args=[...], env_overrides={...}, dev=True,
    config_file=None) → a started KeelServer, stopped at teardown."""
    started = []

    def make(extra_args=(), env_overrides=None, dev=True, config_file=None):
        srv = KeelServer(keel_bin, tmp_path_factory.mktemp("keel"))
        started.append(srv)
        return srv.start(extra_args, env_overrides, dev, config_file)

    yield make
    _teardown_stop(*started)


@pytest.fixture
def make_tmp(tmp_path_factory):
    return lambda name="t": tmp_path_factory.mktemp(name)


@pytest.fixture
def http():
    s = requests.Session()
    s.trust_env = False  # never route 127.0.0.1 through an environment proxy
    yield s
    s.close()


# --- problem+json -------------------------------------------------------


def assert_problem(resp, status, code):
    """Checks an RFC 9457 problem response from keel and returns its body.
    resp is a requests.Response, a RawResponse, or the (status, headers,
    body) tuple raw_http returns."""
    if isinstance(resp, tuple):
        resp = RawResponse(resp[0], "", resp[1], list(resp[1].items()), resp[2])
    if isinstance(resp, RawResponse):
        got_status, headers, text = resp.status, resp.headers, resp.body.decode("utf-8", "replace")
        ctype = headers.get("content-type", "")
        rid = headers.get("x-request-id")
    else:
        got_status, text = resp.status_code, resp.text
        ctype = resp.headers.get("Content-Type", "")
        rid = resp.headers.get("X-Request-Id")
    assert got_status == status, (got_status, text[:500])
    assert ctype.split(";")[0].strip() == "application/problem+json", (ctype, text[:300])
    body = json.loads(text)
    assert isinstance(body, dict), body
    assert body.get("type") == f"urn:keel:problem:{code}", body
    assert body.get("code") == code, body
    assert body.get("status") == status, body
    assert isinstance(body.get("title"), str) and body["title"], body
    if "detail" in body:
        assert isinstance(body["detail"], str) and body["detail"], body
    assert rid, "problem response without X-Request-Id"
    assert body.get("request_id") == rid, (body.get("request_id"), rid)
    return body


# --- raw HTTP -------------------------------------------------------------


class RawResponse:
    def __init__(self, status, reason, headers, header_list, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name → last value
        self.header_list = header_list  # [(lower-case name, value)] in order
        self.body = body

    def json(self):
        return json.loads(self.body)


class RawConn:
    """A client socket that sends raw bytes and reads HTTP/1.1 responses, one
    at a time, so keep-alive and framing can be tested exactly."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW_FACTOR)
        self.sock.settimeout(timeout * SLOW_FACTOR)
        self.buf = b""
        self.eof = False

    def send(self, data, tolerate_reset=False):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_reset:
                raise

    def _fill(self):
        """Reads more bytes; returns False at EOF or reset."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker):
        while marker not in self.buf:
            if not self._fill():
                return None
        i = self.buf.index(marker)
        out, self.buf = self.buf[:i], self.buf[i + len(marker):]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed {n - len(self.buf)} bytes short of the body")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_request=False):
        """Reads one response. Raises ConnectionError when the connection ends
        before a complete header block (no response)."""
        head = self._read_until(b"\r\n\r\n")
        if head is None:
            raise ConnectionError(f"no response (connection closed; got {self.buf[:200]!r})")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        header_list = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            header_list.append((name.strip().lower(), value.strip()))
        headers = {k: v for k, v in header_list}
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line = self._read_until(b"\r\n")
                if size_line is None:
                    raise ConnectionError("connection closed inside a chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    self._read_until(b"\r\n")  # (no trailers expected)
                    break
                body += self._read_exact(size)
                self._read_exact(2)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return RawResponse(status, reason, headers, header_list, body)

    def closed_by_peer(self, timeout):
        """True when the server closes (EOF or reset) within timeout seconds
        without sending anything."""
        self.sock.settimeout(timeout * SLOW_FACTOR)
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return data == b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_http(port, data, chunks=None, timeout=5, pause=0.0):
    """Sends data (then each of chunks, pause seconds apart) over a new
    connection and reads one response. Returns (status, headers with
    lower-case names, body bytes). A connection reset after the response, or
    while sending a body the server no longer reads, is tolerated; no
    response at all raises ConnectionError (an OSError)."""
    head_request = data.lstrip().upper().startswith(b"HEAD ")
    with RawConn(port, timeout) as c:
        c.send(data, tolerate_reset=True)
        for chunk in chunks or ():
            if pause:
                time.sleep(pause)
            c.send(chunk, tolerate_reset=True)
        r = c.read_response(head_request=head_request)
        return r.status, r.headers, r.body


def json_body_of_size(n, **members):
    """A JSON object with members plus a "pad" string member, exactly n bytes."""
    base = dict(members)
    base["pad"] = ""
    empty = json.dumps(base, separators=(",", ":")).encode()
    if n < len(empty):
        raise ValueError(f"{n} bytes is too small for {empty!r}")
    base["pad"] = "x" * (n - len(empty))
    out = json.dumps(base, separators=(",", ":")).encode()
    assert len(out) == n
    return out
