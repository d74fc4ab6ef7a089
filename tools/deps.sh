#!/usr/bin/env bash
# Installs every Debian 12 package keel needs to build, test and benchmark.
# This file is the one place that lists them.
#
#   tools/deps.sh          install what is missing (root, or passwordless sudo)
#   tools/deps.sh --check  only report; exits 1 when something is missing
#
# Idempotent: when every package is already installed it does not touch apt.
set -euo pipefail

PACKAGES=(
  # build
  meson ninja-build pkg-config libc6-dev git ca-certificates
  # libraries
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev
  libsodium-dev libcurl4-openssl-dev
  # tests: cmocka units, pytest black-box tests run with Debian's /usr/bin/python3
  libcmocka-dev python3-pytest python3-requests python3-psycopg2
  # services the tests start on their own ports (sqlite3 is the CLI for debugging)
  postgresql pgbouncer redis-server sqlite3
  # robustness gates and style: valgrind, clang sanitizers/libFuzzer, clang-format
  valgrind clang libclang-rt-14-dev clang-format procps
  # benchmark: load generator and the reference server
  wrk nginx-light
)

usage() {
  echo "usage: $0 [--check]" >&2
  exit 2
}

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  *) usage ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: dpkg-query not found; keel's dependency list targets Debian 12" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all present (${#PACKAGES[@]} packages)"
  exit 0
fi

install_cmd="apt-get install -y --no-install-recommends ${missing[*]}"
echo "deps: missing: ${missing[*]}"
if ((check_only)); then
  echo "deps: to install: sudo apt-get update && sudo $install_cmd"
  exit 1
fi

SUDO=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "deps: must run as root to install; run:" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive $install_cmd" >&2
    exit 1
  fi
fi

# postgresql, redis-server and nginx try to start their system services from
# their maintainer scripts. Without systemd (containers, CI) that can fail the
# install, e.g. when port 80 is taken. keel's tests and benchmark start their
# own instances on free ports, so refuse service starts while installing with
# a policy-rc.d that answers 101 ("action forbidden"). A policy-rc.d that was
# already there is left alone.
POLICY=/usr/sbin/policy-rc.d
policy_added=0
remove_policy() {
  if ((policy_added)); then
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
trap remove_policy EXIT
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n# temporary, added by keel tools/deps.sh\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  policy_added=1
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"

still_missing=()
for pkg in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || still_missing+=("$pkg")
done
if ((${#still_missing[@]})); then
  echo "deps: still missing after install: ${still_missing[*]}" >&2
  exit 1
fi
echo "deps: installed ${missing[*]}"
