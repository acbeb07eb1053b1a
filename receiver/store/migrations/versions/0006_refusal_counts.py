"""refusal counts: refused deliveries by provider, reason and ten-minute bucket

Refused deliveries store nothing of the request; this table keeps only how many were refused,
why and when, for `verihook doctor` (receiver/store/refusals.py).

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('refusal_counts',
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('bucket_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('last_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'reason', 'bucket_start')
    )


def downgrade() -> None:
    op.drop_table('refusal_counts')
