"""Configuration: precedence of the four sources (defaults < file < KEEL_*
environment < flags), observed through http.body_max on POST /v1/dev/clock,
and start-up errors (exit code 2 for bad configuration or usage)."""

import socket
import subprocess

import pytest

from conftest import KeelServer, json_body_of_size, run_keel

CLOCK = "/v1/dev/clock"


def post_size(http, srv, n):
    """POSTs a valid clock body of exactly n bytes; returns the status."""
    body = json_body_of_size(n, advance_seconds=0)
    r = http.post(srv.url + CLOCK, data=body, headers={"Content-Type": "application/json"})
    if r.status_code == 413:
        assert r.json()["code"] == "payload_too_large"
    return r.status_code


@pytest.fixture
def conf_file(tmp_path):
    """Writes a config file with the given text; returns its path."""
    n = [0]

    def write(text, name=None):
        n[0] += 1
        p = tmp_path / (name or f"keel-{n[0]}.conf")
        p.write_text(text)
        return p

    return write


BODY_MAX_100 = """# keel test configuration
# (comments and blank lines are ignored)

http.body_max = 100
log.level = "info"
"""


# --- precedence ---------------------------------------------------------------


def test_file_sets_body_max(fresh_server, conf_file, http):
    srv = fresh_server(config_file=conf_file(BODY_MAX_100))
    assert post_size(http, srv, 150) == 413
    assert post_size(http, srv, 101) == 413
    assert post_size(http, srv, 100) == 200
    assert post_size(http, srv, 90) == 200
    r = http.post(srv.url + CLOCK, data=json_body_of_size(150, advance_seconds=0),
                  headers={"Content-Type": "application/json"})
    assert "100 bytes" in r.json()["detail"]


def test_env_overrides_file(fresh_server, conf_file, http):
    srv = fresh_server(config_file=conf_file(BODY_MAX_100), env_overrides={"KEEL_HTTP_BODY_MAX": "200"})
    assert post_size(http, srv, 150) == 200
    assert post_size(http, srv, 200) == 200
    assert post_size(http, srv, 250) == 413


def test_flag_overrides_env_and_file(fresh_server, conf_file, http):
    srv = fresh_server(
        ["--set", "http.body_max=300"],
        config_file=conf_file(BODY_MAX_100),
        env_overrides={"KEEL_HTTP_BODY_MAX": "200"},
    )
    assert post_size(http, srv, 250) == 200
    assert post_size(http, srv, 300) == 200
    assert post_size(http, srv, 301) == 413


def test_keel_config_env_names_the_file(fresh_server, conf_file, http):
    srv = fresh_server(env_overrides={"KEEL_CONFIG": str(conf_file(BODY_MAX_100))})
    assert post_size(http, srv, 150) == 413
    assert post_size(http, srv, 90) == 200


def test_config_flag_wins_over_keel_config(fresh_server, conf_file, http):
    env_file = conf_file(BODY_MAX_100)
    flag_file = conf_file("http.body_max = 120\n")
    srv = fresh_server(config_file=flag_file, env_overrides={"KEEL_CONFIG": str(env_file)})
    assert post_size(http, srv, 110) == 200
    assert post_size(http, srv, 121) == 413


def test_default_body_max_without_configuration(server, http):
    assert post_size(http, server, 65536) == 200
    assert post_size(http, server, 65537) == 413


def test_unknown_keel_env_var_is_ignored(fresh_server, http):
    srv = fresh_server(env_overrides={"KEEL_NO_SUCH_SETTING": "1", "KEEL_HTTP_BODYMAX": "5"})
    r = http.get(srv.url + "/healthz")
    assert r.status_code == 200
    assert post_size(http, srv, 1000) == 200  # the misspelt variable changed nothing


# --- errors ---------------------------------------------------------------------


def serve_fails(tmp_path, *args, env=None):
    """Runs `keel serve` that is expected to exit quickly; returns the result."""
    try:
        return run_keel(
            ["serve", "--listen", "127.0.0.1:0", "--data-dir", tmp_path / "data", *args],
            env_overrides=env,
            timeout=10,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"keel serve {args} did not exit: it started despite the error")


