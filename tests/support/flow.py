"""Helpers that drive deliveries through HTTP and the worker, and read the results back."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from receiver.store.audit_models import AuditEntry
from receiver.store.models import InboundEvent, ObservationRecord, OutboxEntry
from reconciler.drain import drain_ready_events
from tests.support import signing

API_TOKENS = (
    "backend:backend-token-0123456789,operator:operator-token-0123456789,"
    "auditor:auditor-token-0123456789"
)
BACKEND = {"Authorization": "Bearer backend-token-0123456789"}
OPERATOR = {"Authorization": "Bearer operator-token-0123456789"}
AUDITOR = {"Authorization": "Bearer auditor-token-0123456789"}


def send_contiguity(client, body: bytes):  # type: ignore[no-untyped-def]
    """POST a signed Contiguity delivery."""
    return client.post(
        "/webhooks/contiguity",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Contiguity-Signature": signing.contiguity_header(body, timestamp=int(time.time())),
        },
    )


def send_idenfy(client, body: bytes, notification: str | None = None):  # type: ignore[no-untyped-def]
    """POST a signed iDenfy delivery (to a per-notification URL when given)."""
    url = "/webhooks/idenfy" + (f"/{notification}" if notification else "")
    return client.post(
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "Idenfy-Signature": signing.idenfy_signature(body),
        },
    )


def send_idvapi(client, body: bytes):  # type: ignore[no-untyped-def]
    """POST an idvapi delivery to the secret-token URL."""
    return client.post(
        f"/webhooks/idvapi/{signing.IDVAPI_TOKEN}",
        data=body,
        headers={"Content-Type": "application/json"},
    )


def apply_all(services) -> Any:  # type: ignore[no-untyped-def]
    """Run the worker's drain until nothing is ready."""
    return drain_ready_events(services)


def count(engine, model, *where) -> int:  # type: ignore[no-untyped-def]
    """Rows of `model` matching `where`."""
    with Session(engine) as db:
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)
        return db.execute(query).scalar_one()


def audit_rows(engine) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    """Every audit entry in chain order."""
    with Session(engine) as db:
        return list(db.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


__all__ = ["InboundEvent", "ObservationRecord", "OutboxEntry", "AuditEntry"]
