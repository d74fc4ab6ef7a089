"""HTTP behaviour shared by every route: request ids, 404/405, HEAD, body
limits and framing, media types, JSON parsing, keep-alive, connection limits
and timeouts. POST /v1/dev/clock (--dev) is the JSON route under test: it
takes {"advance_seconds": int} and ignores other members; 0 leaves the clock
alone."""

import json
import time

import pytest

from conftest import (
    SLOW_FACTOR,
    UUID_RE,
    RawConn,
    assert_problem,
    json_body_of_size,
    raw_http,
    wait_until,
)

BODY_MAX = 65536  # default http.body_max
CLOCK = "/v1/dev/clock"
GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: keel.test\r\n\r\n"


def clock_head(length=None, ctype=b"application/json", chunked=False):
    h = b"POST " + CLOCK.encode() + b" HTTP/1.1\r\nHost: keel.test\r\n"
    if ctype is not None:
        h += b"Content-Type: " + ctype + b"\r\n"
    if length is not None:
        h += b"Content-Length: %d\r\n" % length
    if chunked:
        h += b"Transfer-Encoding: chunked\r\n"
    return h + b"\r\n"


def chunks_of(body, size=8192, terminate=True):
    out = [b"%x\r\n" % len(body[i:i + size]) + body[i:i + size] + b"\r\n" for i in range(0, len(body), size)]
    if terminate:
        out.append(b"0\r\n\r\n")
    return out


def post_clock(http, server, data, ctype="application/json"):
    headers = {"Content-Type": ctype} if ctype else {}
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode()
    return http.post(server.url + CLOCK, data=data, headers=headers)


# --- request ids ------------------------------------------------------------


def test_request_id_generated_when_absent(http, server):
    a = http.get(server.url + "/healthz")
    b = http.get(server.url + "/healthz")
    assert UUID_RE.match(a.headers["X-Request-Id"]), a.headers["X-Request-Id"]
    assert UUID_RE.match(b.headers["X-Request-Id"])
    assert a.headers["X-Request-Id"] != b.headers["X-Request-Id"]


@pytest.mark.parametrize("rid", ["abc-123_x.y", "Z", "a" * 64])
def test_request_id_echoed_when_sane(http, server, rid):
    r = http.get(server.url + "/healthz", headers={"X-Request-Id": rid})
    assert r.status_code == 200
    assert r.headers["X-Request-Id"] == rid


@pytest.mark.parametrize("rid", ["a" * 65, "abc 123", "abc<script>", "a/b", "é"])
def test_request_id_replaced_when_insane(server, rid):
    # Raw socket: requests would refuse to send some of these values.
    req = b"GET /healthz HTTP/1.1\r\nHost: keel.test\r\nX-Request-Id: " + rid.encode() + b"\r\n\r\n"
    status, headers, _ = raw_http(server.port, req)
    assert status == 200
    assert headers["x-request-id"] != rid
    assert UUID_RE.match(headers["x-request-id"]), headers["x-request-id"]


def test_request_id_on_errors(http, server):
    r = http.get(server.url + "/no/such/path", headers={"X-Request-Id": "err-trace.1"})
    body = assert_problem(r, 404, "not_found")
    assert body["request_id"] == "err-trace.1"
    r = http.post(server.url + "/healthz")
    assert_problem(r, 405, "method_not_allowed")
    assert UUID_RE.match(r.headers["X-Request-Id"])
    # Errors decided by the HTTP layer itself (before routing) carry it too.
    resp = raw_http(server.port, clock_head(BODY_MAX + 1), chunks=[b" " * (BODY_MAX + 1)])
    assert_problem(resp, 413, "payload_too_large")
    assert UUID_RE.match(resp[1]["x-request-id"])


# --- routing ---------------------------------------------------------------


def test_unknown_path_404(http, server):
    body = assert_problem(http.get(server.url + "/v1/nope"), 404, "not_found")
    assert body["title"] == "Not found"
    # A trailing slash is a different path.
    assert_problem(http.get(server.url + "/healthz/"), 404, "not_found")


