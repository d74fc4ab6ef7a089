#!/usr/bin/env python3
"""keel benchmark harness: wrk A/B runs of keel against a reference nginx.

For every scenario in SCENARIOS the harness runs wrk (same settings for both
servers) against keel, then against nginx answering the same status with a
same-size body, interleaved for --rounds rounds after a warm-up. It prints a
table per round, then the medians and the keel/nginx ratio, and writes a JSON
result file under bench/out/.

    /usr/bin/python3 bench/bench.py [--rounds 3] [--duration 10] [--only NAME]

Scenarios that are not A/B pairs (ingestion, the raw SQLite ceiling, queries
over a million events) have a runner of their own: each runs once, after the
A/B rounds, checks what keel stored, and prints its figures against the
targets of the issue that asked for it.

The pg_* scenarios do the same against a second keel on PostgreSQL (a
throwaway, durable cluster the harness starts under bench/out/pg; psycopg2
reads it), and measure PostgreSQL's own COPY of the same rows (pg_copy).

Standard library only (psycopg2 for the pg_* scenarios, imported when they
run). Both servers run on loopback ports chosen at start-up, from a temporary
directory that is removed at the end; child processes are
stopped on exit, on Ctrl-C and on SIGTERM.

Adding a scenario: append a Scenario to SCENARIOS (see bench/README.md).
"""

import argparse
import dataclasses
import datetime
import http.client
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
HEALTHZ_BODY = '{"status":"ok"}'


# --- scenario table --------------------------------------------------------------


@dataclasses.dataclass
class Request:
    """One HTTP request, repeated by wrk. Headers or a body make the harness
    generate a wrk Lua script."""

    path: str
    method: str = "GET"
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    body: str = ""


@dataclasses.dataclass
class Reference:
    """What nginx answers for a scenario: the same status and a same-size body."""

    path: str
    status: int
    body: str
    content_type: str = "application/json"


@dataclasses.dataclass
class Scenario:
    name: str
    description: str
    # Builds keel's request once keel is up; may call keel first through
    # ctx.call (e.g. to create a user and a token) and keep state in ctx.state.
    # None for a scenario with a runner.
    request: Optional[Callable[["Context"], Request]]
    # nginx's answer; None benchmarks keel alone (no ratio).
    reference: Optional[Reference]
    # Status keel must answer; defaults to the reference's status, else 200.
    expect_status: Optional[int] = None
    # Extra keel settings (NAME=VALUE, as --set) the scenario needs; the one
    # keel process of a run gets those of every scenario selected.
    keel_set: List[str] = dataclasses.field(default_factory=list)
    # Another scenario of the same run to compare keel's req/s with (the
    # summary prints this/baseline).
    baseline: Optional[str] = None
    # Not an A/B pair: runner(ctx) runs the scenario once, after the A/B
    # rounds, in table order, and returns a CustomResult (figures checked
    # against targets, and correctness problems).
    runner: Optional[Callable[["Context"], "CustomResult"]] = None


BENCH_PLANS = ROOT / "bench" / "plans-bench.json"


def whoami_request(ctx: "Context") -> Request:
    """A user, an org on the 'bench' plan (rate limits out of reach, see
    bench/plans-bench.json) and a read key, made with the CLI on keel's data
    directory; then GET /v1/whoami with the key."""
    plans = "plans.file=%s" % BENCH_PLANS
    ensure_bench_org(ctx)
    key = ctx.keel_cli("key", "create", "--org", "bench", "--name", "bench", "--scopes", "read",
                       "--set", plans).splitlines()[0]
    return Request("/v1/whoami", headers={"Authorization": "Bearer " + key})


def ensure_bench_org(ctx: "Context") -> None:
    """The bench user and org (once per run)."""
    if ctx.state.get("org"):
        return
    plans = "plans.file=%s" % BENCH_PLANS
    ctx.keel_cli("user", "create", "--email", "bench@keel.local", "--password", "Bench-Passw0rd",
                 "--verified")
    ctx.keel_cli("org", "create", "--name", "Bench", "--slug", "bench", "--owner",
                 "bench@keel.local", "--plan", "bench", "--set", plans)
    ctx.state["org"] = "bench"


def login_body() -> str:
    return json.dumps({"email": "bench@keel.local", "password": "Bench-Passw0rd"})


def org_session_request(ctx: "Context") -> Request:
    """Signs the bench user in over HTTP, then GET /v1/orgs/bench with the
    session cookie: cookie verification, the user re-read from the store
    (session version, suspension), the org and the membership role."""
    ensure_bench_org(ctx)
    status, headers, body = ctx.call("POST", "/v1/auth/login", login_body(),
                                     {"Content-Type": "application/json"})
    if status != 200:
        raise HarnessError("login for the org_session scenario failed: %d %s" % (status, body))
    cookie = headers.get("Set-Cookie", "").split(";", 1)[0]
    return Request("/v1/orgs/bench", headers={"Cookie": cookie})


def login_request(ctx: "Context") -> Request:
    """POST /v1/auth/login: bounded by argon2id (t=2, m=19 MiB) on the worker
    pool; reports logins per second."""
    ensure_bench_org(ctx)
    return Request("/v1/auth/login", method="POST", body=login_body(),
                   headers={"Content-Type": "application/json"})


TARGET_ANALYTICS_RANGE_MS = 100.0
TARGET_ANALYTICS_FUNNEL_MS = 250.0


@dataclasses.dataclass
class AnalyticsRoute:
    """One analytics request, wrk'd for the largest org of the loaded data."""

    name: str
    description: str
    path: str
    method: str = "GET"
    body: str = ""
    target_ms: Optional[float] = None  # p95 target at --query-connections


FUNNEL_5_STEPS = json.dumps({"steps": [{"type": t} for t in (
    "session_start", "llm_call", "tool_call", "tool_result", "session_end")],
    "by": "session", "window": "7d"}, separators=(",", ":"))

ANALYTICS_ROUTES = [
    AnalyticsRoute("analytics_costs", "GET /v1/analytics/costs, 30 days by day, largest org "
                   "(target: p95 <= 100 ms)", "/v1/analytics/costs?bucket=day",
                   target_ms=TARGET_ANALYTICS_RANGE_MS),
    AnalyticsRoute("analytics_tokens", "GET /v1/analytics/tokens, 30 days by day (target: p95 "
                   "<= 100 ms)", "/v1/analytics/tokens?bucket=day",
                   target_ms=TARGET_ANALYTICS_RANGE_MS),
    AnalyticsRoute("analytics_latency", "GET /v1/analytics/latency, 30 days by day and model "
                   "(target: p95 <= 100 ms)", "/v1/analytics/latency?bucket=day",
                   target_ms=TARGET_ANALYTICS_RANGE_MS),
    AnalyticsRoute("analytics_errors", "GET /v1/analytics/errors, 30 days by day and agent "
                   "(target: p95 <= 100 ms)", "/v1/analytics/errors?bucket=day",
                   target_ms=TARGET_ANALYTICS_RANGE_MS),
    AnalyticsRoute("analytics_agents", "GET /v1/agents (first page), largest org",
                   "/v1/agents"),
    AnalyticsRoute("analytics_performance", "GET /v1/agents/{busiest}/performance?window=30d "
                   "(a 30-day range: p95 <= 100 ms)",
                   "/v1/agents/agent-00/performance?window=30d",
                   target_ms=TARGET_ANALYTICS_RANGE_MS),
    AnalyticsRoute("analytics_health", "GET /v1/agents/{busiest}/health?window=30d (reads the "
                   "30-day window and 150 days before it)",
                   "/v1/agents/agent-00/health?window=30d"),
    AnalyticsRoute("analytics_funnel", "POST /v1/analytics/funnel, 5 steps by session over 7 "
                   "days, largest org (target: p95 <= 250 ms)", "/v1/analytics/funnel",
                   method="POST", body=FUNNEL_5_STEPS, target_ms=TARGET_ANALYTICS_FUNNEL_MS),
    AnalyticsRoute("analytics_cohorts", "GET /v1/analytics/cohorts, 12 weekly cohorts, largest "
                   "org", "/v1/analytics/cohorts?weeks=12"),
]


SCENARIOS: List[Scenario] = [
    Scenario(
        name="healthz",
        description="GET /healthz: routing and the HTTP layer, no store access",
        request=lambda ctx: Request("/healthz"),
        reference=Reference("/healthz", 200, HEALTHZ_BODY),
    ),
    Scenario(
        name="whoami",
        description="GET /v1/whoami with an API key: key verification (cache hit), GCRA per "
                    "key and org, RateLimit headers, JSON; compare with healthz (target >= 0.85x)",
        request=whoami_request,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS],
        baseline="healthz",
    ),
    Scenario(
        name="org_session",
        description="GET /v1/orgs/{org} with a session cookie (target >= 0.7x healthz)",
        request=org_session_request,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS, "auth.login_per_ip_per_min=100000"],
        baseline="healthz",
    ),
    Scenario(
        name="login",
        description="POST /v1/auth/login: argon2id-bound; logins per second",
        request=login_request,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS, "auth.login_per_ip_per_min=100000"],
    ),
    # Ingestion (bench/README.md "Ingestion"): a durable keel (WAL,
    # synchronous=FULL, 202 after the group commit), unique ids, 1 000 sessions.
    Scenario(
        name="ingest_single",
        description="POST /v1/events, one ~600-byte event per request; stored rows = "
                    "acknowledged (targets: >= 15 000 req/s, p99 <= 50 ms, RSS <= 100 MB)",
        request=None,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS],
        runner=lambda ctx: run_ingest(ctx, INGEST_SINGLE),
    ),
    Scenario(
        name="ingest_batch",
        description="POST /v1/events/batch, 100 ~600-byte events per request; stored rows = "
                    "acknowledged (targets: >= 40 000 events/s and >= 0.6x raw_sqlite, "
                    "p99 <= 50 ms, RSS <= 100 MB, <= 1 KiB of database per event)",
        request=None,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS],
        runner=lambda ctx: run_ingest(ctx, INGEST_BATCH),
    ),
    # The metering reference (R-MTR-3): the same batch run against a second
    # keel started with metering.enabled=false (no usage records, no quota
    # decision). ingest_batch, with metering and quotas on, must stay within
    # 5 % of it (the "metering" ratio of the summary).
    Scenario(
        name="ingest_batch_nometer",
        description="ingest_batch against a keel with metering.enabled=false (reference of "
                    "the metering overhead: ingest_batch >= 0.95x this)",
        request=None,
        reference=None,
        runner=lambda ctx: run_ingest_nometer(ctx, INGEST_BATCH),
    ),
    Scenario(
        name="raw_sqlite",
        description="the ceiling: build-release/bench_raw_sqlite inserts the same rows with "
                    "keel's schema and pragmas, 1 000 events per transaction (INSERTs alone, "
                    "then with a session read + update per event)",
        request=None,
        reference=None,
        runner=lambda ctx: run_raw_sqlite(ctx),
    ),
    Scenario(
        name="query_sessions",
        description="GET /v1/sessions (default limit) with >= 1M events stored, loaded through "
                    "the batch route (target: p95 <= 20 ms)",
        request=None,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS],
        runner=lambda ctx: run_query(ctx, "/v1/sessions"),
    ),
    Scenario(
        name="query_events",
        description="GET /v1/events (default limit) with >= 1M events stored (target: p95 <= 20 ms)",
        request=None,
        reference=None,
        keel_set=["plans.file=%s" % BENCH_PLANS],
        runner=lambda ctx: run_query(ctx, "/v1/events"),
    ),
    # PostgreSQL (issue 8; bench/README.md "PostgreSQL"): a second keel with
    # --store postgres://keel_app@... on a throwaway, durable cluster the
    # harness starts; the same ingest and query scenarios, and PostgreSQL's
    # own COPY of the same rows for the ratio (pg_ingest_batch >= 0.5x pg_copy).
    Scenario(
        name="pg_ingest_single",
        description="ingest_single against keel on PostgreSQL (fsync, synchronous_commit on); "
                    "stored rows = acknowledged",
        request=None,
        reference=None,
        runner=lambda ctx: run_pg(ctx, lambda sub: run_pg_ingest(sub, INGEST_SINGLE)),
    ),
    Scenario(
        name="pg_ingest_batch",
        description="ingest_batch against keel on PostgreSQL; stored rows = acknowledged "
                    "(target: >= 0.5x pg_copy)",
        request=None,
        reference=None,
        runner=lambda ctx: run_pg(ctx, lambda sub: run_pg_ingest(sub, INGEST_BATCH)),
    ),
    Scenario(
        name="pg_copy",
        description="PostgreSQL's own rate: COPY events FROM STDIN of the same rows into the "
                    "same table (a database migrated alike), 10 000 rows per COPY + commit",
        request=None,
        reference=None,
        runner=lambda ctx: run_pg(ctx, run_pg_copy),
    ),
    Scenario(
        name="pg_query_sessions",
        description="query_sessions against keel on PostgreSQL: GET /v1/sessions with >= "
                    "--query-events stored through the batch route (target: p95 <= 20 ms)",
        request=None,
        reference=None,
        runner=lambda ctx: run_pg(ctx, lambda sub: run_pg_query(sub, "/v1/sessions")),
    ),
    Scenario(
        name="pg_query_events",
        description="query_events against keel on PostgreSQL, same data (target: p95 <= 20 ms)",
        request=None,
        reference=None,
        runner=lambda ctx: run_pg(ctx, lambda sub: run_pg_query(sub, "/v1/events")),
    ),
    # Analytics (bench/README.md "Analytics"): a second keel on a data
    # directory loaded once by bench_analytics_load (--analytics-events over
    # 20 orgs, half in the largest) and kept under bench/out/analytics-data.
] + [
    Scenario(
        name=route.name,
        description=route.description,
        request=None,
        reference=None,
        runner=lambda ctx, route=route: run_analytics(ctx, route),
    )
    for route in ANALYTICS_ROUTES
]


