"""status class ended: canceled and expired rank below every decision (DESIGN §2, December)

The observations' stored `status_class` follows the revised classes: in-flight 0, ended 1,
auto decision 2, manual decision 3. The sessions whose current status this changes are merged
again by `verihook db upgrade` (reconciler/remerge.py), which writes an audit entry for each.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_REVISED = """
UPDATE observations SET status_class = CASE
  WHEN status IN ('pending', 'processing', 'requires_input') THEN 0
  WHEN status IN ('canceled', 'expired') THEN 1
  WHEN decided_by = 'manual' AND status IN ('verified', 'rejected') THEN 3
  ELSE 2 END
"""

_BEFORE = """
UPDATE observations SET status_class = CASE
  WHEN status IN ('pending', 'processing', 'requires_input') THEN 0
  WHEN decided_by = 'manual' AND status IN ('verified', 'rejected') THEN 2
  ELSE 1 END
"""


def upgrade() -> None:
    op.execute(_REVISED)


def downgrade() -> None:
    op.execute(_BEFORE)
