"""Alembic environment: the URL comes from verihook's settings, the tables from its models."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import receiver.store.all_tables  # noqa: F401  (registers every table on SQLModel.metadata)
from receiver.store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    """Run migrations on the engine passed in by `upgrade()`, or one built from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
