"""A time budget bounds every provider call made inside it: attempts, waits and retries
together (real simulators over HTTP)."""

from __future__ import annotations

import time

import httpx
import pytest

from receiver.providers.http import ProviderUnavailable, time_budget
from tests.support.world import start_world, stop_world


@pytest.fixture
def world(make_services):  # type: ignore[no-untyped-def]
    built = start_world(make_services)
    yield built
    stop_world(built)


def contiguity_client(world):  # type: ignore[no-untyped-def]
    return world.services.providers["contiguity"].client(httpx.Client())


def test_a_slow_provider_is_cut_off_at_the_budget(world):  # type: ignore[no-untyped-def]
    session_id = world.create("contiguity", "u-slow")["session_id"]
    sim, client = world.sims["contiguity"], contiguity_client(world)
    sim.configure(chaos={"slow_ms": 2500})
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable), time_budget(0.8):
        client.fetch_status(session_id)
    assert time.monotonic() - started < 1.8
    started = time.monotonic()
    assert client.fetch_status(session_id)["id"] == session_id  # no budget: it waits
    assert time.monotonic() - started >= 2.5


def test_retries_stop_when_the_budget_would_be_spent(world):  # type: ignore[no-untyped-def]
    session_id = world.create("contiguity", "u-down")["session_id"]
    sim, client = world.sims["contiguity"], contiguity_client(world)
    sim.configure(chaos={"status_5xx": 1.0})
    before = world.status_calls("contiguity")
    with pytest.raises(ProviderUnavailable):
        client.fetch_status(session_id)
    assert world.status_calls("contiguity") - before == 3  # every attempt, without a budget
    before = world.status_calls("contiguity")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable), time_budget(0.1):
        client.fetch_status(session_id)
    assert world.status_calls("contiguity") - before == 1  # the 0.2 s backoff would overrun
    assert time.monotonic() - started < 0.5


def test_nested_budgets_keep_the_tighter_deadline(world):  # type: ignore[no-untyped-def]
    session_id = world.create("contiguity", "u-nested")["session_id"]
    world.sims["contiguity"].configure(chaos={"slow_ms": 1500})
    client = contiguity_client(world)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable), time_budget(30), time_budget(0.5):
        client.fetch_status(session_id)
    assert time.monotonic() - started < 1.2
