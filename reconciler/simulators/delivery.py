"""Outgoing webhooks and browser redirects, sent from background lanes (thread + HTTP client)."""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .timers import TimerQueue

MAX_RETRIES = 3
RETRY_BACKOFF_S = 0.1
BROWSER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) verihook-simulated-browser/1.0"


@dataclass
class Delivery:
    """One HTTP request a provider makes towards us: a webhook POST or a browser redirect GET."""

    session_id: str
    kind: str  # "webhook" | "redirect"
    event: str  # e.g. "identity.verification_session.verified", "auto-finished", "redirect"
    method: str
    url: str | None  # None when no target is configured
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def succeeded(self, status: int | None) -> bool:
        """Webhooks need a 2xx; a redirect GET is fine below 400 (a 302 onwards is normal)."""
        if status is None:
            return False
        return 200 <= status < 300 if self.kind == "webhook" else status < 400


# on_result(delivery, record, status, error, ok, attempt, will_retry)
ResultCallback = Callable[
    [Delivery, dict[str, Any], "int | None", "str | None", bool, int, bool], None
]


class DeliveryLanes:
    """Parallel lanes; all deliveries of one session go through the same lane, in due-time order."""

    def __init__(self, lane_count: int, on_result: ResultCallback) -> None:
        self._on_result = on_result
        self._lanes = [TimerQueue(f"sim-delivery-{index}") for index in range(lane_count)]
        # one HTTP client per lane, created on first use (creating one costs ~50 ms)
        self._clients: list[httpx.Client | None] = [None] * lane_count
        self._clients_lock = threading.Lock()

    def send(
        self,
        delivery: Delivery,
        record: dict[str, Any],
        *,
        delay: float,
        timeout: float,
        retries: int,
    ) -> None:
        """Queue delivery to be sent after delay seconds; record is the truth entry to update."""
        lane = zlib.crc32(delivery.session_id.encode("utf-8")) % len(self._lanes)
        action = functools.partial(self._attempt, lane, delivery, record, 1, timeout, retries)
        self._lanes[lane].submit(delay, action)

    def _attempt(
        self,
        lane: int,
        delivery: Delivery,
        record: dict[str, Any],
        attempt: int,
        timeout: float,
        retries: int,
    ) -> None:
        """Send once, report the result, and schedule a retry when allowed."""
        status: int | None = None
        error: str | None = None
        try:
            response = self._client(lane).request(
                delivery.method,
                delivery.url or "",
                headers=delivery.headers,
                content=delivery.body,
                timeout=timeout,
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = delivery.succeeded(status)
        will_retry = not ok and attempt <= retries
        self._on_result(delivery, record, status, error, ok, attempt, will_retry)
        if will_retry:
            retry = functools.partial(
                self._attempt, lane, delivery, record, attempt + 1, timeout, retries
            )
            self._lanes[lane].submit(RETRY_BACKOFF_S * 2 ** (attempt - 1), retry)

    def _client(self, lane: int) -> httpx.Client:
        """The lane's HTTP client (no redirects followed, proxy settings ignored)."""
        with self._clients_lock:
            client = self._clients[lane]
            if client is None:
                client = self._clients[lane] = httpx.Client(follow_redirects=False, trust_env=False)
            return client

    def wait_idle(self, deadline: float) -> bool:
        """Block until every lane is idle or time.monotonic() passes deadline; True if idle."""
        return all(lane.wait_idle(deadline) for lane in self._lanes)

    def is_idle(self) -> bool:
        """True when no delivery is queued or in flight."""
        return all(lane.is_idle() for lane in self._lanes)

    def clear(self) -> None:
        """Forget every queued delivery."""
        for lane in self._lanes:
            lane.clear()

    def stop(self) -> None:
        """Stop the lanes and close their HTTP clients."""
        deadline = time.monotonic() + 3.0
        for lane in self._lanes:
            lane.stop(timeout=max(0.1, deadline - time.monotonic()))
        with self._clients_lock:
            clients, self._clients = self._clients, [None] * len(self._clients)
        for client in clients:
            if client is not None:
                client.close()