# --- processes -------------------------------------------------------------------


class Context:
    """What a scenario's request builder may use."""

    def __init__(self, keel_port: int, data_dir: Path, keel_bin: str = "", args=None,
                 keel_pid: Optional[int] = None, tmp: Optional[Path] = None,
                 services: Optional[List["Service"]] = None):
        self.keel_port = keel_port
        self.keel_bin = keel_bin
        self.keel_url = "http://127.0.0.1:%d" % keel_port
        self.data_dir = data_dir
        self.args = args  # the harness's options (runners use wrk's settings)
        self.keel_pid = keel_pid
        self.tmp = tmp  # the run's temporary directory
        # Servers a runner starts for the rest of the run (stopped at the end).
        self.services = services if services is not None else []
        self.state: Dict[str, object] = {}
        # Results of the runner scenarios so far, by name (for ratios).
        self.results: Dict[str, "CustomResult"] = {}
        # A keel on PostgreSQL (the pg_* scenarios): its --store URL and the
        # cluster (PgCluster) the harness reads its rows from; None on SQLite.
        self.store_url: Optional[str] = None
        self.pg: Optional["PgCluster"] = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "keel.db"

    def keel_cli(self, *args) -> str:
        """Runs a keel CLI command on keel's data directory; returns stdout."""
        argv = [self.keel_bin, *args, "--data-dir", str(self.data_dir)]
        if self.store_url:
            argv += ["--store", self.store_url]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HarnessError("%s failed (%d): %s" % (" ".join(argv[:3]), proc.returncode,
                                                       proc.stderr.strip()))
        return proc.stdout

    def call(self, method, path, body=None, headers=None):
        """One request to keel; returns (status, headers dict, body bytes)."""
        return http_call(self.keel_port, Request(path, method, headers or {}, body or ""))


def http_call(port: int, req: Request, timeout: float = 5.0):
    # http.client talks to the port directly; urllib would honour http_proxy.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = req.body.encode() if req.body else None
        conn.request(req.method, req.path, body=body, headers=req.headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A server child process in its own session (Ctrl-C in the terminal does
    not reach it; the harness stops it)."""

    def __init__(self, name: str, argv: List[str], log_path: Path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.exit_code: Optional[int] = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, port: int, path: str, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise HarnessError("%s exited during start-up\n%s" % (self.name, self.log_tail()))
            try:
                if http_call(port, Request(path), timeout=1.0)[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise HarnessError("%s: GET %s gave no 200 within %.0fs\n%s"
                           % (self.name, path, timeout_s, self.log_tail()))

    def stop(self, timeout_s: float = 15.0) -> Optional[int]:
        """SIGTERM, then SIGKILL to the whole group after timeout_s."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print("bench: %s did not stop within %.0fs; killing" % (self.name, timeout_s))
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers, e.g. nginx workers
        except (ProcessLookupError, PermissionError):
            pass
        self.exit_code = self.proc.wait()
        self.proc = None
        return self.exit_code

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("  | " + line for line in text[-lines:])


class HarnessError(Exception):
    pass


# --- nginx -----------------------------------------------------------------------


def nginx_string(text: str) -> str:
    """A single-quoted nginx string; "$" goes through the geo variable in the template."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("$", "${keel_bench_dollar}")
    return "'" + escaped + "'"


def render_nginx_conf(template: Path, prefix: Path, port: int, references: List[Reference]) -> str:
    blocks, seen = [], set()
    for ref in references:
        if ref.path in seen:
            continue
        if not re.fullmatch(r"/[A-Za-z0-9_./~%?=&-]*", ref.path):
            raise HarnessError("reference path %r needs escaping the harness lacks" % ref.path)
        seen.add(ref.path)
        location = ref.path.split("?")[0]
        blocks.append(
            "        location = %s {\n"
            "            default_type %s;\n"
            "            return %d %s;\n"
            "        }" % (location, ref.content_type, ref.status, nginx_string(ref.body))
        )
    values = {"@PREFIX@": str(prefix), "@PORT@": str(port), "@LOCATIONS@": "\n".join(blocks)}
    lines = []
    for line in template.read_text().splitlines():
        if not line.lstrip().startswith("#"):  # comments name the placeholders
            for key, value in values.items():
                line = line.replace(key, value)
        lines.append(line)
    return "\n".join(lines) + "\n"


# --- wrk -------------------------------------------------------------------------


def lua_string(text: str) -> str:
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if 32 <= byte < 127 and ch not in '"\\':
            out.append(ch)
        else:
            out.append("\\%03d" % byte)
    return '"' + "".join(out) + '"'


def wrk_script(req: Request, path: Path) -> Optional[Path]:
    """Writes a wrk Lua script for a method other than GET, headers or a body."""
    if req.method == "GET" and not req.headers and not req.body:
        return None
    lines = ["-- generated by bench/bench.py", "wrk.method = %s" % lua_string(req.method)]
    if req.body:
        lines.append("wrk.body = %s" % lua_string(req.body))
    for name, value in req.headers.items():
        lines.append("wrk.headers[%s] = %s" % (lua_string(name), lua_string(value)))
    path.write_text("\n".join(lines) + "\n")
    return path


TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_time_ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError("unparsed wrk time %r" % text)
    return float(m.group(1)) * TIME_UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> dict:
    """Parses `wrk --latency` output into numbers (latencies in ms)."""
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    if not m:
        raise HarnessError("wrk printed no Requests/sec:\n" + output)
    result = {"requests_per_sec": float(m.group(1)), "latency_ms": {}}
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    if m:
        result["latency_ms"]["avg"] = parse_time_ms(m.group(1))
        result["latency_ms"]["max"] = parse_time_ms(m.group(3))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M):
        result["latency_ms"]["p" + pct] = parse_time_ms(value)
    m = re.search(r"^\s+(\d+) requests in ([0-9.]+\w+)", output, re.M)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = dict(
        zip(("connect", "read", "write", "timeout"), map(int, m.groups()) if m else (0, 0, 0, 0))
    )
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx_3xx"] = int(m.group(1)) if m else 0
    return result


def run_wrk(args, port: int, req: Request, script: Optional[Path], duration_s: float) -> dict:
    argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections,
            "-d%ds" % max(1, round(duration_s)), "--latency", "--timeout", "5s"]
    if script:
        argv += ["-s", str(script)]
    argv.append("http://127.0.0.1:%d%s" % (port, req.path))
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError("wrk failed (%d): %s\n%s" % (proc.returncode, " ".join(argv),
                                                       proc.stdout + proc.stderr))
    result = parse_wrk(proc.stdout)
    result["command"] = " ".join(argv)
    report = parse_lua_report(proc.stdout)
    if report:
        result["lua"] = report
    return result


def parse_lua_report(output: str) -> dict:
    """The lines a runner's Lua script prints from done(): "keel-bench NAME
    VALUE" (a number, or text); repeated names (pending request ids) become
    lists."""
    report: Dict[str, object] = {}
    for name, value in re.findall(r"^keel-bench (\S+) ?(.*)$", output, re.M):
        try:
            v: object = float(value) if "." in value else int(value)
        except ValueError:
            v = value
        if name in ("pending", "error"):
            report.setdefault(name, []).append(v)
        else:
            report[name] = v
    return report


# --- ingestion, the raw SQLite ceiling, queries ------------------------------------
#
# These scenarios are not A/B pairs: each runs once (Scenario.runner), after the
# A/B rounds, in table order. The ingest scenarios check that what keel stored is
# what it acknowledged; every runner returns its figures with their targets.

INGEST_ORG = "bench-ingest"
INGEST_SESSIONS = 1000
TARGET_RSS_MIB = 100.0
TARGET_P99_MS = 50.0
TARGET_QUERY_P95_MS = 20.0
TARGET_BYTES_PER_EVENT = 1024.0
TARGET_RAW_RATIO = 0.6

# Quoted from the issue for scale; not measured here.
QUOTED_REFERENCE = [
    "AgentLens 0.11 (TypeScript, Node + SQLite), as quoted in the issue, not measured here:",
    "  batches of 100: ~3 000 events/s; single events: 770 req/s; p99 1.4 s;",
    "  event list at 1M events: 1.7 s per request",
]


@dataclasses.dataclass
class Check:
    """One summary line: a figure and, unless only for scale, its target."""

    label: str
    value: Optional[float]
    unit: str
    target: Optional[float] = None
    at_least: bool = True  # the figure must be >= target (else <=)
    note: str = ""

    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value is None:
            return "NOT MEASURED"
        ok = self.value >= self.target if self.at_least else self.value <= self.target
        return "ok" if ok else "MISSED"

    def line(self) -> str:
        value = "-" if self.value is None else fmt_num(self.value)
        target = ""
        if self.target is not None:
            target = "target %s %s" % (">=" if self.at_least else "<=", fmt_num(self.target))
        return "%-34s %14s %-9s %-22s %-6s %s" % (self.label, value, self.unit, target,
                                                  self.verdict(), self.note)

    def to_json(self) -> dict:
        return dict(dataclasses.asdict(self), verdict=self.verdict() or None)


@dataclasses.dataclass
class CustomResult:
    figures: Dict[str, object] = dataclasses.field(default_factory=dict)
    checks: List[Check] = dataclasses.field(default_factory=list)
    problems: List[str] = dataclasses.field(default_factory=list)  # correctness: exit 1
    notes: List[str] = dataclasses.field(default_factory=list)
    wrk: List[dict] = dataclasses.field(default_factory=list)
    skipped: Optional[str] = None  # why the scenario could not run

    def to_json(self) -> dict:
        return {"figures": self.figures, "checks": [c.to_json() for c in self.checks],
                "problems": self.problems, "notes": self.notes, "skipped": self.skipped}


def fmt_num(v: float) -> str:
    if abs(v) >= 1000:
        return "{:,.0f}".format(v).replace(",", " ")
    if abs(v) >= 100:
        return "%.0f" % v
    return "%.3g" % v if abs(v) < 10 else "%.1f" % v


@dataclasses.dataclass
class IngestKind:
    name: str
    path: str
    per_request: int  # events per request
    tag: str  # first letter of the run tag (ids start with it)


INGEST_SINGLE = IngestKind("ingest_single", "/v1/events", 1, "s")
INGEST_BATCH = IngestKind("ingest_batch", "/v1/events/batch", 100, "b")
EVENT_BYTES = 600


def bench_event(event_id: str, session: str) -> dict:
    """The ~600-byte llm_call the ingest scenarios send (priced by keel's
    table: anthropic claude-sonnet-4-5), with a summary padding it to
    EVENT_BYTES for an id of 20 characters. No timestamp: keel stamps the
    received time, so ts moves on as in production."""
    e = {"id": event_id, "session_id": session, "agent_id": "support-bot", "type": "llm_call",
         "severity": "info",
         "data": {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 1200,
                  "output_tokens": 350, "reasoning_tokens": 100, "cache_read_tokens": 1000,
                  "cache_write_tokens": 0, "latency_ms": 812.25, "status": "ok",
                  "finish_reason": "end_turn", "summary": ""},
         "metadata": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
                      "sdk": "keel-python/0.4.2", "host": "worker-7.eu-west-1"},
         "tags": ["prod", "eu-west", "support"]}
    probe = dict(e, id="x" * 20, session_id="sess-0000")
    pad = EVENT_BYTES - len(json.dumps(probe, separators=(",", ":")))
    e["data"]["summary"] = ("Customer asks about a refund for order 4411; the agent looks the "
                            "order up, checks the policy and drafts an answer. " * 4)[:max(0, pad)]
    return e


def canonical_json(v) -> str:
    """keel's canonical JSON for the simple values of bench_event (ASCII
    strings, integers, a real that prints the same)."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ingest_script(kind: IngestKind, tag: str, key: str, path: Path) -> Path:
    """A wrk Lua script posting unique events and counting what keel
    acknowledges. Ids are <tag>-<thread>-<request>-<n>, so no two requests
    share one (dedup hides nothing), and X-Request-Id is <tag>-<thread>-<request>,
    which keel echoes in the answer: a request still unanswered when wrk
    stops stays in `pending`, and the harness counts its rows apart (keel
    commits it anyway). Event k of thread t goes to session (k + 500 t) mod
    1 000. done() prints per-run totals as "keel-bench NAME VALUE" lines."""
    marker_id, marker_session = "@@ID@@", "@@SESSION@@"
    text = json.dumps(bench_event(marker_id, marker_session), separators=(",", ":"))
    head, rest = text.split(marker_id)
    mid, tail = rest.split(marker_session)
    lua = """-- generated by bench/bench.py for %(name)s
local path = %(path)s
local per_request = %(per_request)d
local batch = %(batch)s
local sessions = %(sessions)d
local tag = %(tag)s
local auth = %(auth)s
local ev_head, ev_mid, ev_tail = %(head)s, %(mid)s, %(tail)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  sent, answered, accepted, duplicates, rejected, non202 = 0, 0, 0, 0, 0, 0
  events = 0
  pending = {}
  errors = {}
end

function request()
  sent = sent + 1
  local rid = tag .. "-" .. tid .. "-" .. sent
  local parts = {}
  for i = 1, per_request do
    local s = (events + 500 * tid) %% sessions
    events = events + 1
    parts[i] = ev_head .. rid .. "-" .. i .. ev_mid .. string.format("sess-%%04d", s) .. ev_tail
  end
  local body = batch and ('{"events":[' .. table.concat(parts, ",") .. "]}") or parts[1]
  pending[rid] = true
  return wrk.format("POST", path, {["Authorization"] = auth,
    ["Content-Type"] = "application/json", ["X-Request-Id"] = rid}, body)
end

function response(status, headers, body)
  answered = answered + 1
  local rid = string.match(body, '"request_id":"([^"]+)"')
  if rid then pending[rid] = nil end
  if status == 202 then
    accepted = accepted + (tonumber(string.match(body, '"accepted":(%%d+)')) or 0)
    duplicates = duplicates + (tonumber(string.match(body, '"duplicates":(%%d+)')) or 0)
    rejected = rejected + (tonumber(string.match(body, '"rejected":(%%d+)')) or 0)
  else
    non202 = non202 + 1
    if #errors < 3 then table.insert(errors, status .. " " .. string.sub(body, 1, 200)) end
  end
end

function done(summary, latency, requests)
  local totals = {sent = 0, answered = 0, accepted = 0, duplicates = 0, rejected = 0,
                  non202 = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
    for rid, _ in pairs(thread:get("pending")) do io.write("keel-bench pending ", rid, "\\n") end
    for _, e in ipairs(thread:get("errors")) do io.write("keel-bench error ", e, "\\n") end
  end
  for name, v in pairs(totals) do io.write(string.format("keel-bench %%s %%d\\n", name, v)) end
  io.write(string.format("keel-bench duration_us %%d\\n", summary.duration))
  for _, p in ipairs({50, 95, 99}) do
    io.write(string.format("keel-bench p%%d_us %%d\\n", p, latency:percentile(p)))
  end
end
""" % {"name": kind.name, "path": lua_string(kind.path), "per_request": kind.per_request,
       "batch": "true" if kind.per_request > 1 else "false", "sessions": INGEST_SESSIONS,
       "tag": lua_string(tag), "auth": lua_string("Bearer " + key), "head": lua_string(head),
       "mid": lua_string(mid), "tail": lua_string(tail)}
    path.write_text(lua)
    return path


