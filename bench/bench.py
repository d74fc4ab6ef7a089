#!/usr/bin/env python3
"""keel benchmark harness: wrk A/B runs of keel against a reference nginx.

For every scenario in SCENARIOS the harness runs wrk (same settings for both
servers) against keel, then against nginx answering the same status with a
same-size body, interleaved for --rounds rounds after a warm-up. It prints a
table per round, then the medians and the keel/nginx ratio, and writes a JSON
result file under bench/out/.

    /usr/bin/python3 bench/bench.py [--rounds 3] [--duration 10] [--only NAME]

Standard library only. Both servers run on loopback ports chosen at start-up,
from a temporary directory that is removed at the end; child processes are
stopped on exit, on Ctrl-C and on SIGTERM.

Adding a scenario: append a Scenario to SCENARIOS (see bench/README.md).
"""

import argparse
import dataclasses
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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
    request: Callable[["Context"], Request]
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
]


# --- processes -------------------------------------------------------------------


class Context:
    """What a scenario's request builder may use."""

    def __init__(self, keel_port: int, data_dir: Path, keel_bin: str = ""):
        self.keel_port = keel_port
        self.keel_bin = keel_bin
        self.keel_url = "http://127.0.0.1:%d" % keel_port
        self.data_dir = data_dir
        self.state: Dict[str, object] = {}

    def keel_cli(self, *args) -> str:
        """Runs a keel CLI command on keel's data directory; returns stdout."""
        argv = [self.keel_bin, *args, "--data-dir", str(self.data_dir)]
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
    return result


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
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
                    help="run only these scenarios (repeat or comma-separate)")
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
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.threads < 1 or args.connections < args.threads:
        ap.error("need --rounds >= 1, --duration >= 1, --threads >= 1, --connections >= --threads")
    return args


def select_scenarios(args) -> List[Scenario]:
    wanted = [name for item in args.only for name in item.split(",") if name]
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
    for tool in ("wrk",) + (() if args.no_reference else (args.nginx,)):
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
    with_reference = not args.no_reference and any(s.reference for s in scenarios)

    keel_port = free_port()
    data_dir = tmp / "keel-data"
    data_dir.mkdir()
    keel_argv = [os.path.abspath(args.keel), "serve", "--listen", "127.0.0.1:%d" % keel_port,
                 "--data-dir", str(data_dir), "--set", "log.access=false"]
    for setting in args.set + [kv for s in scenarios for kv in s.keel_set]:
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
    ctx = Context(keel_port, data_dir, os.path.abspath(args.keel))
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
    if args.warmup > 0:
        print("bench: warm-up, %.0fs per target" % args.warmup)
        for s, targets in pairs:
            for target in targets:
                run_wrk(args, target.port, target.request, target.script, args.warmup)
                wait_keel_idle(keel_port)

    runs: Dict[str, Dict[str, List[dict]]] = {s.name: {t.name: [] for t in ts} for s, ts in pairs}
    for round_no in range(1, args.rounds + 1):
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

    summary = summarize(args, pairs, runs)
    write_results(args, settings, summary, runs)
    bad_runs = ["%s/%s round %d: %s" % (name, target, r["round"], "; ".join(run_problems(r)))
                for name, by_target in runs.items() for target, rs in by_target.items()
                for r in rs if run_problems(r)]
    if bad_runs:
        print("\nbench: FAILED: runs with errors (their figures are not comparable):\n  "
              + "\n  ".join(bad_runs))
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


def write_results(args, settings, summary, runs):
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    doc = {
        "started": stamp,
        "commit": git_commit(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "kernel": platform.release(), "python": platform.python_version()},
        "settings": {"wrk": settings, "rounds": args.rounds, "duration_s": args.duration,
                     "warmup_s": args.warmup, "keel": args.keel, "keel_set": args.set},
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