def test_wrong_method_405_with_allow(http, server):
    r = http.post(server.url + "/healthz")
    assert_problem(r, 405, "method_not_allowed")
    assert [m.strip() for m in r.headers["Allow"].split(",")] == ["GET", "HEAD"]
    r = http.delete(server.url + CLOCK)
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "POST"


def test_head_healthz_has_no_body(http, server):
    r = http.head(server.url + "/healthz")
    assert r.status_code == 200
    assert r.content == b""
    assert UUID_RE.match(r.headers["X-Request-Id"])
    # On one connection: if HEAD sent body bytes, the next response would not
    # parse.
    with RawConn(server.port) as c:
        c.send(b"HEAD /healthz HTTP/1.1\r\nHost: keel.test\r\n\r\n" + GET_HEALTHZ)
        head = c.read_response(head_request=True)
        assert head.status == 200 and head.body == b""
        get = c.read_response()
        assert get.status == 200
        assert json.loads(get.body) == {"status": "ok"}


# --- body limits -------------------------------------------------------------


def test_declared_length_over_limit_413(server):
    body = json_body_of_size(BODY_MAX + 1, advance_seconds=0)
    resp = raw_http(server.port, clock_head(len(body)), chunks=[body])
    doc = assert_problem(resp, 413, "payload_too_large")
    assert str(BODY_MAX) in doc["detail"]
    assert resp[1].get("connection", "").lower() == "close"


def test_declared_length_at_limit_accepted(http, server):
    body = json_body_of_size(BODY_MAX, advance_seconds=0)
    assert len(body) == BODY_MAX
    r = post_clock(http, server, body)
    assert r.status_code == 200, r.text
    assert r.json()["offset_seconds"] >= 0


def test_chunked_body_over_limit_413(server):
    body = json_body_of_size(BODY_MAX + 1, advance_seconds=0)
    resp = raw_http(server.port, clock_head(chunked=True), chunks=chunks_of(body))
    assert_problem(resp, 413, "payload_too_large")


@pytest.mark.parametrize("size", [100, BODY_MAX])
def test_chunked_body_within_limit_accepted(server, size):
    body = json_body_of_size(size, advance_seconds=0)
    status, headers, rbody = raw_http(server.port, clock_head(chunked=True), chunks=chunks_of(body))
    assert status == 200, rbody
    assert headers["content-type"] == "application/json"
    assert "now" in json.loads(rbody)


def test_body_on_route_without_body_413(server):
    req = b"GET /healthz HTTP/1.1\r\nHost: keel.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    assert_problem(raw_http(server.port, req), 413, "payload_too_large")


# --- media types ---------------------------------------------------------------


def test_text_plain_body_415(http, server):
    r = post_clock(http, server, b'{"advance_seconds":0}', ctype="text/plain")
    body = assert_problem(r, 415, "unsupported_media_type")
    assert "application/json" in body["detail"]


def test_missing_content_type_with_body_415(server):
    data = b'{"advance_seconds":0}'
    resp = raw_http(server.port, clock_head(len(data), ctype=None), chunks=[data])
    assert_problem(resp, 415, "unsupported_media_type")


def test_json_with_charset_parameter_accepted(http, server):
    r = post_clock(http, server, b'{"advance_seconds":0}', ctype="application/json; charset=utf-8")
    assert r.status_code == 200, r.text


# --- framing -------------------------------------------------------------------


def test_transfer_encoding_and_content_length_400(server):
    req = clock_head(5, chunked=True) + b"0\r\n\r\n"
    resp = raw_http(server.port, req)
    body = assert_problem(resp, 400, "ambiguous_framing")
    assert "Transfer-Encoding" in body["detail"]
    assert resp[1].get("connection", "").lower() == "close"


def test_two_content_length_headers_400(server):
    req = clock_head(2)[:-2] + b"Content-Length: 2\r\n\r\n{}"
    body = assert_problem(raw_http(server.port, req), 400, "ambiguous_framing")
    assert "Content-Length" in body["detail"]


