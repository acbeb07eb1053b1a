"""Hostile input against the API (`/api/v1/…`), through the Flask test client, on SQLite and
PostgreSQL, with the providers played by their simulators (so a session really is created).

tests/test_openapi.py has schemathesis generate requests from the OpenAPI document; these go
where a document does not lead: bodies nested past any recursion limit, `NaN` and huge numbers,
lone surrogates as JSON escapes, control characters in every ref, bodies that are not objects,
numbers where booleans belong, hostile refs in paths and query strings.

Properties (README "Input is held to one rule wherever it enters"), checked by the independent
oracles of tests/support/fuzzing.py:
- never a 5xx;
- a session is registered or created (2xx) only with refs that keep the ref rule, and every
  session in the database keeps it;
- a person is erased (200) only when `confirm` is JSON `true` and the path's ref keeps the rule;
- a bulk replay is started (202) only for `dry_run: false`, dry-run (200) only for `true` or
  nothing; one event is replayed only for a `dry_run` that is a JSON boolean, or none;
- a body nested deeper than 32 levels, or that Python reads only leniently (`NaN`), is a 4xx.

Examples per test: VERIHOOK_FUZZ_EXAMPLES (default 60, derandomized; `make fuzz` sets 10000).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import select
from sqlmodel import Session

from app import create_app
from receiver.store.models import VerificationSession
from reconciler import jobs, simulators
from reconciler.drain import drain_ready_events
from tests.support import fuzzing as fz
from tests.support.flow import API_TOKENS, BACKEND, OPERATOR
from tests.support.signing import contiguity_event, contiguity_header
from tests.support.world import SIM_CREDENTIALS, provider_settings

PROVIDERS = sorted(simulators.PROVIDERS)


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, simulators.Simulator]]:
    """The five provider simulators, for the whole module."""
    started = {
        name: simulators.start(
            name,
            **SIM_CREDENTIALS[name]
            if name != "idvapi"
            else {"api_key": SIM_CREDENTIALS[name]["api_key"]},
        )
        for name in simulators.PROVIDERS
    }
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture
def api(make_services, redis_server, sims):  # type: ignore[no-untyped-def]
    """(services, test client): every provider at its simulator, quiet logs, one stored event."""
    services = make_services(
        api_tokens=API_TOKENS,
        providers=provider_settings(sims),
        log_level="WARNING",
    )
    services.redis.flushdb()
    jobs.use_services(services)
    client = create_app(services=services).test_client()
    body = contiguity_event("verified", "vs_api_fuzz", user_ref="user-api-fuzz")
    assert send_contiguity_to(client, services, body).status_code == 200
    drain_ready_events(services)
    return services, client


def send_contiguity_to(client, services, body: bytes):  # type: ignore[no-untyped-def]
    """A signed delivery with the simulators' Contiguity secret (the api fixture's settings)."""
    secret = SIM_CREDENTIALS["contiguity"]["webhook_secret"]
    header = contiguity_header(body, secret=secret, timestamp=int(time.time()))
    return client.post(
        "/webhooks/contiguity",
        data=body,
        headers={"Content-Type": "application/json", "Contiguity-Signature": header},
    )


def post(client, url: str, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """POST raw bytes as JSON; never a 5xx; returns (status, lenient reading of the body)."""
    answer = client.post(url, data=body, headers={**headers, "Content-Type": "application/json"})
    if currently_in_test_context():  # the plain test at the end runs outside hypothesis
        event(f"answered {answer.status_code}")
    assert answer.status_code < 500, (
        f"{answer.status_code} {answer.get_data()[:200]!r} for POST {url} {body[:300]!r}"
    )
    readable, value = fz.lenient_json(body)
    if readable and (fz.json_depth(value) > 32 or fz.beyond_strict_json(body)):
        assert 400 <= answer.status_code < 500, (answer.status_code, url, body[:300])
    return answer.status_code, value if readable else None, answer


def stored_refs_keep_the_rule(services) -> None:  # type: ignore[no-untyped-def]
    with Session(services.engine) as db:
        rows = db.execute(
            select(VerificationSession.user_ref, VerificationSession.session_id)
        ).all()
    for user_ref, session_id in rows:
        assert user_ref is None or fz.keeps_the_ref_rule(user_ref), repr(user_ref)
        assert fz.keeps_the_ref_rule(session_id), repr(session_id)


# --- POST /api/v1/sessions ----------------------------------------------------------------------

new_sessions = fz.shaped(
    provider=(st.sampled_from(PROVIDERS), fz.or_dropped(st.one_of(fz.texts, fz.json_values))),
    user_ref=(fz.plain_ids.map(lambda s: "user-" + s), fz.or_dropped(fz.api_ref_values)),
    session_id=(st.one_of(st.just(fz.DROPPED), fz.plain_ids), fz.api_ref_values),
    options=(st.just(fz.DROPPED), fz.hostile_json),
)


@fz.fuzz_settings(share=1)
@given(body=fz.api_bodies(new_sessions))
def test_sessions_are_made_only_with_refs_that_keep_the_rule(api, body):  # type: ignore[no-untyped-def]
    services, client = api
    status, sent, answer = post(client, "/api/v1/sessions", body, BACKEND)
    if status in (200, 201):
        assert isinstance(sent, dict), body[:300]
        for name in ("user_ref", "session_id"):
            if name in sent:
                assert fz.keeps_the_ref_rule(sent[name]), (status, name, sent[name])
        assert fz.keeps_the_ref_rule(answer.get_json()["session_id"])
    stored_refs_keep_the_rule(services)


# --- POST /api/v1/users/<user_ref>/forget -------------------------------------------------------

forget_bodies = fz.shaped(
    confirm=(st.just(True), fz.or_dropped(fz.api_bools)),
    at_provider=(st.one_of(st.just(fz.DROPPED), st.booleans()), fz.or_dropped(fz.api_bools)),
)


@fz.fuzz_settings(share=1)
@given(ref=st.one_of(st.just("user-api-fuzz"), fz.api_refs), body=fz.api_bodies(forget_bodies))
def test_a_person_is_erased_only_on_json_true_for_a_ref_that_keeps_the_rule(api, ref, body):  # type: ignore[no-untyped-def]
    _, client = api
    segment = fz.ref_segment(ref)
    status, sent, _ = post(client, f"/api/v1/users/{segment}/forget", body, OPERATOR)
    if status == 200:
        as_read = unquote(segment, errors="replace")  # bad UTF-8 reads as U+FFFD
        assert fz.keeps_the_ref_rule(as_read), repr(as_read)
        assert isinstance(sent, dict) and sent.get("confirm") is True, body[:300]
        assert isinstance(sent.get("at_provider", False), bool), body[:300]


# --- POST /api/v1/events/<id>/replay and /api/v1/replays ---------------------------------------

replay_one_bodies = fz.shaped(
    dry_run=(st.one_of(st.just(fz.DROPPED), st.just(True)), fz.or_dropped(fz.api_bools))
)
replay_filters = fz.shaped(
    state=(st.just("failed"), fz.or_dropped(st.one_of(fz.texts, fz.json_values))),
    provider=(st.just(fz.DROPPED), fz.or_dropped(st.one_of(fz.texts, fz.json_values))),
    user_ref=(st.just(fz.DROPPED), fz.api_ref_values),
    session_id=(st.just(fz.DROPPED), fz.api_ref_values),
    since=(st.just("2h"), fz.or_dropped(st.one_of(fz.iso_times(), fz.texts))),
)
replay_bodies = fz.shaped(
    filter=(replay_filters, fz.hostile_json),
    dry_run=(st.just(True), fz.or_dropped(fz.api_bools)),
)


@fz.fuzz_settings(share=2)
@given(body=fz.api_bodies(replay_one_bodies))
def test_one_event_is_replayed_only_for_a_json_boolean(api, body):  # type: ignore[no-untyped-def]
    _, client = api
    status, sent, _ = post(client, "/api/v1/events/1/replay", body, OPERATOR)
    if status == 200 and body:
        assert isinstance(sent, dict), body[:300]
        assert isinstance(sent.get("dry_run", False), bool), body[:300]


@fz.fuzz_settings(share=1)
@given(body=fz.api_bodies(replay_bodies))
def test_bulk_replays_start_only_for_dry_run_false(api, body):  # type: ignore[no-untyped-def]
    _, client = api
    status, sent, _ = post(client, "/api/v1/replays", body, OPERATOR)
    if status in (200, 202):
        assert isinstance(sent, dict), body[:300]
        dry_run: Any = sent.get("dry_run", True)
        assert dry_run is (status == 200), (status, dry_run)
        for name in ("user_ref", "session_id"):
            value = sent["filter"].get(name)
            assert value in (None, "") or fz.keeps_the_ref_rule(value), (name, value)


# --- refs in paths and query strings --------------------------------------------------------

READ_URLS = [
    "/api/v1/users/{ref}",
    "/api/v1/sessions/nevis/{ref}",
    "/api/v1/events?user_ref={query}",
    "/api/v1/events?session_id={query}",
    "/api/v1/audit?user_ref={query}",
    "/api/v1/audit?session_id={query}&format=csv",
    "/api/v1/audit/as-of?user_ref={query}&at=2030-01-01T00:00:00Z",
]


@fz.fuzz_settings(share=1)
@given(
    template=st.sampled_from(READ_URLS), ref=st.one_of(st.sampled_from(fz.REF_TROUBLE), fz.api_refs)
)
def test_refs_in_paths_and_queries_are_never_a_5xx_and_keep_the_rule(api, template, ref):  # type: ignore[no-untyped-def]
    _, client = api
    url = template.format(ref=fz.ref_segment(ref), query=fz.ref_segment(ref))
    answer = client.get(url, headers=OPERATOR)
    event(f"answered {answer.status_code}")
    assert answer.status_code < 500, (answer.status_code, url)
    if answer.status_code in (200, 404) and "{ref}" in template and answer.is_json:
        echoed = answer.get_json().get("user_ref")
        assert echoed is None or fz.keeps_the_ref_rule(echoed), repr(echoed)
    if answer.status_code == 200 and "{query}" in template:
        decoded = fz.query_pairs(url.split("?", 1)[1])[0][1]
        assert decoded == "" or fz.keeps_the_ref_rule(decoded), repr(decoded)


def test_a_bulk_replay_from_the_fuzzed_endpoint_really_runs(api):  # type: ignore[no-untyped-def]
    """The oracle is not vacuous: a well-formed request through the same helper succeeds."""
    _, client = api
    body = json.dumps({"filter": {"state": "applied"}, "dry_run": True}).encode()
    status, _, answer = post(client, "/api/v1/replays", body, OPERATOR)
    assert status == 200 and answer.get_json()["events"] == 1
    made = json.dumps({"provider": "nevis", "user_ref": "user-made"}).encode()
    status, _, answer = post(client, "/api/v1/sessions", made, BACKEND)
    assert status == 201 and answer.get_json()["start_url"], answer.get_json()
