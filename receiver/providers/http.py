"""Outbound HTTP to providers: httpx with timeouts and bounded retries on 429/5xx.

Base URLs come only from configuration: nothing in a payload can choose where we connect.
`Retry-After` (seconds) is honoured up to MAX_RETRY_AFTER_SECONDS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx

from receiver.exceptions import VerihookError

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MAX_ATTEMPTS = 3
MAX_RETRY_AFTER_SECONDS = 5.0
BACKOFF_SECONDS = 0.2
RETRYABLE = frozenset({429, 500, 502, 503, 504})

_DEADLINE: ContextVar[float | None] = ContextVar("provider_call_deadline", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Bound every provider call made inside (attempts, waits and retries together).

    For calls someone is waiting on, like `POST /api/v1/sessions`: without it a slow provider
    could hold the caller for MAX_ATTEMPTS × the read timeout. Past the budget a call raises
    ProviderUnavailable. Nested budgets keep the tighter deadline.
    """
    deadline = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _remaining() -> float | None:
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class ProviderUnavailable(VerihookError):
    """The provider did not answer usefully after retries (network error, 429 or 5xx)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class ProviderRejected(VerihookError):
    """The provider refused the request (4xx other than 429)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds, when it is a number."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def request_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> Any:
    """Send a request, retrying 429/5xx and network errors; return the decoded JSON answer."""
    last: ProviderUnavailable | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        remaining = _remaining()
        if remaining is not None:
            if remaining <= 0:
                raise last or ProviderUnavailable(f"{method} {url}: time budget spent")
            kwargs["timeout"] = httpx.Timeout(
                min(TIMEOUT.read or remaining, remaining),
                connect=min(TIMEOUT.connect or remaining, remaining),
            )
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            last = ProviderUnavailable(f"{method} {url}: {type(exc).__name__}")
        else:
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError as exc:
                    raise ProviderUnavailable(f"{method} {url}: answer is not JSON") from exc
            if response.status_code not in RETRYABLE:
                raise ProviderRejected(
                    f"{method} {url}: HTTP {response.status_code}", status_code=response.status_code
                )
            wait = retry_after_seconds(response)
            last = ProviderUnavailable(
                f"{method} {url}: HTTP {response.status_code}",
                status_code=response.status_code,
                retry_after=wait,
            )
        if attempt < MAX_ATTEMPTS:
            delay = last.retry_after if last.retry_after is not None else BACKOFF_SECONDS * attempt
            delay = min(delay, MAX_RETRY_AFTER_SECONDS)
            remaining = _remaining()
            if remaining is not None and delay >= remaining:
                break  # the wait alone would spend the budget
            sleep(delay)
    assert last is not None
    raise last


def new_client() -> httpx.Client:
    """An httpx client with our timeouts (no redirects followed, no environment proxies)."""
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False)


_shared: httpx.Client | None = None
_shared_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """One httpx client per process (thread-safe, keeps connections; cheap to reuse)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = new_client()
        return _shared