def test_two_transfer_encoding_headers_400(server):
    req = clock_head(chunked=True)[:-2] + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert_problem(raw_http(server.port, req), 400, "ambiguous_framing")


def test_non_numeric_content_length_400(server):
    # libmicrohttpd refuses this itself, before keel sees the request.
    req = clock_head(ctype=b"application/json")[:-2] + b"Content-Length: abc\r\n\r\n{}"
    status, headers, _ = raw_http(server.port, req)
    assert status == 400
    assert headers.get("connection", "").lower() == "close"


@pytest.mark.xfail(
    strict=True,
    reason="a non-numeric Content-Length is answered by libmicrohttpd itself: HTML body, "
    "no X-Request-Id, and (MHD 0.9.75) the status line and headers are sent twice",
)
def test_non_numeric_content_length_is_problem_json(server):
    req = clock_head(ctype=b"application/json")[:-2] + b"Content-Length: abc\r\n\r\n{}"
    resp = raw_http(server.port, req)
    assert_problem(resp, 400, "ambiguous_framing")


# --- request target length ---------------------------------------------------------


def get_target(server, target):
    return raw_http(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: keel.test\r\n\r\n")


def test_uri_too_long_414(server):
    resp = get_target(server, b"/" + b"a" * 2100)
    body = assert_problem(resp, 414, "uri_too_long")
    assert "2048" in body["detail"]
    assert_problem(get_target(server, b"/" + b"a" * 8000), 414, "uri_too_long")


def test_uri_beyond_connection_memory_414_from_library(server):
    # A request line that does not fit the per-connection memory pool (16 KiB)
    # is refused by libmicrohttpd before keel sees it: still 414 and the
    # connection is closed, but with the library's HTML body and without
    # X-Request-Id (a gap in the "every response carries X-Request-Id"
    # contract, reported). Only the status and the close are asserted.
    status, headers, _ = get_target(server, b"/" + b"a" * 40000)
    assert status == 414
    assert headers.get("connection", "").lower() == "close"


def test_uri_limit_counts_path_and_query(server):
    # Exactly 2048 bytes with a query string: accepted; 2049: refused.
    at = b"/healthz?" + b"q" * (2048 - 9)
    assert len(at) == 2048
    assert get_target(server, at)[0] == 200
    assert_problem(get_target(server, at + b"q"), 414, "uri_too_long")
    assert_problem(get_target(server, b"/" + b"a" * 2048), 414, "uri_too_long")  # 2049 bytes


def test_uri_of_2048_bytes_without_query_accepted(server):
    target = b"/" + b"a" * 2047
    assert len(target) == 2048
    # No route matches it: 404, not 414.
    assert_problem(get_target(server, target), 404, "not_found")


# --- JSON bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b'{"advance_seconds":', b"{'advance_seconds': 0}", b'{"advance_seconds":0} x', b"\xff\xfe"],
    ids=["truncated", "single-quotes", "trailing-data", "not-utf8"],
)
def test_invalid_json_400(http, server, data):
    assert_problem(post_clock(http, server, data), 400, "invalid_json")


@pytest.mark.parametrize("data", [b"[]", b'[{"advance_seconds":0}]', b"0", b'"x"', b"null"])
def test_json_not_an_object_400(http, server, data):
    body = assert_problem(post_clock(http, server, data), 400, "invalid_json")
    assert body["detail"]


def test_empty_body_400(http, server):
    assert_problem(post_clock(http, server, b""), 400, "invalid_json")


def test_duplicate_member_400(http, server):
    r = post_clock(http, server, b'{"advance_seconds":0,"advance_seconds":1}')
    assert_problem(r, 400, "invalid_json")


