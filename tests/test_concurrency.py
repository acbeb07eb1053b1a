"""Many identical deliveries at once on a real socket: stored exactly once, every answer 2xx."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
from sqlalchemy import func, select
from sqlmodel import Session

from app import create_app
from receiver.store.models import InboundEvent, OutboxEntry
from tests.support.live_server import live_server
from tests.support.signing import (
    contiguity_event,
    contiguity_header,
    idenfy_result,
    idenfy_signature,
)

THREADS = 50


def blast(n: int, send: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    """Run `send` from n threads released together; return every response (or raise)."""
    barrier = threading.Barrier(n)
    answers: list[httpx.Response | BaseException | None] = [None] * n
    # one client, one connection per thread (httpx.Client is thread-safe)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(timeout=30, limits=limits) as http:

        def worker(index: int) -> None:
            try:
                barrier.wait(timeout=30)
                answers[index] = send(http)
            except BaseException as exc:  # reported below
                answers[index] = exc

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    errors = [a for a in answers if not isinstance(a, httpx.Response)]
    assert not errors, errors[:3]
    return answers  # type: ignore[return-value]


def counts(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        events = db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
        outbox = db.execute(select(func.count()).select_from(OutboxEntry)).scalar_one()
    return events, outbox


def assert_one_accepted_rest_duplicates(answers: list[httpx.Response]) -> None:
    assert [a.status_code for a in answers] == [200] * len(answers), sorted(
        {(a.status_code, a.text) for a in answers}
    )
    bodies = [a.json() for a in answers]
    statuses = sorted(b["status"] for b in bodies)
    assert statuses == ["accepted"] + ["duplicate"] * (len(answers) - 1)
    assert len({b["event_id"] for b in bodies}) == 1


def test_fifty_identical_contiguity_deliveries_store_one_row(services, engine):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified", "vs_race", event_id="evt_race_1")
    headers = {"Content-Type": "application/json", "Contiguity-Signature": contiguity_header(body)}
    with live_server(create_app(services=services)) as server:
        answers = blast(
            THREADS,
            lambda http: http.post(
                server.url + "/webhooks/contiguity", content=body, headers=headers
            ),
        )
    assert_one_accepted_rest_duplicates(answers)
    assert counts(engine) == (1, 1)


def test_fifty_identical_idenfy_deliveries_store_one_row(services, engine):  # type: ignore[no-untyped-def]
    """iDenfy has no event id: the content-hash dedupe key must hold under a race too."""
    body = idenfy_result("APPROVED", "scan-race")
    headers = {"Content-Type": "application/json", "Idenfy-Signature": idenfy_signature(body)}
    with live_server(create_app(services=services)) as server:
        answers = blast(
            THREADS,
            lambda http: http.post(
                server.url + "/webhooks/idenfy/auto-finished", content=body, headers=headers
            ),
        )
    assert_one_accepted_rest_duplicates(answers)
    assert counts(engine) == (1, 1)


def test_fifty_distinct_deliveries_at_once_all_stored(services, engine):  # type: ignore[no-untyped-def]
    n = THREADS
    bodies = [contiguity_event("processing", f"vs_par_{i}") for i in range(n)]
    lock = threading.Lock()
    pending = list(bodies)

    def send(http: httpx.Client) -> httpx.Response:
        with lock:
            body = pending.pop()
        return http.post(
            server.url + "/webhooks/contiguity",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Contiguity-Signature": contiguity_header(body),
            },
        )

    with live_server(create_app(services=services)) as server:
        answers = blast(n, send)
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["status"] for a in answers} == {"accepted"}
    assert len({a.json()["event_id"] for a in answers}) == n
    assert counts(engine) == (n, n)
