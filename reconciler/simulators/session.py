"""The simulator's own record of one verification session (its "truth")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .delivery import Delivery

COUNTER_NAMES = (
    "webhooks_emitted",
    "webhooks_sent",
    "webhooks_delivered",
    "webhooks_failed",
    "webhooks_dropped",
    "webhooks_duplicated",
    "webhooks_retried",
    "webhooks_undeliverable",
)


def new_stats() -> dict[str, Any]:
    """Fresh counters for GET /_sim/stats."""
    return {
        "status_calls": {},
        "token_calls": 0,
        "create_calls": 0,
        "auth_failures": 0,
        **dict.fromkeys(COUNTER_NAMES, 0),
        "errors_injected": {"status_5xx": 0, "status_429": 0, "status_garbage": 0},
        "slow_calls": 0,
        "internal_errors": 0,
    }


@dataclass
class SimSession:
    """Provider-side state of one session plus what the simulator did with it."""

    id: str
    provider_status: str
    user_ref: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    decided_by: str | None = None  # "auto" | "manual" once a decision status is reached
    final: bool = False  # no further provider changes expected
    deleted: bool = False
    scripted_outcome: str | None = None
    variant: str | None = None  # the real-world variant of the last script, if any
    script_generation: int = 0  # bumped to abort a running script
    script_active: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    extra: dict[str, Any] = field(default_factory=dict)  # provider-specific state

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append({"status": self.provider_status, "at": self.created_at})

    def set_status(self, status: str) -> float:
        """Move to a provider status, stamp it and return the time of the change."""
        now = time.time()
        self.provider_status = status
        self.updated_at = now
        self.history.append({"status": status, "at": now})
        return now

    def truth(self, canonical: str, extra_truth: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer of GET /_sim/sessions/<id>."""
        return {
            "id": self.id,
            "provider_status": self.provider_status,
            "canonical": canonical,
            "decided_by": self.decided_by,
            "final": self.final,
            "deleted": self.deleted,
            "user_ref": self.user_ref,
            "scripted_outcome": self.scripted_outcome,
            "variant": self.variant,
            "script_active": self.script_active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "history": list(self.history),
            **self.counters,
            "deliveries": [dict(entry) for entry in self.deliveries],
            **extra_truth,
        }


@dataclass(frozen=True)
class Step:
    """One scripted provider transition: apply it to the session, get the deliveries it causes.

    pause: seconds this step waits on top of step_interval (a late notification); the steps
    after it are pushed back as much."""

    status: str
    apply: Callable[[SimSession], list[Delivery]]
    pause: float = 0.0
