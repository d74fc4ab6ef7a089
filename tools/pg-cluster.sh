#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the API suite's PostgreSQL run
# (tests/api/pgtest.py describes the conventions the tests rely on).
#
#   tools/pg-cluster.sh start DIR   create the cluster under DIR if missing, start it on a
#                                   free loopback port, create the roles keel_owner and
#                                   keel_app, (re)create keel_template and migrate it with
#                                   $KEEL_BIN migrate (default build/keel)
#   tools/pg-cluster.sh env DIR     print the export lines for the tests
#                                   (KEEL_TEST_BACKEND, KEEL_TEST_PG_HOST, KEEL_TEST_PG_PORT)
#   tools/pg-cluster.sh stop DIR    stop it (no-op when it is not running)
#
# Trust authentication on 127.0.0.1 only; the unix socket lives in DIR. Durability is
# off (fsync, synchronous_commit, full_page_writes): the tests kill keel, never
# PostgreSQL. As root, initdb and pg_ctl run as the `postgres` system user, which then
# owns DIR/data. `start` on a running cluster only refreshes roles and the template; a
# cluster left by an earlier run is reused (or recreated when it is unusable).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
HOST=127.0.0.1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  echo "usage: $0 start|stop|env DIR" >&2
  exit 2
}
(($# == 2)) || usage
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
DATA=$DIR/data
PORT_FILE=$DIR/port
LOG=$DIR/postgres.log

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

# Runs a command as the cluster's owner (postgres when we are root).
as_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The superuser role is "postgres" either way (initdb -U postgres).
psql_super() {
  PGOPTIONS="-c client_min_messages=warning" \
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$(cat "$PORT_FILE")" -U postgres \
    -d postgres "$@"
}

running() {
  [[ -f "$DATA/postmaster.pid" ]] && as_owner "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

init_cluster() {
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "no postgres system user (install postgresql: tools/deps.sh)"
    chown postgres: "$DIR" "$DATA"
  fi
  chmod 700 "$DATA"
  as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
    cat "$DIR/initdb.log" >&2
    die "initdb failed"
  }
  # Loopback TCP only, trust; no other host lines.
  as_owner sh -c "cat > '$DATA/pg_hba.conf'" <<'EOF'
# keel test cluster: trust on loopback TCP and the private socket only.
local all all trust
host  all all 127.0.0.1/32 trust
EOF
}

write_conf() {
  local port=$1
  as_owner sh -c "cat > '$DATA/postgresql.auto.conf'" <<EOF
# written by tools/pg-cluster.sh
listen_addresses = '$HOST'
port = $port
unix_socket_directories = '$DIR'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_min_error_statement = panic
logging_collector = off
EOF
}

start() {
  [[ -x "$PG_BIN/initdb" ]] || die "$PG_BIN/initdb not found (install postgresql-15: tools/deps.sh)"
  if ((EUID == 0)); then
    chown postgres: "$DIR"
    as_owner test -w "$DIR" || die "the postgres user cannot reach $DIR (a parent is not traversable)"
  fi
  if running; then
    echo "pg-cluster: already running on port $(cat "$PORT_FILE")"
  else
    if [[ ! -f "$DATA/PG_VERSION" ]] || [[ "$(cat "$DATA/PG_VERSION")" != 15 ]]; then
      init_cluster
    fi
    # A stale postmaster.pid (killed run) is handled by pg_ctl; a port taken meanwhile
    # by someone else is not: pick a new free port on every start.
    local attempt port
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      write_conf "$port"
      echo "$port" >"$PORT_FILE"
      : >"$LOG"
      if ((EUID == 0)); then chown postgres: "$LOG"; fi
      if as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null; then
        break
      fi
      if ((attempt == 3)); then
        # A cluster that cannot start at all (e.g. half-initialised): recreate it once.
        echo "pg-cluster: start failed; recreating the cluster" >&2
        tail -n 20 "$LOG" >&2 || true
        init_cluster
      elif ((attempt == 5)); then
        tail -n 40 "$LOG" >&2 || true
        die "could not start PostgreSQL in $DATA"
      fi
    done
    echo "pg-cluster: started on $HOST:$port ($DATA)"
  fi
  setup_roles
}

setup_roles() {
  local port keel
  port=$(cat "$PORT_FILE")
  psql_super <<'EOF'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keel_owner') THEN
    CREATE ROLE keel_owner;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keel_app') THEN
    CREATE ROLE keel_app;
  END IF;
END $$;
ALTER ROLE keel_owner LOGIN CREATEDB NOSUPERUSER NOCREATEROLE;
ALTER ROLE keel_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
DROP DATABASE IF EXISTS keel_template WITH (FORCE);
CREATE DATABASE keel_template OWNER keel_owner;
EOF
  keel=${KEEL_BIN:-$REPO/build/keel}
  [[ -x "$keel" ]] || die "keel binary not found: $keel (set KEEL_BIN)"
  local work
  work=$(mktemp -d)
  # keel migrate may touch ./keel-data: run it in a scratch directory.
  if ! (cd "$work" && env -u KEEL_STORE_URL "$keel" migrate \
    --store "postgres://keel_owner@$HOST:$port/keel_template") >"$DIR/migrate.log" 2>&1; then
    rm -rf "$work"
    cat "$DIR/migrate.log" >&2
    die "keel migrate of keel_template failed"
  fi
  rm -rf "$work"
  echo "pg-cluster: keel_template migrated"
}

stop() {
  if running; then
    as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    echo "pg-cluster: stopped"
  else
    echo "pg-cluster: not running"
  fi
}

env_lines() {
  running || die "no cluster running in $DIR (tools/pg-cluster.sh start $DIR)"
  echo "export KEEL_TEST_BACKEND=postgres KEEL_TEST_PG_HOST=$HOST KEEL_TEST_PG_PORT=$(cat "$PORT_FILE")"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) usage ;;
esac