def query_script(path_: str, key: str, path: Path, method: str = "GET", body: str = "") -> Path:
    """path with the key (and a JSON body); done() prints the p95 (wrk prints
    50/75/90/99)."""
    extra = ""
    if body:
        extra = 'wrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' % (
            lua_string(body))
    path.write_text("""-- generated by bench/bench.py
wrk.method = %s
wrk.headers["Authorization"] = %s
%sfunction done(summary, latency, requests)
  for _, p in ipairs({50, 95, 99}) do
    io.write(string.format("keel-bench p%%d_us %%d\\n", p, latency:percentile(p)))
  end
end
""" % (lua_string(method), lua_string("Bearer " + key), extra))
    return path


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 100 ms while a run lasts; stop()
    returns the largest sample and VmHWM (the peak since the process
    started) in MiB."""

    def __init__(self, pid: Optional[int]):
        super().__init__(daemon=True)
        self.pid = pid
        self.max_kib = 0
        self.samples = 0
        self.stopping = threading.Event()

    def status(self) -> Dict[str, int]:
        out = {}
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    m = re.match(r"(VmRSS|VmHWM):\s+(\d+) kB", line)
                    if m:
                        out[m.group(1)] = int(m.group(2))
        except (OSError, TypeError):
            pass
        return out

    def run(self):
        while not self.stopping.wait(0.1):
            rss = self.status().get("VmRSS")
            if rss:
                self.max_kib = max(self.max_kib, rss)
                self.samples += 1

    def stop(self) -> Dict[str, Optional[float]]:
        self.stopping.set()
        self.join()
        hwm = self.status().get("VmHWM")
        return {"rss_max_mib": self.max_kib / 1024 if self.samples else None,
                "hwm_mib": hwm / 1024 if hwm else None, "samples": self.samples}


def thread_cpu(pid: Optional[int]) -> Dict[str, float]:
    """CPU seconds (user + system) used so far by each thread name of pid."""
    out: Dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except (OSError, TypeError):
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def process_tree_cpu(root: Optional[int]) -> Dict[int, float]:
    """CPU seconds (user + system) of root and its direct children, by pid
    (the postmaster and its backends)."""
    out: Dict[int, float] = {}
    if not root:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid, ppid = int(entry), int(fields[1])
        if pid == root or ppid == root:
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


class CpuMeter:
    """Cores used during a run by keel's threads (by name) and by wrk (the
    harness's children), so a reader sees who had the machine's CPUs."""

    def __init__(self, pid: Optional[int], postmaster: Optional[int] = None):
        self.pid = pid
        self.postmaster = postmaster  # PostgreSQL's processes count too (pg_* scenarios)
        self.t0 = time.monotonic()
        self.threads0 = thread_cpu(pid)
        self.pg0 = process_tree_cpu(postmaster)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children0 = r.ru_utime + r.ru_stime

    def cores(self) -> Dict[str, float]:
        elapsed = time.monotonic() - self.t0
        now = thread_cpu(self.pid)
        out = {name: round((now.get(name, 0.0) - self.threads0.get(name, 0.0)) / elapsed, 2)
               for name in sorted(now)}
        out = {k: v for k, v in out.items() if v >= 0.01}
        if self.postmaster:
            now_pg = process_tree_cpu(self.postmaster)
            # Backends that exited during the run are not counted (keel's pool stays).
            used = sum(v - self.pg0.get(pid, 0.0) for pid, v in now_pg.items())
            out["postgres"] = round(used / elapsed, 2)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["wrk (client)"] = round((r.ru_utime + r.ru_stime - self.children0) / elapsed, 2)
        return out


def fmt_cores(cores: Dict[str, float]) -> str:
    return ", ".join("%s %.2f" % (k, v) for k, v in cores.items())


def metrics(ctx: Context) -> str:
    try:
        status, _, body = http_call(ctx.keel_port, Request("/metrics"))
    except OSError:
        return ""
    return body.decode(errors="replace") if status == 200 else ""


def metric(text: str, name: str) -> Optional[float]:
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def wait_ingest_idle(ctx: Context, timeout_s: float = 120.0):
    """Waits until no request is in flight (but the scrape) and the writer's
    ingestion queue is empty: requests wrk left unanswered are still being
    committed when it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = metrics(ctx)
        in_flight = metric(text, "keel_http_requests_in_flight")
        queued = metric(text, "keel_ingest_queue_events")
        if (in_flight or 0) <= 1 and not queued:
            return
        time.sleep(0.1)
    raise HarnessError("keel still busy %.0fs after the run" % timeout_s)


def db_connect(ctx: Context) -> sqlite3.Connection:
    """keel's database, beside the running server (WAL: readers do not block it)."""
    return sqlite3.connect(str(ctx.db_path), timeout=30)


def org_param(con: sqlite3.Connection, org_id: str):
    """The org id as the events table stores it: text, or 16 raw bytes when the
    column is a BLOB."""
    types = {r[1]: (r[2] or "").upper() for r in con.execute("PRAGMA table_info(events)")}
    return uuid.UUID(org_id).bytes if types.get("org_id") == "BLOB" else org_id


def count_prefix(con: sqlite3.Connection, org, prefix: str) -> int:
    """Events of the org whose id starts with prefix (a primary-key range;
    prefix ends with "-", and "." is the character after it)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return con.execute("SELECT count(*) FROM events WHERE org_id = ? AND id >= ? AND id < ?",
                       (org, prefix, upper)).fetchone()[0]


def ensure_ingest_org(ctx: Context) -> dict:
    """The org the ingest and query scenarios share (on the bench plan: no rate
    limit in reach), and a key with scopes ingest and read."""
    org = ctx.state.get("ingest_org")
    if org:
        return org
    ensure_bench_org(ctx)
    plans = "plans.file=%s" % BENCH_PLANS
    ctx.keel_cli("org", "create", "--name", "Bench ingest", "--slug", INGEST_ORG, "--owner",
                 "bench@keel.local", "--plan", "bench", "--set", plans)
    out = ctx.keel_cli("key", "create", "--org", INGEST_ORG, "--name", "bench-ingest", "--scopes",
                       "ingest,read", "--set", plans).splitlines()
    key = out[0].strip()
    key_id = next((line.split(":", 1)[1].strip() for line in out if line.startswith("id:")), "")
    if ctx.pg:
        org_id = pg_org_id(ctx, INGEST_ORG)
    else:
        con = db_connect(ctx)
        try:
            org_id = con.execute("SELECT id FROM orgs WHERE slug = ?",
                                 (INGEST_ORG,)).fetchone()[0]
        finally:
            con.close()
    org = {"slug": INGEST_ORG, "id": org_id, "key": key, "key_id": key_id}
    ctx.state["ingest_org"] = org
    return org


_TAG_COUNTER = itertools.count(1)


def run_tag(letter: str) -> str:
    """An id prefix no other wrk run of this data directory uses."""
    return "%s%x%d" % (letter, int(time.time()) & 0xFFFFF, next(_TAG_COUNTER))


def latency_checks(result: dict, prefix: str) -> List[Check]:
    lat = result["latency_ms"]
    lua = result.get("lua", {})
    p95 = lua.get("p95_us")
    return [
        Check(prefix + " p50", lat.get("p50"), "ms"),
        Check(prefix + " p95", p95 / 1000 if p95 is not None else None, "ms"),
        Check(prefix + " p99", lat.get("p99"), "ms", TARGET_P99_MS, at_least=False),
    ]


def run_ingest(ctx: Context, kind: IngestKind) -> CustomResult:
    args = ctx.args
    org = ensure_ingest_org(ctx)
    tag = run_tag(kind.tag)
    script = ingest_script(kind, tag, org["key"], ctx.tmp / ("%s.lua" % kind.name))
    # One request first: keel must answer 202 with everything accepted.
    status, _, body = http_call(ctx.keel_port, Request(
        kind.path, "POST", {"Authorization": "Bearer " + org["key"],
                            "Content-Type": "application/json"},
        json.dumps({"events": [bench_event("%s-probe-%d" % (tag, i), "sess-0000")
                               for i in range(kind.per_request)]})
        if kind.per_request > 1 else json.dumps(bench_event(tag + "-probe-1", "sess-0000"))))
    if status != 202 or b'"accepted":%d' % kind.per_request not in body:
        raise HarnessError("%s: keel answered %d %s" % (kind.name, status, body[:300]))

    print("\n%s: wrk -t%d -c%d -d%ds, %d event(s) per request, ids %s-*"
          % (kind.name, args.threads, args.connections, args.ingest_duration, kind.per_request, tag))
    pg_stats0 = pg_activity(ctx) if ctx.pg else None
    sampler = RssSampler(ctx.keel_pid)
    sampler.start()
    cpu = CpuMeter(ctx.keel_pid, ctx.pg.postmaster_pid() if ctx.pg else None)
    try:
        result = run_wrk(args, ctx.keel_port, Request(kind.path), script, args.ingest_duration)
    finally:
        mem = sampler.stop()
    cores = cpu.cores()
    wait_ingest_idle(ctx)
    lua = result.get("lua", {})
    res = CustomResult(wrk=[result])
    res.problems += ["%s: %s" % (kind.name, p) for p in run_problems(result)]
    for e in lua.get("error", []):
        res.problems.append("%s: answer %s" % (kind.name, e))

    # What keel stored against what it acknowledged.
    pending = [str(p) for p in lua.get("pending", [])]
    counts = count_prefixes(ctx, org["id"], [tag + "-", tag + "-probe-"]
                            + [rid + "-" for rid in pending])
    stored = counts[0] - counts[1]
    stored_pending = sum(counts[2:])
    acked = int(lua.get("accepted", 0))
    seconds = lua.get("duration_us", 0) / 1e6 or args.ingest_duration
    line = ("rows stored by the run %d = acknowledged (202, accepted) %d + %d rows of the %d "
            "request(s) wrk left unanswered when it stopped" % (stored, acked, stored_pending,
                                                                 len(pending)))
    res.notes.append(line)
    res.notes.append("CPU cores used during the run: " + fmt_cores(cores))
    if stored - stored_pending != acked:
        res.problems.append("%s: stored rows do not match the acknowledged events: %s"
                            % (kind.name, line))
    if lua.get("duplicates") or lua.get("rejected"):
        res.problems.append("%s: %s duplicates and %s rejected events (expected none)"
                            % (kind.name, lua.get("duplicates"), lua.get("rejected")))
    if stored_pending > len(pending) * kind.per_request:
        res.problems.append("%s: more rows than requests sent" % kind.name)

    events_per_s = acked / seconds
    res.figures = {"requests_per_sec": result["requests_per_sec"], "events_per_sec": events_per_s,
                   "acknowledged": acked, "stored": stored, "unanswered_requests": len(pending),
                   "stored_unanswered": stored_pending, "latency_ms": result["latency_ms"],
                   "p95_ms": lua.get("p95_us", 0) / 1000, "memory": mem, "cpu_cores": cores}
    if kind.per_request == 1:
        res.checks.append(Check("single events", result["requests_per_sec"], "req/s", 15000))
    else:
        res.checks.append(Check("batches of 100", events_per_s, "events/s", 40000,
                                note="%.0f req/s" % result["requests_per_sec"]))
    lat = latency_checks(result, "latency")
    if events_per_s > 0:
        # A closed loop: wrk keeps one request per connection in flight, so the
        # mean latency is (connections x events per request) / events/s.
        in_flight = args.connections * kind.per_request
        lat[-1].note = "Little: %d events in flight / throughput = %.0f ms mean%s" % (
            in_flight, 1000.0 * in_flight / events_per_s,
            "; <= %.0f ms needs %s events/s" % (TARGET_P99_MS, fmt_num(
                in_flight / (TARGET_P99_MS / 1000))) if kind.per_request > 1 else "")
    res.checks += lat
    res.checks.append(Check("server RSS under load (max)", mem["rss_max_mib"], "MiB",
                            TARGET_RSS_MIB, at_least=False,
                            note="VmHWM (peak since keel started) %s MiB"
                            % (fmt_num(mem["hwm_mib"]) if mem["hwm_mib"] else "-")))
    if ctx.pg:
        res.figures["postgres"] = ctx.pg.describe()
        work = pg_activity_delta(pg_stats0, pg_activity(ctx), stored + counts[1])
        res.figures["postgres"]["activity"] = work
        res.notes.append("PostgreSQL during the run, per event stored: " + work["note"])
    if kind.per_request > 1:
        size = database_size(ctx)
        res.figures["database"] = size
        # The 1 KiB target is the SQLite file's; on PostgreSQL the size is for scale.
        res.checks.append(Check("database per event", size.get("bytes_per_event"), "bytes",
                                None if ctx.pg else TARGET_BYTES_PER_EVENT, at_least=False,
                                note=size.get("note", "")))
    return res


def count_prefixes(ctx: Context, org_id: str, prefixes: List[str]) -> List[int]:
    """For each prefix, the org's events whose id starts with it."""
    if ctx.pg:
        return pg_count_prefixes(ctx, org_id, prefixes)
    con = db_connect(ctx)
    try:
        oparam = org_param(con, org_id)
        return [count_prefix(con, oparam, prefix) for prefix in prefixes]
    finally:
        con.close()


