"""Graceful shutdown: SIGTERM/SIGINT stop accepting, let in-flight requests
finish within http.shutdown_grace_s, and exit 0."""

import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import MHD_QUIESCE_PANIC, SLOW_FACTOR, RawConn, assert_problem, wait_until

# keel used to abort now and then inside libmicrohttpd at SIGTERM ("Failed to
# remove listen FD from epoll set") when a daemon was quiesced from the main
# thread while its own thread was running it. Each daemon is now quiesced on
# its own I/O thread; the abort must never come back.
def assert_clean_exit(srv, rc):
    assert MHD_QUIESCE_PANIC not in srv.log_text(), "libmicrohttpd quiesce abort"
    assert rc == 0, f"exit code {rc}\n{srv.log_text()[-3000:]}"


def in_flight(srv):
    """keel_http_requests_in_flight, not counting the scrape itself."""
    try:
        with requests.Session() as s:
            s.trust_env = False
            text = s.get(srv.url + "/metrics", timeout=2).text
    except requests.RequestException:
        return None
    m = re.search(r"^keel_http_requests_in_flight (\d+)$", text, flags=re.M)
    return int(m.group(1)) - 1 if m else None


class SlowRequest(threading.Thread):
    """GET /v1/dev/slow?ms=N in the background."""

    def __init__(self, srv, ms):
        super().__init__(daemon=True)
        self.url = f"{srv.url}/v1/dev/slow?ms={ms}"
        self.ms = ms
        self.response = None
        self.error = None
        self.done_at = None

    def run(self):
        try:
            s = requests.Session()
            s.trust_env = False
            self.response = s.get(self.url, timeout=30 * SLOW_FACTOR)
        except Exception as e:  # reported by the test
            self.error = e
        self.done_at = time.monotonic()


def connect_refused(port):
    """True once nothing listens on port. A reset means the attempt raced the
    listener closing (queued, then dropped): not refused yet, try again."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except (ConnectionResetError, TimeoutError):
        # A timeout: the SYN met a listener that was closing (a loaded
        # machine): not refused yet either.
        return False
    return False


def test_sigterm_drains_in_flight_request(fresh_server):
    srv = fresh_server()
    slow = SlowRequest(srv, 1500)
    slow.start()
    # The request has reached the handler (rather than a fixed sleep).
    assert wait_until(lambda: (in_flight(srv) or 0) >= 1, timeout=3), "slow request never started"
    time.sleep(0.1)
    t_term = time.monotonic()
    srv.send_signal(signal.SIGTERM)

    # New connections are refused while the slow request is still running.
    refused = wait_until(lambda: connect_refused(srv.port), timeout=1)
    if not slow.is_alive() and slow.error is not None:
        assert_clean_exit(srv, srv.wait(timeout=10))
    assert refused, "still accepting after SIGTERM"
    assert slow.is_alive(), (
        f"the slow request ended before the listener closed: {slow.error!r} "
        f"{slow.response and slow.response.status_code}\n{srv.log_text()[-3000:]}"
    )

    rc = srv.wait(timeout=10)  # http.shutdown_grace_s defaults to 10
    assert_clean_exit(srv, rc)
    slow.join(timeout=5)
    assert slow.error is None, slow.error
    assert slow.response.status_code == 200
    assert slow.response.json() == {"slept_ms": 1500}
    assert slow.done_at > t_term

    events = [l["event"] for l in srv.log_lines() if isinstance(l, dict) and "event" in l]
    assert "server.stopping" in events and "server.stopped" in events
    assert events.index("server.stopping") < events.index("server.stopped")
    stopping = srv.events("server.stopping")[0]
    assert stopping["signal"] == "SIGTERM"
    assert stopping["in_flight"] >= 1
    assert srv.events("server.stopped")[0]["abandoned"] == 0
    # The drained request was logged as sent.
    done = [l for l in srv.events("http.request") if l.get("path") == "/v1/dev/slow"]
    assert len(done) == 1 and done[0]["status"] == 200 and done[0]["sent"] is True


def test_readyz_is_ready_before_shutdown(fresh_server, http):
    srv = fresh_server()
    assert http.get(srv.url + "/readyz").status_code == 200
    assert srv.stop() == 0


def test_sigint_exits_0(fresh_server):
    srv = fresh_server()
    assert srv.stop(sig=signal.SIGINT, timeout=10) == 0
    assert srv.events("server.stopping")[0]["signal"] == "SIGINT"
    assert len(srv.events("server.stopped")) == 1


def test_idle_server_stops_quickly(fresh_server):
    srv = fresh_server()
    t0 = time.monotonic()
    assert srv.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 2 * SLOW_FACTOR


def test_request_longer_than_grace_still_exits_0(fresh_server):
    # The worker still finishes its 5 s job after the 1 s grace; only the exit
    # code is asserted here.
    srv = fresh_server(["--set", "http.shutdown_grace_s=1"])
    slow = SlowRequest(srv, 5000)
    slow.start()
    assert wait_until(lambda: (in_flight(srv) or 0) >= 1, timeout=3)
    assert_clean_exit(srv, srv.stop(timeout=20))
    assert len(srv.events("server.stopped")) == 1
    slow.join(timeout=10)


def test_readyz_503_while_draining(fresh_server):
    """An open keep-alive connection sees not_ready during the drain, and
    the connection is closed after that answer."""
    srv = fresh_server()
    with RawConn(srv.port) as c:
        c.send(b"GET /readyz HTTP/1.1\r\nHost: keel.test\r\n\r\n")
        assert c.read_response().status == 200
        slow = SlowRequest(srv, 1000)
        slow.start()
        assert wait_until(lambda: (in_flight(srv) or 0) >= 1, timeout=3)
        srv.send_signal(signal.SIGTERM)
        assert wait_until(lambda: srv.events("server.stopping"), timeout=2)
        # server.stopping is logged just before readiness turns false.
        for _ in range(50):
            c.send(b"GET /readyz HTTP/1.1\r\nHost: keel.test\r\n\r\n")
            r = c.read_response()
            if r.status != 200:
                break
            time.sleep(0.01)
        assert_problem(r, 503, "not_ready")
        assert r.headers["retry-after"] == "1"
        assert r.headers.get("connection", "").lower() == "close"
        assert c.closed_by_peer(2)
    assert_clean_exit(srv, srv.wait(timeout=10))
    slow.join(timeout=5)
    assert slow.response is not None and slow.response.status_code == 200
