"""Provider-controlled text never reaches an operator's terminal raw (issue 13).

Hostile bodies, headers, query values and ids go in through every ingest path (signed Contiguity
and iDenfy webhooks, the idvapi token URL, the docverify and nevis callbacks); then every CLI
command that shows them runs, with colour left on as on a terminal (click strips nothing), and
its output must hold no control, bidi or separator character, while the JSON outputs parse back
to the very values that were sent.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from app import cli, create_app
from receiver.terminal import safe, safe_json, safe_text
from reconciler.drain import drain_ready_events
from tests.support import signing
from tests.support.flow import send_contiguity, send_idenfy, send_idvapi
from tests.support.processes import settings_env

OSC_TITLE = "\x1b]0;pwned\x07"
COLOUR = "\x1b[31;1mRED\x1b[0m"
BIDI = "\u202egnp.exe\u202c"
ISOLATE = "\u2066x\u2069"
C1 = "\x9b2J\x85"
HOSTILE_SESSION = f"vs_{BIDI}{ISOLATE}"
HOSTILE_USER = f"user-{BIDI}"
EVIL_HEADER = OSC_TITLE + BIDI.encode().decode("latin-1")  # header bytes arrive as latin-1

RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
"""What must never be printed: every control character but the line break, bidi, separators."""


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (OSC_TITLE, "\\x1b]0;pwned\\x07"),
        (COLOUR, "\\x1b[31;1mRED\\x1b[0m"),
        ("a\nb\r\tc\x7f", "a\\nb\\r\\tc\\x7f"),
        (C1, "\\x9b2J\\x85"),
        (BIDI, "\\u202egnp.exe\\u202c"),
        ("\u2066\u2069\u200e\u2028\ud800", "\\u2066\\u2069\\u200e\\u2028\\ud800"),
        ("plain ascii, ünïcödé, 名前", "plain ascii, ünïcödé, 名前"),
    ],
)
@pytest.mark.unit
def test_safe_escapes_every_control_and_bidi_character(raw: str, shown: str) -> None:
    assert safe(raw) == shown
    assert not RAW.search(safe(raw))


@pytest.mark.unit
def test_safe_text_keeps_line_breaks_and_safe_json_stays_json() -> None:
    assert safe_text(f"line one {OSC_TITLE}\nline two\r") == (
        "line one \\x1b]0;pwned\\x07\nline two\\r"
    )
    data = {"body": OSC_TITLE + COLOUR + BIDI + C1 + "\x7f", "id": HOSTILE_SESSION}
    text = safe_json(data, indent=2)
    assert not RAW.search(text.replace("\n", ""))
    assert json.loads(text) == data


def deliver_hostile_everything(client) -> None:  # type: ignore[no-untyped-def]
    """Hostile content through each ingest path; returns nothing, asserts every answer."""
    evil_headers = {"X-Evil": EVIL_HEADER, "X-Colour": COLOUR}
    body = signing.contiguity_event(
        "requires_input",
        HOSTILE_SESSION,
        user_ref=HOSTILE_USER,
        error={"code": f"doc{BIDI}", "message": f"{OSC_TITLE}{COLOUR}"},
        metadata={"note": f"{OSC_TITLE}{C1}\x7f"},
    )
    signature = signing.contiguity_header(body)
    answer = client.post(
        "/webhooks/contiguity",
        data=body,
        headers={"Content-Type": "application/json", "Contiguity-Signature": signature}
        | evil_headers,
    )
    assert answer.status_code == 200, answer.get_json()
    later = signing.contiguity_event(
        "verified", HOSTILE_SESSION, user_ref=HOSTILE_USER, timestamp=1_700_000_100
    )
    assert send_contiguity(client, later).status_code == 200
    # raw control characters in the body: not JSON, so stored quarantined, raw body and all
    escaped = signing.idvapi_result("verified", f"user-{OSC_TITLE}")
    quarantined = escaped.replace(b"\\u001b", b"\x1b").replace(b"\\u0007", b"\x07")
    assert b"\x1b]0;pwned\x07" in quarantined
    assert send_idvapi(client, quarantined).status_code == 202
    assert send_idvapi(client, signing.idvapi_result("rejected", HOSTILE_USER)).status_code == 200
    idenfy = signing.idenfy_result("APPROVED", f"scan-{BIDI}", client_id=HOSTILE_USER)
    assert (
        send_idenfy(client, idenfy.replace(b"ZELDA", b"\\u001b]0;pwned\\u0007")).status_code == 200
    )
    assert client.get(f"/callbacks/nevis?sessionId=123456789&x={BIDI}{C1}").status_code == 302
    answer = client.get(
        f"/callbacks/docverify?sessionId=dv-1&state=s&y={BIDI}", headers=evil_headers
    )
    assert answer.status_code in (302, 202, 200, 401)


@pytest.fixture
def hostile(make_services):  # type: ignore[no-untyped-def]
    """Every hostile delivery stored and applied (with backend notifications queued)."""
    services = make_services(notify_url="http://127.0.0.1:1/notify", notify_secret="whsec_dGVzdA==")
    services.redis.flushdb()
    client = create_app(services=services).test_client()
    deliver_hostile_everything(client)
    drain_ready_events(services)
    return services


def run(services, *args: str) -> str:  # type: ignore[no-untyped-def]
    """`verihook ARGS…` in-process on the test's store, colour on (nothing stripped)."""
    result = CliRunner().invoke(cli, list(args), env=settings_env(services.settings), color=True)
    assert result.exit_code == 0, (args, result.output)
    assert not RAW.search(result.output.replace("\n", "")), (args, result.output)
    return result.output


