"""The one log line of each delivery, sampled under load (the counts stay exact in metrics).

A receiver process writes at most `per_second` delivery lines a second at INFO; past that it
counts what it left out, by answer, and says so in one line when the next second begins. At the
rates providers really send (a few a second) every delivery is logged; a burst (a replay from a
provider, a flood of forged requests) cannot make logging the bottleneck of ingest or drown the
logs. `verihook_deliveries_total` counts every delivery whatever is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("verihook.access")


class DeliveryLog:
    """Logs deliveries at INFO, at most `per_second` lines a second (0: no limit)."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._second = 0
        self._written = 0
        self._left_out: Counter[str] = Counter()

    def delivery(self, request: tuple[str, str, int, float], fields: dict[str, object]) -> None:
        """Log one delivery: `request` is (method, route template, status, milliseconds), made by
        `receiver.request_rules.access_line`; `fields` the delivery's provider, outcome,
        event_id and perhaps reason."""
        if not log.isEnabledFor(logging.INFO):
            return
        if self.per_second:
            left_out = self._admit(str(fields["outcome"]))
            if left_out is None:
                return
            if left_out:
                summary = ", ".join(f"{n} {answer}" for answer, n in sorted(left_out.items()))
                log.info(
                    "%d deliveries not logged in the last second: %s",
                    sum(left_out.values()),
                    summary,
                    extra={"count": sum(left_out.values())},
                )
        log.info(
            "%s %s %s %.1fms: %s %s delivery",
            *request,
            fields["outcome"],
            fields["provider"],
            extra=fields,
        )

    def _admit(self, outcome: str) -> Counter[str] | None:
        """None when this line is left out; else what was left out in the second just ended."""
        second = int(self._clock())
        with self._lock:
            ended: Counter[str] = Counter()
            if second != self._second:
                ended, self._left_out = self._left_out, Counter()
                self._second, self._written = second, 0
            if self._written >= self.per_second:
                self._left_out[outcome] += 1
                return None
            self._written += 1
            return ended
