"""drop unused session deadlines: `verification_sessions.deadline_at` and `expires_at`

Issue 21. Both columns came with the initial schema and nothing ever wrote or read them: a
session's deadlines are computed from its provider's policy and `created_at`
(reconciler/planner.py), and the console shows the end of its lifetime the same way. The
downgrade adds them back, empty, as they always were.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_UNUSED = ('deadline_at', 'expires_at')


def upgrade() -> None:
    with op.batch_alter_table('verification_sessions', schema=None) as batch_op:
        for name in _UNUSED:
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table('verification_sessions', schema=None) as batch_op:
        for name in _UNUSED:
            batch_op.add_column(
                sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
            )