def count_org_events(ctx: Context, org_id: str) -> int:
    if ctx.pg:
        return pg_count_org(ctx, org_id)
    con = db_connect(ctx)
    try:
        return con.execute("SELECT count(*) FROM events WHERE org_id = ?",
                           (org_param(con, org_id),)).fetchone()[0]
    finally:
        con.close()


def database_size(ctx: Context) -> dict:
    """keel.db + WAL after a checkpoint (TRUNCATE), over every event stored;
    and the events table and its indexes alone (dbstat), per event."""
    if ctx.pg:
        return pg_database_size(ctx)
    con = db_connect(ctx)
    try:
        busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
        db = os.path.getsize(ctx.db_path)
        wal_path = Path(str(ctx.db_path) + "-wal")
        wal = wal_path.stat().st_size if wal_path.exists() else 0
        out = {"rows": rows, "db_bytes": db, "wal_bytes": wal, "checkpoint_busy": bool(busy),
               "bytes_per_event": (db + wal) / rows if rows else None}
        try:
            parts = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat WHERE name = 'events' OR"
                                     " name IN (SELECT name FROM sqlite_schema WHERE"
                                     " tbl_name = 'events' AND type = 'index') GROUP BY name"))
            out["events_btrees"] = dict(parts)
            table = parts.pop("events", 0)
            out["note"] = "%d rows; events table %.0f B + indexes %.0f B per event" % (
                rows, table / rows, sum(parts.values()) / rows) if rows else ""
        except sqlite3.Error:
            out["note"] = "%d rows" % rows
        return out
    finally:
        con.close()


def raw_binary(ctx: Context) -> Path:
    return Path(ctx.keel_bin).parent / "bench_raw_sqlite"


def run_raw_sqlite(ctx: Context) -> CustomResult:
    binary = raw_binary(ctx)
    if not os.access(binary, os.X_OK):
        raise HarnessError("%s not found; `make bench` builds it" % binary)
    org = ctx.state.get("ingest_org") or {}
    e = bench_event("x", "sess-0000")
    res = CustomResult()
    for mode in ("inserts", "sessions"):
        db = ctx.tmp / ("raw-%s.db" % mode)
        argv = [str(binary), "--migrations", str(ROOT / "src" / "store" / "migrations" / "sqlite"),
                "--db", str(db), "--mode", mode, "--events", str(ctx.args.raw_events),
                "--tx", "1000", "--sessions", str(INGEST_SESSIONS),
                "--data", canonical_json(e["data"]), "--metadata", canonical_json(e["metadata"]),
                "--tags", canonical_json(e["tags"])]
        for flag, value in (("--org-id", org.get("id")), ("--key-id", org.get("key_id"))):
            if value:
                argv += [flag, value]
        print("\nraw_sqlite: %s mode, %d events in transactions of 1 000" % (mode,
                                                                            ctx.args.raw_events))
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HarnessError("bench_raw_sqlite failed (%d): %s" % (proc.returncode,
                                                                    proc.stderr.strip()))
        out = json.loads(proc.stdout)
        res.figures[mode] = out
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    res.checks.append(Check("ceiling: event INSERTs alone", res.figures["inserts"]["events_per_sec"],
                            "events/s", note="raw SQLite, same schema/pragmas/rows"))
    res.checks.append(Check("ceiling: + session read/update", res.figures["sessions"]
                            ["events_per_sec"], "events/s", note="per event, as keel's append"))
    res.checks.append(Check("raw database per event", res.figures["inserts"]["bytes_per_event"],
                            "bytes", note="events table + indexes after a checkpoint"))
    return res


