"""Pure retry spacing: the one exponential backoff formula and the retry spacing the drain and
the notifier share. No I/O.

Used by the drain (a failed event's next try), the notifier (a failed POST's next try) and the
planner (the next poll of a session, with its policy's own base and cap).
"""

from __future__ import annotations

BACKOFF_BASE_SECONDS = 2.0
"""The first wait before a failed event or notification is tried again; it doubles each time."""
BACKOFF_MAX_SECONDS = 300.0
"""The longest of those waits."""


def exponential_backoff(step: int, *, base: float, cap: float) -> float:
    """Seconds to wait: `base * 2**step`, capped at `cap`; a negative step counts as 0."""
    return min(base * 2.0 ** max(step, 0), cap)


def backoff_seconds(attempts: int, base: float | None = None) -> float:
    """Seconds to wait after `attempts` failed attempts of an event or a notification: base,
    2·base, 4·base … (base BACKOFF_BASE_SECONDS unless given), capped at BACKOFF_MAX_SECONDS."""
    base = BACKOFF_BASE_SECONDS if base is None else base
    return exponential_backoff(attempts - 1, base=base, cap=BACKOFF_MAX_SECONDS)
