"""Pure retry spacing: the one exponential backoff formula. No I/O.

Used by the drain (a failed event's next try), the notifier (a failed POST's next try) and the
planner (the next poll of a session); each passes its own base and cap.
"""

from __future__ import annotations


def exponential_backoff(step: int, *, base: float, cap: float) -> float:
    """Seconds to wait: `base * 2**step`, capped at `cap`; a negative step counts as 0."""
    return min(base * 2.0 ** max(step, 0), cap)
