"""Strict input on every entrance (issue 18): one rule for refs and ids, strict booleans, bounded
JSON, on SQLite and PostgreSQL.

- A user ref or session id is 1 to 128 characters, not only white space, without control
  characters (C0, DEL, C1) or lone surrogates, whether it comes in a webhook, an API body, a query
  string, a path parameter or on the command line (receiver/inputs.py).
- API booleans are JSON `true`/`false` only (`{"confirm": 1}` erased a person).
- JSON deeper than 32 levels, `NaN`/`Infinity`, an infinite number or a lone surrogate in an API
  body is a 400 naming the problem (deep nesting was a 500 RecursionError).
Each bad request is answered 400 and changes nothing.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlmodel import Session

from app import cli, create_app
from receiver import inputs
from receiver.exceptions import ParseError
from receiver.providers import base
from receiver.store.models import UserRecord, VerificationSession
from reconciler import jobs
from tests.support.flow import API_TOKENS, BACKEND, OPERATOR, send_idvapi
from tests.support.processes import settings_env
from tests.support.signing import idvapi_result

NOT_REFS = {
    "empty": "",
    "space": " ",
    "white space": " \t\u00a0",
    "NUL": "a\x00b",
    "escape": "a\x1b]0;x\x07",
    "newline": "a\nb",
    "DEL": "a\x7f",
    "C1 NEL": "a\x85b",
    "C1 CSI": "a\x9bb",
    "lone surrogate": "a\ud800",
    "129 characters": "x" * 129,
}
REFS = ["u", "user-42", "x" * 128, "Zoë Ünal", "a b", "\u202eright-to-left", "\U0001f600", "/"]


# --- the rule itself (pure) ------------------------------------------------------------------


@pytest.mark.unit
def test_the_ref_rule() -> None:
    for name, value in NOT_REFS.items():
        assert not inputs.is_ref(value), name
        with pytest.raises(ValueError, match="user_ref must be 1 to 128 characters"):
            inputs.check_ref(value, "user_ref")
    for value in REFS:
        assert inputs.is_ref(value) and inputs.check_ref(value, "x") == value, value
    # a webhook's id field is held to the same rule (its refusal quarantines the delivery)
    for name, value in NOT_REFS.items():
        with pytest.raises(ParseError):
            base.require_str({"id": value}, "id")
            pytest.fail(f"a webhook took {name}")
    for value in REFS:
        assert base.require_str({"id": value}, "id") == value


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.unit
@pytest.mark.parametrize(
    "body,problem",
    [
        (nested(33), "nested deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32"),
        (b'{"x": NaN}', "not JSON"),
        (b'{"x": -Infinity}', "not JSON"),
        (b'{"x": 1e999}', "out of range"),
        (b'{"x": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"x": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
    ],
)
def test_strict_json_refuses(body: bytes, problem: str) -> None:
    with pytest.raises(inputs.JsonRefused, match=problem):
        inputs.load_strict_json(body)


@pytest.mark.unit
def test_strict_json_takes_what_json_allows_within_the_bounds() -> None:
    assert inputs.load_strict_json(nested(32)) is not None
    value = b'{"n": 1e308, "i": ' + b"9" * 400 + b', "s": "\\u0000\\u00e9", "l": [0, -0.0]}'
    assert inputs.load_strict_json(value)["s"] == "\x00é"
    for scalar in (b"0", b"true", b"null", b'"x"', b"[]", b"1.5"):
        assert inputs.load_strict_json(scalar) == json.loads(scalar)


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, create_app(services=services).test_client()


def sessions_stored(services) -> int:  # type: ignore[no-untyped-def]
    with Session(services.engine) as db:
        return db.execute(select(func.count()).select_from(VerificationSession)).scalar_one()


def post_raw(client, url: str, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(url, data=body, headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("field", ["user_ref", "session_id"])
@pytest.mark.parametrize("name", sorted(NOT_REFS))
def test_a_session_registered_with_a_bad_ref_is_400_and_not_stored(api, field, name):  # type: ignore[no-untyped-def]
    """Was: NUL a 500 on PostgreSQL and stored as is on SQLite; a C1 control stored."""
    services, client = api
    body = {"provider": "nevis", "session_id": "123456789", "user_ref": "user-1"}
    body[field] = NOT_REFS[name]
    raw = json.dumps(body).encode()  # "\u0000", "\ud800": JSON escapes, as a client sends them
    answer = post_raw(client, "/api/v1/sessions", raw, BACKEND)
    assert answer.status_code == 400, (name, answer.get_json())
    assert "must be 1 to 128 characters" in answer.get_json()["error"] or (
        name == "lone surrogate" and "surrogate" in answer.get_json()["error"]
    )
    assert sessions_stored(services) == 0


def test_good_refs_are_still_registered(api):  # type: ignore[no-untyped-def]
    services, client = api
    for ref in REFS:
        body = {"provider": "nevis", "session_id": ref, "user_ref": ref}
        answer = client.post("/api/v1/sessions", json=body, headers=BACKEND)
        assert answer.status_code == 201, (ref, answer.get_json())
        assert answer.get_json()["user_ref"] == ref
    assert sessions_stored(services) == len(REFS)


def test_a_session_created_with_a_bad_user_ref_is_refused_before_the_provider(api):  # type: ignore[no-untyped-def]
    services, client = api
    for name in ("NUL", "C1 NEL", "white space"):
        body = {"provider": "nevis", "user_ref": NOT_REFS[name]}
        answer = post_raw(client, "/api/v1/sessions", json.dumps(body).encode(), BACKEND)
        assert answer.status_code == 400, (name, answer.get_json())  # not 502: no call made
    assert sessions_stored(services) == 0


STRICT_BOOLEANS = [
    ("/api/v1/users/user-1/forget", {"confirm": 1}, "confirm must be true or false"),
    ("/api/v1/users/user-1/forget", {"confirm": 1.0}, "confirm must be true or false"),
    ("/api/v1/users/user-1/forget", {"confirm": "true"}, "confirm must be true or false"),
    ("/api/v1/users/user-1/forget", {"confirm": True, "at_provider": 1}, "at_provider must be"),
    ("/api/v1/users/user-1/forget", {"confirm": True, "at_provider": 0}, "at_provider must be"),
    ("/api/v1/events/1/replay", {"dry_run": 1}, "dry_run must be true or false"),
    ("/api/v1/events/1/replay", {"dry_run": 0}, "dry_run must be true or false"),
    ("/api/v1/replays", {"filter": {"state": "failed"}, "dry_run": 0}, "dry_run must be true"),
    ("/api/v1/replays", {"filter": {"state": "failed"}, "dry_run": "false"}, "dry_run must be"),
]


def test_booleans_are_json_true_or_false_only(api):  # type: ignore[no-untyped-def]
    """Was: `{"confirm": 1}` erased the person (a Literal[True] took 1 == True)."""
    services, client = api
    assert send_idvapi(client, idvapi_result("verified", "user-1")).status_code == 200
    jobs.use_services(services)
    from reconciler.drain import drain_ready_events

    drain_ready_events(services)
    for url, body, message in STRICT_BOOLEANS:
        answer = client.post(url, json=body, headers=OPERATOR)
        assert (answer.status_code, answer.get_json()) == (400, {"error": message}) or (
            answer.status_code == 400 and message in answer.get_json()["error"]
        ), (url, body, answer.get_json())
    with Session(services.engine) as db:
        assert db.get(UserRecord, "user-1") is not None, "a refused erasure erased"
    answer = client.post("/api/v1/users/user-1/forget", json={"confirm": True}, headers=OPERATOR)
    assert answer.status_code == 200
    with Session(services.engine) as db:
        assert db.get(UserRecord, "user-1") is None


DEEP = b"[" * 50_000 + b"]" * 50_000
NEVIS_WITH = b'{"provider":"nevis","user_ref":"u","options":'
CONTIGUITY_WITH = b'{"provider":"contiguity","user_ref":"u","options":'
BODIES_BEYOND_THE_BOUNDS = [
    ("/api/v1/sessions", BACKEND, NEVIS_WITH + DEEP + b"}"),
    ("/api/v1/sessions", BACKEND, NEVIS_WITH + nested(40) + b"}"),
    ("/api/v1/sessions", BACKEND, CONTIGUITY_WITH + b'{"x":1e999}}'),
    ("/api/v1/sessions", BACKEND, CONTIGUITY_WITH + b'{"x":"\\udc00"}}'),
    ("/api/v1/users/u/forget", OPERATOR, b'{"confirm":true,"x":' + DEEP + b"}"),
    ("/api/v1/events/1/replay", OPERATOR, DEEP),
    ("/api/v1/replays", OPERATOR, b'{"filter":{"state":"failed"},"x":' + nested(33) + b"}"),
    ("/api/v1/replays", OPERATOR, b'{"filter":' + DEEP + b"}"),
]


@pytest.mark.parametrize("index", range(len(BODIES_BEYOND_THE_BOUNDS)))
def test_bodies_beyond_the_json_bounds_are_400_not_500(api, index):  # type: ignore[no-untyped-def]
    """Was: a 500 (RecursionError) for deep nesting; an infinite number or a lone surrogate in
    `options` reached the provider client's JSON encoder."""
    services, client = api
    url, headers, body = BODIES_BEYOND_THE_BOUNDS[index]
    answer = post_raw(client, url, body, headers)
    assert answer.status_code == 400, (url, answer.status_code, answer.get_data()[:200])
    assert answer.get_json()["error"] in (
        "JSON nested deeper than 32 levels",
        "a number in the body is out of range",
        "a string in the body holds a lone surrogate",
    )
    assert sessions_stored(services) == 0


