"""Service routes: /healthz, /readyz, /metrics, /v1/openapi.json."""

import re

import pgtest
from conftest import UUID_RE, wait_until

HEALTHZ_200 = 'keel_http_requests_total{route="/healthz",method="GET",status="200"}'
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text):
    """Prometheus text → {"name{labels}": float}; also checks the syntax of
    every line (comments are # HELP / # TYPE)."""
    samples = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line), line
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def scrape(http, server):
    r = http.get(server.url + "/metrics")
    assert r.status_code == 200
    return parse_metrics(r.text)


def test_healthz(http, server):
    r = http.get(server.url + "/healthz")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"status": "ok"}
    assert UUID_RE.match(r.headers["X-Request-Id"])


def test_readyz(http, server):
    r = http.get(server.url + "/readyz")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    body = r.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["store"] == "ok"
    assert checks["backend"] == pgtest.backend()
    assert isinstance(checks["schema_version"], int) and checks["schema_version"] >= 1


def test_metrics_format_and_series(http, server):
    r = http.get(server.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "version=0.0.4" in r.headers["Content-Type"]
    samples = parse_metrics(r.text)
    build = [k for k in samples if k.startswith("keel_build_info{")]
    assert len(build) == 1 and samples[build[0]] == 1
    assert re.search(r'version="\d+\.\d+\.\d+"', build[0]), build[0]
    assert "keel_http_requests_in_flight" in samples
    # The scrape itself is in flight while it renders.
    assert samples["keel_http_requests_in_flight"] >= 1
    assert "# TYPE keel_http_requests_total counter" in r.text
    assert "# TYPE keel_http_request_duration_seconds histogram" in r.text


def test_metrics_count_healthz(http, server):
    before = scrape(http, server).get(HEALTHZ_200, 0)
    for _ in range(3):
        assert http.get(server.url + "/healthz").status_code == 200
    # A request is counted when it completes, which can trail the client
    # receiving the response by a moment.
    after = wait_until(
        lambda: (lambda v: v if v >= before + 3 else 0)(scrape(http, server).get(HEALTHZ_200, 0)),
        timeout=2,
    )
    assert after == before + 3


def test_metrics_histogram_for_healthz(http, server):
    assert http.get(server.url + "/healthz").status_code == 200
    samples = wait_until(
        lambda: (lambda s: s if s.get(HEALTHZ_200, 0) >= 1 else None)(scrape(http, server)),
        timeout=2,
    )
    assert samples
    labels = 'route="/healthz",method="GET"'
    buckets = {
        k: v
        for k, v in samples.items()
        if k.startswith("keel_http_request_duration_seconds_bucket{") and labels in k
    }
    assert len(buckets) >= 2
    inf = samples[f'keel_http_request_duration_seconds_bucket{{{labels},le="+Inf"}}']
    count = samples[f"keel_http_request_duration_seconds_count{{{labels}}}"]
    total = samples[f"keel_http_request_duration_seconds_sum{{{labels}}}"]
    assert count >= 1 and inf == count
    assert total >= 0
    # Buckets are cumulative: non-decreasing with le.
    def le(k):
        v = re.search(r'le="([^"]+)"', k).group(1)
        return float("inf") if v == "+Inf" else float(v)

    values = [v for _, v in sorted(buckets.items(), key=lambda kv: le(kv[0]))]
    assert values == sorted(values)


def test_metrics_count_unmatched_404(http, server):
    r = http.get(server.url + "/no/such/route/for/metrics")
    assert r.status_code == 404
    key = 'keel_http_requests_total{route="unmatched",method="any",status="404"}'
    assert wait_until(lambda: scrape(http, server).get(key, 0) >= 1, timeout=2)


def test_openapi(http, server):
    r = http.get(server.url + "/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    doc = r.json()
    assert isinstance(doc["openapi"], str) and doc["openapi"].startswith("3.")
    assert "/healthz" in doc["paths"]
    assert "/readyz" in doc["paths"]
    assert isinstance(doc["info"]["title"], str)
