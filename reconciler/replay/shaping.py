"""What the API, the console and the CLI show of a stored event and of a bulk replay run.

An event's detail carries its delivery, decrypted for operators (an audited action) and reduced to
names and sizes for auditors, and the observations it produced.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from receiver.services import Services
from receiver.store.db import transaction
from receiver.store.events import open_payload
from receiver.store.models import InboundEvent, ObservationRecord, VerificationSession
from receiver.store.read_models import EventObservation
from receiver.store.replay_models import Replay, ReplayState
from reconciler.audit.chain import append_audit
from reconciler.event_queries import NotFound, event_json, iso_time
from reconciler.replay.operator_audit import operator_draft


def _delivery_json(event: InboundEvent, services: Services, *, redacted: bool) -> dict[str, Any]:
    """The stored delivery: headers and body for operators; names and sizes for auditors."""
    try:
        record = open_payload(event, keyring=services.keyring)
    except Exception as exc:  # purged, or a key this process does not have
        return {"redacted": redacted, "available": False, "error": type(exc).__name__}
    body = str(record.get("body", "")).encode("latin-1")
    headers = [(str(k), str(v)) for k, v in record.get("headers", [])]
    query = [(str(k), str(v)) for k, v in record.get("query", [])]
    shown: dict[str, Any] = {
        "redacted": redacted,
        "available": True,
        "source": record.get("source"),
        "notification": record.get("notification"),
        "received_at": record.get("received_at"),
        "body_bytes": len(body),
    }
    if redacted:
        shown["header_names"] = sorted({k for k, _ in headers}, key=str.lower)
        shown["query_names"] = sorted({k for k, _ in query})
    else:
        shown["headers"] = [[k, v] for k, v in headers]
        shown["query"] = [[k, v] for k, v in query]
        shown["body"] = body.decode("utf-8", errors="replace")
    return shown


def _observation_json(row: ObservationRecord, session_row: VerificationSession) -> dict[str, Any]:
    return EventObservation.from_row(
        row, provider=session_row.provider, session_id=session_row.session_id
    ).answer()


def show_event(
    services: Services, event_id: int, *, redacted: bool, actor_name: str | None = None
) -> dict[str, Any]:
    """An event, its delivery (redacted for auditors) and the observations it produced.

    An unredacted view exposes personal data, so it is an operator action: it is written to the
    audit history as `operator:<actor_name>`.
    """
    if not redacted and not actor_name:
        raise ValueError("an unredacted view needs the operator's name for the audit history")
    with transaction(services.engine) as db:
        event = db.get(InboundEvent, event_id)
        if event is None:
            raise NotFound(f"no event {event_id}")
        observations = [
            _observation_json(obs, row)
            for obs, row in db.execute(
                select(ObservationRecord, VerificationSession)
                .join(
                    VerificationSession,
                    col(VerificationSession.id) == col(ObservationRecord.session_pk),
                )
                .where(col(ObservationRecord.event_id) == event_id)
                .order_by(col(ObservationRecord.id))
            )
        ]
        shown = {
            **event_json(event),
            "delivery": _delivery_json(event, services, redacted=redacted),
            "observations": observations,
        }
        if not redacted and shown["delivery"]["available"]:
            append_audit(
                db,
                [
                    operator_draft(
                        actor_name or "",
                        "event",
                        f"viewed the raw delivery of event {event_id}",
                        event=event,
                    )
                ],
            )
    return shown


def replay_json(row: Replay) -> dict[str, Any]:
    """A replay's state, progress (0..1) and summary."""
    if row.state == ReplayState.DONE:
        progress = 1.0
    else:
        progress = min(row.done / row.total, 1.0) if row.total else 0.0
    return {
        "id": row.id,
        "state": row.state,
        "total": row.total,
        "done": row.done,
        "progress": round(progress, 4),
        "filter": json.loads(row.filter_json),
        "summary": json.loads(row.summary_json),
        "last_event_id": row.last_event_id,
        "max_event_id": row.max_event_id,
        "error": row.error,
        "created_by": row.created_by,
        "created_at": iso_time(row.created_at),
        "updated_at": iso_time(row.updated_at),
        "started_at": iso_time(row.started_at),
        "finished_at": iso_time(row.finished_at),
    }
