"""Hostile input against every inbound endpoint, through the Flask test client (in-process).

Properties (README "Answers to providers", DESIGN §3):
- never a 5xx;
- an unauthenticated request (401/404/405/413/415, or anything not 2xx/3xx) stores no row;
- an authentic request, however hostile its content, is answered 2xx (302 for a callback) and
  stored at most once; the worker then applies or quarantines it: `drain_ready_events` never
  raises and never leaves an event `failed` (hostile content must not crash the worker).

Examples per endpoint: VERIHOOK_FUZZ_EXAMPLES (default 60, derandomized; `make fuzz` sets 10000).
Each endpoint's budget is split between its authentic and its unauthenticated variant. State is
not reset between examples: each example compares row counts before and after its own request.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from app import create_app
from receiver.services import Services
from receiver.store.models import InboundEvent, VerificationSession
from reconciler.drain import drain_ready_events
from tests.conftest import provider_settings
from tests.support import fuzzing as fz
from tests.support.signing import IDENFY_SECRET, IDVAPI_TOKEN, idenfy_result, idvapi_result

NOTIFICATIONS = ("auto-finished", "manual-finished", "resubmitted", "cancelled", "expired")
DOCVERIFY_SESSION = "dv-fuzz-session"
DOCVERIFY_STATE = "dv-fuzz-state-Q2hhbmdlTWU"
DOCVERIFY_RETURN = provider_settings()["docverify"]["return_url"]
NEVIS_RETURN = provider_settings()["nevis"]["return_url"]
TOLERANCE = 300


# --- fixtures and checks ------------------------------------------------------------------------


@pytest.fixture
def fuzz_services(make_services, redis_server) -> Services:  # type: ignore[no-untyped-def]
    """Services with every provider enabled and a small body limit (quiet logs: speed)."""
    built = make_services(max_body_bytes=fz.FUZZ_BODY_LIMIT, log_level="WARNING")
    built.redis.flushdb()
    return built


@pytest.fixture
def fuzz_client(fuzz_services: Services):  # type: ignore[no-untyped-def]
    """A test client for the fuzzed receiver."""
    return create_app(services=fuzz_services).test_client()


@pytest.fixture
def docverify_session(engine: Engine) -> tuple[str, str]:
    """A docverify session created by us, whose callback `state` is known (kept as sha256)."""
    with Session(engine) as db:
        db.add(
            VerificationSession(
                provider="docverify",
                session_id=DOCVERIFY_SESSION,
                user_ref="user-dv-fuzz",
                state_digest=hashlib.sha256(DOCVERIFY_STATE.encode()).hexdigest(),
            )
        )
        db.commit()
    return DOCVERIFY_SESSION, DOCVERIFY_STATE


def stored(engine: Engine) -> int:
    """Rows in inbound_events."""
    with Session(engine) as db:
        return db.execute(select(func.count()).select_from(InboundEvent)).scalar_one()


def failed_events(engine: Engine) -> int:
    """Events the worker left `failed`."""
    with Session(engine) as db:
        query = select(func.count()).select_from(InboundEvent)
        return db.execute(query.where(InboundEvent.state == "failed")).scalar_one()


def send(client, engine: Engine, request: fz.Hostile) -> tuple[int, Any, int]:  # type: ignore[no-untyped-def]
    """Send; return (status, JSON answer or None, rows added). Never a 5xx."""
    before = stored(engine)
    answer = request.send(client)
    added = stored(engine) - before
    if currently_in_test_context():  # the pinned examples below run outside hypothesis
        event(f"answered {answer.status_code}")  # see --hypothesis-show-statistics
    assert answer.status_code < 500, (
        f"{answer.status_code} {answer.get_data()[:200]!r} for {request!r}"
    )
    return answer.status_code, answer.get_json(silent=True), added


def assert_refused(status: int, added: int, request: fz.Hostile) -> None:
    """Not authenticated: never 2xx, and nothing stored. The only 3xx allowed is werkzeug's 308
    to the path with `//` merged (a `%2F` in a segment); following it is just another request."""
    assert not 200 <= status < 300, f"{status} for {request!r}"
    assert status == 308 or not 300 <= status < 400, f"{status} for {request!r}"
    assert added == 0, f"{status} for {request!r}"


def assert_stored_once(status: int, answer: Any, added: int, request: fz.Hostile) -> None:
    """An authentic webhook: 200 accepted/duplicate or 202 quarantined, one row at most."""
    assert status in (200, 202), f"{status} {answer} for {request!r}"
    assert answer["status"] in ("accepted", "duplicate", "quarantined"), answer
    assert (status == 202) == (answer["status"] == "quarantined"), (status, answer)
    assert added == (0 if answer["status"] == "duplicate" else 1), (
        f"{answer}, {added} rows added, for {request!r}"
    )


def drain_cleanly(services: Services, engine: Engine, request: fz.Hostile) -> None:
    """The worker applies or quarantines whatever was stored: no exception, nothing failed."""
    stats = drain_ready_events(services, max_seconds=30)
    assert stats.failed == 0, f"the worker crashed on an authentic delivery: {request!r}"
    assert failed_events(engine) == 0, f"an event left failed by {request!r}"


def check_authentic_webhook(
    client,  # type: ignore[no-untyped-def]
    services: Services,
    engine: Engine,
    request: fz.Hostile,
    *,
    may_refuse: bool = False,
) -> None:
    """The oracle for an authentic webhook: 400 for control characters in the URL, 413 over the
    limit, 415 for a non-JSON type, else stored once (2xx); then the worker must cope with it."""
    status, answer, added = send(client, engine, request)
    too_large = len(request.body) > fz.FUZZ_BODY_LIMIT
    wrong_type = not fz.is_json_content_type(request.content_type)
    if fz.url_has_control_characters(request.path, request.query):
        assert (status, added) == (400, 0), f"{status} for {request!r}"
    elif too_large or wrong_type:
        expected = ({413} if too_large else set()) | ({415} if wrong_type else set())
        assert status in expected, f"{status} (expected {expected}) for {request!r}"
        assert added == 0, f"stored: {request!r}"
    elif may_refuse and status == 401:
        assert added == 0, f"stored: {request!r}"
    else:
        assert_stored_once(status, answer, added, request)
    drain_cleanly(services, engine, request)


def check_redirect(client, services: Services, engine: Engine, request: fz.Hostile) -> None:  # type: ignore[no-untyped-def]
    """The oracle for an authentic callback: 302 (400 if the URL holds control characters),
    stored at most once; then the worker must cope with it."""
    status, _, added = send(client, engine, request)
    if fz.url_has_control_characters(request.path, request.query):
        assert (status, added) == (400, 0), f"{status} for {request!r}"
    else:
        assert status == 302, f"{status} for {request!r}"
        assert added in (0, 1)
    drain_cleanly(services, engine, request)


def check_callback_refusal(  # type: ignore[no-untyped-def]
    client, engine: Engine, request: fz.Hostile, valid: bool, *, kept: int = 0
) -> None:
    """The oracle for a callback that may or may not be usable: a person is on the other end, so
    always 302 (400 if the URL holds control characters); an unusable one stores at most `kept`
    small records."""
    status, _, added = send(client, engine, request)
    if fz.url_has_control_characters(request.path, request.query):
        assert (status, added) == (400, 0), f"{status} for {request!r}"
    elif valid:
        assert status == 302, f"{status} for {request!r}"
    else:
        assert status == 302 and added <= kept, f"{status}, {added} stored for {request!r}"


json_content_types = st.integers(min_value=0, max_value=5).flatmap(
    lambda i: st.sampled_from(fz.JSON_CONTENT_TYPES) if i else fz.content_types
)
"""Mostly JSON (so authentic bodies reach the parser), sometimes anything."""


# --- Contiguity ---------------------------------------------------------------------------------


@fz.fuzz_settings()
@given(
    body=fz.hostile_bodies(fz.contiguity_envelopes),
    content_type=json_content_types,
    headers=fz.extra_headers(),
    query=fz.signed_query_strings,
    header_name=fz.random_case("Contiguity-Signature"),
)
def test_signed_hostile_contiguity_deliveries_are_stored_and_never_crash_the_worker(
    fuzz_client, fuzz_services, engine, body, content_type, headers, query, header_name
):  # type: ignore[no-untyped-def]
    signature = fz.contiguity_signature(body, fz.now_ts())
    request = fz.Hostile(
        "/webhooks/contiguity",
        body=body,
        content_type=content_type,
        headers=[*headers, (header_name, signature)],
        query=query,
    )
    check_authentic_webhook(fuzz_client, fuzz_services, engine, request)


@st.composite
def contiguity_forgeries(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """A body and signature headers that a party without the secret could produce."""
    body = draw(st.one_of(fz.hostile_bodies(fz.contiguity_envelopes), fz.encoded(st.just({}))))
    now = fz.now_ts()
    digest = fz.contiguity_v1(body, now)
    kind = draw(
        st.sampled_from(
            [
                "none",
                "random",
                "random-hex",
                "wrong-secret",
                "other-body",
                "v0-only",
                "uppercase",
                "stale",
                "future",
                "body-only",
                "truncated",
                "two-timestamps",
                "misspelled-name",
                "empty",
            ]
        )
    )
    name = draw(fz.random_case("Contiguity-Signature"))
    value = {
        "random": draw(fz.header_values),
        "random-hex": f"t={now},v1={draw(st.binary(min_size=32, max_size=32)).hex()}",
        "wrong-secret": fz.contiguity_signature(body, now, secret="whsec_not_the_secret"),
        "other-body": fz.contiguity_signature(body + b" ", now),
        "v0-only": f"t={now},v0={digest}",
        "uppercase": f"t={now},v1={digest.upper()}",
        "stale": fz.contiguity_signature(body, now - TOLERANCE - draw(st.integers(2, 10**6))),
        "future": fz.contiguity_signature(body, now + TOLERANCE + draw(st.integers(2, 10**6))),
        "body-only": f"t={now},v1={hashlib.sha256(body).hexdigest()}",
        "truncated": f"t={now},v1={digest[: draw(st.integers(0, 63))]}",
        "two-timestamps": f"t={now},t={now},v1={digest}",
        "misspelled-name": fz.contiguity_signature(body, now),
        "empty": "",
    }.get(kind)
    if kind == "misspelled-name":
        name = draw(st.sampled_from(["Contiguity-Signatur", "X-Contiguity-Signature", "Signature"]))
    headers = draw(fz.extra_headers())
    if value is not None:
        headers.append((name, value))
    return body, headers


@fz.fuzz_settings()
@given(
    forged=contiguity_forgeries(),
    content_type=json_content_types,
    query=fz.query_strings,
)
def test_unsigned_or_forged_contiguity_requests_are_refused_and_store_nothing(
    fuzz_client, engine, forged, content_type, query
):  # type: ignore[no-untyped-def]
    body, headers = forged
    request = fz.Hostile(
        "/webhooks/contiguity", body=body, content_type=content_type, headers=headers, query=query
    )
    status, _, added = send(fuzz_client, engine, request)
    assert_refused(status, added, request)


skews = st.one_of(
    st.integers(min_value=-2 * TOLERANCE, max_value=2 * TOLERANCE),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=1, max_value=1000).map(lambda k: 10**k),  # float range ends at 10**308
)


@fz.fuzz_settings(share=4)
@given(body=fz.encoded(fz.contiguity_envelopes), skew=skews)
def test_genuine_contiguity_signature_counts_only_inside_the_tolerance(
    fuzz_client, fuzz_services, engine, body, skew
):  # type: ignore[no-untyped-def]
    """Signed with the real secret at `now + skew`: accepted within ±300 s, else 401 (README)."""
    timestamp = fz.now_ts() + skew
    request = fz.Hostile(
        "/webhooks/contiguity",
        body=body,
        headers=[("Contiguity-Signature", fz.contiguity_signature(body, timestamp))],
    )
    if abs(skew) in (TOLERANCE - 1, TOLERANCE, TOLERANCE + 1):
        return  # the receiver's clock ticks between our `now` and its own: either is right
    if timestamp < 0 or abs(skew) > TOLERANCE:
        status, _, added = send(fuzz_client, engine, request)
        assert_refused(status, added, request)
    else:
        check_authentic_webhook(fuzz_client, fuzz_services, engine, request)


# --- iDenfy ---------------------------------------------------------------------------------------


def idenfy_signature_value(body: bytes, style: str) -> str:
    """The right signature, in a spelling the receiver accepts (test_ingest_idenfy)."""
    digest = fz.idenfy_hex(body)
    return {"plain": digest, "upper": digest.upper(), "padded": f" {digest}\t"}[style]


@fz.fuzz_settings()
@given(
    body=fz.hostile_bodies(fz.idenfy_payloads),
    content_type=json_content_types,
    headers=fz.extra_headers(),
    query=fz.signed_query_strings,
    header_name=fz.random_case("Idenfy-Signature"),
    style=st.sampled_from(["plain", "upper", "padded"]),
)
def test_signed_hostile_idenfy_deliveries_are_stored_and_never_crash_the_worker(
    fuzz_client, fuzz_services, engine, body, content_type, headers, query, header_name, style
):  # type: ignore[no-untyped-def]
    request = fz.Hostile(
        "/webhooks/idenfy",
        body=body,
        content_type=content_type,
        headers=[*headers, (header_name, idenfy_signature_value(body, style))],
        query=query,
    )
    check_authentic_webhook(fuzz_client, fuzz_services, engine, request)


@st.composite
def idenfy_forgeries(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """A body and an Idenfy-Signature that a party without the key could produce."""
    body = draw(fz.hostile_bodies(fz.idenfy_payloads))
    digest = fz.idenfy_hex(body)
    kind = draw(
        st.sampled_from(
            [
                "none",
                "random",
                "random-hex",
                "wrong-secret",
                "other-body",
                "empty-body-digest",
                "truncated",
                "prefixed",
                "contiguity-scheme",
                "doubled",
                "empty",
                "empty-key",
            ]
        )
    )
    value = {
        "random": draw(fz.header_values),
        "random-hex": draw(st.binary(min_size=32, max_size=32)).hex(),
        "wrong-secret": fz.idenfy_hex(body, secret=IDENFY_SECRET + "x"),
        "other-body": fz.idenfy_hex(body + b"\n"),
        "empty-body-digest": fz.idenfy_hex(b""),
        "truncated": digest[: draw(st.integers(0, 63))],
        "prefixed": "sha256=" + digest,
        "contiguity-scheme": f"t={fz.now_ts()},v1={digest}",
        "doubled": f"{digest},{digest}",
        "empty": "",
        "empty-key": fz.idenfy_hex(body, secret=""),
    }.get(kind)
    if kind == "empty-body-digest":
        assume(body != b"")
    headers = draw(fz.extra_headers())
    if value is not None:
        headers.append((draw(fz.random_case("Idenfy-Signature")), value))
    return body, headers


@fz.fuzz_settings()
@given(forged=idenfy_forgeries(), content_type=json_content_types, query=fz.query_strings)
def test_unsigned_or_forged_idenfy_requests_are_refused_and_store_nothing(
    fuzz_client, engine, forged, content_type, query
):  # type: ignore[no-untyped-def]
    body, headers = forged
    request = fz.Hostile(
        "/webhooks/idenfy", body=body, content_type=content_type, headers=headers, query=query
    )
    status, _, added = send(fuzz_client, engine, request)
    assert_refused(status, added, request)


segments = st.one_of(
    st.sampled_from(NOTIFICATIONS),
    st.sampled_from(NOTIFICATIONS).flatmap(fz.random_case),
    st.sampled_from(NOTIFICATIONS).map(lambda n: n.replace("-", "_")),
    fz.texts,
)


def segment_path(prefix: str, segment: str) -> str:
    """`prefix/segment` with the segment percent-encoded (so it decodes back to itself)."""
    return prefix + "/" + quote(segment.encode("utf-8", "surrogatepass"), safe="")


@fz.fuzz_settings()
@given(
    segment=segments,
    body=fz.hostile_bodies(fz.idenfy_payloads),
    content_type=json_content_types,
    headers=fz.extra_headers(),
    query=fz.signed_query_strings,
)
def test_signed_idenfy_notification_urls_store_only_known_notifications(
    fuzz_client, fuzz_services, engine, segment, body, content_type, headers, query
):  # type: ignore[no-untyped-def]
    """Known notification → stored once; any other segment → refused (401/404), nothing stored."""
    request = fz.Hostile(
        segment_path("/webhooks/idenfy", segment),
        body=body,
        content_type=content_type,
        headers=[*headers, ("Idenfy-Signature", fz.idenfy_hex(body))],
        query=query,
    )
    if segment in NOTIFICATIONS:
        check_authentic_webhook(fuzz_client, fuzz_services, engine, request)
    else:
        status, _, added = send(fuzz_client, engine, request)
        assert_refused(status, added, request)


@fz.fuzz_settings()
@given(
    segment=segments,
    forged=idenfy_forgeries(),
    content_type=json_content_types,
    query=fz.query_strings,
)
def test_unsigned_or_forged_idenfy_notifications_are_refused_and_store_nothing(
    fuzz_client, engine, segment, forged, content_type, query
):  # type: ignore[no-untyped-def]
    body, headers = forged
    request = fz.Hostile(
        segment_path("/webhooks/idenfy", segment),
        body=body,
        content_type=content_type,
        headers=headers,
        query=query,
    )
    status, _, added = send(fuzz_client, engine, request)
    assert_refused(status, added, request)


# --- idvapi ---------------------------------------------------------------------------------------


@fz.fuzz_settings()
@given(
    body=st.one_of(
        fz.hostile_bodies(fz.idvapi_payloads), st.builds(lambda: idvapi_result("verified"))
    ),
    content_type=json_content_types,
    headers=fz.extra_headers(),
    query=fz.signed_query_strings,
)
def test_idvapi_with_the_right_token_stores_hostile_bodies_and_never_crashes_the_worker(
    fuzz_client, fuzz_services, engine, body, content_type, headers, query
):  # type: ignore[no-untyped-def]
    """The token authenticates; a `check_id` that is not a UUID may still be refused (401)."""
    request = fz.Hostile(
        f"/webhooks/idvapi/{IDVAPI_TOKEN}",
        body=body,
        content_type=content_type,
        headers=headers,
        query=query,
    )
    check_authentic_webhook(
        fuzz_client,
        fuzz_services,
        engine,
        request,
        may_refuse=fz.has_malformed_check_id(body),
    )


def _flip_case(text: str, index: int) -> str:
    i = index % len(text)
    return text[:i] + text[i].swapcase() + text[i + 1 :]


wrong_tokens = st.one_of(
    fz.texts,
    st.integers(0, len(IDVAPI_TOKEN) - 1).map(lambda n: IDVAPI_TOKEN[:n]),
    fz.texts.map(lambda s: IDVAPI_TOKEN + (s or "x")),
    fz.texts.map(lambda s: (s or "x") + IDVAPI_TOKEN),
    st.integers(0, 10**6).map(lambda i: _flip_case(IDVAPI_TOKEN, i)),
    st.sampled_from([" ", "\t", "\x00", "%20", "+"]).map(lambda c: IDVAPI_TOKEN + c),
    st.just(IDVAPI_TOKEN.upper()),
    st.just(hashlib.sha256(IDVAPI_TOKEN.encode()).hexdigest()),
)


@fz.fuzz_settings()
@given(
    token=wrong_tokens,
    body=st.one_of(
        fz.hostile_bodies(fz.idvapi_payloads), st.builds(lambda: idvapi_result("verified"))
    ),
    content_type=json_content_types,
    headers=fz.header_lists,
    query=fz.query_strings,
)
def test_idvapi_with_any_other_token_is_refused_and_stores_nothing(
    fuzz_client, engine, token, body, content_type, headers, query
):  # type: ignore[no-untyped-def]
    assume(token != IDVAPI_TOKEN)
    request = fz.Hostile(
        segment_path("/webhooks/idvapi", token),
        body=body,
        content_type=content_type,
        headers=headers,
        query=query + ("&" if query else "") + "token=" + IDVAPI_TOKEN,
    )
    status, _, added = send(fuzz_client, engine, request)
    assert_refused(status, added, request)


# --- docverify ------------------------------------------------------------------------------------

other_pairs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(fz.QUERY_KEYS), fz.texts).filter(
            lambda k: k not in ("sessionId", "state")
        ),
        fz.query_values,
    ),
    max_size=6,
)


@fz.fuzz_settings()
@given(
    extra=other_pairs,
    order=st.randoms(use_true_random=False),
    headers=fz.extra_headers(),
    body=st.one_of(st.just(b""), fz.hostile_bodies(fz.json_values)),
    content_type=st.one_of(st.none(), fz.content_types),
)
def test_docverify_callback_with_the_right_state_redirects_and_never_crashes_the_worker(
    fuzz_client, fuzz_services, engine, docverify_session, extra, order, headers, body, content_type
):  # type: ignore[no-untyped-def]
    session_id, state = docverify_session
    pairs = [("sessionId", session_id), ("state", state), *extra]
    order.shuffle(pairs)
    request = fz.Hostile(
        "/callbacks/docverify",
        method="GET",
        body=body,
        content_type=content_type,
        headers=headers,
        query=fz.encode_query(pairs),
    )
    check_redirect(fuzz_client, fuzz_services, engine, request)


callback_values = st.one_of(
    fz.query_values,
    st.sampled_from(
        [
            DOCVERIFY_SESSION,
            DOCVERIFY_STATE,
            DOCVERIFY_STATE.upper(),
            DOCVERIFY_STATE[:-1],
            DOCVERIFY_STATE + " ",
            hashlib.sha256(DOCVERIFY_STATE.encode()).hexdigest(),
            "123456789",
        ]
    ),
)
callback_pairs = st.lists(
    st.tuples(st.sampled_from(["sessionId", "state", "sessionid", "State", "x"]), callback_values),
    max_size=6,
)
callback_queries = st.one_of(callback_pairs.map(fz.encode_query), fz.query_strings)


@fz.fuzz_settings()
@given(query=callback_queries, headers=fz.extra_headers({"host"}))
def test_docverify_callback_is_302_and_stores_only_with_the_stored_state(
    fuzz_client, engine, docverify_session, query, headers
):  # type: ignore[no-untyped-def]
    session_id, state = docverify_session
    pairs = fz.query_pairs(query)
    valid = fz.single_value(pairs, "sessionId") == session_id and (
        fz.single_value(pairs, "state") == state
    )
    request = fz.Hostile(
        "/callbacks/docverify", method="GET", content_type=None, headers=headers, query=query
    )
    check_callback_refusal(fuzz_client, engine, request, valid)


# --- nevis ----------------------------------------------------------------------------------------


@fz.fuzz_settings()
@given(
    session_id=st.from_regex(fz.NINE_DIGITS, fullmatch=True),
    extra=other_pairs,
    order=st.randoms(use_true_random=False),
    headers=fz.extra_headers(),
)
def test_nevis_redirect_with_a_nine_digit_session_redirects_and_never_crashes_the_worker(
    fuzz_client, fuzz_services, engine, session_id, extra, order, headers
):  # type: ignore[no-untyped-def]
    pairs = [("sessionId", session_id), *extra]
    order.shuffle(pairs)
    request = fz.Hostile(
        "/callbacks/nevis",
        method="GET",
        content_type=None,
        headers=headers,
        query=fz.encode_query(pairs),
    )
    check_redirect(fuzz_client, fuzz_services, engine, request)


@fz.fuzz_settings()
@given(query=callback_queries, headers=fz.extra_headers({"host"}))
def test_nevis_redirect_is_always_302_and_stores_one_small_record_at_most(
    fuzz_client, engine, query, headers
):  # type: ignore[no-untyped-def]
    session_id = fz.single_value(fz.query_pairs(query), "sessionId")
    valid = session_id is not None and fz.NINE_DIGITS.fullmatch(session_id) is not None
    request = fz.Hostile(
        "/callbacks/nevis", method="GET", content_type=None, headers=headers, query=query
    )
    check_callback_refusal(fuzz_client, engine, request, valid, kept=1)


# --- anything else under /webhooks and /callbacks -----------------------------------------------

PROVIDERS = ["contiguity", "docverify", "idvapi", "idenfy", "nevis"]
route_segments = st.one_of(
    st.sampled_from(PROVIDERS).flatmap(fz.random_case), fz.texts, st.just("")
)
routes = st.one_of(
    st.builds(lambda a: segment_path("/webhooks", a), route_segments),
    st.builds(
        lambda a, b: segment_path(segment_path("/webhooks", a), b), route_segments, route_segments
    ),
    st.builds(lambda a: segment_path("/callbacks", a), route_segments),
    st.builds(
        lambda a, b: segment_path(segment_path("/callbacks", a), b),
        route_segments,
        route_segments,
    ),
)


@fz.fuzz_settings(share=1)
@given(
    path=routes,
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    body=fz.hostile_bodies(fz.json_values),
    content_type=st.one_of(st.none(), fz.content_types),
    headers=fz.header_lists,
    query=fz.query_strings,
)
def test_any_method_and_path_under_the_inbound_prefixes_is_never_5xx_and_stores_only_if_2xx(
    fuzz_client, engine, path, method, body, content_type, headers, query
):  # type: ignore[no-untyped-def]
    request = fz.Hostile(
        path, method=method, body=body, content_type=content_type, headers=headers, query=query
    )
    status, _, added = send(fuzz_client, engine, request)
    if not 200 <= status < 400:
        assert added == 0, f"{status} for {request!r}"


# --- found by the fuzzer, pinned (each a minimal repro of one bug class) --------------------------

OUT_OF_RANGE_TIMES = {
    "1e300": 1e300,
    "year-10000": 253_402_300_800,
    "before-year-1": -(10**12),
    "infinity": float("inf"),
    "nan": float("nan"),
}


def _contiguity_body(**changes: Any) -> bytes:
    envelope: dict[str, Any] = {
        "id": "evt_pinned",
        "type": "identity.verification_session.verified",
        "timestamp": 1_700_000_000,
        "data": {"id": "vs_pinned", "client_reference_id": "user-pinned"},
    }
    for key, value in changes.items():
        if key.startswith("data_"):
            envelope["data"][key.removeprefix("data_")] = value
        else:
            envelope[key] = value
    return json.dumps(envelope).encode()  # NaN/Infinity as Python writes them


def _idenfy_body(**changes: Any) -> bytes:
    payload = json.loads(idenfy_result("APPROVED", "scan-pinned", client_id="user-pinned"))
    payload.update(changes)
    return json.dumps(payload).encode()


def _idvapi_body(**changes: Any) -> bytes:
    payload = json.loads(idvapi_result("verified", "user-pinned"))
    for key, value in changes.items():
        if key.startswith("result_"):
            payload["verification_result"][key.removeprefix("result_")] = value
        else:
            payload[key] = value
    return json.dumps(payload).encode()


def _signed(provider: str, body: bytes) -> fz.Hostile:
    if provider == "contiguity":
        header = ("Contiguity-Signature", fz.contiguity_signature(body, fz.now_ts()))
        return fz.Hostile("/webhooks/contiguity", body=body, headers=[header])
    if provider == "idenfy":
        return fz.Hostile(
            "/webhooks/idenfy", body=body, headers=[("Idenfy-Signature", fz.idenfy_hex(body))]
        )
    return fz.Hostile(f"/webhooks/idvapi/{IDVAPI_TOKEN}", body=body)


@pytest.mark.parametrize("value", list(OUT_OF_RANGE_TIMES.values()), ids=list(OUT_OF_RANGE_TIMES))
def test_pinned_contiguity_timestamp_outside_the_datetime_range_is_stored_not_500(
    fuzz_client, fuzz_services, engine, value
):  # type: ignore[no-untyped-def]
    request = _signed("contiguity", _contiguity_body(timestamp=value))
    check_authentic_webhook(fuzz_client, fuzz_services, engine, request)


@pytest.mark.parametrize("field", ["finishTime", "startTime"])
@pytest.mark.parametrize("value", list(OUT_OF_RANGE_TIMES.values()), ids=list(OUT_OF_RANGE_TIMES))
def test_pinned_idenfy_time_outside_the_datetime_range_is_stored_not_500(
    fuzz_client, fuzz_services, engine, field, value
):  # type: ignore[no-untyped-def]
    changes = {field: value} if field == "finishTime" else {"finishTime": None, field: value}
    request = _signed("idenfy", _idenfy_body(**changes))
    check_authentic_webhook(fuzz_client, fuzz_services, engine, request)


ID_FIELDS = [
    ("contiguity", lambda v: _contiguity_body(id="evt_" + v)),
    ("contiguity", lambda v: _contiguity_body(data_id="vs_" + v)),
    ("contiguity", lambda v: _contiguity_body(data_client_reference_id="user-" + v)),
    ("idenfy", lambda v: _idenfy_body(scanRef="scan-" + v)),
    ("idenfy", lambda v: _idenfy_body(clientId="user-" + v)),
    ("idvapi", lambda v: _idvapi_body(user_identifier="user-" + v)),
]
ID_FIELD_NAMES = [
    "contiguity-id",
    "contiguity-data.id",
    "contiguity-client_reference_id",
    "idenfy-scanRef",
    "idenfy-clientId",
    "idvapi-user_identifier",
]


@pytest.mark.parametrize("provider,build", ID_FIELDS, ids=ID_FIELD_NAMES)
def test_pinned_lone_surrogate_in_an_id_field_is_stored_not_500(
    fuzz_client, fuzz_services, engine, provider, build
):  # type: ignore[no-untyped-def]
    """`"\\ud800"` is a valid JSON escape that decodes to a str UTF-8 cannot encode."""
    check_authentic_webhook(fuzz_client, fuzz_services, engine, _signed(provider, build("\ud800")))


@pytest.mark.parametrize("provider,build", ID_FIELDS, ids=ID_FIELD_NAMES)
def test_pinned_nul_in_an_id_field_is_stored_not_503(
    fuzz_client, fuzz_services, engine, provider, build
):  # type: ignore[no-untyped-def]
    """`"\\u0000"` is valid JSON; PostgreSQL text refuses NUL. 503 means "store unavailable, retry"
    (README), so the provider would retry an authentic delivery forever and never be stored."""
    check_authentic_webhook(fuzz_client, fuzz_services, engine, _signed(provider, build("\x00")))


def test_pinned_genuine_contiguity_signature_with_a_310_digit_timestamp_is_401_not_500(
    fuzz_client, engine
):  # type: ignore[no-untyped-def]
    body = _contiguity_body()
    timestamp = 10**309  # beyond float range: `now - timestamp` overflows
    request = fz.Hostile(
        "/webhooks/contiguity",
        body=body,
        headers=[("Contiguity-Signature", fz.contiguity_signature(body, timestamp))],
    )
    status, _, added = send(fuzz_client, engine, request)
    assert_refused(status, added, request)


UTC_OVERFLOWS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("field", ["completed_at", "result_timestamp"])
@pytest.mark.parametrize("value", UTC_OVERFLOWS)
def test_pinned_idvapi_time_that_overflows_in_utc_does_not_fail_in_the_worker(
    fuzz_client, fuzz_services, engine, field, value
):  # type: ignore[no-untyped-def]
    """A valid ISO time whose UTC equivalent is outside year 1..9999: accepted at ingest, then
    the worker must apply or quarantine it, not crash on it (and retry it to `failed`)."""
    changes = {field: value} if field == "completed_at" else {"completed_at": None, field: value}
    request = _signed("idvapi", _idvapi_body(**changes))
    check_authentic_webhook(fuzz_client, fuzz_services, engine, request)
