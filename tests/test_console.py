"""The web console (/console) through Flask's test client, on SQLite and PostgreSQL.

Sign-in per role, revocation, CSRF, escaping of hostile values on every page, the security
headers, and a replay through the console that really applies a failed event (produced for real:
a keyring without the storing key, as after a broken deploy).
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlmodel import Session

from app import create_app
from receiver.exceptions import ConfigurationError
from receiver.store.audit_models import AuditEntry
from receiver.store.crypto import Keyring, new_key_spec
from receiver.store.db import transaction
from receiver.store.models import (
    EventState,
    InboundEvent,
    ObservationRecord,
    UserRecord,
    VerificationSession,
    utcnow,
)
from receiver.store.token_models import ConsoleSession
from reconciler import console, jobs
from reconciler.api import openapi
from reconciler.api.auth import token_digest
from reconciler.api.tokens import create_token, revoke_token
from reconciler.console.secret import DEV_SECRET_FILE, secret_keys
from reconciler.console.session_store import open_session, session_token
from reconciler.drain import drain_ready_events
from reconciler.leader import LEADER_KEY
from tests.support import signing
from tests.support.flow import API_TOKENS, audit_rows, send_contiguity, send_idenfy

OPERATOR_TOKEN = "operator-token-0123456789"
AUDITOR_TOKEN = "auditor-token-0123456789"
BACKEND_TOKEN = "backend-token-0123456789"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HOSTILE_USER = '<script>alert("user")</script>'
HOSTILE_SESSION = 'vs_<img src=x onerror=alert("session")>'
HOSTILE_REASON = "<script>alert('reason')</script>"
HOSTILE_STATUS = '<script>alert("status")</script>'
HOSTILE_ERROR = '<script>alert("error")</script>'


# ------------------------------------------------------------------ helpers


def console_app(services):  # type: ignore[no-untyped-def]
    """The app with the console (registered by app.py once that lands; here if it has not)."""
    app = create_app(services=services)
    if "console" not in app.blueprints:
        console.init_app(app)
    return app


@pytest.fixture
def site(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, console_app(services)


def csrf_from(page) -> str:  # type: ignore[no-untyped-def]
    """The CSRF token in a page's form, as a browser would send it."""
    found = CSRF.search(page.get_data(as_text=True))
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client, token: str):  # type: ignore[no-untyped-def]
    """Open the sign-in form and post `token` with the form's CSRF token."""
    form = client.get("/console/sign-in")
    return client.post("/console/sign-in", data={"token": token, "csrf_token": csrf_from(form)})


def signed_in(app, token: str = OPERATOR_TOKEN):  # type: ignore[no-untyped-def]
    """A test client signed in with `token`."""
    client = app.test_client()
    answer = sign_in(client, token)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def page_csrf(client, url: str = "/console/") -> str:  # type: ignore[no-untyped-def]
    return csrf_from(client.get(url))


def text(answer) -> str:  # type: ignore[no-untyped-def]
    return answer.get_data(as_text=True)


def fail_event(make_services, client, body: bytes) -> int:  # type: ignore[no-untyped-def]
    """Store a delivery, then apply it with a keyring that lacks its key: state failed, no retry."""
    answer = send_contiguity(client, body)
    assert answer.status_code == 200, answer.get_json()
    event_id = answer.get_json()["event_id"]
    broken = make_services(apply_max_attempts=1)
    broken.keyring = Keyring.parse(new_key_spec("other"))
    assert drain_ready_events(broken).failed == 1
    assert event_state(broken.engine, event_id) == EventState.FAILED
    return event_id


def event_state(engine, event_id: int) -> str:  # type: ignore[no-untyped-def]
    with Session(engine) as db:
        event = db.get(InboundEvent, event_id)
        assert event is not None
        return event.state


# ------------------------------------------------------------------ sign-in and roles


