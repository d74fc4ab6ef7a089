"""Ingestion helpers for keel's black-box tests (test_ingest.py, the query,
dead-letter and durability tests).

    from ingest_helpers import ingest_org, post_batch, post_event, ev, llm

ingest_org makes a fresh org (owner signed in) on a plan whose rate limits
do not get in the way, and an API key on it (org.key, scopes ingest, read,
admin by default). ev() builds one valid event with a unique id.
"""

import itertools
import os
import time

import dbdirect
from apikeys import call_with_key, make_key, new_org

_ids = itertools.count(1)


def ingest_org(server, plan="enterprise", scopes=("ingest", "read", "admin")):
    org = new_org(server, plan=plan)
    org.key = make_key(org, scopes=list(scopes))["key"]
    return org


def unique_id(prefix="ev"):
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}-{next(_ids)}"


def ev(session_id, type="custom", **members):
    """One valid event: a unique id unless id= is given (id=None: no id)."""
    e = {"id": unique_id(), "session_id": session_id, "type": type}
    e.update(members)
    if e.get("id") is None:
        del e["id"]
    return e


def llm(session_id, model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=200,
        **data):
    d = {"provider": provider, "model": model, "input_tokens": input_tokens,
         "output_tokens": output_tokens}
    d.update(data)
    return ev(session_id, "llm_call", data=d)


def post_batch(server, key, events, **kw):
    """POST /v1/events/batch {"events": events} with the key."""
    return call_with_key(server, key, "/v1/events/batch", method="POST", json={"events": events},
                         **kw)


def post_event(server, key, event, **kw):
    """POST /v1/events with one event."""
    return call_with_key(server, key, "/v1/events", method="POST", json=event, **kw)


def get(server, key, path, **kw):
    return call_with_key(server, key, path, **kw)


def uuid_blob(text):
    """The value to compare events.org_id / events.api_key_id with: SQLite
    keeps them as 16 raw bytes (schema 0006), PostgreSQL as uuid."""
    return dbdirect.uuid_value(text)
