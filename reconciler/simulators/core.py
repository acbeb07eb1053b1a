"""The provider-independent simulator core: state, routing, chaos, webhook/redirect emission."""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from .config import COMMON_DEFAULTS, COMMON_KINDS, ChaosDice, merge_config
from .delivery import MAX_RETRIES, Delivery, DeliveryLanes
from .fakedata import PiiRecorder
from .httputil import json_response
from .session import SimSession, Step, new_stats
from .timers import TimerQueue

log = logging.getLogger(__name__)

DELIVERY_LANES = 4


class SimulatorCore(ABC):
    """State, routing and delivery shared by every simulator; a WSGI application."""

    name: ClassVar[str]
    api_prefix: ClassVar[str] = ""  # appended to the root URL to form .url
    token_path: ClassVar[str | None] = None  # docverify only
    provider_defaults: ClassVar[dict[str, Any]] = {}  # credentials and provider-only keys
    provider_kinds: ClassVar[dict[str, Any]] = {}
    status_canonical: ClassVar[dict[str, str]] = {}
    outcomes: ClassVar[tuple[str, ...]] = ()
    manual_outcomes: ClassVar[tuple[str, ...]] = ()
    # outcome -> the provider statuses a script may choose between with "provider_status"
    alternatives: ClassVar[dict[str, tuple[str, ...]]] = {}
    rescript_final: ClassVar[bool] = False
    # variant name -> what it sends (real-world shapes and sequences seen in public examples);
    # a script names one with "variant", or config "variants" draws one by its share
    variants: ClassVar[dict[str, str]] = {}

    def __init__(self, **config: Any) -> None:
        self.kinds = {
            **COMMON_KINDS,
            **self.provider_kinds,
            "variants": ("shares", tuple(self.variants)),
        }
        defaults = merge_config(COMMON_DEFAULTS, self.provider_defaults, self.kinds)
        self.initial_config = merge_config(defaults, config, self.kinds)
        self.config = self.initial_config
        self.lock = threading.RLock()
        self.sessions: dict[str, SimSession] = {}
        self.stats = new_stats()
        self.pii = PiiRecorder()
        self.dice = ChaosDice(self.config["chaos"]["seed"])
        self.timers = TimerQueue(f"sim-{self.name}-script")
        self.lanes = DeliveryLanes(DELIVERY_LANES, self._on_delivery_result)
        self.root_url = "http://127.0.0.1"
        self._url_map = Map(self.control_rules() + self.provider_rules())

    def control_rules(self) -> list[Rule]:
        """The control API routes (see base.ProviderSimulator)."""
        return []

    # ----- hooks for the provider modules -------------------------------------------------
    @abstractmethod
    def provider_rules(self) -> list[Rule]:
        """The provider API routes; endpoint "x" is served by method on_x."""

    @abstractmethod
    def plan(
        self,
        session: SimSession,
        outcome: str,
        manual: bool,
        provider_status: str | None,
        variant: str | None,
    ) -> list[Step]:
        """The steps that drive session from its current status to outcome (in variant)."""

    def variant_problem(
        self, variant: str, outcome: str, manual: bool, provider_status: str | None
    ) -> str | None:
        """Why variant cannot go with this script (None: it can)."""
        return None

    def canonical(self, session: SimSession) -> str:
        """verihook's canonical status for the session's provider status."""
        return self.status_canonical[session.provider_status]

    def truth_extra(self, session: SimSession) -> dict[str, Any]:
        """Provider-specific fields added to the session truth."""
        return {}

    def implicit_session(self, session_id: str) -> SimSession | None:
        """A session created on demand by a script call (idvapi), or None."""
        return None

    def reset_provider_state(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Forget provider-specific stores on /_sim/reset (none by default)."""

    # ----- plumbing -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL to configure verihook with."""
        return self.root_url + self.api_prefix

    def bind(self, root_url: str) -> None:
        """Record the root URL the server listens on (used to build start URLs)."""
        self.root_url = root_url

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """WSGI entry point: route to on_<endpoint>."""
        request = Request(environ)
        response: Any
        try:
            endpoint, arguments = self._url_map.bind_to_environ(environ).match()
            response = getattr(self, f"on_{endpoint}")(request, **arguments)
        except RequestRedirect as redirect:
            response = redirect.get_response(environ)
        except HTTPException as exc:
            response = json_response(
                {
                    "error": (exc.name or "error").lower().replace(" ", "_"),
                    "message": exc.description,
                },
                exc.code or 500,
            )
        except Exception:  # request-thread boundary: answer 500 and keep serving
            log.exception(
                "%s simulator: unhandled error on %s %s", self.name, request.method, request.path
            )
            with self.lock:
                self.stats["internal_errors"] += 1
            response = json_response({"error": "internal_error"}, 500)
        finally:
            request.close()  # closes uploaded files (multipart spools)
        return response(environ, start_response)

    def auth_failed(self, response: Response) -> Response:
        """Count an authentication failure and pass the response through."""
        with self.lock:
            self.stats["auth_failures"] += 1
        return response

    def count(self, name: str) -> None:
        """Increment a top-level stats counter."""
        with self.lock:
            self.stats[name] += 1

    def status_chaos(self, endpoint: str) -> Response | None:
        """Count a status call; apply slow_ms, status_5xx, status_429, status_garbage (a response:
        send it)."""
        with self.lock:
            calls = self.stats["status_calls"]
            calls[endpoint] = calls.get(endpoint, 0) + 1
            chaos = dict(self.config["chaos"])
            roll_5xx, roll_429 = self.dice.status(), self.dice.status()
            # drawn only when enabled, so seeded runs without it keep their sequence
            roll_garbage = self.dice.status() if chaos["status_garbage"] else 1.0
            if chaos["slow_ms"]:
                self.stats["slow_calls"] += 1
        if chaos["slow_ms"]:
            time.sleep(chaos["slow_ms"] / 1000.0)
        if roll_5xx < chaos["status_5xx"]:
            with self.lock:
                self.stats["errors_injected"]["status_5xx"] += 1
            return json_response(
                {"error": "service_unavailable", "message": "simulated outage"}, 503
            )
        if roll_429 < chaos["status_429"]:
            with self.lock:
                self.stats["errors_injected"]["status_429"] += 1
            return json_response(
                {"error": "rate_limited", "message": "simulated rate limit"},
                429,
                {"Retry-After": "1"},
            )
        if roll_garbage < chaos["status_garbage"]:
            with self.lock:
                self.stats["errors_injected"]["status_garbage"] += 1
            return json_response(["unexpected", "answer", "shape"], 200)
        return None

    def add_session(self, session: SimSession) -> SimSession:
        """Store a new session, forgetting the oldest ones beyond config max_sessions."""
        with self.lock:
            while len(self.sessions) >= self.config["max_sessions"]:
                oldest = self.sessions.pop(next(iter(self.sessions)))
                oldest.script_generation += 1  # stops its script, if any
            self.sessions[session.id] = session
        return session

    # ----- emission and delivery --------------------------------------------------------------
    def _bump(self, session: SimSession, name: str) -> None:
        """Increment a delivery counter on the session and in the stats (lock held)."""
        session.counters[name] += 1
        self.stats[name] += 1

    def emit(self, session: SimSession, deliveries: list[Delivery], rng: random.Random) -> None:
        """Hand deliveries to the lanes, applying drop / duplicate / delay chaos drawn from rng."""
        with self.lock:
            chaos = self.config["chaos"]
            for delivery in deliveries:
                self._bump(session, "webhooks_emitted")
                entry = {"event": delivery.event, "kind": delivery.kind, "url": delivery.url}
                if delivery.url is None:
                    self._bump(session, "webhooks_undeliverable")
                    session.deliveries.append(
                        {**entry, "result": "undeliverable: no target URL configured"}
                    )
                    continue
                if rng.random() < chaos["drop"]:
                    self._bump(session, "webhooks_dropped")
                    session.deliveries.append({**entry, "result": "dropped"})
                    continue
                copies = 2 if rng.random() < chaos["duplicate"] else 1
                if copies == 2:
                    self._bump(session, "webhooks_duplicated")
                for copy_number in range(1, copies + 1):
                    delay = rng.random() * chaos["delay_max"]
                    record = {
                        **entry,
                        "copy": copy_number,
                        "delay_s": round(delay, 3),
                        "result": "queued",
                        "attempts": 0,
                        "status": None,
                        "error": None,
                    }
                    session.deliveries.append(record)
                    self.lanes.send(
                        delivery,
                        record,
                        delay=delay,
                        timeout=self.config["delivery_timeout"],
                        retries=MAX_RETRIES if self.config["retry_on_failure"] else 0,
                    )

    def _on_delivery_result(
        self,
        delivery: Delivery,
        record: dict[str, Any],
        status: int | None,
        error: str | None,
        ok: bool,
        attempt: int,
        will_retry: bool,
    ) -> None:
        """Lane callback: update the delivery record and the counters."""
        with self.lock:
            record.update(
                attempts=attempt,
                status=status,
                error=error,
                result="retrying" if will_retry else ("delivered" if ok else "failed"),
            )
            session = self.sessions.get(delivery.session_id)
            if session is None or not any(entry is record for entry in session.deliveries):
                return  # the simulator was reset meanwhile
            self._bump(session, "webhooks_sent" if attempt == 1 else "webhooks_retried")
            if not will_retry:
                self._bump(session, "webhooks_delivered" if ok else "webhooks_failed")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no script step or delivery is pending (or timeout); return whether idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (self.timers.wait_idle(deadline) and self.lanes.wait_idle(deadline)):
                return False
            if self.timers.is_idle() and self.lanes.is_idle():
                return True
        return False

    def close(self) -> None:
        """Stop the background threads."""
        self.timers.stop()
        self.lanes.stop()