def ensure_events(ctx: Context, org: dict, target: int) -> dict:
    """Loads the ingest org up to target events through the batch route (wrk
    with the ingest_batch script, stopped with SIGINT once keel has accepted
    enough): the rows are real, chain and session rows included."""
    have = count_org_events(ctx, org["id"])
    loaded, t0 = 0, time.monotonic()
    if have < target:
        print("\n%squery: loading %d events through the batch route (%d stored)" % (
            "pg_" if ctx.pg else "", target - have, have))
    while have < target:
        tag = run_tag("l")
        script = ingest_script(INGEST_BATCH, tag, org["key"], ctx.tmp / "load.lua")
        start = metric(metrics(ctx), 'keel_ingest_events_total{outcome="accepted"}') or 0
        argv = ["wrk", "-t%d" % ctx.args.threads, "-c%d" % ctx.args.connections, "-d600s",
                "--timeout", "10s", "-s", str(script),
                "http://127.0.0.1:%d%s" % (ctx.keel_port, INGEST_BATCH.path)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                now = metric(metrics(ctx), 'keel_ingest_events_total{outcome="accepted"}') or 0
                if now - start >= target - have:
                    proc.send_signal(signal.SIGINT)
                    break
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_ingest_idle(ctx)
        now_have = count_org_events(ctx, org["id"])
        if now_have <= have:
            raise HarnessError("loading events for the query scenarios stored nothing")
        loaded += now_have - have
        have = now_have
    return {"events": have, "loaded": loaded, "load_seconds": time.monotonic() - t0}


def run_query(ctx: Context, path: str) -> CustomResult:
    org = ensure_ingest_org(ctx)
    headers = {"Authorization": "Bearer " + org["key"]}
    status, _, body = http_call(ctx.keel_port, Request(path, headers=headers))
    res = CustomResult()
    if status == 404:
        res.skipped = "GET %s is not in this build (404): not measured" % path
        res.checks.append(Check("GET %s p95" % path, None, "ms", TARGET_QUERY_P95_MS,
                                at_least=False, note="route missing (404)"))
        return res
    if status != 200:
        raise HarnessError("GET %s answered %d: %s" % (path, status, body[:300]))
    load = ctx.state.get("query_load")
    if not load:
        size = ctx.args.query_events
        if ctx.pg and ctx.args.pg_query_events:
            size = ctx.args.pg_query_events
        load = ensure_events(ctx, org, size)
        ctx.state["query_load"] = load
        if load["loaded"]:
            print("query: %d events stored (%d loaded in %.0fs)" % (load["events"], load["loaded"],
                                                                   load["load_seconds"]))
        # The size target once more, at the query scenarios' volume.
        size = database_size(ctx)
        res.figures["database"] = size
        res.checks.append(Check("database per event", size.get("bytes_per_event"), "bytes",
                                None if ctx.pg else TARGET_BYTES_PER_EVENT, at_least=False,
                                note=size.get("note", "")))
    status, _, body = http_call(ctx.keel_port, Request(path, headers=headers))
    items = answer_items(body)
    script = query_script(path, org["key"], ctx.tmp / ("query%s.lua" % path.replace("/", "-")))
    res.figures.update({"events": load["events"], "body_bytes": len(body), "items": items,
                        "load": load, "runs": {}})
    # The target at a few clients (requests back to back: the latency of one
    # request), then the throughput at the harness's connections, where
    # latency is mostly queueing (connections / throughput).
    for label, connections in (("target", ctx.args.query_connections),
                               ("saturated", ctx.args.connections)):
        run_args = argparse.Namespace(**dict(vars(ctx.args), connections=connections,
                                             threads=min(ctx.args.threads, connections)))
        print("\nquery: GET %s, %d events in the org, wrk -t%d -c%d -d%ds (%s)"
              % (path, load["events"], run_args.threads, connections, ctx.args.duration, label))
        sampler = RssSampler(ctx.keel_pid)
        sampler.start()
        try:
            result = run_wrk(run_args, ctx.keel_port, Request(path), script, ctx.args.duration)
        finally:
            mem = sampler.stop()
        wait_keel_idle(ctx.keel_port)
        result["connections"] = connections
        res.wrk.append(result)
        res.problems += ["GET %s: %s" % (path, p) for p in run_problems(result)]
        p95 = result.get("lua", {}).get("p95_us")
        p95_ms = p95 / 1000 if p95 is not None else None
        res.figures["runs"][label] = {"connections": connections, "memory": mem,
                                      "requests_per_sec": result["requests_per_sec"],
                                      "latency_ms": result["latency_ms"], "p95_ms": p95_ms}
        note = "-c%d, %.0f req/s, %d events, %d items, %d-byte answer" % (
            connections, result["requests_per_sec"], load["events"], items, len(body))
        if label == "target":
            res.checks.append(Check("GET %s p95" % path, p95_ms, "ms", TARGET_QUERY_P95_MS,
                                    at_least=False, note=note))
        else:
            res.checks.append(Check("GET %s p95, saturated" % path, p95_ms, "ms", note=note))
    return res


def answer_items(body: bytes) -> int:
    """The length of the first list in a JSON answer (the page's items)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return -1
    if isinstance(doc, list):
        return len(doc)
    if isinstance(doc, dict):
        for v in doc.values():
            if isinstance(v, list):
                return len(v)
    return -1


ANALYTICS_DATA = ROOT / "bench" / "out" / "analytics-data"
ANALYTICS_LARGEST = "load-00"  # the loader's largest org


def analytics_loader(ctx: Context) -> Path:
    return Path(ctx.keel_bin).parent / "bench_analytics_load"


def latest_migration() -> str:
    names = sorted(p.name for p in (ROOT / "src" / "store" / "migrations" / "sqlite").glob("*.sql"))
    return names[-1].split("_", 1)[0] if names else "0"


def ensure_analytics(ctx: Context) -> dict:
    """The loaded data directory (made once per size and schema, then reused
    by later runs) and a keel serving it; once per run."""
    if ctx.state.get("analytics"):
        return ctx.state["analytics"]
    a = ctx.args
    data_dir = ANALYTICS_DATA / ("e%d-o%d-s%g-m%s" % (a.analytics_events, a.analytics_orgs,
                                                     a.analytics_largest_share,
                                                     latest_migration()))
    marker = data_dir / "load.json"
    if not marker.exists():
        binary = analytics_loader(ctx)
        if not os.access(binary, os.X_OK):
            raise HarnessError("%s not found; `make bench` builds it" % binary)
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        argv = [str(binary), "--data-dir", str(data_dir), "--events", str(a.analytics_events),
                "--orgs", str(a.analytics_orgs), "--largest-share", str(a.analytics_largest_share)]
        print("\nanalytics: loading %d events into %s (once; later runs reuse it)"
              % (a.analytics_events, data_dir))
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)  # progress on stderr
        if proc.returncode != 0:
            raise HarnessError("bench_analytics_load failed (%d)" % proc.returncode)
        load = json.loads(proc.stdout)
        load["loadavg_end"] = os.getloadavg()
        marker.write_text(json.dumps(load, indent=1) + "\n")
    load = json.loads(marker.read_text())
    plans = "plans.file=%s" % BENCH_PLANS
    key_file = data_dir / "bench-key.txt"
    if not key_file.exists():
        out = subprocess.run([ctx.keel_bin, "key", "create", "--org", ANALYTICS_LARGEST, "--name",
                              "analytics-bench", "--scopes", "read", "--set", plans,
                              "--data-dir", str(data_dir)], capture_output=True, text=True)
        if out.returncode != 0:
            raise HarnessError("keel key create failed: %s" % out.stderr.strip())
        key_file.write_text(out.stdout.splitlines()[0] + "\n")
    port = free_port()
    argv = [ctx.keel_bin, "serve", "--listen", "127.0.0.1:%d" % port, "--data-dir",
            str(data_dir), "--set", "log.access=false", "--set", plans]
    for setting in a.set:
        argv += ["--set", setting]
    svc = Service("keel-analytics", argv, ctx.tmp / "keel-analytics.log",
                  env=dict(os.environ, KEEL_LOG_LEVEL="warn"))
    ctx.services.append(svc)
    svc.start()
    svc.wait_ready(port, "/healthz", 120)
    largest = load["orgs"][0]
    state = {"port": port, "pid": svc.proc.pid, "key": key_file.read_text().strip(),
             "load": load, "service": svc, "data_dir": data_dir, "largest": largest}
    print("analytics: keel on :%d serving %s: %d events, %d orgs, the largest %d events; loaded "
          "at %.0f events/s, %.0f bytes per event" % (
              port, data_dir.name, load["accepted"], len(load["orgs"]), largest["events"],
              load["events_per_sec"], load["bytes_per_event"]))
    ctx.state["analytics"] = state
    return state


def run_analytics(ctx: Context, route: AnalyticsRoute) -> CustomResult:
    st = ensure_analytics(ctx)
    res = CustomResult()
    load = st["load"]
    if not ctx.state.get("analytics_size_reported"):
        ctx.state["analytics_size_reported"] = True
        res.checks.append(Check("database per event", load["bytes_per_event"], "bytes",
                                note="%d events, %d orgs, keel.db %.2f GB after a checkpoint" % (
                                    load["accepted"], len(load["orgs"]), load["db_bytes"] / 1e9)))
        res.checks.append(Check("loader rate", load["events_per_sec"], "events/s",
                                note="bench_analytics_load, %.0f s" % load["seconds"]))
        if "compact_seconds" in load:
            res.checks.append(Check("funnel marks compaction", load["compact_seconds"], "s",
                                    note="every hour that ended, after the load"))
    headers = {"Authorization": "Bearer " + st["key"]}
    if route.body:
        headers["Content-Type"] = "application/json"
    req = Request(route.path, route.method, headers, route.body)
    t0 = time.monotonic()
    status, _, body = http_call(st["port"], req, timeout=60)
    first_ms = (time.monotonic() - t0) * 1000
    if status != 200:
        raise HarnessError("%s %s answered %d: %s" % (route.method, route.path, status, body[:300]))
    items = answer_items(body)
    script = query_script(route.path, st["key"], ctx.tmp / ("%s.lua" % route.name), route.method,
                          route.body)
    res.figures.update({"events_largest_org": st["largest"]["events"], "body_bytes": len(body),
                        "items": items, "first_request_ms": first_ms, "load": load, "runs": {}})
    # At --query-connections (the target), then at one connection: on this
    # machine's 2 cores four concurrent requests queue behind each other, so
    # one connection shows the latency of a request alone.
    for label, connections in (("target", ctx.args.query_connections), ("alone", 1)):
        run_args = argparse.Namespace(**dict(vars(ctx.args), connections=connections,
                                             threads=min(ctx.args.threads, connections)))
        print("\nanalytics: %s %s, largest org (%d events), wrk -t%d -c%d -d%ds (%s)"
              % (route.method, route.path, st["largest"]["events"], run_args.threads, connections,
                 ctx.args.duration, label))
        result = run_wrk(run_args, st["port"], Request(route.path), script, ctx.args.duration)
        wait_keel_idle(st["port"])
        result["connections"] = connections
        res.wrk.append(result)
        res.problems += ["%s: %s" % (route.path, p) for p in run_problems(result)]
        p95 = result.get("lua", {}).get("p95_us")
        p95_ms = p95 / 1000 if p95 is not None else None
        res.figures["runs"][label] = {"connections": connections,
                                      "requests_per_sec": result["requests_per_sec"],
                                      "latency_ms": result["latency_ms"], "p95_ms": p95_ms}
        note = "-c%d, %.1f req/s, %d items, %d-byte answer" % (
            connections, result["requests_per_sec"], items, len(body))
        label_text = "%s p95%s" % (route.name.replace("analytics_", ""),
                                   "" if label == "target" else ", 1 connection")
        res.checks.append(Check(label_text, p95_ms, "ms",
                                route.target_ms if label == "target" else None, at_least=False,
                                note=note))
    return res


# --- PostgreSQL (issue 8) ---------------------------------------------------------
#
# The pg_* scenarios run the ingestion and query scenarios against a second
# keel whose store is a throwaway PostgreSQL 15 cluster the harness starts
# (durable like the SQLite runs: fsync and synchronous_commit on), and measure
# PostgreSQL's own COPY rate for the same rows into the same events table, for
# the ratio. The harness reads PostgreSQL with psycopg2 (python3-psycopg2).

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_ROOT = ROOT / "bench" / "out" / "pg"  # one directory per run, removed at the end
PG_SUPER, PG_OWNER, PG_APP = "postgres", "keel_owner", "keel_app"
PG_DB = "keel_bench"  # keel's database
PG_COPY_DB = "keel_copy"  # pg_copy's: the same migrations, a fresh events table
# postgresql.auto.conf of the bench cluster; --pg-set NAME=VALUE adds or
# overrides. Durability stays PostgreSQL's default (a 202 means the commit
# is flushed, as SQLite's synchronous=FULL): fsync, synchronous_commit and
# full_page_writes on. The rest are the defaults too, written down so that
# the JSON says what ran.
PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "replica",
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "5min",
    "max_connections": "100",
}
TARGET_PG_COPY_RATIO = 0.5
PG_COPY_CHUNK = 10000


def pg_driver():
    try:
        import psycopg2  # noqa: F401 (Debian's python3-psycopg2, for /usr/bin/python3)
    except ImportError:
        raise HarnessError("the pg_* scenarios need psycopg2 (apt-get install python3-psycopg2; "
                           "run with /usr/bin/python3)")
    return psycopg2


class PgCluster:
    """A throwaway PostgreSQL cluster under bench/out/pg/<run>/ on a free
    loopback port: initdb and pg_ctl as the postgres system user when root,
    trust authentication on 127.0.0.1 and the private socket only. Stopped
    (and its directory removed unless --keep-tmp) with the run's services."""

    name = "postgres"

    def __init__(self, settings: Dict[str, str], keep: bool):
        self.settings = settings
        self.keep = keep
        self.dir = PG_ROOT / ("run-%s-%d" % (time.strftime("%Y%m%d-%H%M%S"), os.getpid()))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = 0
        self.started = False
        self._cons: Dict[tuple, object] = {}
        self.empty_db_bytes: Dict[str, int] = {}  # each database's size once migrated

    def as_owner(self, argv: List[str]) -> List[str]:
        return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv

    def run(self, argv: List[str], what: str):
        proc = subprocess.run(self.as_owner(argv), capture_output=True, text=True)
        if proc.returncode != 0:
            raise HarnessError("%s failed (%d): %s\n%s" % (what, proc.returncode,
                                                          proc.stdout.strip(), proc.stderr.strip()))
        return proc

    @staticmethod
    def reap_stale():
        """Clusters left by a harness that was killed: stopped and removed
        when the harness pid recorded beside them is gone."""
        if not PG_ROOT.is_dir():
            return
        for d in PG_ROOT.glob("run-*"):
            try:
                pid = int((d / "harness.pid").read_text())
                os.kill(pid, 0)
                continue  # another harness's, still running
            except (OSError, ValueError):
                pass
            if (d / "data" / "postmaster.pid").exists():
                argv = [str(PG_BIN / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate", "-w",
                        "stop"]
                subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                               + argv, capture_output=True)
            shutil.rmtree(d, ignore_errors=True)

    def start(self):
        if not os.access(PG_BIN / "initdb", os.X_OK):
            raise HarnessError("%s not found (install postgresql-15: make deps / tools/deps.sh)"
                               % (PG_BIN / "initdb"))
        pg_driver()
        self.reap_stale()
        self.data.mkdir(parents=True)
        (self.dir / "harness.pid").write_text("%d\n" % os.getpid())
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.data, "postgres")
        os.chmod(self.data, 0o700)
        self.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_SUPER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8"], "initdb")
        conf = dict(PG_SETTINGS, **self.settings)
        self.port = free_port()
        conf.update({"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                     "unix_socket_directories": "'%s'" % self.dir, "logging_collector": "off",
                     "log_min_messages": "warning"})
        hba = ("# keel bench cluster: trust on loopback TCP and the private socket only.\n"
               "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        auto = "# written by bench/bench.py\n" + "".join("%s = %s\n" % kv for kv in conf.items())
        for name, text in (("pg_hba.conf", hba), ("postgresql.auto.conf", auto)):
            (self.data / name).write_text(text)
            if os.geteuid() == 0:
                shutil.chown(self.data / name, "postgres")
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.log, "postgres")
        self.started = True
        self.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "start"], "pg_ctl start (log: %s)" % self.log)

    def postmaster_pid(self) -> Optional[int]:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, role: str, db: str) -> str:
        return "postgres://%s@127.0.0.1:%d/%s" % (role, self.port, db)

    def connect(self, role: str, db: str, autocommit: bool = True):
        con = pg_driver().connect(host="127.0.0.1", port=self.port, user=role, dbname=db)
        con.autocommit = autocommit
        return con

    def cached(self, role: str, db: str):
        """One connection per (role, database) kept for the run (reads)."""
        key = (role, db)
        con = self._cons.get(key)
        if con is None or con.closed:
            con = self._cons[key] = self.connect(role, db, autocommit=False)
        return con

    def describe(self) -> dict:
        """The settings that make the figures what they are, as the server reports them."""
        con = self.cached(PG_SUPER, "postgres")
        try:
            with con.cursor() as cur:
                cur.execute("SELECT version(), current_setting('server_version')")
                version = cur.fetchone()
                cur.execute("SELECT name, current_setting(name) FROM pg_settings "
                            "WHERE name = ANY(%s)",
                            (sorted(PG_SETTINGS.keys() | self.settings.keys()),))
                settings = dict(cur.fetchall())
        finally:
            con.rollback()
        return {"version": version[1], "settings": settings, "port": self.port,
                "dir": str(self.dir)}

    def stop(self) -> Optional[int]:
        for con in self._cons.values():
            try:
                con.close()
            except Exception:  # noqa: BLE001 (best effort at exit)
                pass
        self._cons.clear()
        if self.started:
            subprocess.run(self.as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                                          "fast", "-w", "-t", "60", "stop"]),
                           capture_output=True)
            self.started = False
        if self.keep:
            print("bench: kept the PostgreSQL cluster's directory %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return 0


def pg_read(ctx: Context, sql: str, params=(), org_id: Optional[str] = None,
            db: str = PG_DB) -> list:
    """A read as the owner role under FORCE ROW LEVEL SECURITY: app.system
    (the system_read policies) and, given, app.org_id, both local to the
    transaction."""
    con = ctx.pg.cached(PG_OWNER, db)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT set_config('app.system', 'on', true)")
            if org_id:
                cur.execute("SELECT set_config('app.org_id', %s, true)", (org_id,))
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        con.rollback()


def pg_activity(ctx: Context) -> Dict[str, float]:
    """Cumulative counters of keel's database and of the WAL (pg_stat_database,
    pg_stat_wal), to say what PostgreSQL did per event. PostgreSQL 15 flushes
    a backend's counters at most once a second: the harness waits that long."""
    time.sleep(1.1)
    con = ctx.pg.cached(PG_SUPER, PG_DB)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT xact_commit, tup_inserted, tup_updated, tup_fetched, blks_read "
                        "FROM pg_stat_database WHERE datname = %s", (PG_DB,))
            db = cur.fetchone()
            cur.execute("SELECT wal_records, wal_bytes, wal_write, wal_sync FROM pg_stat_wal")
            wal = cur.fetchone()
            # Sequential scans by table (a partition counts for itself).
            cur.execute("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables")
            seq = cur.fetchall()
            cur.execute("SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes")
            idx = cur.fetchall()
    finally:
        con.rollback()
    names = ("commits", "tuples_inserted", "tuples_updated", "tuples_fetched", "blocks_read",
             "wal_records", "wal_bytes", "wal_writes", "wal_syncs")
    out = dict(zip(names, [float(v) for v in db + wal]))
    for rel, scans, rows in seq:
        out["seq_scan:" + rel] = float(scans or 0)
        out["seq_tup_read:" + rel] = float(rows or 0)
    for rel, scans, rows in idx:
        out["idx_scan:" + rel] = float(scans or 0)
        out["idx_tup_read:" + rel] = float(rows or 0)
    return out


