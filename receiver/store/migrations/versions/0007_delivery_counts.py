"""delivery counts and session polls: what on-call triage reads in the console

`delivery_counts` counts the repeated deliveries of an event (answered `duplicate` at ingest), one
row per event delivered more than once; `session_polls` keeps the recent checks of each session
(time, outcome, the event a new answer was stored as). See receiver/store/trace_models.py.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_counts',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.Column('last_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    op.create_table('session_polls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_pk', sa.Integer(), nullable=False),
    sa.Column('polled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_session_polls_session', 'session_polls', ['session_pk', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_session_polls_session', table_name='session_polls')
    op.drop_table('session_polls')
    op.drop_table('delivery_counts')