def test_operator_and_auditor_sign_in_and_out(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    answer = client.get("/console/events?state=failed")
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/console/sign-in"
    assert parse_qs(location.query)["next"] == ["/console/events?state=failed"]
    form = client.get(answer.headers["Location"])
    assert form.status_code == 200 and 'type="password"' in text(form)
    assert 'value="/console/events?state=failed"' in text(form)

    answer = client.post(
        "/console/sign-in",
        data={
            "token": OPERATOR_TOKEN,
            "csrf_token": csrf_from(form),
            "next": "/console/events?state=failed",
        },
    )
    assert (
        answer.status_code == 302 and answer.headers["Location"] == "/console/events?state=failed"
    )
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # development; see test_cookie_is_secure_outside_development
    assert OPERATOR_TOKEN not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    stored = app.session_interface.get_signing_serializer(app).loads(value)
    assert set(stored) == {"sid", "csrf", "_permanent"}  # no token, not even its digest
    assert session_token(services.engine, stored["sid"]) == token_digest(OPERATOR_TOKEN)

    overview = client.get("/console/")
    assert overview.status_code == 200
    assert "env-operator-1" in text(overview) and ">operator<" in text(overview)
    answer = client.post("/console/sign-out", data={"csrf_token": csrf_from(overview)})
    assert answer.status_code == 302 and "signed_out=1" in answer.headers["Location"]
    assert client.get("/console/").status_code == 302

    auditor = signed_in(app, AUDITOR_TOKEN)
    overview = auditor.get("/console/")
    assert overview.status_code == 200 and "env-auditor-2" in text(overview)
    for url in ("/console/events", "/console/audit", "/console/timeline?user_ref=nobody"):
        assert auditor.get(url).status_code == 200, url


def test_an_open_redirect_after_sign_in_is_refused(site):  # type: ignore[no-untyped-def]
    _, app = site
    for target in ("https://evil.example/", "//evil.example/console", "/console\\@evil", "/api/v1"):
        client = app.test_client()
        form = client.get("/console/sign-in")
        answer = client.post(
            "/console/sign-in",
            data={"token": OPERATOR_TOKEN, "csrf_token": csrf_from(form), "next": target},
        )
        assert answer.headers["Location"] == "/console/", target


def test_backend_token_gets_403_and_a_wrong_token_401(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    answer = sign_in(client, BACKEND_TOKEN)
    assert answer.status_code == 403 and "operator and auditor" in text(answer)
    with client.session_transaction("/console/") as stored:
        assert "sid" not in stored
    assert client.get("/console/").status_code == 302

    # a session of a backend token (it cannot be made by signing in) is refused too
    backend_session = open_session(services.engine, token_digest(BACKEND_TOKEN), 60)
    with client.session_transaction("/console/") as stored:
        stored["sid"] = backend_session
    assert client.get("/console/").status_code == 403
    assert client.get("/console/events").status_code == 403

    for wrong in ("not-a-token", OPERATOR_TOKEN + "x", "", "x" * 600):
        client = app.test_client()
        answer = sign_in(client, wrong)
        assert answer.status_code == 401 and "That token is not valid" in text(answer), wrong
        with client.session_transaction("/console/") as stored:
            assert "sid" not in stored
        assert client.get("/console/").status_code == 302


def test_a_revoked_token_loses_access_at_its_next_request(site, engine):  # type: ignore[no-untyped-def]
    _, app = site
    _, token = create_token(engine, "operator", "night-shift")
    client = signed_in(app, token)
    overview = client.get("/console/")
    assert overview.status_code == 200 and "night-shift" in text(overview)

    revoke_token(engine, "night-shift")
    answer = client.get("/console/events")
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["ended"] == ["1"]
    assert "no longer valid" in text(client.get(answer.headers["Location"]))
    with client.session_transaction("/console/") as stored:
        assert "sid" not in stored
    assert client.get("/console/").status_code == 302
    assert sign_in(app.test_client(), token).status_code == 401


def copy_of_cookie(source, app):  # type: ignore[no-untyped-def]
    """A client of `app` holding a copy of `source`'s console cookie (taken before sign-out)."""
    cookie = source.get_cookie("verihook_console", path="/console")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("verihook_console", cookie.value, path="/console")
    return thief


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    client = signed_in(app)
    # another process (its own app, Services and engine pool; the same database and secret)
    other_process = console_app(make_services(api_tokens=API_TOKENS))
    copies = [copy_of_cookie(client, app), copy_of_cookie(client, other_process)]
    for copy in copies:
        assert copy.get("/console/").status_code == 200
    actor = copy_of_cookie(client, other_process)
    actor_csrf = page_csrf(actor)

    answer = client.post("/console/sign-out", data={"csrf_token": page_csrf(client)})
    assert answer.status_code == 302 and "signed_out=1" in answer.headers["Location"]
    for copy in copies:
        answer = copy.get("/console/events")
        assert answer.status_code == 302, "a copy of the cookie still signs in after sign-out"
        location = urlsplit(answer.headers["Location"])
        assert location.path == "/console/sign-in" and parse_qs(location.query)["ended"] == ["1"]
    # nor can a copy act: its form token still matches its cookie, but the session is over
    answer = actor.post("/console/audit/verify", data={"csrf_token": actor_csrf})
    assert answer.status_code == 302 and "/console/sign-in" in answer.headers["Location"]
    with transaction(services.engine) as db:
        assert db.execute(select(ConsoleSession)).scalars().all() == []
    assert signed_in(app).get("/console/").status_code == 200  # signing in again works


def test_an_expired_console_session_is_refused(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    client = signed_in(app)
    thief = copy_of_cookie(client, app)
    assert thief.get("/console/").status_code == 200
    with transaction(services.engine) as db:  # its time is up on the server
        db.execute(update(ConsoleSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    for holder in (client, thief):  # the cookie itself is still valid for Flask
        answer = holder.get("/console/")
        assert answer.status_code == 302 and "ended=1" in answer.headers["Location"]

    # the lifetime is VERIHOOK_CONSOLE_SESSION_SECONDS: the cookie's and the server's
    short = make_services(api_tokens=API_TOKENS, console_session_seconds=1)
    short_app = console_app(short)
    client = signed_in(short_app)
    cookie = client.get_cookie("verihook_console", path="/console")
    assert cookie is not None and cookie.expires is not None
    with transaction(services.engine) as db:
        row = (
            db.execute(
                select(ConsoleSession).order_by(ConsoleSession.id.desc())  # type: ignore[union-attr]
            )
            .scalars()
            .first()
        )
        assert row is not None and row.expires_at - row.created_at == timedelta(seconds=1)
    thief = copy_of_cookie(client, short_app)
    assert thief.get("/console/").status_code == 200
    time.sleep(1.1)
    assert thief.get("/console/").status_code == 302
    assert console_app(make_services(api_tokens=API_TOKENS)).config[
        "PERMANENT_SESSION_LIFETIME"
    ] == timedelta(hours=12)


def test_a_cookie_signed_with_another_secret_is_ignored(site, make_services, tmp_path):  # type: ignore[no-untyped-def]
    services, app = site
    client = signed_in(app)
    cookie = client.get_cookie("verihook_console", path="/console")
    assert cookie is not None
    elsewhere = make_services(api_tokens=API_TOKENS)
    elsewhere.settings = elsewhere.settings.model_copy(update={"var_dir": tmp_path / "other"})
    other = console_app(elsewhere)
    stranger = other.test_client()
    stranger.set_cookie("verihook_console", cookie.value, path="/console")
    assert stranger.get("/console/").status_code == 302
    # the same var/ (the same generated secret): another process accepts the session
    again = console_app(make_services(api_tokens=API_TOKENS))
    friend = again.test_client()
    friend.set_cookie("verihook_console", cookie.value, path="/console")
    assert friend.get("/console/").status_code == 200


# ------------------------------------------------------------------ CSRF


def test_posts_without_the_sessions_csrf_token_are_400(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    event_id = fail_event(make_services, app.test_client(), signing.contiguity_event("verified"))

    client = app.test_client()
    client.get("/console/sign-in")
    for data in ({"token": OPERATOR_TOKEN}, {"token": OPERATOR_TOKEN, "csrf_token": "forged"}):
        answer = client.post("/console/sign-in", data=data)
        assert answer.status_code == 400 and "security token" in text(answer)
    with client.session_transaction("/console/") as stored:
        assert "sid" not in stored

    operator = signed_in(app)
    other = signed_in(app)  # another session: its token is not valid in the first one
    foreign = page_csrf(other)
    real = page_csrf(operator)
    assert foreign != real
    for url in (f"/console/events/{event_id}/replay", "/console/audit/verify", "/console/sign-out"):
        for data in ({}, {"csrf_token": ""}, {"csrf_token": "wrong"}, {"csrf_token": foreign}):
            answer = operator.post(url, data=data)
            assert answer.status_code == 400, (url, data)
    assert event_state(services.engine, event_id) == EventState.FAILED  # nothing was replayed
    assert operator.get("/console/").status_code == 200  # still signed in
    # a JSON body is no way around it either
    answer = operator.post(
        f"/console/events/{event_id}/replay", json={"csrf_token": real}, headers={}
    )
    assert answer.status_code == 400
    assert operator.post("/console/audit/verify", data={"csrf_token": real}).status_code == 200


# ------------------------------------------------------------------ headers


def assert_security_headers(answer, *, data: bool = True) -> None:  # type: ignore[no-untyped-def]
    policy = answer.headers.get("Content-Security-Policy", "")
    directives = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip()
    )
    assert directives.get("default-src") == "'none'", policy
    assert "script-src" not in directives and "unsafe-inline" not in policy, policy
    assert directives.get("frame-ancestors") == "'none'", policy
    assert directives.get("form-action") == "'self'", policy
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    if data:
        assert answer.headers["Cache-Control"] == "no-store"


def test_security_headers_on_every_console_answer(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    event_id = fail_event(make_services, app.test_client(), signing.contiguity_event("verified"))
    anonymous = app.test_client()
    for url in ("/console/sign-in", "/console/", "/console/no-such-page", "/console/events/999"):
        assert_security_headers(anonymous.get(url))
    assert_security_headers(anonymous.post("/console/sign-in", data={}))  # the 400 page
    assert_security_headers(sign_in(app.test_client(), "wrong"))  # 401
    assert_security_headers(sign_in(app.test_client(), BACKEND_TOKEN))  # 403

    client = signed_in(app)
    csrf = page_csrf(client)
    pages = [
        client.get("/console/"),
        client.get("/console/events"),
        client.get("/console/events?state=failed"),
        client.get("/console/events?since=soon"),
        client.get(f"/console/events/{event_id}"),
        client.get(f"/console/events/{event_id}?raw=1"),
        client.get("/console/events/424242"),
        client.get("/console/timeline?user_ref=user-1"),
        client.get("/console/audit"),
        client.get("/console/audit/export?format=csv"),
        client.post("/console/audit/verify", data={"csrf_token": csrf}),
        client.post(f"/console/events/{event_id}/replay", data={"csrf_token": csrf}),
        client.post("/console/", data={"csrf_token": csrf}),  # 405
    ]
    for answer in pages:
        assert_security_headers(answer)
        body = text(answer)
        if answer.content_type.startswith("text/html"):
            assert "<script" not in body.lower() and " style=" not in body.lower()
    css = client.get("/console/console.css")
    assert css.status_code == 200 and css.content_type.startswith("text/css")
    assert_security_headers(css, data=False)
    assert "no-store" not in css.headers.get("Cache-Control", "")
    # the rest of the app is untouched
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def test_cookie_is_secure_outside_development(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS, env="production")
    services.settings = services.settings.model_copy(
        update={"console_secret": SecretStr("s" * 16 + "0123456789abcdef0123")}
    )
    app = console_app(services)
    answer = sign_in(app.test_client(), OPERATOR_TOKEN)
    assert answer.status_code == 302
    assert "Secure" in answer.headers["Set-Cookie"]


def test_the_development_secret_is_generated_once_under_var(site, tmp_path):  # type: ignore[no-untyped-def]
    services, app = site
    path = tmp_path / DEV_SECRET_FILE
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text()) >= 48
    assert secret_keys(services.settings) == [path.read_text().strip()] == [app.secret_key]


def test_a_store_failure_is_a_plain_503_page(site, monkeypatch):  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import OperationalError

    from reconciler.console import overview_queries

    _, app = site
    client = signed_in(app)

    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(overview_queries, "user_timeline", down)
    answer = client.get("/console/timeline?user_ref=user-1")
    assert answer.status_code == 503 and "Store unavailable" in text(answer)
    assert "connection refused" not in text(answer)
    assert_security_headers(answer)


def test_console_is_off_in_production_without_a_secret(make_services, redis_server, tmp_path):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS, env="production")
    app = console_app(services)
    answer = app.test_client().get("/console/sign-in")
    assert answer.status_code == 503 and "VERIHOOK_CONSOLE_SECRET" in text(answer)
    assert_security_headers(answer)
    assert not (tmp_path / DEV_SECRET_FILE).exists()
    assert app.test_client().get("/healthz").status_code == 200

    short = services.settings.model_copy(update={"console_secret": SecretStr("changeme")})
    with pytest.raises(ConfigurationError, match="VERIHOOK_CONSOLE_SECRET"):
        secret_keys(short)
    rotating = services.settings.model_copy(
        update={"console_secret": SecretStr("n" * 40 + ",o" + "o" * 39)}
    )
    assert secret_keys(rotating) == ["n" * 40, "o" * 40]


def test_rotating_the_secret_keeps_sessions_signed_with_the_previous_one(make_services):  # type: ignore[no-untyped-def]
    def app_with(secret: str):  # type: ignore[no-untyped-def]
        services = make_services(api_tokens=API_TOKENS)
        services.settings = services.settings.model_copy(
            update={"console_secret": SecretStr(secret)}
        )
        return console_app(services)

    old, new = "o" * 40, "n" * 40
    cookie = signed_in(app_with(old)).get_cookie("verihook_console", path="/console")
    assert cookie is not None
    for secret, status in ((f"{new},{old}", 200), (new, 302), (old, 200)):
        client = app_with(secret).test_client()
        client.set_cookie("verihook_console", cookie.value, path="/console")
        assert client.get("/console/").status_code == status, secret


# ------------------------------------------------------------------ escaping


def hostile_data(services, make_services, client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Hostile values in every place a page shows provider or user data."""
    applied = send_contiguity(
        client,
        signing.contiguity_event(
            "requires_input",
            HOSTILE_SESSION,
            user_ref=HOSTILE_USER,
            timestamp=100,
            error={"code": HOSTILE_REASON},
        ),
    ).get_json()["event_id"]
    drain_ready_events(services)
    failed = fail_event(
        make_services,
        client,
        signing.contiguity_event("verified", HOSTILE_SESSION, user_ref=HOSTILE_USER, timestamp=200),
    )
    with transaction(services.engine) as db:
        db.execute(update(ObservationRecord).values(provider_status=HOSTILE_STATUS))
        db.execute(
            update(InboundEvent).where(InboundEvent.id == failed).values(last_error=HOSTILE_ERROR)
        )
        db.execute(update(VerificationSession).values(overdue=True))
    return {"applied": applied, "failed": failed}


def assert_escaped(body: str, *values: str) -> None:
    assert "<script" not in body.lower() and "<img" not in body.lower()
    for value in values:
        assert value not in body


def test_hostile_values_are_escaped_on_every_page(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    ids = hostile_data(services, make_services, app.test_client())
    user_query = {"user_ref": HOSTILE_USER}
    operator = signed_in(app)
    auditor = signed_in(app, AUDITOR_TOKEN)
    checks = [
        (operator, "/console/", {}, [HOSTILE_USER, HOSTILE_SESSION]),
        (operator, "/console/events", {}, [HOSTILE_USER, HOSTILE_SESSION, HOSTILE_ERROR]),
        (operator, "/console/events", user_query, [HOSTILE_USER]),
        (operator, "/console/events", {"session_id": HOSTILE_SESSION}, [HOSTILE_SESSION]),
        (
            operator,
            f"/console/events/{ids['applied']}",
            {},
            [HOSTILE_USER, HOSTILE_SESSION, HOSTILE_STATUS],
        ),
        (operator, f"/console/events/{ids['applied']}", {"raw": "1"}, [HOSTILE_USER]),
        (auditor, f"/console/events/{ids['failed']}", {}, [HOSTILE_ERROR, HOSTILE_USER]),
        (
            auditor,
            "/console/timeline",
            user_query,
            [HOSTILE_USER, HOSTILE_SESSION, HOSTILE_STATUS, HOSTILE_REASON],
        ),
        (auditor, "/console/audit", {}, [HOSTILE_USER, HOSTILE_SESSION]),
        (auditor, "/console/audit", user_query, [HOSTILE_USER]),
        (auditor, "/console/sign-in", {"next": '/console/"><script>x</script>'}, []),
    ]
    for client, url, query, values in checks:
        answer = client.get(url, query_string=query)
        assert answer.status_code == 200, (url, query, answer.status_code)
        body = text(answer)
        assert_escaped(body, *values)
        for value in values:
            escaped = (
                value.replace("&", "&amp;")
                .replace("<", "&lt;")
                .replace(">", "&gt;")
                .replace('"', "&#34;")
                .replace("'", "&#39;")
            )
            assert escaped in body, (url, query, value)
    raw = text(operator.get(f"/console/events/{ids['applied']}?raw=1"))
    assert "&lt;script&gt;alert(\\&#34;user\\&#34;)&lt;/script&gt;" in raw  # the JSON body
    bad_filter = operator.get("/console/events", query_string={"since": "<script>x</script>"})
    assert bad_filter.status_code == 400
    assert_escaped(text(bad_filter), "<script>x</script>")

    result = operator.post(
        f"/console/events/{ids['failed']}/replay",
        data={"csrf_token": page_csrf(operator), "confirm": "1"},
    )
    assert result.status_code == 200
    assert_escaped(text(result), HOSTILE_USER, HOSTILE_SESSION)
    verified = text(operator.get("/console/timeline", query_string=user_query))
    assert "b-verified" in verified


# ------------------------------------------------------------------ replay


def test_replay_button_only_for_operators_and_it_applies_a_failed_event(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    body = signing.contiguity_event("verified", "vs_night", user_ref="user-night")
    event_id = fail_event(make_services, client, body)
    url = f"/console/events/{event_id}"

    auditor = signed_in(app, AUDITOR_TOKEN)
    page = text(auditor.get(url))
    assert "b-failed" in page and "DecryptionError" in page
    assert 'id="dry-run"' not in page and "/replay" not in page and 'id="show-raw"' not in page
    refused = auditor.post(url + "/replay", data={"csrf_token": page_csrf(auditor)})
    assert refused.status_code == 403
    assert event_state(services.engine, event_id) == EventState.FAILED

    operator = signed_in(app)
    page = operator.get(url)
    # a dry run is the event page's one action; a real replay is offered after it, confirmed
    assert 'id="dry-run"' in text(page) and 'name="confirm"' not in text(page)
    csrf = csrf_from(page)
    dry = operator.post(url + "/replay", data={"csrf_token": csrf, "dry_run": "1"})
    assert dry.status_code == 200 and "Nothing was changed" in text(dry)
    assert "b-applied" in text(dry) and 'id="confirm-replay"' in text(dry)
    assert event_state(services.engine, event_id) == EventState.FAILED
    unconfirmed = operator.post(url + "/replay", data={"csrf_token": csrf})
    assert "Nothing was changed" in text(unconfirmed)  # no confirm=1: still a dry run
    assert event_state(services.engine, event_id) == EventState.FAILED

    done = operator.post(url + "/replay", data={"csrf_token": csrf_from(dry), "confirm": "1"})
    shown = text(done)
    assert done.status_code == 200 and f"Replayed event {event_id}" in shown
    assert re.search(r"b-failed\">failed</span> → <span class=\"badge b-applied\">applied", shown)
    assert "user-night" in shown and "b-verified" in shown
    assert event_state(services.engine, event_id) == EventState.APPLIED
    with Session(services.engine) as db:
        user = db.get(UserRecord, "user-night")
        assert user is not None and user.status == "verified"
    reasons = [(row.actor, row.reason) for row in audit_rows(services.engine)]
    assert (
        "operator:env-operator-1",
        f"replayed event {event_id} (was failed, now applied)",
    ) in reasons
    assert "b-applied" in text(operator.get(url))
    assert (
        operator.post(
            "/console/events/424242/replay", data={"csrf_token": csrf_from(page)}
        ).status_code
        == 404
    )


def test_the_delivery_is_redacted_for_auditors_and_decrypted_for_operators_on_request(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    event_id = send_idenfy(client, signing.idenfy_result("APPROVED", "scan-pii")).get_json()[
        "event_id"
    ]
    drain_ready_events(services)
    url = f"/console/events/{event_id}"
    auditor = signed_in(app, AUDITOR_TOKEN)
    for query in ("", "?raw=1"):
        page = text(auditor.get(url + query))
        assert (
            "QUIXOTEPII" not in page and "Redacted" in page and "idenfy-signature" in page.lower()
        )
    operator = signed_in(app)
    page = text(operator.get(url))
    assert "QUIXOTEPII" not in page and 'id="show-raw"' in page
    before = len(audit_rows(services.engine))
    page = text(operator.get(url + "?raw=1"))
    assert "QUIXOTEPII" in page and "recorded in the audit history" in page
    rows = audit_rows(services.engine)
    assert len(rows) == before + 1
    assert (
        rows[-1].actor == "operator:env-operator-1" and "viewed the raw delivery" in rows[-1].reason
    )


# ------------------------------------------------------------------ pages


def test_overview_counts_and_scheduler_leader(site, make_services):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    for index in range(3):
        send_contiguity(client, signing.contiguity_event("verified", f"vs_ok{index}"))
    assert send_contiguity(client, signing.contiguity_event("redacted")).status_code == 202
    drain_ready_events(services)
    fail_event(make_services, client, signing.contiguity_event("verified", "vs_bad"))
    send_contiguity(client, signing.contiguity_event("processing", "vs_waiting"))  # not applied
    with transaction(services.engine) as db:
        db.execute(
            update(VerificationSession)
            .where(VerificationSession.session_id == "vs_ok1")
            .values(overdue=True)
        )

    operator = signed_in(app)
    page = text(operator.get("/console/"))
    tile = re.compile(r'id="tile-(\w+)".*?class="value[^"]*">([^<]+)<', re.S)
    tiles = dict(tile.findall(page))
    assert tiles["failed"] == "1" and tiles["quarantined"] == "1"
    assert tiles["queue"] == "1" and tiles["overdue"] == "1" and tiles["leader"] == "none"
    states = dict(re.findall(r'b-(\w+)">\w+</span></a></td><td class="num">(\d+)<', page))
    assert states == {
        "received": "1",
        "applied": "3",
        "failed": "1",
        "quarantined": "1",
        "superseded": "0",
    }
    assert "vs_ok1" in page and "No scheduler holds the lock" in page

    key = LEADER_KEY.format(queue=services.settings.queue_name)
    services.redis.set(key, "sched-host-7:4242:abcdef123456", px=15_000)
    page = text(operator.get("/console/"))
    assert "sched-host-7" in page and "pid 4242" in page and "unless renewed" in page


def test_events_list_filters_and_cursor_pages(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    for index in range(60):
        body = signing.contiguity_event("verified", f"vs_{index:03d}", user_ref=f"u{index % 3}")
        send_contiguity(client, body)
    send_idenfy(client, signing.idenfy_result("APPROVED", "scan-1"))
    drain_ready_events(services)
    auditor = signed_in(app, AUDITOR_TOKEN)
    row = re.compile(r'<td class="num"><a href="/console/events/(\d+)">')

    seen, url = [], "/console/events?provider=contiguity&limit=25"
    while url:
        page = text(auditor.get(url))
        ids = [int(i) for i in row.findall(page)]
        assert len(ids) in (25, 10)
        seen += ids
        found = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == list(range(60, 0, -1))
    assert 'value="contiguity" selected' in page and "« Newest" in page

    page = text(auditor.get("/console/events?user_ref=u1&limit=100"))
    assert len(row.findall(page)) == 20
    page = text(auditor.get("/console/events?provider=idenfy"))
    assert row.findall(page) == ["61"]
    assert "No events match" in text(auditor.get("/console/events?state=failed"))
    bad = auditor.get("/console/events?since=soon")
    assert bad.status_code == 400 and "since must be an ISO 8601 time" in text(bad)
    assert auditor.get("/console/events?cursor=%%%").status_code == 400
    assert auditor.get("/console/events/99999999999999999999").status_code == 404


def test_user_timeline_shows_sessions_history_and_audit_in_order(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    for at, kind, session_id in (
        (100, "processing", "vs_first"),
        (200, "failed", "vs_first"),
        (300, "processing", "vs_second"),
        (400, "verified", "vs_second"),
        (50, "processing", "vs_second"),  # late: superseded
    ):
        body = signing.contiguity_event(kind, session_id, user_ref="user-tl", timestamp=at)
        send_contiguity(client, body)
        drain_ready_events(services)
    send_contiguity(client, signing.contiguity_event("verified", "vs_other", user_ref="other"))
    drain_ready_events(services)

    page = text(signed_in(app, AUDITOR_TOKEN).get("/console/timeline?user_ref=user-tl"))
    sessions = page.split("<h2>Sessions</h2>")[1].split("<h2>Audit entries</h2>")[0]
    assert sessions.index("vs_first") < sessions.index("vs_second")
    assert "vs_other" not in page
    user_section = page.split('id="user"')[1].split("</section>")[0]
    assert "b-verified" in user_section and "vs_second" in user_section
    assert "superseded" in sessions[sessions.index("vs_second") :]
    audit = page.split('id="user-audit"')[1]
    seqs = [int(s) for s in re.findall(r'<td class="num">(\d+)</td>', audit)]
    assert seqs == sorted(seqs) and len(seqs) == len(
        [r for r in audit_rows(services.engine) if r.user_ref == "user-tl"]
    )
    never = text(signed_in(app).get("/console/timeline?user_ref=nobody"))
    assert "never seen" in never
    assert signed_in(app).get("/console/timeline?user_ref=" + "x" * 200).status_code == 400


def test_audit_view_exports_and_verify(site):  # type: ignore[no-untyped-def]
    services, app = site
    client = app.test_client()
    for index in range(4):
        send_contiguity(
            client, signing.contiguity_event("verified", f"vs_a{index}", user_ref=f"ua{index}")
        )
    drain_ready_events(services)
    rows = audit_rows(services.engine)
    auditor = signed_in(app, AUDITOR_TOKEN)
    page = auditor.get("/console/audit")
    assert page.status_code == 200
    assert len(re.findall(r"<tr>\s*<td class=\"num\">\d+</td>", text(page))) == len(rows)
    filtered = text(auditor.get("/console/audit?user_ref=ua2"))
    assert "ua2" in filtered and "ua1" not in filtered
    assert 'href="/console/audit/export?user_ref=ua2&amp;format=csv"' in filtered

    export = auditor.get("/console/audit/export?format=csv&user_ref=ua2")
    assert export.status_code == 200 and export.content_type.startswith("text/csv")
    assert 'attachment; filename="audit.csv"' == export.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(text(export))))
    assert table and {r["user_ref"] for r in table} == {"ua2"}
    lines = text(auditor.get("/console/audit/export?format=jsonl")).splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [r.seq for r in rows]
    assert auditor.get("/console/audit/export?format=xml").status_code == 400
    assert auditor.get("/console/audit?since=yesterday").status_code == 400

    verify = auditor.post("/console/audit/verify", data={"csrf_token": csrf_from(page)})
    assert verify.status_code == 200 and "Chain ok" in text(verify)
    assert f"{len(rows)} entries" in text(verify)

    with transaction(services.engine) as db:
        db.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(reason="edited afterwards"))
    verify = auditor.post("/console/audit/verify", data={"csrf_token": csrf_from(page)})
    assert "Chain broken at entry 3" in text(verify)
    assert 'href="/console/audit?after=2"' in text(verify)
    with Session(services.engine) as db:
        assert db.execute(select(AuditEntry.reason).where(AuditEntry.seq == 3)).scalar_one()


def test_console_routes_are_described_in_the_openapi_document(site):  # type: ignore[no-untyped-def]
    _, app = site
    assert [e for e in openapi.undocumented_endpoints(app) if e.startswith("console.")] == []
    document = openapi.build_document(app)
    console_paths = {p: ops for p, ops in document["paths"].items() if p.startswith("/console")}
    assert len(console_paths) >= 9
    for operations in console_paths.values():
        for operation in operations.values():
            assert operation["tags"] == ["console"] and operation["security"] == []
