"""lean ingest and fresh statistics: the outbox loses an index nobody reads; queue-like tables
get their own autovacuum thresholds (PostgreSQL)

Issue 19. `ix_outbox_available` cost every delivery an index entry (68 of the 2,600 bytes of WAL
a delivery writes, bench.wal_per_delivery) and served no query: workers claim ready rows in
event-id order through the primary key (the available_at filter only skips the few rows waiting
out a backoff), and the sweeper and the metrics count the whole, small, table. The outbox is a
queue (every row is inserted, then deleted within seconds), so autovacuum should clean it after
a fixed number of dead rows rather than a share of a size that swings from 0 to a backlog; the
tables the drain grows are analyzed after 5 % of change instead of 10 % (the drain analyzes them
itself as they grow, receiver/store/statistics.py; this is for the time no worker runs).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_QUEUE = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000"
)
_GROWING = ("verification_sessions", "observations", "user_records")


def upgrade() -> None:
    op.drop_index('ix_outbox_available', table_name='outbox')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE outbox SET ({_QUEUE})")
        for table in _GROWING:
            op.execute(f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0.05)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in _GROWING:
            op.execute(f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor)")
        names = ", ".join(part.split(" = ")[0] for part in _QUEUE.split(", "))
        op.execute(f"ALTER TABLE outbox RESET ({names})")
    op.create_index('ix_outbox_available', 'outbox', ['available_at'], unique=False)
