"""The smaller on-call items of issue 20, each through the real command against the store:

- `events show` lays a JSON body out one member per line, every token as sent;
- replaying a quarantined event that stays quarantined says why (its parse error);
- a bulk replay's end is in the audit history beside its start, with counts, also when it stops
  on an error;
- answering no at a confirmation prompt is not an error: exit 0, "Nothing done.".
"""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlmodel import Session

from receiver.store.models import InboundEvent, UserRecord
from receiver.store.replay_models import Replay
from reconciler.cli.events import events
from reconciler.cli.records import users
from reconciler.cli.replay import replay
from reconciler.drain import drain_ready_events
from reconciler.event_queries import EventFilter
from reconciler.replay.execution import run_replay
from reconciler.replay.runs import create_replay
from tests.support import signing
from tests.support.flow import audit_rows, send_contiguity
from tests.support.processes import settings_env

BODY = (
    b'{"id":"evt_pretty1","type":"identity.verification_session.verified","timestamp":%d,'
    b'"api_version":"v2025.9.7","data":{"id":"vs_pretty","status":"verified",'
    b'"client_reference_id":"u-pretty","score":0.950,"tags":[],"nested":{"a":[1,2]}}}'
)


def cli(services, command, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(command, list(args), env=settings_env(services.settings), input=input)


def test_events_show_lays_a_json_body_out_as_sent(client, services) -> None:  # type: ignore[no-untyped-def]
    stored = send_contiguity(client, BODY % int(time.time()))
    assert stored.status_code == 200, stored.get_json()
    shown = cli(services, events, "show", str(stored.get_json()["event_id"]))
    assert shown.exit_code == 0, shown.output
    body = shown.output.split("\n\n", 1)[1]
    assert body.startswith('{\n  "id": "evt_pretty1",\n  "type": ')
    assert '\n    "score": 0.950,\n    "tags": [],\n    "nested": {\n      "a": [\n' in body
    assert body.rstrip().endswith("\n    }\n  }\n}")

    raw = send_contiguity(client, b"not json, kept as sent")
    assert raw.status_code == 202
    plain = cli(services, events, "show", str(raw.get_json()["event_id"]))
    assert plain.output.rstrip().endswith("\n\nnot json, kept as sent")


def test_a_replay_that_stays_quarantined_says_why(client, services) -> None:  # type: ignore[no-untyped-def]
    body = signing.contiguity_event("redacted", "vs_q", user_ref="uq", timestamp=500)
    event_id = send_contiguity(client, body).get_json()["event_id"]
    replayed = cli(services, events, "replay", str(event_id))
    assert replayed.exit_code == 0, replayed.output
    assert f"event {event_id} was quarantined, is now quarantined" in replayed.output
    assert "  why: undocumented contiguity event type in 'type'" in replayed.output


def failed_events(client, make_services, count: int) -> None:  # type: ignore[no-untyped-def]
    """Events that failed to apply for real: a worker without the key they were sealed with."""
    from receiver.store.crypto import Keyring, new_key_spec

    for index in range(count):
        body = signing.contiguity_event("verified", f"vs_f{index}", user_ref=f"uf{index}")
        send_contiguity(client, body)
    broken = make_services(apply_max_attempts=1)
    broken.keyring = Keyring.parse(new_key_spec("other"))
    assert drain_ready_events(broken).failed == count


def operator_reasons(engine) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.reason for e in audit_rows(engine) if e.source == "operator"]


def test_a_bulk_replay_audits_its_end_with_counts(client, services, make_services, engine):  # type: ignore[no-untyped-def]
    failed_events(client, make_services, 3)
    done = cli(services, replay, "--state", "failed", "--yes")
    assert done.exit_code == 0, done.output
    started, finished = operator_reasons(engine)
    assert started.startswith("started bulk replay 1 of 3 event(s)")
    assert finished == (
        "bulk replay 1 finished after 3 of 3 event(s) "
        "(applied 3, superseded 0, quarantined 0, failed 0, deferred 0)"
    )


def test_a_bulk_replay_stopped_by_an_error_audits_that_too(client, services, make_services, engine):  # type: ignore[no-untyped-def]
    failed_events(client, make_services, 2)
    row = create_replay(services, EventFilter.parse({"state": "failed"}), actor_name="ann")
    with engine.begin() as conn:  # its stored filter no longer reads (as after a bad upgrade)
        conn.execute(text('UPDATE replays SET filter_json = \'{"state": "broken"}\''))
    with pytest.raises(Exception, match="state must be one of"):
        run_replay(services, row.id)
    with Session(engine) as db:
        assert db.get(Replay, row.id).state == "failed"
    assert operator_reasons(engine)[1] == (
        f"bulk replay {row.id} stopped on FilterError after 0 of 2 event(s) "
        "(applied 0, superseded 0, quarantined 0, failed 0, deferred 0)"
    )


def test_no_at_a_prompt_is_nothing_done_and_exit_0(client, services, make_services, engine):  # type: ignore[no-untyped-def]
    failed_events(client, make_services, 1)
    declined = cli(services, replay, "--state", "failed", input="n\n")
    assert declined.exit_code == 0, declined.output
    assert declined.output.rstrip().endswith("[y/N]: n\nNothing done.")
    with Session(engine) as db:
        assert db.execute(select(Replay)).first() is None
        assert db.execute(select(InboundEvent.state)).scalar_one() == "failed"

    kept = cli(services, users, "forget", "uf0", input="n\n")
    assert (kept.exit_code, kept.output.rstrip().splitlines()[-1]) == (0, "Nothing done.")
    assert "erased" not in kept.output
    with Session(engine) as db:
        assert db.execute(select(InboundEvent.user_ref)).scalar_one() == "uf0"
        assert db.get(UserRecord, "uf0") is None  # never applied: nothing else to erase
