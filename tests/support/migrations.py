"""A fresh database of either store for a migration test, and alembic's downgrade on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine

from receiver.store.db import make_engine
from receiver.store.migrate import alembic_config
from tests.conftest import create_private_database, drop_private_database


@contextmanager
def fresh_store(store: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty database: a private PostgreSQL database (dropped after) or a
    SQLite file under `tmp_path`."""
    if store == "postgresql":
        try:
            url = create_private_database()
        except Exception:
            if os.environ.get("VERIHOOK_REQUIRE_POSTGRES") == "1":
                raise
            pytest.skip("PostgreSQL is not reachable (set VERIHOOK_REQUIRE_POSTGRES=1 to fail)")
    else:
        url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        if store == "postgresql":
            drop_private_database(url)


def downgrade(engine: Engine, revision: str) -> None:
    """`alembic downgrade revision` on `engine`'s database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
