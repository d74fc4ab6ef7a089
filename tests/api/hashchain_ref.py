#!/usr/bin/env python3
"""Reference implementation of keel's event canonical form and hash chain.

docs/hash-chain.md is the specification; this file is a second, independent
implementation of it (standard library only) that anyone can read and run to
recompute the hashes keel stores. keel's C implementation (src/domain/
events_canon.c) is checked against the vectors this script generates.

Usage:
  hashchain_ref.py --generate            print the test vectors (JSON) to stdout
  hashchain_ref.py --check FILE          exit 1 unless FILE equals --generate
  hashchain_ref.py --chain EVENTS.json   read a JSON array of one session's
                                         events in order, print each hash

The vectors are checked in as tests/fixtures/hashchain_vectors.json:
  python3 tests/api/hashchain_ref.py --generate > tests/fixtures/hashchain_vectors.json
"""

import hashlib
import json
import math
import re
import sys

ZERO_HASH = bytes(32)
MEMBER_ORDER = (
    "id",
    "session_id",
    "agent_id",
    "type",
    "timestamp",
    "severity",
    "data",
    "metadata",
    "tags",
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# --- strings -----------------------------------------------------------------


def canonical_string(s):
    """'"', '\\' and U+0000..U+001F escaped (the latter as \\u00xx, lower-case
    hex); everything else as itself (the result is encoded as UTF-8)."""
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# --- numbers -----------------------------------------------------------------


def real_digits(d):
    """The shortest correctly rounded '%.{p}e' (p = 0..16) that reads back as
    d: returns (significant digits without trailing zeros, decimal exponent)."""
    for p in range(17):
        text = "%.*e" % (p, d)
        if float(text) == d:
            break
    mantissa, exponent = text.split("e")
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    return digits, int(exponent)


def canonical_real(d):
    if not math.isfinite(d):
        raise ValueError("non-finite numbers have no canonical form")
    digits, e = real_digits(d)
    sign = "-" if math.copysign(1.0, d) < 0 else ""
    if -4 <= e < 16:
        if e >= 0:
            int_part = digits[: e + 1].ljust(e + 1, "0")
            frac_part = digits[e + 1 :] or "0"
            return sign + int_part + "." + frac_part
        return sign + "0." + "0" * (-e - 1) + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return "%s%se%s%02d" % (sign, mantissa, "-" if e < 0 else "+", abs(e))


# --- values ------------------------------------------------------------------


def canonical_value(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise ValueError("integers must fit in 64 bits")
        return str(v)
    if isinstance(v, float):
        return canonical_real(v)
    if isinstance(v, str):
        return canonical_string(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical_value(x) for x in v) + "]"
    if isinstance(v, dict):
        members = sorted(v.items(), key=lambda kv: kv[0].encode("utf-8"))
        return (
            "{"
            + ",".join(canonical_string(k) + ":" + canonical_value(x) for k, x in members)
            + "}"
        )
    raise TypeError("not a JSON value: %r" % (v,))


# --- time --------------------------------------------------------------------

RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
US_PER_DAY = 86_400_000_000
MIN_US = -62135596800 * 1_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253402300800 * 1_000_000  # 10000-01-01T00:00:00Z (exclusive)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def days_in_month(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def parse_rfc3339(text):
    """RFC 3339 as keel reads it (docs/events.md): µs since the epoch, UTC;
    fraction digits past the sixth are dropped (truncated)."""
    m = RFC3339.match(text)
    if not m:
        raise ValueError("not an RFC 3339 date-time: %r" % text)
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo) and h <= 23 and mi <= 59):
        raise ValueError("date-time out of range: %r" % text)
    if y < 1 or s > 59:
        raise ValueError("date-time out of range: %r" % text)
    frac = (m.group(7) or "")[:6].ljust(6, "0")
    offset = 0
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise ValueError("bad offset: %r" % text)
        offset = (oh * 3600 + om * 60) * (-1 if m.group(9) == "-" else 1)
    secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    us = secs * 1_000_000 + int(frac)
    if not MIN_US <= us < MAX_US:
        raise ValueError("date-time outside years 0001..9999 in UTC: %r" % text)
    return us


