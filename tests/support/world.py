"""A small world for reconciliation tests: the five simulators, verihook on a live socket.

Simulators start first (verihook's provider BASE_URLs point at them), then the receiver is served
on a real port, then the simulators are told where to deliver webhooks and redirects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from app import create_app
from receiver.services import Services
from receiver.store.models import utcnow
from reconciler import simulators
from reconciler.drain import drain_ready_events
from reconciler.scheduler import Reconciler
from tests.support.live_server import LiveServer

SIM_CREDENTIALS = {
    "contiguity": {
        "api_token": "test_contiguity_api_token",
        "webhook_secret": "whsec_test_contiguity_secret",
    },
    "docverify": {
        "client_id": "test_docverify_client_id",
        "client_secret": "test_docverify_client_secret",
    },
    "idvapi": {"api_key": "test_idvapi_api_key", "webhook_token": "idv-world-token-0123456789"},
    "idenfy": {
        "api_key": "test_idenfy_api_key",
        "api_secret": "test_idenfy_api_secret",
        "webhook_secret": "test_idenfy_signing_key",
    },
    "nevis": {"access_key": "test_nevis_access_key"},
}
BACKEND_TOKEN = "backend-world-token-0123456789"


@dataclass
class World:
    """Simulators, services, the live receiver, and the reconciler machinery."""

    sims: dict[str, simulators.Simulator]
    services: Services
    server: LiveServer
    reconciler: Reconciler
    calls: dict[str, int] = field(default_factory=dict)
    api: httpx.Client | None = None
    ahead: float = 0.0
    """Seconds the scheduler's clock runs ahead of the wall clock (`advance`)."""
    ticks: int = 0
    """Scheduler ticks run so far (by `settle` and `pump`)."""

    def now(self) -> datetime:
        """The scheduler's clock: the wall clock plus what the test advanced it by."""
        return utcnow() + timedelta(seconds=self.ahead)

    def advance(self, seconds: float) -> None:
        """Move the scheduler's clock ahead, instead of sleeping until a deadline passes.

        Only the reconciler's ticks see it (they take `now`): what was stored meanwhile keeps
        wall-clock times, so a deadline set before the advance is past for the next tick."""
        self.ahead += seconds

    def tick(self) -> None:
        """One scheduler tick at the world's clock."""
        self.reconciler.tick(self.now())
        self.ticks += 1

    def wait_ticks(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `pump` has run `count` more ticks."""
        target, deadline = self.ticks + count, time.monotonic() + timeout
        while self.ticks < target:
            assert time.monotonic() < deadline, f"the pump ran no {count} ticks in {timeout} s"
            time.sleep(0.01)

    def create(self, provider: str, user_ref: str, **options: Any) -> dict[str, Any]:
        """Create a session through verihook's API (as the product backend would)."""
        if self.api is None:  # one client for the world: building one costs ~50 ms (TLS setup)
            self.api = httpx.Client()
        answer = self.api.post(
            f"{self.server.url}/api/v1/sessions",
            json={"provider": provider, "user_ref": user_ref, "options": options},
            headers={"Authorization": f"Bearer {BACKEND_TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        return answer.json()

    def settle(self, rounds: int = 40, pause: float = 0.05) -> None:
        """Let simulators deliver, workers apply and the scheduler tick until quiet."""
        for _ in range(rounds):
            for sim in self.sims.values():
                sim.wait_idle(timeout=5)
            drain_ready_events(self.services)
            self.tick()
            drain_ready_events(self.services)
            time.sleep(pause)

    @contextmanager
    def pump(self, pause: float = 0.05) -> Iterator[None]:
        """Run a worker and the scheduler's tick in a background thread (as `verihook up` does)
        while the body runs; an error in that thread is raised when the body ends."""
        stop, errors = threading.Event(), []

        def loop() -> None:
            while not stop.is_set():
                try:
                    drain_ready_events(self.services)
                    self.tick()
                    drain_ready_events(self.services)
                except Exception as exc:  # a thread boundary: hand it to the test
                    errors.append(exc)
                    return
                stop.wait(pause)

        thread = threading.Thread(target=loop, name="world-pump", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)
        if errors:
            raise errors[0]

    def status_calls(self, provider: str) -> int:
        """Status-endpoint calls the provider's simulator has answered."""
        stats = self.sims[provider].stats()
        return int(stats.get("status_calls_total", sum(stats.get("status_calls", {}).values())))


def provider_settings(sims: dict[str, simulators.Simulator], **policy: Any) -> dict[str, Any]:
    """verihook's provider settings pointing at the simulators."""
    settings: dict[str, Any] = {}
    for name, sim in sims.items():
        values: dict[str, Any] = {"base_url": sim.url, **SIM_CREDENTIALS[name], **policy}
        if sim.token_url:
            values["token_url"] = sim.token_url
        settings[name] = values
    return settings


def start_world(make_services, **overrides: Any) -> World:  # type: ignore[no-untyped-def]
    """Start everything; the caller stops it with `stop_world`.

    `policy` (poll settings for every provider) and `chaos` (every simulator's chaos knobs; a
    `seed` is made distinct per simulator) are taken out of `overrides`; the rest are settings.
    """
    policy = overrides.pop("policy", {})
    chaos = overrides.pop("chaos", None)
    sims = {
        name: simulators.start(
            name,
            **SIM_CREDENTIALS[name]
            if name != "idvapi"
            else {"api_key": SIM_CREDENTIALS[name]["api_key"]},
        )
        for name in simulators.PROVIDERS
    }
    services = make_services(
        providers=provider_settings(sims, **policy),
        api_tokens=f"backend:{BACKEND_TOKEN}",
        **overrides,
    )
    services.redis.flushdb()
    server = LiveServer(create_app(services=services)).start()
    services.settings.public_url = server.url
    for name, sim in sims.items():
        hook = f"{server.url}/webhooks/{name}"
        if name == "idvapi":
            hook += f"/{SIM_CREDENTIALS['idvapi']['webhook_token']}"
        sim.configure(webhook_url=hook, callback_url=f"{server.url}/callbacks/{name}")
        if chaos is not None:
            sim.configure(chaos={**chaos, "seed": f"{chaos.get('seed', 0)}-{name}"})
    return World(sims=sims, services=services, server=server, reconciler=Reconciler(services))


def stop_world(world: World) -> None:
    """Stop the receiver and the simulators."""
    world.server.stop()
    world.reconciler.http.close()
    if world.api is not None:
        world.api.close()
    for sim in world.sims.values():
        sim.stop()