def test_unknown_setting_in_file_exit_2(tmp_path, conf_file):
    path = conf_file("# first line\nhttp.body_max = 100\nhttp.no_such_thing = 1\n")
    r = serve_fails(tmp_path, "--config", path)
    assert r.returncode == 2, r.stderr
    assert f"{path}:3:" in r.stderr
    assert "http.no_such_thing" in r.stderr


def test_bad_value_in_file_exit_2(tmp_path, conf_file):
    path = conf_file("\n\nhttp.threads = many\n")
    r = serve_fails(tmp_path, "--config", path)
    assert r.returncode == 2, r.stderr
    assert f"{path}:3:" in r.stderr
    assert "http.threads" in r.stderr


def test_line_without_equals_in_file_exit_2(tmp_path, conf_file):
    path = conf_file("http.body_max 100\n")
    r = serve_fails(tmp_path, "--config", path)
    assert r.returncode == 2
    assert f"{path}:1:" in r.stderr


def test_missing_config_file_exit_2(tmp_path):
    missing = tmp_path / "nope.conf"
    r = serve_fails(tmp_path, "--config", missing)
    assert r.returncode == 2
    assert str(missing) in r.stderr


@pytest.mark.parametrize(
    "setting, name",
    [
        ("http.threads=abc", "http.threads"),
        ("http.body_max=0", "http.body_max"),
        ("http.body_max=16777217", "http.body_max"),
        ("http.trust_proxy=maybe", "http.trust_proxy"),
        ("log.level=loud", "log.level"),
        ("no.such.setting=1", "no.such.setting"),
    ],
)
def test_bad_set_flag_exit_2(tmp_path, setting, name):
    r = serve_fails(tmp_path, "--set", setting)
    assert r.returncode == 2, r.stderr
    assert name in r.stderr


def test_set_without_equals_exit_2(tmp_path):
    r = serve_fails(tmp_path, "--set", "http.body_max")
    assert r.returncode == 2
    assert "name=value" in r.stderr


def test_bad_env_value_exit_2(tmp_path):
    r = serve_fails(tmp_path, env={"KEEL_HTTP_BODY_MAX": "abc"})
    assert r.returncode == 2
    assert "KEEL_HTTP_BODY_MAX" in r.stderr


def test_unknown_flag_exit_2(tmp_path):
    r = serve_fails(tmp_path, "--no-such-flag")
    assert r.returncode == 2
    assert "--no-such-flag" in r.stderr


def test_flag_missing_value_exit_2(tmp_path):
    r = run_keel(["serve", "--data-dir", tmp_path / "data", "--set"], timeout=10, cwd=tmp_path)
    assert r.returncode == 2
    assert "--set" in r.stderr


@pytest.mark.parametrize("addr", ["nonsense", "127.0.0.1:", ":8080", "127.0.0.1:notaport", "127.0.0.1:-1"])
def test_bad_listen_address(tmp_path, addr):
    r = run_keel(["serve", "--listen", addr, "--data-dir", tmp_path / "data"], timeout=10, cwd=tmp_path)
    assert r.returncode != 0
    assert f"'{addr}'" in r.stderr
    assert "listen address" in r.stderr


@pytest.mark.parametrize("addr", ["127.0.0.1:65536", "127.0.0.1:99999"])
def test_listen_port_out_of_range(keel_bin, tmp_path, addr):
    srv = KeelServer(keel_bin, tmp_path)
    try:
        srv.start(["--listen", addr], dev=False)
    except RuntimeError:
        # Refused before listening, as it should be.
        assert srv.proc.returncode != 0
        assert addr in srv.log_text()
        return
    port = srv.port
    srv.stop()
    pytest.fail(f"keel serve --listen {addr} started (on port {port}) instead of refusing the port")


def test_listen_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run_keel(
            ["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp_path / "data"],
            timeout=10,
            cwd=tmp_path,
        )
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr
    assert "in use" in r.stderr.lower()
