"""What the inbound endpoints and the health probes answer (receiver/webhooks.py, health.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from receiver.canonical import Source
from receiver.health import DEGRADED
from receiver.ingest import Outcome
from receiver.providers import REGISTRY
from reconciler.api.schemas.common import absent


def providers_taking(source: Source) -> str:
    """The providers that take deliveries of this kind, for a path parameter's description."""
    names = sorted(name for name, cls in REGISTRY.items() if source in cls.sources)
    return f"provider: {', '.join(names)}"


class IngestAnswer(BaseModel):
    """How a delivery was taken in."""

    status: Outcome
    event_id: int


class SignatureHeaders(BaseModel):
    """The providers' signature headers (each provider checks its own)."""

    model_config = ConfigDict(populate_by_name=True)

    contiguity_signature: str = absent(
        "contiguity: `t=<unix>,v1=<hex HMAC-SHA256>` (one or more v1)",
        alias="Contiguity-Signature",
    )
    idenfy_signature: str = absent(
        "idenfy: hex HMAC-SHA256 of the raw body", alias="Idenfy-Signature"
    )


class Payload(RootModel[dict[str, Any]]):
    """The provider's payload, exactly as it sent it."""


class CallbackQuery(BaseModel):
    """What a provider's redirect carries (docverify); never trusted for a status."""

    sessionId: str = absent("docverify: the session id")
    state: str = absent("docverify: the state stored when the session was created")


class Health(BaseModel):
    """Alive (a worker or scheduler: its loop beat recently enough)."""

    status: Literal["ok", "stalled"]
    last_beat_seconds_ago: float | None = Field(None, description="workers and the scheduler")


class Ready(BaseModel):
    """Ready to take traffic for this role, and the checks behind it."""

    status: Literal["ready", "not ready"]
    role: Literal["web", "worker", "scheduler"]
    checks: dict[str, bool | Literal[DEGRADED]] = Field(  # type: ignore[valid-type]
        description="database, migrations, redis: true when fine, false when failing; the web"
        ' role reports an unreachable Redis as "degraded" and stays ready'
    )


class Document(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""
