"""event user refs: every stored event of a known session carries the session's user ref

Callbacks and poll answers (docverify, Nevis, and every provider's status polls) name a session
but no user, and a session's user ref can become known after its first events arrived (the
backend registers it later). From this revision on the apply path, the poller and the session
registration give those events the session's user ref; this backfills the events stored before,
so that every user filter (`GET /api/v1/events?user_ref=`, `verihook events list --user-ref`,
the console's "This user's events") finds them. An event's own user ref is never replaced.

The downgrade leaves the refs in place: they are true, and the older code reads them as any other.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_BACKFILL = """
UPDATE inbound_events SET user_ref = (
  SELECT s.user_ref FROM verification_sessions s
  WHERE s.provider = inbound_events.provider AND s.session_id = inbound_events.session_id
)
WHERE user_ref IS NULL AND session_id IS NOT NULL AND EXISTS (
  SELECT 1 FROM verification_sessions s
  WHERE s.provider = inbound_events.provider AND s.session_id = inbound_events.session_id
    AND s.user_ref IS NOT NULL
)
"""


def upgrade() -> None:
    op.execute(_BACKFILL)


def downgrade() -> None:
    pass