def nested(depth):
    """A JSON object whose nesting depth (containers) is depth."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"advance_seconds":0,"n":%s}' % inner).encode()


def test_json_depth_33_refused(http, server):
    body = assert_problem(post_clock(http, server, nested(33)), 400, "invalid_json")
    assert "32" in body["detail"]


def test_json_depth_32_accepted(http, server):
    r = post_clock(http, server, nested(32))
    assert r.status_code == 200, r.text


def test_wrong_field_type_validation_failed(http, server):
    r = post_clock(http, server, {"advance_seconds": "x"})
    body = assert_problem(r, 400, "validation_failed")
    errors = body["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    assert errors[0]["field"] == "advance_seconds"
    assert isinstance(errors[0]["code"], str) and errors[0]["code"]
    assert isinstance(errors[0]["message"], str) and errors[0]["message"]


@pytest.mark.parametrize("data", [{}, {"advance_seconds": -1}, {"advance_seconds": 1.5}])
def test_missing_or_out_of_range_field(http, server, data):
    body = assert_problem(post_clock(http, server, data), 400, "validation_failed")
    assert body["errors"][0]["field"] == "advance_seconds"


# --- connections -----------------------------------------------------------------


def test_keep_alive_two_requests_one_connection(server):
    with RawConn(server.port) as c:
        c.send(GET_HEALTHZ)
        first = c.read_response()
        c.send(GET_HEALTHZ)
        second = c.read_response()
    assert first.status == 200 and second.status == 200
    assert json.loads(second.body) == {"status": "ok"}
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_keep_alive_after_404_and_pipelined(server):
    with RawConn(server.port) as c:
        c.send(b"GET /missing HTTP/1.1\r\nHost: keel.test\r\n\r\n")
        miss = c.read_response()
        assert_problem(miss, 404, "not_found")
        assert miss.headers.get("connection", "").lower() != "close"
        c.send(GET_HEALTHZ)
        assert c.read_response().status == 200
        # Two requests in one write.
        c.send(b"GET /missing HTTP/1.1\r\nHost: keel.test\r\n\r\n" + GET_HEALTHZ)
        assert c.read_response().status == 404
        assert c.read_response().status == 200


def _healthz_status(port):
    try:
        return raw_http(port, GET_HEALTHZ, timeout=2)[0]
    except OSError:
        return None


def test_per_ip_connection_limit(fresh_server):
    srv = fresh_server(["--set", "http.per_ip_connections=2"])
    held = [RawConn(srv.port), RawConn(srv.port)]
    try:
        for c in held:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: keel.test\r\n")  # headers not finished
        time.sleep(0.3 * SLOW_FACTOR)  # both accepted by now
        with pytest.raises(OSError):  # closed or reset without a response
            raw_http(srv.port, GET_HEALTHZ, timeout=3)
        # The held connections are served normally.
        held[0].send(b"\r\n")
        assert held[0].read_response().status == 200
        # Once one of them is gone, a new connection gets through.
        held[1].close()
        assert wait_until(lambda: _healthz_status(srv.port) == 200, timeout=3)
    finally:
        for c in held:
            c.close()


def test_idle_connection_timeout(fresh_server, server):
    srv = fresh_server(["--set", "http.timeout_s=1"])
    with RawConn(srv.port) as c, RawConn(server.port) as control:
        c.send(GET_HEALTHZ)
        assert c.read_response().status == 200
        control.send(GET_HEALTHZ)
        assert control.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(3.0), "idle connection still open after 3 s"
        elapsed = time.monotonic() - t0
        assert 0.5 <= elapsed <= 3.0 * SLOW_FACTOR, elapsed
        # The default timeout (30 s) keeps the other server's connection open.
        assert not control.closed_by_peer(0.1)
        control.send(GET_HEALTHZ)
        assert control.read_response().status == 200


def test_idle_connection_without_request_times_out(fresh_server):
    srv = fresh_server(["--set", "http.timeout_s=1"])
    with RawConn(srv.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\n")  # a slow client: never finishes
        t0 = time.monotonic()
        assert c.closed_by_peer(3.0)
        assert time.monotonic() - t0 >= 0.5


def test_unknown_method_is_501(server):
    status, headers, body = raw_http(
        server.port, b"BREW /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 501
    assert headers.get("content-type") == "application/problem+json"
    doc = json.loads(body)
    assert doc["code"] == "not_implemented"
    assert "BREW" in doc["detail"]
    assert headers.get("x-request-id")
