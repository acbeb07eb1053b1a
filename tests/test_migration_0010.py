"""Migration 0010 (issue 21): `verification_sessions` loses `deadline_at` and `expires_at`,
which nothing wrote or read; sessions and their indexes survive, forward and back, on both
stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from receiver.store.migrate import upgrade
from tests.support.migrations import downgrade, fresh_store

UNUSED = {"deadline_at", "expires_at"}


def _columns(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("verification_sessions")}


def _indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {i["name"] or "" for i in inspect(conn).get_indexes("verification_sessions")}


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_0010_drops_the_unused_deadlines_and_adds_them_back_on_downgrade(
    store: str, tmp_path: Path
) -> None:
    with fresh_store(store, tmp_path) as engine:
        upgrade(engine, "0009")
        assert UNUSED <= _columns(engine)
        indexes = _indexes(engine)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO verification_sessions (provider, session_id, status, decided_by,"
                    " created_at, updated_at, poll_attempts, overdue, settled) VALUES"
                    " ('contiguity', 'vs_1', 'pending', 'auto', '2026-12-06 13:00:00',"
                    " '2026-12-06 13:00:00', 0, false, false)"
                )
            )
        upgrade(engine)
        assert not UNUSED & _columns(engine)
        assert _indexes(engine) == indexes
        downgrade(engine, "0009")
        assert UNUSED <= _columns(engine)
        assert _indexes(engine) == indexes
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT session_id FROM verification_sessions")).scalars()
            assert list(kept) == ["vs_1"]
