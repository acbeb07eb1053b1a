"""Per-provider token buckets for status calls (the leader is the only caller)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` calls per second on average, bursts up to `burst`."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.capacity, self.clock = rate, burst or max(rate, 1.0), clock
        self.tokens, self.updated = self.capacity, clock()
        self.lock = threading.Lock()

    def try_take(self) -> bool:
        """Take one token if one is available now."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False
