"""One vocabulary for every command group: the same option names (the old spellings kept as
hidden aliases for a release), every time option takes an age or an ISO time, data comes as
`--format table|json|csv|jsonl`, and tables show times with their zone."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import update

from app import cli
from receiver.store.db import transaction
from receiver.store.models import InboundEvent
from reconciler import jobs
from reconciler.cli.options import When
from tests.support import signing
from tests.support.flow import API_TOKENS, send_contiguity
from tests.support.processes import settings_env

CANONICAL = {
    "user_ref": "--user-ref",
    "session_id": "--session-id",
    "provider": "--provider",
    "state": "--state",
    "since": "--since",
    "until": "--until",
    "cursor": "--cursor",
    "fmt": "--format",
    "batch_size": "--batch-size",
    "dry_run": "--dry-run",
    "yes": "--yes",
    "limit": "--limit",
}
"""The spelling of the option of each parameter, in every command that has one."""
OLD_SPELLINGS = {
    ("audit", "query"): {"--user", "--session", "--after", "--json"},
    ("audit", "export"): {"--user", "--session"},
    ("events", "list"): {"--json"},
    ("events", "show"): {"--json"},
    ("events", "replay"): {"--json"},
    ("replay",): {"--json"},
    ("sessions", "list"): {"--status", "--json"},
    ("notifications", "list"): {"--user", "--json"},
    ("tokens", "list"): {"--json"},
    ("keys", "rotate"): {"--batch"},
}
OLD = {flag for flags in OLD_SPELLINGS.values() for flag in flags}
DATA_COMMANDS = [
    ("events", "list"),
    ("sessions", "list"),
    ("audit", "query"),
    ("tokens", "list"),
    ("notifications", "list"),
]
TIME_OPTIONS = {"--since", "--until", "--as-of"}


def every_command() -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}

    def walk(group: click.Group, path: tuple[str, ...]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            if isinstance(command, click.Group):
                walk(command, (*path, name))
            else:
                found[(*path, name)] = command

    walk(cli, ())
    return found


COMMANDS = every_command()


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_speaks_the_same_vocabulary(path: tuple[str, ...]) -> None:
    options = [p for p in COMMANDS[path].params if isinstance(p, click.Option)]
    hidden = {flag for option in options if option.hidden for flag in option.opts}
    for option in options:
        if option.hidden:
            assert set(option.opts) <= OLD, (path, option.opts)
            continue
        assert not set(option.opts) & OLD, (path, option.opts)
        if option.name in CANONICAL:
            assert option.opts[0] == CANONICAL[option.name], (path, option.opts)
        if set(option.opts) & TIME_OPTIONS:
            assert isinstance(option.type, When), (path, option.opts)
    assert hidden == OLD_SPELLINGS.get(path, set()), path
    usage = CliRunner().invoke(cli, [*path, "--help"]).output
    for flag in hidden:
        assert not re.search(rf"(?<![\w-]){flag}(?![\w-])", usage), (path, flag)
    if path in DATA_COMMANDS:
        [fmt] = [o for o in options if o.name == "fmt" and not o.hidden]
        assert list(fmt.type.choices) == ["table", "json", "csv", "jsonl"]  # type: ignore[attr-defined]


@pytest.fixture
def shop(make_services, redis_server):  # type: ignore[no-untyped-def]
    """Events (some three days old), sessions, users, audit entries, notifications, a token; and
    `verihook` in-process on that store."""
    services = make_services(
        api_tokens=API_TOKENS,
        notify_url="http://127.0.0.1:1/hooks",
        notify_secret="whsec_dGVzdC1zZWNyZXQtdGVzdC1zZWNyZXQtMDEyMzQ1",
    )
    services.redis.flushdb()
    jobs.use_services(services)
    from app import create_app

    client = create_app(services=services).test_client()
    for index in range(6):
        body = signing.contiguity_event("verified", f"vs_{index}", user_ref=f"u{index % 2}")
        assert send_contiguity(client, body).status_code == 200
    jobs.apply_ready_events()
    with transaction(services.engine) as db:
        db.execute(
            update(InboundEvent)
            .where(InboundEvent.id <= 2)
            .values(received_at=datetime.now(UTC) - timedelta(days=3))
        )
    env = settings_env(services.settings)

    def verihook(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    verihook("tokens", "create", "--role", "operator", "--name", "ann")
    return verihook


PAIRS = [  # (new spelling, old spelling): the same answer
    ("audit query --user-ref u1 --format json", "audit query --user u1 --format json"),
    ("audit query --session-id vs_2 --format json", "audit query --session vs_2 --format json"),
    ("audit query --cursor 3 --format json", "audit query --after 3 --format json"),
    ("audit export --user-ref u0 --format jsonl", "audit export --user u0 --format jsonl"),
    ("notifications list --user-ref u1 --format json", "notifications list --user u1 --json"),
    ("sessions list --state verified --format json", "sessions list --status verified --json"),
    ("events list --format json", "events list --json"),
    ("events show 3 --format json --redacted", "events show 3 --json --redacted"),
    ("events replay 3 --dry-run --format json", "events replay 3 --dry-run --json"),
    (
        "replay --provider contiguity --dry-run --format json",
        "replay --provider contiguity --dry-run --json",
    ),
    ("tokens list --format json", "tokens list --json"),
]


def comparable(text: str) -> str:
    """The answer without its times (a dry run stamps its own)."""
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", "TIME", text)


def test_new_names_work_and_old_names_still_do(shop):  # type: ignore[no-untyped-def]
    for new, old in PAIRS:
        answer = shop(*new.split())
        assert answer.strip() and comparable(answer) == comparable(shop(*old.split())), new
    assert json.loads(shop("audit", "query", "--user-ref", "u1", "--format", "json"))["entries"]
    assert json.loads(shop("notifications", "list", "--user-ref", "u1", "--json"))["notifications"]
    assert "re-encrypted" in shop("keys", "rotate", "--batch-size", "2")
    assert "re-encrypted" in shop("keys", "rotate", "--batch", "2")
    mine = json.loads(shop("sessions", "list", "--user-ref", "u0", "--format", "json"))
    assert [s["user_ref"] for s in mine["sessions"]] == ["u0"] * 3
    several = json.loads(shop("sessions", "list", "--state", "pending,verified", "--json"))
    assert len(several["sessions"]) == 6


def test_every_time_option_takes_an_age_and_an_iso_time(shop):  # type: ignore[no-untyped-def]
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    def document(*args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(shop(*args, "--format", "json"))

    def count(*args: str) -> int:
        found = document(*args)
        return len(found.get("events") or found.get("entries") or [])

    for since, until in (("1d", "1d"), (day_ago, day_ago)):
        assert count("events", "list", "--since", since) == 4
        assert count("events", "list", "--until", until) == 2
        assert document("replay", "--since", since, "--dry-run")["total"] == 4
        assert document("replay", "--until", until, "--dry-run")["total"] == 2
    entries = count("audit", "query")
    assert entries >= 8
    for since, until in (("2h", "0s"), (day_ago, soon)):
        assert count("audit", "query", "--since", since) == entries
        assert count("audit", "query", "--since", since, "--until", until) == entries
        exported = shop("audit", "export", "--since", since, "--format", "jsonl")
        assert len(exported.splitlines()) == entries
    assert count("audit", "query", "--until", "2h") == 0
    for at in ("0s", soon):
        assert document("audit", "query", "--user-ref", "u0", "--as-of", at)["status"] == "verified"
    assert document("audit", "query", "--user-ref", "u0", "--as-of", "1d")["status"] == "unknown"


ZONED = re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(Z|[+-]\d\d:\d\d)?")


@pytest.mark.parametrize("path", DATA_COMMANDS, ids=" ".join)
def test_tables_show_times_with_their_zone_and_data_formats_agree(shop, path):  # type: ignore[no-untyped-def]
    table = shop(*path)
    times = ZONED.findall(table)
    assert times and all(zone == "Z" for zone in times), table
    document = json.loads(shop(*path, "--format", "json"))
    [records] = [value for value in document.values() if isinstance(value, list)]
    lines = [json.loads(line) for line in shop(*path, "--format", "jsonl").splitlines()]
    assert lines == records and records
    rows = list(csv.DictReader(io.StringIO(shop(*path, "--format", "csv"))))
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        for name, cell in row.items():
            value = record[name]
            assert cell == ("" if value is None else str(value)), (name, cell, value)
    for record in records:
        for name, value in record.items():
            if name.endswith("_at") and value:
                assert value.endswith("+00:00"), (name, value)
