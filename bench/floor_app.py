"""The durable floor for the ingest benchmark: the least a receiver that keeps its promise can do.

A Flask app (like bench/bare_app.py) that, per delivery, verifies iDenfy's HMAC over the raw body
(constant time), parses the JSON, and stores the body with one committed
`INSERT … ON CONFLICT (provider, dedupe_key) DO NOTHING` (its own transaction, on a connection
of its thread, kept open), then answers 200: nothing else (no encryption, no outbox, no secondary
index, no batching, no metrics, no log line). verihook ÷ floor says what verihook's extra work
costs; floor ÷ bare what durability itself costs. The table is `floor_events`, created by
`create_table` before the server starts, in the same database verihook uses.

Configured like verihook: VERIHOOK_DATABASE_URL and VERIHOOK_PROVIDERS__IDENFY__WEBHOOK_SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from typing import Any

from flask import Flask, jsonify, request

app = Flask("floor")
_local = threading.local()

_TABLE_POSTGRES = """
CREATE TABLE IF NOT EXISTS floor_events (
    id bigserial PRIMARY KEY, provider text NOT NULL, dedupe_key text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(), body bytea NOT NULL,
    UNIQUE (provider, dedupe_key))
"""
_TABLE_SQLITE = """
CREATE TABLE IF NOT EXISTS floor_events (
    id INTEGER PRIMARY KEY, provider TEXT NOT NULL, dedupe_key TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, body BLOB NOT NULL,
    UNIQUE (provider, dedupe_key))
"""
_INSERT = (
    "INSERT INTO floor_events (provider, dedupe_key, body) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (provider, dedupe_key) DO NOTHING"
)


def _url() -> str:
    return os.environ.get("VERIHOOK_DATABASE_URL", "sqlite:///var/verihook.db")


def _connect(url: str) -> Any:
    """A connection in autocommit mode: each statement is its own committed transaction."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # durable at commit, as verihook's SQLite store
        conn.execute("PRAGMA busy_timeout=10000")
        return conn
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def create_table(url: str) -> None:
    """Create floor_events (the benchmark calls this before starting the server)."""
    conn = _connect(url)
    conn.execute(_TABLE_SQLITE if url.startswith("sqlite") else _TABLE_POSTGRES)
    conn.close()


def _connection() -> Any:
    """This thread's connection, and the secret and statement read from the environment when
    the thread first serves (so a process can set the environment after importing this)."""
    conn = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "pid", None) != os.getpid():
        url = _url()
        conn = _local.conn = _connect(url)
        _local.pid = os.getpid()
        _local.secret = os.environ.get("VERIHOOK_PROVIDERS__IDENFY__WEBHOOK_SECRET", "").encode()
        _local.statement = _INSERT.format(p="?" if url.startswith("sqlite") else "%s")
    return conn


@app.post("/webhooks/<name>")
def webhook(name: str):  # type: ignore[no-untyped-def]
    """Verify, parse, store durably, answer."""
    body = request.get_data()
    conn = _connection()
    expected = hmac.new(_local.secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("Idenfy-Signature", "")):
        return jsonify({"error": "authentication failed"}), 401
    json.loads(body)
    key = "sha256:" + hashlib.sha256(body).hexdigest()
    conn.execute(_local.statement, (name, key, body))
    return jsonify({"status": "accepted", "event_id": 0})