@pytest.mark.parametrize("body", [b"0", b"1.5", b"true", b"null", b'"x"', b"[]", b"[{}]"])
@pytest.mark.parametrize(
    "url,headers",
    [
        ("/api/v1/sessions", BACKEND),
        ("/api/v1/users/u/forget", OPERATOR),
        ("/api/v1/events/1/replay", OPERATOR),
        ("/api/v1/replays", OPERATOR),
    ],
)
def test_a_body_that_is_not_an_object_is_400(api, body, url, headers):  # type: ignore[no-untyped-def]
    answer = post_raw(api[1], url, body, headers)
    assert (answer.status_code, answer.get_json()) == (400, {"error": "expected a JSON object"})


BAD_PATH_REFS = ["a%C2%85b", "%20%20", "x" * 129, "a%E2%80%A8%C2%9B"]


def test_path_parameters_follow_the_ref_rule(api):  # type: ignore[no-untyped-def]
    """Was: looked up as given (a C1 control, 129 characters: 404, or an erasure of nobody)."""
    services, client = api
    for ref in BAD_PATH_REFS:
        for method, url, headers in [
            ("GET", f"/api/v1/users/{ref}", OPERATOR),
            ("POST", f"/api/v1/users/{ref}/forget", OPERATOR),
            ("GET", f"/api/v1/sessions/nevis/{ref}", BACKEND),
        ]:
            answer = client.open(url, method=method, json={"confirm": True}, headers=headers)
            assert answer.status_code == 400, (url, answer.status_code)
            assert "must be 1 to 128 characters" in answer.get_json()["error"], url
    assert client.get("/api/v1/users/a%20b", headers=OPERATOR).status_code == 404  # unknown


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/events?user_ref=a%C2%85",
        "/api/v1/events?session_id=%20",
        "/api/v1/audit?user_ref=a%C2%9Bb",
        "/api/v1/audit?session_id=" + "x" * 129,
        "/api/v1/audit/as-of?user_ref=%C2%85&at=2030-01-01T00:00:00Z",
    ],
)
def test_query_strings_follow_the_ref_rule(api, url):  # type: ignore[no-untyped-def]
    answer = api[1].get(url, headers=OPERATOR)
    assert answer.status_code == 400 and "must be 1 to 128 characters" in answer.get_json()["error"]


# --- the command line --------------------------------------------------------------------------


def test_the_cli_takes_refs_by_the_same_rule(services):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in settings_env(services.settings).items() if k.startswith("VERIHOOK_")}
    runner = CliRunner()
    for args in (
        ["users", "forget", "a\x1b]0;x\x07", "--yes"],
        ["users", "forget", "a\x85b", "--yes"],
        ["users", "forget", "x" * 129, "--yes"],
        ["users", "forget", "  ", "--yes"],
        ["sessions", "reconcile", "nevis", "a\x9bb"],
        ["events", "list", "--user-ref", "a\x85"],
        ["audit", "query", "--user", "a\x85"],
    ):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 2, (args, result.exit_code, result.output)
        assert "must be 1 to 128 characters" in result.output, (args, result.output)
