"""The audit entry of an operator action on stored events (view, replay, bulk replay)."""

from __future__ import annotations

from receiver.store.models import InboundEvent
from reconciler.audit.chain import AuditDraft
from reconciler.event_queries import EventFilter


def operator_draft(
    actor_name: str,
    subject: str,
    reason: str,
    *,
    event: InboundEvent | None = None,
    flt: EventFilter | None = None,
    previous_status: str | None = None,
    new_status: str | None = None,
) -> AuditDraft:
    """The audit entry of an operator action (`operator:<token name>`, source `operator`)."""
    provider = session_id = user_ref = None
    if event is not None:
        provider, session_id, user_ref = event.provider, event.session_id, event.user_ref
    elif flt is not None:
        provider = flt.providers[0] if len(flt.providers) == 1 else None
        session_id, user_ref = flt.session_id, flt.user_ref
    return AuditDraft(
        actor=f"operator:{actor_name}"[:64],
        source="operator",
        subject=subject,
        provider=provider,
        session_id=session_id,
        user_ref=user_ref,
        previous_status=previous_status,
        new_status=new_status,
        decided_by=None,
        event_id=event.id if event is not None else None,
        reason=reason[:200],
    )
