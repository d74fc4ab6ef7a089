#!/usr/bin/env bash
# Leak gate (STYLE.md "Symmetric lifecycle"): one start / serve / SIGTERM cycle
# of keel under valgrind must exit 0 with no definitely-lost bytes and no
# memory errors.
#
#   KEEL_BIN=build/keel tools/valgrind-cycle.sh
#
# Starts `keel serve` on a free loopback port with a fresh data directory,
# waits for GET /healthz to answer 200 (valgrind makes start-up slow), sends a
# few requests, sends SIGTERM and checks the exit status and the leak summary.
# The temporary directory (valgrind log, keel output, data) is removed on
# success and kept on failure; KEEP_TMP=1 always keeps it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEEL_BIN=${KEEL_BIN:-build/keel}
PY=${PY:-/usr/bin/python3}
[[ -x "$PY" ]] || PY=python3
READY_TIMEOUT_S=${READY_TIMEOUT_S:-60}
EXIT_TIMEOUT_S=${EXIT_TIMEOUT_S:-60}

if [[ ! -x "$KEEL_BIN" ]]; then
  echo "valgrind-cycle: $KEEL_BIN not found; run make build" >&2
  exit 1
fi
command -v valgrind >/dev/null || {
  echo "valgrind-cycle: valgrind not installed; run make deps" >&2
  exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-valgrind.XXXXXX")
log="$tmp/valgrind.log"
pid=
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then
    echo "valgrind-cycle: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# GET url -> prints the status code, or "none" when no HTTP answer came back.
# http.client talks to the port directly (urllib would honour http_proxy).
http_status() {
  "$PY" - "$port" "$1" <<'PYTHON'
import http.client
import sys

try:
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
    conn.request("GET", sys.argv[2])
    response = conn.getresponse()
    response.read()
    print(response.status)
except (OSError, http.client.HTTPException):
    print("none")
PYTHON
}

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
mkdir -p "$tmp/data"

echo "valgrind-cycle: $KEEL_BIN serve --listen 127.0.0.1:$port (log: $log)"
valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
  --num-callers=30 --log-file="$log" \
  "$KEEL_BIN" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" \
  >"$tmp/keel.out" 2>&1 &
pid=$!

fail() {
  KEEP_TMP=1
  echo "valgrind-cycle: FAIL: $*" >&2
  echo "--- keel output (last 30 lines)" >&2
  tail -n 30 "$tmp/keel.out" >&2 || true
  echo "--- valgrind log (last 60 lines)" >&2
  tail -n 60 "$log" >&2 || true
  exit 1
}

ready=0
for ((i = 0; i < READY_TIMEOUT_S * 2; i++)); do
  kill -0 "$pid" 2>/dev/null || fail "keel exited before answering /healthz"
  if [[ "$(http_status /healthz)" == 200 ]]; then
    ready=1
    break
  fi
  sleep 0.5
done
((ready)) || fail "/healthz did not answer 200 within ${READY_TIMEOUT_S}s"

for path in /healthz /readyz /metrics /no-such-route; do
  status=$(http_status "$path")
  echo "valgrind-cycle: GET $path -> $status"
  [[ "$status" != none ]] || fail "no HTTP answer for $path"
done

kill -TERM "$pid"
exited=0
for ((i = 0; i < EXIT_TIMEOUT_S * 10; i++)); do
  if ! kill -0 "$pid" 2>/dev/null; then
    exited=1
    break
  fi
  sleep 0.1
done
((exited)) || fail "keel did not exit within ${EXIT_TIMEOUT_S}s of SIGTERM"
rc=0
wait "$pid" || rc=$?
pid=

echo "valgrind-cycle: leak summary:"
if grep -q "All heap blocks were freed" "$log"; then
  grep -E "HEAP SUMMARY|in use at exit|total heap usage|All heap blocks were freed" "$log" |
    sed 's/^==[0-9]*== */  /'
else
  sed -n '/LEAK SUMMARY/,/suppressed:/p' "$log" | sed 's/^==[0-9]*== */  /'
fi
grep -E "ERROR SUMMARY" "$log" | sed 's/^==[0-9]*== */  /'

((rc == 0)) || fail "exit status $rc (99: valgrind found errors or definite leaks)"
if ! grep -qE "definitely lost: 0 bytes|All heap blocks were freed" "$log"; then
  fail "no clean leak summary in the valgrind log"
fi
echo "valgrind-cycle: OK"