def format_timestamp(us):
    """'YYYY-MM-DDTHH:MM:SS.ffffffZ': always six fraction digits, UTC."""
    days, us_of_day = divmod(us, US_PER_DAY)
    y, m, d = civil_from_days(days)
    secs, frac = divmod(us_of_day, 1_000_000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (
        y,
        m,
        d,
        secs // 3600,
        secs // 60 % 60,
        secs % 60,
        frac,
    )


# --- events and the chain ----------------------------------------------------


def canonical_event(ev):
    """The canonical bytes of an enriched event: a dict with id, session_id,
    agent_id, type, timestamp (any RFC 3339 form), severity and optionally
    data, metadata, tags (absent or null: {}, {}, [])."""
    members = []
    for key in MEMBER_ORDER:
        value = ev.get(key)
        if key == "timestamp":
            value = format_timestamp(parse_rfc3339(value))
        elif value is None and key in ("data", "metadata"):
            value = {}
        elif value is None and key == "tags":
            value = []
        elif value is None:
            raise ValueError("an enriched event has %s" % key)
        members.append(canonical_string(key) + ":" + canonical_value(value))
    return ("{" + ",".join(members) + "}").encode("utf-8")


def chain_hash(prev, canonical):
    """SHA-256(prev || canonical); prev is 32 zero bytes for the first event
    of a session."""
    return hashlib.sha256(prev + canonical).digest()


def enrich(ev, received_us):
    """The defaults keel applies to a client event before hashing (ids are
    generated by keel when absent, so an event here must carry one)."""
    out = {k: v for k, v in ev.items() if v is not None}
    if "id" not in out:
        raise ValueError("the reference cannot generate ids; give the event one")
    out.setdefault("agent_id", "default")
    out.setdefault("severity", "info")
    out.setdefault("timestamp", format_timestamp(received_us))
    return out


def load_json(text):
    """json.loads with keel's parser rules: no NaN/Infinity, no duplicate keys."""

    def no_constants(name):
        raise ValueError("%s is not JSON" % name)

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate object key")
        return dict(pairs)

    return json.loads(text, parse_constant=no_constants, object_pairs_hook=no_duplicates)


# --- test vectors ------------------------------------------------------------

RECEIVED = "2026-03-01T12:00:00Z"

# (name, exact request body for POST /v1/events). Bodies are raw text so that
# number and escape spellings reach both parsers as written.
VECTOR_BODIES = [
    (
        "minimal event: every default applied",
        '{"id":"evt-0001","session_id":"sess-a","type":"session_start"}',
    ),
    (
        "llm_call with tokens, a real latency and a decimal-string cost",
        '{"id":"evt-0002","session_id":"sess-a","agent_id":"planner","type":"llm_call",'
        '"timestamp":"2026-03-01T11:59:58.5Z","severity":"debug",'
        '"data":{"provider":"anthropic","model":"claude-sonnet-4-5","input_tokens":1200,'
        '"output_tokens":350,"reasoning_tokens":100,"cache_read_tokens":1000,'
        '"cache_write_tokens":0,"latency_ms":812.25,"status":"ok","cost_usd":"0.0042"},'
        '"metadata":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","attempt":1},'
        '"tags":["prod","eu-west"]}',
    ),
    (
        "unicode: keys sorted by UTF-8 bytes (U+E000 before U+1F600, unlike UTF-16)",
        '{"id":"evt-0003","session_id":"sess-b","type":"custom","data":{'
        '"\U0001f600":"emoji key","\ue000":"private use","\uffff":"last BMP",'
        '"\u00fc":1,"\u00e9":2,"e":3,"a":4,"Z":5,"":6,"aa":7,'
        '"text":"h\u00e9llo \u2014 \u4e16\u754c \U0001f600",'
        '"escaped":"h\\u00e9llo \\u2014 \\u4e16\\u754c \\ud83d\\ude00"},'
        '"tags":["\u00e9t\u00e9","\U0001f680"]}',
    ),
    (
        "escapes: only quote, backslash and control characters are escaped",
        '{"id":"evt-0004","session_id":"sess-b","type":"agent_action","data":{'
        '"quote":"say \\"hi\\"","backslash":"C:\\\\temp","slash":"a\\/b",'
        '"controls":"\\b\\f\\n\\r\\t\\u0001\\u001f","del":"\\u007f",'
        '"separators":"\\u2028\\u2029","key\\nwith\\ttabs":true}}',
    ),
    (
        "numbers: integers exact, reals shortest round-trip",
        '{"id":"evt-0005","session_id":"sess-a","type":"custom","data":{'
        '"ints":[0,-0,1,-1,100,9223372036854775807,-9223372036854775808,123456789012345678],'
        '"reals":[0.1,1e21,1E+21,-0.0,0.0,1.0,100.0,1e16,1e15,1234567890123456.0,'
        "12345678901234567.0,0.0001,0.00001,1e-7,1.5e-7,2.5,-3.14159,5e-324,"
        "1.7976931348623157e308,0.30000000000000004,1e-400,123.456e2,9007199254740993.0,"
        "5.9604644775390625e-08,5.960464477539063e-08,2.5e-5,1e100,-1.5e-300],"
        '"latency":12.0}}',
    ),
    (
        "nesting, empty containers and literals",
        '{"id":"evt-0006","session_id":"sess-b","type":"custom","data":{'
        '"z":{"y":{"x":{"w":{"v":{"u":{"t":{"s":{"r":{"q":[[[[]]]]}}}}}}}}},'
        '"empty_object":{},"empty_array":[],"literals":[null,true,false],'
        '"list":[{"b":1,"a":2},{"d":[3,{"f":4,"e":5}],"c":null}]},'
        '"metadata":{"b":{"d":1,"c":2},"a":[]}}',
    ),
    (
        "timestamp with an offset and nine fraction digits (truncated to µs)",
        '{"id":"evt-0007","session_id":"sess-a","type":"tool_call",'
        '"timestamp":"2026-03-01 17:29:59.123456789+05:30",'
        '"data":{"tool_name":"search","call_id":"call-7","duration_ms":15}}',
    ),
    (
        "lower-case t and z; the upper bound: exactly 5 minutes ahead",
        '{"id":"evt-0008","session_id":"sess-b","type":"tool_result",'
        '"timestamp":"2026-03-01t12:05:00z",'
        '"data":{"tool_name":"search","call_id":"call-7","status":"ok"}}',
    ),
    (
        "tool_error with a multi-line error",
        '{"id":"evt-0009","session_id":"sess-a","type":"tool_error","severity":"error",'
        '"data":{"tool_name":"http_get","error":"timeout after 30s\\n\\tat fetch()",'
        '"duration_ms":30000.5,"status":"timeout"}}',
    ),
    (
        "null members are absent ones",
        '{"id":"Evt_01.a:b-Z9","session_id":"sess-c","agent_id":null,"type":"feedback",'
        '"severity":null,"timestamp":null,"data":null,"metadata":null,"tags":null}',
    ),
    (
        "explicit empty members equal absent ones",
        '{"id":"evt-0011","session_id":"sess-c","agent_id":"default","type":"health_check",'
        '"severity":"info","data":{},"metadata":{},"tags":[]}',
    ),
    (
        "critical guardrail with client cost as a number",
        '{"id":"evt-0012","session_id":"sess-c","type":"guardrail","severity":"critical",'
        '"timestamp":"2026-02-28T23:59:59Z","data":{"rule":"pii","blocked":true,'
        '"score":0.97},"tags":["safety"]}',
    ),
    (
        "session end, second link of sess-b's chain continues after others",
        '{"id":"evt-0013","session_id":"sess-b","type":"session_end",'
        '"timestamp":"2026-03-01T12:00:00.000001Z","data":{"reason":"done"}}',
    ),
]


def generate():
    received_us = parse_rfc3339(RECEIVED)
    heads = {}
    vectors = []
    for name, body in VECTOR_BODIES:
        ev = enrich(load_json(body), received_us)
        canonical = canonical_event(ev)
        prev = heads.get(ev["session_id"], ZERO_HASH)
        digest = chain_hash(prev, canonical)
        heads[ev["session_id"]] = digest
        vectors.append(
            {
                "name": name,
                "body": body,
                "canonical": canonical.decode("utf-8"),
                "prev_hash": prev.hex(),
                "hash": digest.hex(),
            }
        )
    doc = {
        "comment": "Generated by tests/api/hashchain_ref.py --generate; do not edit by hand. "
        "Each body is posted as one event received at 'received'; chains are per "
        "session_id, in the order listed.",
        "received": RECEIVED,
        "vectors": vectors,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv):
    if argv[1:] == ["--generate"]:
        sys.stdout.write(generate())
        return 0
    if len(argv) == 3 and argv[1] == "--check":
        with open(argv[2], encoding="utf-8") as f:
            same = f.read() == generate()
        print("vectors up to date" if same else "vectors differ from --generate")
        return 0 if same else 1
    if len(argv) == 3 and argv[1] == "--chain":
        with open(argv[2], encoding="utf-8") as f:
            events = load_json(f.read())
        prev = ZERO_HASH
        for ev in events:
            prev = chain_hash(prev, canonical_event(ev))
            print(prev.hex())
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
