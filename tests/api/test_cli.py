"""The command line: version, help, usage errors, and `keel migrate`."""

import re

import pytest

import dbdirect
from conftest import run_keel

MIGRATED_RE = re.compile(r"\b(\d+) applied, schema version (\d+)\b")


def migrate(data_dir, cwd):
    r = run_keel(["migrate", "--data-dir", data_dir], cwd=cwd)
    assert r.returncode == 0, r.stderr
    m = MIGRATED_RE.search(r.stdout)
    assert m, f"unexpected migrate output: {r.stdout!r}"
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("argv", [["version"], ["--version"]])
def test_version(argv):
    r = run_keel(argv)
    assert r.returncode == 0
    assert re.match(r"^keel \d+\.\d+\.\d+\b", r.stdout), r.stdout
    assert r.stdout.count("\n") == 1


def test_version_matches_build_info(http, server):
    version = re.match(r"^keel (\S+)", run_keel(["version"]).stdout).group(1)
    metrics = http.get(server.url + "/metrics").text
    assert f'keel_build_info{{version="{version}",' in metrics


def test_main_help_lists_commands():
    r = run_keel(["--help"])
    assert r.returncode == 0
    commands = re.findall(r"^  (\S+)\s", r.stdout, flags=re.M)
    for name in ("serve", "migrate", "version"):
        assert name in commands, r.stdout


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_command_help(command):
    r = run_keel([command, "--help"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Usage: keel {command}")
    assert "--data-dir" in r.stdout
    assert "--config" in r.stdout


def test_serve_help_shows_listen_and_dev():
    r = run_keel(["serve", "--help"])
    assert "--listen" in r.stdout and "--dev" in r.stdout


def test_help_command():
    r = run_keel(["help", "migrate"])
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: keel migrate")


def test_unknown_command_exit_2():
    r = run_keel(["frobnicate"])
    assert r.returncode == 2
    assert "frobnicate" in r.stderr
    assert r.stdout == ""


def test_no_command_exit_2():
    r = run_keel([])
    assert r.returncode == 2
    assert "Usage: keel" in r.stderr


@pytest.mark.parametrize(
    "argv",
    [["version", "extra"], ["migrate", "--dev"], ["migrate", "--listen", "127.0.0.1:1"], ["help", "frobnicate"]],
)
def test_usage_errors_exit_2(tmp_path, argv):
    r = run_keel(argv, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip()


def test_migrate_positional_argument_exit_2(tmp_path):
    r = run_keel(["migrate", "--data-dir", tmp_path / "d", "extra"], cwd=tmp_path)
    assert r.returncode == 2
    assert "extra" in r.stderr


def test_migrate_new_then_again(tmp_path):
    data = tmp_path / "data"
    if dbdirect.enabled():
        dbdirect.empty_database_for(data)  # not the migrated template: a new store
    applied, version = migrate(data, tmp_path)
    assert applied >= 1
    assert version >= 1
    if not dbdirect.enabled():
        assert data.is_dir()
    again, version2 = migrate(data, tmp_path)
    assert again == 0
    assert version2 == version


def test_migrate_against_running_server(http, fresh_server, make_tmp):
    srv = fresh_server()
    ready = http.get(srv.url + "/readyz")
    assert ready.status_code == 200
    applied, version = migrate(srv.data_dir, make_tmp("cwd"))
    assert applied == 0  # the server migrated its store at start-up
    assert version == ready.json()["checks"]["schema_version"]
    r = http.get(srv.url + "/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["store"] == "ok"
    assert srv.running()
    assert srv.stop() == 0