def pg_activity_delta(before: Dict[str, float], after: Dict[str, float],
                      events: int) -> dict:
    """The counters' growth over a run (the whole cluster's WAL; keel's
    database alone otherwise), in total and per event."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    delta = {k: v for k, v in delta.items() if v or ":" not in k}
    per = {k: v / events for k, v in delta.items()} if events else {}
    note = ("%.2f commits, %.1f tuples inserted, %.1f updated, %.0f fetched, %.1f WAL records, "
            "%.0f WAL bytes, %.3f WAL syncs" % (
                per["commits"], per["tuples_inserted"], per["tuples_updated"],
                per["tuples_fetched"], per["wal_records"], per["wal_bytes"], per["wal_syncs"])
            if per else "no events")
    scans = sorted(((v, k.split(":", 1)[1]) for k, v in per.items()
                    if k.startswith("seq_tup_read:") and v >= 1), reverse=True)
    if scans:
        note += "; rows read by sequential scans: " + ", ".join(
            "%s %.0f (%.2f scans)" % (rel, v, per.get("seq_scan:" + rel, 0)) for v, rel in scans)
    reads = sorted(((v, k.split(":", 1)[1]) for k, v in per.items()
                    if k.startswith("idx_tup_read:") and v >= 10), reverse=True)[:3]
    if reads:
        note += "; index entries read (most): " + ", ".join(
            "%s %.0f (%.2f scans)" % (rel, v, per.get("idx_scan:" + rel, 0)) for v, rel in reads)
    return {"total": delta, "per_event": per, "events": events, "note": note}


def pg_org_id(ctx: Context, slug: str) -> str:
    rows = pg_read(ctx, "SELECT id::text FROM orgs WHERE slug = %s", (slug,))
    if not rows:
        raise HarnessError("org %s not found in PostgreSQL as %s (app.system=on): the "
                           "system_read policy of orgs?" % (slug, PG_OWNER))
    return rows[0][0]


def pg_count_prefixes(ctx: Context, org_id: str, prefixes: List[str],
                      db: str = PG_DB) -> List[int]:
    """Rows of the org whose id starts with each prefix (a range of the
    primary key; each prefix ends with "-", and "." follows it)."""
    out = []
    for prefix in prefixes:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out.append(pg_read(ctx, "SELECT count(*) FROM events WHERE org_id = %s AND id >= %s "
                                "AND id < %s", (org_id, prefix, upper), org_id, db)[0][0])
    return out


def pg_count_org(ctx: Context, org_id: str, db: str = PG_DB) -> int:
    return pg_read(ctx, "SELECT count(*) FROM events WHERE org_id = %s", (org_id,), org_id,
                   db)[0][0]


def pg_database_size(ctx: Context, db: str = PG_DB) -> dict:
    """The database, and the events table (every partition) with its indexes,
    per event stored, after a CHECKPOINT (the WAL is not counted: PostgreSQL
    recycles it)."""
    con = ctx.pg.cached(PG_SUPER, db)  # sizes and CHECKPOINT: the superuser
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("CHECKPOINT")
            cur.execute("SELECT pg_database_size(current_database())")
            db_bytes = cur.fetchone()[0]
            cur.execute("""SELECT coalesce(sum(pg_table_size(c.oid)), 0)::bigint,
                                  coalesce(sum(pg_indexes_size(c.oid)), 0)::bigint
                           FROM pg_partition_tree('events') t JOIN pg_class c ON c.oid = t.relid
                           WHERE t.isleaf""")
            table, indexes = cur.fetchone()
            cur.execute("SELECT count(*) FROM events")  # the superuser is not fenced by RLS
            rows = cur.fetchone()[0]
    finally:
        con.autocommit = False
    empty = ctx.pg.empty_db_bytes.get(db, 0)
    out = {"rows": rows, "db_bytes": db_bytes, "empty_db_bytes": empty,
           "events_table_bytes": table, "events_index_bytes": indexes,
           "bytes_per_event": (db_bytes - empty) / rows if rows else None}
    out["note"] = ("%d rows; (database - its size once migrated) / rows after a CHECKPOINT; "
                   "events table %.0f B + indexes %.0f B per event"
                   % (rows, table / rows, indexes / rows) if rows else "")
    return out


def pg_psql_super(cluster: PgCluster, statements: List[str]):
    con = cluster.connect(PG_SUPER, "postgres")
    try:
        with con.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        con.close()


def ensure_pg(ctx: Context) -> Context:
    """Once per run: the cluster, the roles (tests/api/pgtest.py's), keel's
    database and pg_copy's, both migrated by `keel migrate` as the owner, and
    a keel serving PostgreSQL as the app role. Returns that keel's Context
    (its state holds the ingest org and the query load across scenarios)."""
    sub = ctx.state.get("pg")
    if sub:
        if isinstance(sub, str):
            raise HarnessError(sub)  # an earlier pg_* scenario could not start it
        return sub
    try:
        sub = start_pg(ctx)
    except HarnessError as e:
        ctx.state["pg"] = "PostgreSQL keel not started: %s" % e
        raise
    ctx.state["pg"] = sub
    return sub


def start_pg(ctx: Context) -> Context:
    a = ctx.args
    settings = dict(kv.split("=", 1) for kv in a.pg_set)
    cluster = PgCluster(settings, keep=a.keep_tmp)
    ctx.services.append(cluster)  # stopped at the end, after the keel inserted before it
    print("\npostgres: starting a cluster in %s" % os.path.relpath(cluster.dir))
    cluster.start()
    pg_psql_super(cluster, [
        "CREATE ROLE %s LOGIN CREATEDB NOSUPERUSER NOCREATEROLE" % PG_OWNER,
        "CREATE ROLE %s LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE" % PG_APP,
        "CREATE DATABASE %s OWNER %s" % (PG_DB, PG_OWNER),
        "CREATE DATABASE %s OWNER %s" % (PG_COPY_DB, PG_OWNER),
    ])
    for db in (PG_DB, PG_COPY_DB):
        work = ctx.tmp / ("migrate-" + db)
        work.mkdir(exist_ok=True)
        proc = subprocess.run([ctx.keel_bin, "migrate", "--store", cluster.url(PG_OWNER, db),
                               "--data-dir", str(work / "keel-data")], cwd=str(work),
                              capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if k != "KEEL_STORE_URL"})
        if proc.returncode != 0:
            raise HarnessError("keel migrate --store %s failed (%d): %s" % (
                cluster.url(PG_OWNER, db), proc.returncode, (proc.stderr or proc.stdout).strip()))
        con = cluster.connect(PG_SUPER, db)
        try:
            with con.cursor() as cur:
                cur.execute("CHECKPOINT")
                cur.execute("SELECT pg_database_size(current_database())")
                cluster.empty_db_bytes[db] = cur.fetchone()[0]
        finally:
            con.close()
    desc = cluster.describe()
    print("postgres: PostgreSQL %s on 127.0.0.1:%d, %s and %s migrated; %s" % (
        desc["version"], cluster.port, PG_DB, PG_COPY_DB,
        ", ".join("%s=%s" % kv for kv in sorted(desc["settings"].items()))))
    port = free_port()
    data_dir = ctx.tmp / "keel-data-pg"  # keel's secrets; the rows are in PostgreSQL
    data_dir.mkdir(exist_ok=True)
    store = cluster.url(PG_APP, PG_DB)
    argv = [ctx.keel_bin, "serve", "--listen", "127.0.0.1:%d" % port, "--data-dir",
            str(data_dir), "--store", store, "--set", "log.access=false", "--set",
            "plans.file=%s" % BENCH_PLANS]
    for setting in a.set:
        argv += ["--set", setting]
    svc = Service("keel-pg", argv, ctx.tmp / "keel-pg.log",
                  env=dict({k: v for k, v in os.environ.items() if k != "KEEL_STORE_URL"},
                           KEEL_LOG_LEVEL="warn"))
    ctx.services.insert(ctx.services.index(cluster), svc)  # keel stops before PostgreSQL
    svc.start()
    svc.wait_ready(port, "/healthz", 60)
    print("postgres: keel on :%d with --store %s" % (port, store))
    sub = Context(port, data_dir, ctx.keel_bin, args=a, keel_pid=svc.proc.pid, tmp=ctx.tmp,
                  services=ctx.services)
    sub.store_url = store
    sub.pg = cluster
    return sub


def run_pg(ctx: Context, runner: Callable[[Context], CustomResult]) -> CustomResult:
    """Runs a pg_* scenario on the PostgreSQL keel's Context. When that keel
    cannot be started (backend not in the build, migration failing...), the
    scenario is not measured and the run fails, but the other scenarios still
    run and the JSON is written."""
    try:
        sub = ensure_pg(ctx)
    except HarnessError as e:
        res = CustomResult(skipped=str(e).splitlines()[0][:300])
        res.problems.append("%s" % e)
        return res
    return runner(sub)


def run_pg_ingest(sub: Context, kind: IngestKind) -> CustomResult:
    return run_ingest(sub, dataclasses.replace(kind, name="pg_" + kind.name))


def run_pg_query(sub: Context, path: str) -> CustomResult:
    res = run_query(sub, path)
    res.figures["postgres"] = sub.pg.describe()
    return res


def copy_text(value: str) -> str:
    """A text-format COPY field."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def pg_copy_template(sub: Context, org: dict) -> dict:
    """The values every copied row shares: those of a row keel stored from
    the batch scenario when there is one (data, metadata and tags exactly as
    keel wrote them, its cost), else the scenario's event as canonical JSON."""
    e = bench_event("x", "sess-0000")
    tpl = {"agent_id": e["agent_id"], "type": e["type"], "severity": e["severity"],
           "data": canonical_json(e["data"]), "metadata": canonical_json(e["metadata"]),
           "tags": canonical_json(e["tags"]), "cost_nano": "0", "cost_flags": "0",
           "api_key_id": org.get("key_id") or None, "source": "bench_event (canonical JSON)"}
    rows = pg_read(sub, "SELECT agent_id, type, severity, data, metadata, tags, "
                        "api_key_id::text, cost_nano::text, cost_flags::text FROM events "
                        "WHERE org_id = %s AND type = 'llm_call' LIMIT 1", (org["id"],),
                   org["id"])
    if rows:
        names = ("agent_id", "type", "severity", "data", "metadata", "tags", "api_key_id",
                 "cost_nano", "cost_flags")
        tpl.update(dict(zip(names, rows[0])))
        tpl["source"] = "a row keel stored"
    return tpl


def run_pg_copy(ctx: Context) -> CustomResult:  # ctx: the PostgreSQL keel's
    """PostgreSQL's own rate for the same rows into the same events table
    (pg_copy's database, migrated by keel migrate): COPY events (...) FROM
    STDIN in chunks of PG_COPY_CHUNK rows, each its own transaction, for
    --pg-copy-duration seconds of COPY time (or --pg-copy-events rows). The
    rows are generated before each COPY, outside the clock.

    As the superuser: PostgreSQL refuses COPY FROM into a table whose
    row-level security applies to the role ("COPY FROM not supported with
    row-level security"), and FORCE ROW LEVEL SECURITY applies it to the
    owner too. The superuser bypasses RLS, so these rows skip the tenant
    policy's WITH CHECK (one comparison per row) that keel's INSERTs pass."""
    import io
    sub, a = ctx, ctx.args
    org = ensure_ingest_org(sub)
    tpl = pg_copy_template(sub, org)
    cols = pg_read(sub, "SELECT column_name, is_nullable, column_default FROM "
                        "information_schema.columns WHERE table_schema = current_schema() AND "
                        "table_name = 'events' ORDER BY ordinal_position", db=PG_COPY_DB)
    known = {"org_id", "id", "session_id", "agent_id", "type", "ts", "received_at", "severity",
             "data", "metadata", "tags", "api_key_id", "cost_nano", "cost_flags", "seq", "hash"}
    unknown = [c for c, nullable, default in cols
               if c not in known and nullable == "NO" and default is None]
    if unknown:
        raise HarnessError("pg_copy: the events table has NOT NULL column(s) it does not fill: %s"
                           % ", ".join(unknown))
    names = [c for c, _, _ in cols if c in known]
    sql = "COPY events (%s) FROM STDIN" % ", ".join(names)
    tag = run_tag("c")
    duration = a.pg_copy_duration if a.pg_copy_duration else a.ingest_duration
    limit = a.pg_copy_events
    null = "\\N"
    fixed = {"org_id": org["id"], "agent_id": copy_text(tpl["agent_id"]),
             "type": copy_text(tpl["type"]), "severity": copy_text(tpl["severity"]),
             "data": copy_text(tpl["data"]), "metadata": copy_text(tpl["metadata"]),
             "tags": copy_text(tpl["tags"]), "api_key_id": tpl["api_key_id"] or null,
             "cost_nano": tpl["cost_nano"], "cost_flags": tpl["cost_flags"]}
    # One format string per row: the varying fields are the id, the session,
    # the timestamps, seq and the hash (32 random bytes, as raw_sqlite).
    fmt = "\t".join({"id": "%(id)s", "session_id": "%(session)s", "ts": "%(ts)s",
                     "received_at": "%(ts)s", "seq": "%(seq)d", "hash": "\\\\x%(hash)s"}
                    .get(n, fixed.get(n, "").replace("%", "%%")) for n in names) + "\n"
    print("\npg_copy: COPY events FROM STDIN into %s, %d rows per COPY + commit, for %.0fs of "
          "COPY time%s; ids %s-*; row values from %s" % (
              PG_COPY_DB, PG_COPY_CHUNK, duration,
              " or %d rows" % limit if limit else "", tag, tpl["source"]))
    con = sub.pg.connect(PG_SUPER, PG_COPY_DB, autocommit=False)
    copied, chunks, copy_s, gen_s = 0, 0, 0.0, 0.0
    row_bytes = 0
    cpu = CpuMeter(None, sub.pg.postmaster_pid())
    t_start = time.monotonic()
    try:
        while copy_s < duration and (not limit or copied < limit):
            n = PG_COPY_CHUNK if not limit else min(PG_COPY_CHUNK, limit - copied)
            g0 = time.monotonic()
            now = datetime.datetime.now(datetime.timezone.utc)
            lines = []
            for i in range(copied, copied + n):
                # keel stamps the received time: here one microsecond apart.
                ts = (now + datetime.timedelta(microseconds=i - copied)).isoformat(" ")
                lines.append(fmt % {"id": "%s-%d-%d" % (tag, chunks, i - copied),
                                    "session": "sess-%04d" % (i % INGEST_SESSIONS),
                                    "ts": ts, "seq": i // INGEST_SESSIONS + 1,
                                    "hash": os.urandom(32).hex()})
            buf = io.BytesIO("".join(lines).encode())
            row_bytes = len(lines[0])
            t0 = time.monotonic()
            gen_s += t0 - g0
            with con.cursor() as cur:
                cur.copy_expert(sql, buf, size=1 << 20)
            con.commit()
            copy_s += time.monotonic() - t0
            copied += n
            chunks += 1
    except Exception as e:  # psycopg2's errors: report the server's message
        con.rollback()
        raise HarnessError("pg_copy: COPY failed after %d rows: %s" % (copied, e))
    finally:
        wall_s = time.monotonic() - t_start
        cores = cpu.cores()
        cores.pop("wrk (client)", None)
        con.close()
    res = CustomResult()
    stored = pg_count_prefixes(sub, org["id"], [tag + "-"], db=PG_COPY_DB)[0]
    if stored != copied:
        res.problems.append("pg_copy: %d rows in the table after COPY of %d" % (stored, copied))
    size = pg_database_size(sub, PG_COPY_DB)
    rate = copied / copy_s if copy_s else 0.0
    res.figures = {"rows_per_sec": rate, "rows": copied, "chunks": chunks,
                   "chunk_rows": PG_COPY_CHUNK, "copy_seconds": copy_s,
                   "generate_seconds": gen_s, "wall_seconds": wall_s,
                   "wall_rows_per_sec": copied / wall_s if wall_s else None,
                   "row_bytes_copy_text": row_bytes, "columns": names, "row_source":
                   tpl["source"], "database": size, "cpu_cores": cores,
                   "postgres": sub.pg.describe()}
    res.notes.append("rows in %s after the run %d = rows copied %d" % (PG_COPY_DB, stored, copied))
    res.notes.append("COPY %.1fs (+ %.1fs generating the rows in Python, not counted); "
                     "PostgreSQL's cores during the run: %s" % (copy_s, gen_s, fmt_cores(cores)))
    res.checks.append(Check("COPY FROM STDIN", rate, "rows/s",
                            note="%d rows, %d per COPY + commit, %d-byte rows in COPY text" % (
                                copied, PG_COPY_CHUNK, row_bytes)))
    res.checks.append(Check("COPY database per event", size.get("bytes_per_event"), "bytes",
                            note=size.get("note", "")))
    return res


def run_custom(ctx: Context, scenarios: List[Scenario]) -> Dict[str, CustomResult]:
    for s in scenarios:
        if not keel_alive(ctx):
            raise HarnessError("keel is not running before %s" % s.name)
        res = s.runner(ctx)
        ctx.results[s.name] = res
        print("%s:" % s.name)
        for note in res.notes:
            print("  " + note)
        if res.skipped:
            print("  skipped: " + res.skipped)
        for c in res.checks:
            print("  " + c.line())
    return ctx.results


def keel_alive(ctx: Context) -> bool:
    try:
        os.kill(ctx.keel_pid, 0)
        return True
    except (OSError, TypeError):
        return False


def run_ingest_nometer(ctx: Context, kind: IngestKind) -> CustomResult:
    """run_ingest against a second keel (own data directory and port, the
    same settings plus metering.enabled=false), stopped afterwards."""
    port = free_port()
    data_dir = ctx.tmp / "keel-data-nometer"
    data_dir.mkdir(exist_ok=True)
    argv = [ctx.keel_bin, "serve", "--listen", "127.0.0.1:%d" % port, "--data-dir",
            str(data_dir), "--set", "log.access=false", "--set", "plans.file=%s" % BENCH_PLANS]
    for setting in ctx.args.set:
        argv += ["--set", setting]
    argv += ["--set", "metering.enabled=false"]
    svc = Service("keel-nometer", argv, ctx.tmp / "keel-nometer.log",
                  env=dict(os.environ, KEEL_LOG_LEVEL="warn"))
    svc.start()
    try:
        svc.wait_ready(port, "/healthz", 30)
        sub = Context(port, data_dir, ctx.keel_bin, args=ctx.args, keel_pid=svc.proc.pid,
                      tmp=ctx.tmp)
        return run_ingest(sub, kind)
    finally:
        svc.stop()


def summarize_custom(ctx: Context) -> dict:
    """The figures of the runner scenarios against their targets, the ratio
    of keel's batch ingestion to the raw ceiling, and the quoted reference."""
    results = ctx.results
    batch, raw = results.get("ingest_batch"), results.get("raw_sqlite")
    cross: List[Check] = []
    if batch and raw and batch.figures and raw.figures:
        eps = batch.figures["events_per_sec"]
        cross.append(Check("ingest_batch / INSERTs-alone ceiling",
                           eps / raw.figures["inserts"]["events_per_sec"], "x", TARGET_RAW_RATIO))
        cross.append(Check("ingest_batch / with-sessions ceiling",
                           eps / raw.figures["sessions"]["events_per_sec"], "x"))
    nometer = results.get("ingest_batch_nometer")
    if batch and nometer and batch.figures and nometer.figures:
        cross.append(Check("metering: ingest_batch / ingest_batch_nometer",
                           batch.figures["events_per_sec"] / nometer.figures["events_per_sec"],
                           "x", 0.95))
    pg_batch, pg_copy = results.get("pg_ingest_batch"), results.get("pg_copy")
    if pg_batch and pg_copy and pg_batch.figures and pg_copy.figures:
        cross.append(Check("pg_ingest_batch / pg_copy", pg_batch.figures["events_per_sec"]
                           / pg_copy.figures["rows_per_sec"], "x", TARGET_PG_COPY_RATIO,
                           note="keel on PostgreSQL / PostgreSQL's COPY of the same rows"))
    if pg_batch and batch and pg_batch.figures and batch.figures:
        cross.append(Check("pg_ingest_batch / ingest_batch", pg_batch.figures["events_per_sec"]
                           / batch.figures["events_per_sec"], "x", note="PostgreSQL / SQLite"))
    print("\nsummary: ingestion and queries (durable: WAL, synchronous=FULL, 202 after commit)")
    for name, res in results.items():
        for c in res.checks:
            print("  %-17s %s" % (name, c.line()))
        if res.skipped:
            print("  %-17s skipped: %s" % (name, res.skipped))
    for c in cross:
        print("  %-17s %s" % ("ratio", c.line()))
    print("")
    for line in QUOTED_REFERENCE:
        print("  " + line)
    out = {name: res.to_json() for name, res in results.items()}
    out["ratios"] = [c.to_json() for c in cross]
    ctx.state["ratio_checks"] = cross
    out["quoted_reference"] = QUOTED_REFERENCE
    return out


# --- the run ---------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """One side of an A/B pair: a server and the request wrk sends to it."""

    name: str
    port: int
    request: Request
    script: Optional[Path]


def check_answer(target: Target, expect_status: int, expect_len: Optional[int]) -> List[str]:
    """Sends the request once; returns problems (empty when it answers as expected)."""
    status, _, body = http_call(target.port, target.request)
    print("  %-6s %s %s -> %d, %d-byte body" % (target.name, target.request.method,
                                                 target.request.path, status, len(body)))
    problems = []
    if status != expect_status:
        problems.append("%s answered %d, expected %d" % (target.name, status, expect_status))
    if expect_len is not None and len(body) != expect_len:
        problems.append("%s body is %d bytes, the reference's is %d"
                        % (target.name, len(body), expect_len))
    return problems


def run_problems(result: dict) -> List[str]:
    problems = []
    if result["non_2xx_3xx"]:
        problems.append("%d non-2xx/3xx responses" % result["non_2xx_3xx"])
    errors = {k: v for k, v in result["socket_errors"].items() if v}
    if errors:
        problems.append("socket errors %s" % errors)
    return problems


def fmt_ms(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return "%.0fus" % (value * 1000) if value < 1 else "%.2fms" % value


def print_round_table(rows):
    print("  %-16s %-6s %12s %9s %9s %9s %9s  %s"
          % ("scenario", "target", "req/s", "p50", "p90", "p99", "max", "problems"))
    for scenario, target, r in rows:
        lat = r["latency_ms"]
        print("  %-16s %-6s %12.1f %9s %9s %9s %9s  %s" % (
            scenario, target, r["requests_per_sec"], fmt_ms(lat.get("p50")), fmt_ms(lat.get("p90")),
            fmt_ms(lat.get("p99")), fmt_ms(lat.get("max")), "; ".join(run_problems(r)) or "-"))


def median_of(runs: List[dict], key: str, sub: Optional[str] = None) -> Optional[float]:
    values = [r[key][sub] if sub else r[key] for r in runs if (sub is None or sub in r[key])]
    return statistics.median(values) if values else None


def git_commit() -> str:
    """HEAD, with "+modified" when the work tree differs from it (the figures
    are then those of uncommitted code)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    diff = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--"],
                          capture_output=True)
    return head + ("+modified" if diff.returncode == 1 else "")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--warmup", type=float, default=3,
                    help="seconds of warm-up per target before round 1; 0 skips (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                    help="run only these scenarios (repeat or comma-separate; a prefix such "
                         "as 'analytics' or 'ingest' selects every NAME_*)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--keel", default=str(ROOT / "build-release" / "keel"),
                    help="keel binary (default build-release/keel)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="extra keel setting, passed as --set NAME=VALUE")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx",
                    help="nginx binary")
    ap.add_argument("--nginx-conf", default=str(ROOT / "bench" / "nginx.conf"),
                    help="nginx config template (default bench/nginx.conf)")
    ap.add_argument("--no-reference", action="store_true", help="benchmark keel alone")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "out"), help="JSON results directory")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    ap.add_argument("--ingest-duration", type=float, default=20,
                    help="seconds per ingest scenario (default 20)")
    ap.add_argument("--raw-events", type=int, default=500000,
                    help="events per raw_sqlite mode (default 500 000)")
    ap.add_argument("--query-events", type=int, default=1000000,
                    help="events stored before the query scenarios (default 1 000 000)")
    ap.add_argument("--query-connections", type=int, default=4,
                    help="wrk connections for the query targets (default 4; then again at "
                         "--connections for throughput)")
    ap.add_argument("--analytics-events", type=int, default=10000000,
                    help="events loaded for the analytics scenarios (default 10 000 000; the "
                         "data directory is kept under bench/out/analytics-data per size)")
    ap.add_argument("--analytics-orgs", type=int, default=20,
                    help="orgs of the analytics data (default 20)")
    ap.add_argument("--analytics-largest-share", type=float, default=0.5,
                    help="share of the events in the largest org (default 0.5)")
    ap.add_argument("--pg-set", action="append", default=[], metavar="NAME=VALUE",
                    help="PostgreSQL setting of the pg_* scenarios' cluster (postgresql.auto.conf;"
                         " repeat); durability is on unless overridden")
    ap.add_argument("--pg-query-events", type=int, default=0,
                    help="events stored before the pg_query_* scenarios (default: "
                         "--query-events)")
    ap.add_argument("--pg-copy-duration", type=float, default=0,
                    help="seconds of COPY for pg_copy (default: --ingest-duration)")
    ap.add_argument("--pg-copy-events", type=int, default=0,
                    help="stop pg_copy after this many rows (default 0: by time only)")
    ap.add_argument("--strict-targets", action="store_true",
                    help="exit 1 when a runner scenario misses a target (default: report only)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.threads < 1 or args.connections < args.threads:
        ap.error("need --rounds >= 1, --duration >= 1, --threads >= 1, --connections >= --threads")
    if any("=" not in kv for kv in args.pg_set):
        ap.error("--pg-set takes NAME=VALUE")
    if args.ingest_duration < 1 or args.raw_events < 1000 or args.query_events < 1:
        ap.error("need --ingest-duration >= 1, --raw-events >= 1000, --query-events >= 1")
    return args


def select_scenarios(args) -> List[Scenario]:
    wanted = [name for item in args.only for name in item.split(",") if name]
    # A group name selects its scenarios: "analytics" is every analytics_*.
    names = [s.name for s in SCENARIOS]
    groups = {n.split("_", 1)[0] for n in names if "_" in n} - set(names)
    wanted = [n for name in wanted
              for n in ([m for m in names if m.startswith(name + "_")] if name in groups
                        else [name])]
    known = {s.name for s in SCENARIOS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise HarnessError("unknown scenario(s) %s; known: %s"
                           % (", ".join(unknown), ", ".join(sorted(known))))
    return [s for s in SCENARIOS if not wanted or s.name in wanted]


def on_signal(signum, frame):
    raise KeyboardInterrupt


def main(argv) -> int:
    args = parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print("%-16s %s%s" % (s.name, s.description, "" if s.reference else " (keel only)"))
        return 0
    scenarios = select_scenarios(args)
    needs_nginx = not args.no_reference and any(s.reference for s in scenarios)
    for tool in ("wrk",) + ((args.nginx,) if needs_nginx else ()):
        if not shutil.which(tool):
            raise HarnessError("%s not found (make deps installs it)" % tool)
    if not os.access(args.keel, os.X_OK):
        raise HarnessError("%s not found; `make bench` builds it" % args.keel)

    # Ctrl-C, SIGTERM and SIGHUP all unwind through the finally below. SIGINT is
    # set explicitly: a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench."))
    services: List[Service] = []
    try:
        return run(args, scenarios, tmp, services)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        for service in services:
            code = service.stop()
            if service.name == "keel" and code not in (0, None):
                print("bench: warning: keel exited with status %d on SIGTERM" % code)
        if args.keep_tmp:
            print("bench: kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, scenarios: List[Scenario], tmp: Path, services: List[Service]) -> int:
    custom = [s for s in scenarios if s.runner]
    scenarios = [s for s in scenarios if not s.runner]
    with_reference = not args.no_reference and any(s.reference for s in scenarios)
    load_start = os.getloadavg()
    print("bench: load average %.2f %.2f %.2f (1, 5, 15 min) on %d CPUs" % (
        load_start + (os.cpu_count() or 0,)))

    keel_port = free_port()
    data_dir = tmp / "keel-data"
    data_dir.mkdir()
    keel_argv = [os.path.abspath(args.keel), "serve", "--listen", "127.0.0.1:%d" % keel_port,
                 "--data-dir", str(data_dir), "--set", "log.access=false"]
    for setting in dict.fromkeys(args.set + [kv for s in scenarios + custom for kv in s.keel_set]):
        keel_argv += ["--set", setting]
    keel = Service("keel", keel_argv, tmp / "keel.log", env=dict(os.environ, KEEL_LOG_LEVEL="warn"))
    services.append(keel)
    keel.start()

    nginx_port = None
    if with_reference:
        nginx_port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(render_nginx_conf(Path(args.nginx_conf), tmp, nginx_port,
                                          [s.reference for s in scenarios if s.reference]))
        nginx = Service("nginx", [args.nginx, "-c", str(conf), "-p", str(tmp) + "/",
                                  "-e", str(tmp / "error.log")], tmp / "nginx.log")
        services.append(nginx)
        nginx.start()
        wait_listening(nginx, nginx_port)
    keel.wait_ready(keel_port, "/healthz", 30)

    # Build the A/B pairs and check that both sides answer as expected.
    ctx = Context(keel_port, data_dir, os.path.abspath(args.keel), args=args,
                  keel_pid=keel.proc.pid if keel.proc else None, tmp=tmp, services=services)
    pairs = []
    problems = []
    print("bench: keel %s on :%d%s" % (args.keel, keel_port,
                                        ", nginx on :%d" % nginx_port if nginx_port else ""))
    for s in scenarios:
        req = s.request(ctx)
        targets = [Target("keel", keel_port, req, wrk_script(req, tmp / ("%s-keel.lua" % s.name)))]
        ref = s.reference if with_reference else None
        if ref:
            ref_req = dataclasses.replace(req, path=ref.path)
            targets.append(Target("nginx", nginx_port, ref_req,
                                  wrk_script(ref_req, tmp / ("%s-nginx.lua" % s.name))))
        expect = s.expect_status or (ref.status if ref else 200)
        ref_len = len(ref.body.encode()) if ref else None
        for target in targets:
            problems += ["%s: %s" % (s.name, p) for p in check_answer(target, expect, ref_len)]
        pairs.append((s, targets))
    if problems:
        raise HarnessError("the servers do not answer as the scenarios expect:\n  "
                           + "\n  ".join(problems))

    settings = "wrk -t%d -c%d -d%ds --latency" % (args.threads, args.connections,
                                                   max(1, round(args.duration)))
    if args.warmup > 0 and pairs:
        print("bench: warm-up, %.0fs per target" % args.warmup)
        for s, targets in pairs:
            for target in targets:
                run_wrk(args, target.port, target.request, target.script, args.warmup)
                wait_keel_idle(keel_port)

    runs: Dict[str, Dict[str, List[dict]]] = {s.name: {t.name: [] for t in ts} for s, ts in pairs}
    for round_no in range(1, args.rounds + 1 if pairs else 1):
        print("\nround %d/%d (%s)" % (round_no, args.rounds, settings))
        rows = []
        for s, targets in pairs:
            for target in targets:  # keel, then nginx: interleaved A/B
                result = run_wrk(args, target.port, target.request, target.script, args.duration)
                wait_keel_idle(keel_port)
                result["round"] = round_no
                runs[s.name][target.name].append(result)
                rows.append((s.name, target.name, result))
                if not keel.running():
                    raise HarnessError("keel died during the run\n" + keel.log_tail())
        print_round_table(rows)

    summary = summarize(args, pairs, runs) if pairs else {}
    custom_summary = {}
    if custom:
        run_custom(ctx, custom)
        if not keel.running():
            raise HarnessError("keel died during the run\n" + keel.log_tail())
        custom_summary = summarize_custom(ctx)
        for name, res in ctx.results.items():
            runs[name] = {"keel": res.wrk}
    load_end = os.getloadavg()
    print("\nbench: load average %.2f %.2f %.2f at the end (it was %.2f %.2f %.2f)"
          % (load_end + load_start))
    write_results(args, settings, dict(summary, **custom_summary), runs,
                  {"start": load_start, "end": load_end})
    bad_runs = ["%s/%s round %d: %s" % (name, target, r["round"], "; ".join(run_problems(r)))
                for name, by_target in runs.items() for target, rs in by_target.items()
                for r in rs if "round" in r and run_problems(r)]
    bad_runs += [p for res in ctx.results.values() for p in res.problems]
    if bad_runs:
        print("\nbench: FAILED: runs with errors (their figures are not comparable):\n  "
              + "\n  ".join(bad_runs))
        return 1
    missed = ["%s %s" % (name, c.label) for name, res in ctx.results.items() for c in res.checks
              if c.verdict() == "MISSED"]
    missed += ["ratio " + c.label for c in ctx.state.get("ratio_checks", [])
               if c.verdict() == "MISSED"]
    if missed:
        print("\nbench: targets missed: %s%s" % (", ".join(missed), "" if args.strict_targets else
                                                 " (reported only; --strict-targets fails)"))
        if args.strict_targets:
            return 1
    return 0


def wait_keel_idle(port: int, timeout_s: float = 60.0):
    """Waits until keel has no request in flight but the scrape asking: wrk
    stops sending at the end of a run, yet a slow scenario (logins: argon2id)
    leaves requests queued on the worker pool, and they would run into the
    next measurement."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status, _, body = http_call(port, Request("/metrics"))
        except OSError:
            return
        m = re.search(rb"^keel_http_requests_in_flight (\d+)", body, re.M)
        if status != 200 or not m or int(m.group(1)) <= 1:
            return
        time.sleep(0.1)


def wait_listening(service: Service, port: int, timeout_s: float = 10.0):
    """Waits until the port accepts connections (nginx has no /healthz of its own)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not service.running():
            raise HarnessError("%s exited during start-up\n%s" % (service.name, service.log_tail()))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError("%s did not listen on :%d within %.0fs" % (service.name, port, timeout_s))


def summarize(args, pairs, runs) -> dict:
    print("\nsummary: medians of %d round(s)" % args.rounds)
    print("  %-16s %14s %14s %11s %11s %11s" % ("scenario", "keel req/s", "nginx req/s",
                                                 "keel/nginx", "keel p99", "nginx p99"))
    summary = {}
    for s, targets in pairs:
        medians = {}
        for target in targets:
            rs = runs[s.name][target.name]
            medians[target.name] = {
                "requests_per_sec": median_of(rs, "requests_per_sec"),
                "latency_ms": {p: median_of(rs, "latency_ms", p) for p in ("p50", "p90", "p99")},
            }
        keel_rps = medians["keel"]["requests_per_sec"]
        nginx = medians.get("nginx")
        ratio = None
        if nginx and nginx["requests_per_sec"]:
            ratio = keel_rps / nginx["requests_per_sec"]
        summary[s.name] = {"description": s.description, "median": medians,
                           "ratio_keel_nginx": ratio}
        print("  %-16s %14.1f %14s %11s %11s %11s" % (
            s.name, keel_rps,
            "%.1f" % nginx["requests_per_sec"] if nginx else "-",
            "%.3f" % ratio if ratio is not None else "-",
            fmt_ms(medians["keel"]["latency_ms"]["p99"]),
            fmt_ms(nginx["latency_ms"]["p99"]) if nginx else "-"))
    for s, _ in pairs:
        base = summary.get(s.baseline) if s.baseline else None
        if base and base["median"]["keel"]["requests_per_sec"]:
            ratio = (summary[s.name]["median"]["keel"]["requests_per_sec"]
                     / base["median"]["keel"]["requests_per_sec"])
            summary[s.name]["ratio_to_baseline"] = {"baseline": s.baseline, "ratio": ratio}
            print("  %s / %s (keel req/s): %.3f" % (s.name, s.baseline, ratio))
    return summary


def write_results(args, settings, summary, runs, load=None):
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    doc = {
        "started": stamp,
        "commit": git_commit(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "kernel": platform.release(), "python": platform.python_version(),
                 "load_average": load},
        "settings": {"wrk": settings, "rounds": args.rounds, "duration_s": args.duration,
                     "warmup_s": args.warmup, "keel": args.keel, "keel_set": args.set,
                     "ingest_duration_s": args.ingest_duration, "raw_events": args.raw_events,
                     "query_events": args.query_events, "pg_set": args.pg_set,
                     "pg_copy_duration_s": args.pg_copy_duration or args.ingest_duration,
                     "pg_copy_events": args.pg_copy_events,
                     "pg_query_events": args.pg_query_events or args.query_events},
        "summary": summary,
        "runs": runs,
    }
    path = out_dir / ("bench-%s.json" % stamp)
    text = json.dumps(doc, indent=2) + "\n"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    print("\nbench: results in %s" % os.path.relpath(path))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except HarnessError as e:
        print("bench: error: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        sys.exit(130)
