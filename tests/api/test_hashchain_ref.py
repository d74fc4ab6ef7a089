"""The hash-chain reference implementation (docs/hash-chain.md) and its vectors.

No server: these check that the checked-in vectors are exactly what the
reference generates (so the C unit test compares against the specification,
not against a stale file) and pin the reference's own rules on a few values.
The C side is checked against the same vectors by tests/unit/test_events.c.
"""

import importlib.util
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "fixtures" / "hashchain_vectors.json"

_spec = importlib.util.spec_from_file_location("hashchain_ref", Path(__file__).with_name("hashchain_ref.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def test_vectors_are_generated_by_the_reference():
    assert VECTORS.read_text(encoding="utf-8") == ref.generate(), (
        "tests/fixtures/hashchain_vectors.json is stale: regenerate it with "
        "python3 tests/api/hashchain_ref.py --generate"
    )


def test_reals():
    # A list, not a dict: 0.0 and -0.0 are equal keys.
    cases = [
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (1.0, "1.0"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (5e-324, "5e-324"),
        (2.0**-24, "5.9604644775390625e-08"),  # not repr(): see docs/hash-chain.md
    ]
    for d, text in cases:
        assert ref.canonical_real(d) == text
        assert float(text) == d and math.copysign(1, float(text)) == math.copysign(1, d)


def test_strings_and_key_order():
    value = {"\U0001f600": 1, "\ue000": 2, "a\nb": "\"\\/\x7f\u2028", "": None}
    assert ref.canonical_value(value) == (
        '{"":null,"a\\u000ab":"\\"\\\\/\x7f\u2028","\ue000":2,"\U0001f600":1}'
    )


def test_timestamps():
    us = ref.parse_rfc3339("2026-03-01 17:29:59.123456789+05:30")
    assert ref.format_timestamp(us) == "2026-03-01T11:59:59.123456Z"
    assert ref.format_timestamp(ref.parse_rfc3339("1970-01-01T00:00:00Z")) == "1970-01-01T00:00:00.000000Z"


def test_chain_links():
    events = [
        {"id": "e1", "session_id": "s", "agent_id": "a", "type": "custom",
         "timestamp": "2026-03-01T12:00:00Z", "severity": "info"},
        {"id": "e2", "session_id": "s", "agent_id": "a", "type": "custom",
         "timestamp": "2026-03-01T12:00:01Z", "severity": "info", "data": {"n": 1}},
    ]
    h1 = ref.chain_hash(ref.ZERO_HASH, ref.canonical_event(events[0]))
    h2 = ref.chain_hash(h1, ref.canonical_event(events[1]))
    swapped = ref.chain_hash(ref.chain_hash(ref.ZERO_HASH, ref.canonical_event(events[1])),
                             ref.canonical_event(events[0]))
    assert len(h2) == 32 and h2 != swapped