def test_no_cli_output_carries_provider_control_characters(hostile) -> None:  # type: ignore[no-untyped-def]
    listed = run(hostile, "events", "list", "--limit", "50")
    assert "\\u202e" in listed and "quarantined" in listed
    ids = [int(line.split()[0]) for line in listed.splitlines()[1:] if line.split()[0].isdigit()]
    shown = "".join(run(hostile, "events", "show", str(event_id)) for event_id in ids)
    assert "\\x1b]0;pwned\\x07" in shown  # the OSC sequence is visible, escaped
    assert "X-Evil: \\x1b]0;pwned\\x07" in shown  # a header
    assert "?x=\\u202egnp.exe\\u202c\\x9b2J\\x85" in shown  # a query value
    run(hostile, "events", "show", str(ids[0]), "--redacted")
    for event_id in ids:  # the dry run of each (what it shows is checked by `run`)
        assert "would become" in run(hostile, "events", "replay", str(event_id), "--dry-run")
    assert "dry run" in run(hostile, "replay", "--provider", "contiguity,idenfy", "--dry-run")
    assert "\\u202e" in run(hostile, "sessions", "list")
    assert "\\u202e" in run(hostile, "audit", "query")
    assert "\\u202e" in run(hostile, "audit", "export", "--format", "csv")
    assert "\\u202e" in run(hostile, "notifications", "list")


def test_json_outputs_stay_valid_and_exact(hostile) -> None:  # type: ignore[no-untyped-def]
    listed = json.loads(run(hostile, "events", "list", "--json"))
    assert HOSTILE_SESSION in {event["session_id"] for event in listed["events"]}
    bodies = [
        json.loads(run(hostile, "events", "show", str(event["id"]), "--json"))
        for event in listed["events"]
    ]
    headers = [h for shown in bodies for h in shown["delivery"].get("headers", [])]
    assert ["X-Evil", EVIL_HEADER] in headers
    assert any(OSC_TITLE in shown["delivery"].get("body", "") for shown in bodies)
    dry = json.loads(run(hostile, "replay", "--provider", "contiguity", "--dry-run", "--json"))
    assert HOSTILE_SESSION in {item["session_id"] for item in dry["sessions"]} or dry["total"]
    audit = json.loads(run(hostile, "audit", "query", "--format", "json"))
    assert HOSTILE_SESSION in {entry["session_id"] for entry in audit["entries"]}
    exported = run(hostile, "audit", "export", "--format", "jsonl").splitlines()
    assert HOSTILE_USER in {json.loads(line)["user_ref"] for line in exported}
