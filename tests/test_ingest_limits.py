"""Answers that do not depend on authentication: 413, 415, 404 (unknown/disabled), 503; and the
quarantine that replaces a 503 when the store refuses one delivery's content."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DataError
from sqlmodel import Session

from app import create_app
from receiver import event_writer
from receiver.providers import build_providers
from receiver.providers.contiguity import ContiguityProvider
from receiver.services import Services
from receiver.store.crypto import Keyring
from receiver.store.db import make_engine
from receiver.store.models import InboundEvent
from tests.conftest import TEST_KEYS, make_settings, provider_settings
from tests.support.live_server import live_server
from tests.support.signing import (
    IDVAPI_TOKEN,
    contiguity_event,
    contiguity_header,
    idenfy_result,
    idenfy_signature,
    idvapi_result,
)

SMALL_LIMIT = 1024


def count_events(engine: Engine) -> int:
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()


def padded(body: bytes, size: int) -> bytes:
    """`body` (a JSON object) padded with a filler field to exactly `size` bytes."""
    payload = json.loads(body)
    payload["filler"] = ""
    overhead = len(json.dumps(payload).encode())
    payload["filler"] = "x" * (size - overhead)
    out = json.dumps(payload).encode()
    assert len(out) == size
    return out


def contiguity_request(body: bytes) -> tuple[str, dict[str, str]]:
    return "/webhooks/contiguity", {"Contiguity-Signature": contiguity_header(body)}


def idenfy_request(body: bytes) -> tuple[str, dict[str, str]]:
    return "/webhooks/idenfy", {"Idenfy-Signature": idenfy_signature(body)}


def idvapi_request(body: bytes) -> tuple[str, dict[str, str]]:
    return f"/webhooks/idvapi/{IDVAPI_TOKEN}", {}


WEBHOOKS: dict[str, tuple[Callable[[], bytes], Callable[[bytes], tuple[str, dict[str, str]]]]] = {
    "contiguity": (lambda: contiguity_event("verified"), contiguity_request),
    "idenfy": (lambda: idenfy_result("APPROVED"), idenfy_request),
    "idvapi": (lambda: idvapi_result("verified"), idvapi_request),
}


def send(client, provider: str, body: bytes, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    url, headers = WEBHOOKS[provider][1](body)
    return client.post(url, data=body, headers={"Content-Type": content_type, **headers})


@pytest.fixture
def small_client(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(max_body_bytes=SMALL_LIMIT)
    return create_app(services=services).test_client()


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_body_over_the_limit_is_413_and_nothing_stored(small_client, engine, provider):  # type: ignore[no-untyped-def]
    body = padded(WEBHOOKS[provider][0](), SMALL_LIMIT + 1)
    answer = send(small_client, provider, body)
    assert answer.status_code == 413
    assert count_events(engine) == 0


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_body_at_the_limit_is_accepted(small_client, engine, provider):  # type: ignore[no-untyped-def]
    body = padded(WEBHOOKS[provider][0](), SMALL_LIMIT)
    answer = send(small_client, provider, body)
    assert answer.status_code == 200, answer.get_json()
    assert count_events(engine) == 1


def test_default_limit_is_one_mebibyte(client, engine):  # type: ignore[no-untyped-def]
    body = padded(contiguity_event("verified"), 1024 * 1024 + 1)
    assert send(client, "contiguity", body).status_code == 413
    assert count_events(engine) == 0


def post_chunked(server_url: str, provider: str, body: bytes) -> httpx.Response:
    """POST `body` with Transfer-Encoding: chunked (no Content-Length), as a streaming client."""
    url, headers = WEBHOOKS[provider][1](body)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    return httpx.post(
        server_url + url,
        content=chunks(),
        timeout=10,
        headers={"Content-Type": "application/json", **headers},
    )


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_chunked_body_at_the_limit_is_accepted_on_a_real_socket(make_services, engine, provider):  # type: ignore[no-untyped-def]
    app = create_app(services=make_services(max_body_bytes=SMALL_LIMIT))
    body = padded(WEBHOOKS[provider][0](), SMALL_LIMIT)
    with live_server(app) as server:
        answer = post_chunked(server.url, provider, body)
    assert answer.status_code == 200, answer.text
    assert count_events(engine) == 1


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_chunked_body_over_the_limit_is_413_on_a_real_socket(make_services, engine, provider):  # type: ignore[no-untyped-def]
    """No Content-Length (chunked transfer, as gunicorn and werkzeug accept): the limit must
    hold while reading. DESIGN §3: 413 body over the limit, nothing stored.

    Today the body is silently cut at max_body_bytes (werkzeug's LimitedStream.readall stops
    at the limit and raises only on a further read), so signed providers answer 401 and idvapi
    stores the truncated body as a quarantined event (202).
    """
    app = create_app(services=make_services(max_body_bytes=SMALL_LIMIT))
    body = padded(WEBHOOKS[provider][0](), 4 * SMALL_LIMIT)
    with live_server(app) as server:
        answer = post_chunked(server.url, provider, body)
    assert (answer.status_code, count_events(engine)) == (413, 0), answer.text


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "multipart/form-data; boundary=x", ""],
)
def test_wrong_content_type_is_415(client, engine, provider, content_type):  # type: ignore[no-untyped-def]
    body = WEBHOOKS[provider][0]()
    answer = send(client, provider, body, content_type)
    assert answer.status_code == 415
    assert count_events(engine) == 0


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/webhooks/nope"),
        ("POST", "/webhooks/nope/segment"),
        ("POST", "/webhooks/CONTIGUITY"),
        ("POST", "/webhooks/"),
        ("GET", "/callbacks/nope?sessionId=123456789"),
        ("GET", "/callbacks/contiguity?sessionId=123456789"),  # no callbacks for contiguity
        ("POST", "/webhooks/nevis"),  # no webhooks for nevis
        ("POST", "/webhooks/nevis/123456789"),
        ("POST", "/webhooks/contiguity/extra"),  # no path segment for contiguity
        ("POST", "/webhooks/__init__"),
        ("POST", "/webhooks/base"),
    ],
)
def test_unknown_provider_or_route_is_404(client, engine, method, path):  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    answer = client.open(
        path,
        method=method,
        data=body,
        headers={
            "Content-Type": "application/json",
            "Contiguity-Signature": contiguity_header(body),
        },
    )
    assert answer.status_code == 404
    if path != "/webhooks/":  # no provider named at all: the app's plain 404
        assert answer.get_json() == {"error": "unknown provider"}
    assert count_events(engine) == 0


DISABLE = {
    "contiguity": {"webhook_secret": ""},
    "idenfy": {"webhook_secret": " , "},
    "idvapi": {"webhook_token": ""},
}


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_provider_without_credentials_is_404(make_services, engine, provider):  # type: ignore[no-untyped-def]
    providers = provider_settings()
    providers[provider].update(DISABLE[provider])
    client = create_app(services=make_services(providers=providers)).test_client()
    answer = send(client, provider, WEBHOOKS[provider][0]())
    assert answer.status_code == 404
    assert answer.get_json() == {"error": "provider not configured"}  # known, but disabled
    # the other providers keep working
    other = next(p for p in sorted(WEBHOOKS) if p != provider)
    assert send(client, other, WEBHOOKS[other][0]()).status_code == 200
    assert count_events(engine) == 1


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_provider_missing_from_settings_entirely_is_404(make_services, engine, provider):  # type: ignore[no-untyped-def]
    providers = provider_settings()
    del providers[provider]
    client = create_app(services=make_services(providers=providers)).test_client()
    assert send(client, provider, WEBHOOKS[provider][0]()).status_code == 404
    assert count_events(engine) == 0


# --- 503: the store is unavailable --------------------------------------------------------------


def broken_engine(backend: str, tmp_path: Path) -> Engine:
    """An engine whose database cannot be opened at all."""
    if backend == "sqlite":
        directory = tmp_path / "a-directory.db"
        directory.mkdir()
        return make_engine(f"sqlite:///{directory}")
    return make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")


def services_on(engine: Engine, redis_url: str, tmp_path: Path) -> Services:
    settings = make_settings(engine, redis_url, tmp_path)
    return Services(
        settings=settings,
        engine=engine,
        keyring=Keyring.parse(TEST_KEYS),
        providers=build_providers(settings),
        _ingest_engine=engine,
    )


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_unreachable_store_is_503_with_retry_after(backend, redis_server, tmp_path, provider):  # type: ignore[no-untyped-def]
    engine = broken_engine(backend, tmp_path)
    try:
        client = create_app(services=services_on(engine, redis_server.url, tmp_path)).test_client()
        answer = send(client, provider, WEBHOOKS[provider][0]())
        assert answer.status_code == 503
        assert answer.headers["Retry-After"]
    finally:
        engine.dispose()


def test_unreachable_store_on_docverify_callback_still_sends_the_person_on(  # type: ignore[no-untyped-def]
    backend, redis_server, tmp_path
):
    """A browser redirect is not retried like a webhook: the person goes on to the return URL
    (DESIGN §3), and the scheduler's polls find the session's result without it."""
    engine = broken_engine(backend, tmp_path)
    try:
        services = services_on(engine, redis_server.url, tmp_path)
        client = create_app(services=services).test_client()
        answer = client.get("/callbacks/docverify?sessionId=dv-1&state=s")
        assert answer.status_code == 302
        assert answer.headers["Location"] == services.settings.provider("docverify").return_url
    finally:
        engine.dispose()


def test_exhausted_connection_pool_is_503_not_500(engine, redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """Every pooled connection busy past pool_timeout is "store unavailable" (DESIGN §3: 503).

    SQLAlchemy raises sqlalchemy.exc.TimeoutError here, which is not a DBAPIError.
    """
    url = engine.url.render_as_string(hide_password=False)
    tiny = make_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        client = create_app(services=services_on(tiny, redis_server.url, tmp_path)).test_client()
        with tiny.connect():  # the only connection is busy
            answer = send(client, "contiguity", contiguity_event("verified"))
        assert answer.status_code == 503, answer.get_json()
        assert count_events(engine) == 0
    finally:
        tiny.dispose()


# --- the store refuses this content: quarantine, never 503 forever --------------------------------


def refusing_store(monkeypatch: pytest.MonkeyPatch, *, raw_too: bool) -> None:
    """Make the store raise a DataError (not a connection error) for a batch holding a parsed
    event, and for the raw quarantined fallback too when `raw_too`."""
    real = event_writer.write_events

    def write_events(connection, rows, **options):  # type: ignore[no-untyped-def]
        if raw_too or any(row.values["parse_error"] is None for row in rows):
            raise DataError("INSERT …", {}, Exception("simulated: the column refuses a value"))
        return real(connection, rows, **options)

    monkeypatch.setattr(event_writer, "write_events", write_events)


@pytest.mark.parametrize("provider", sorted(WEBHOOKS))
def test_store_refusing_the_parsed_event_keeps_it_raw_and_quarantined(  # type: ignore[no-untyped-def]
    client, engine, monkeypatch, provider
):
    """A database error that is not about the connection is about this content: a 503 would make
    the provider retry the same bytes forever. The raw delivery is kept, quarantined (202)."""
    refusing_store(monkeypatch, raw_too=False)
    answer = send(client, provider, WEBHOOKS[provider][0]())
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["status"] == "quarantined"
    with Session(engine) as db:
        event = db.execute(select(InboundEvent)).scalar_one()
    assert (event.state, event.session_id, event.user_ref) == ("quarantined", None, None)
    assert event.parse_error is not None and "DataError" in event.parse_error
    assert "simulated" not in event.parse_error  # no database internals stored or echoed
    assert "simulated" not in answer.get_data(as_text=True)


def test_store_refusing_even_the_raw_event_is_503(client, engine, monkeypatch):  # type: ignore[no-untyped-def]
    """A raw event holds no provider text, so a store that refuses it too is broken: 503."""
    refusing_store(monkeypatch, raw_too=True)
    answer = send(client, "contiguity", contiguity_event("verified"))
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert count_events(engine) == 0


def test_a_parser_crash_quarantines_the_delivery_instead_of_500(client, engine, monkeypatch):  # type: ignore[no-untyped-def]
    def crash(self, delivery):  # type: ignore[no-untyped-def]
        raise OverflowError("simulated parser bug")

    monkeypatch.setattr(ContiguityProvider, "parse", crash)
    answer = send(client, "contiguity", contiguity_event("verified"))
    assert answer.status_code == 202 and answer.get_json()["status"] == "quarantined"
    with Session(engine) as db:
        event = db.execute(select(InboundEvent)).scalar_one()
    assert event.state == "quarantined" and "OverflowError" in (event.parse_error or "")
