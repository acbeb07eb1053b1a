"""Migration 0009 (issue 19): the outbox loses `ix_outbox_available`; on PostgreSQL the outbox
gets queue-like autovacuum thresholds. It runs forward and back on both stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from receiver.store.migrate import upgrade
from tests.support.migrations import downgrade, fresh_store


def _indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {index["name"] for index in inspect(conn).get_indexes("outbox")}


def _options(engine: Engine) -> list[str]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        found = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'outbox'"))
        return list(found.scalar_one() or [])


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_0009_drops_the_unread_outbox_index_and_restores_it_on_downgrade(
    store: str, tmp_path: Path
) -> None:
    with fresh_store(store, tmp_path) as engine:
        upgrade(engine, "0008")
        assert "ix_outbox_available" in _indexes(engine)
        upgrade(engine)
        assert "ix_outbox_available" not in _indexes(engine)
        if store == "postgresql":
            assert "autovacuum_vacuum_threshold=5000" in _options(engine)
        downgrade(engine, "0008")
        assert "ix_outbox_available" in _indexes(engine)
        assert _options(engine) == []
