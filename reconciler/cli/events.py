"""`verihook events list|show|replay` (the bulk `verihook replay` is in reconciler/cli/replay.py).

The command line is trusted like the database it reaches: it acts as operator `cli-<os user>`,
and that name is what the audit history records for its replays and raw-body views.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from receiver.store.db import transaction
from receiver.store.models import EventState
from receiver.terminal import echo, safe, safe_json, safe_text
from reconciler.cli.answers import indented_json
from reconciler.cli.common import StoreGroup, engine_or_exit, services_or_exit
from reconciler.cli.options import (
    REPORT_FORMATS,
    format_option,
    iso,
    next_page,
    stamp,
    time_option,
    write_records,
)
from reconciler.event_queries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    FilterError,
    ListRequest,
    NotFound,
    event_json,
    list_events,
)

STATES = [s.value for s in EventState]
EVENT_COLUMNS = (
    "id",
    "provider",
    "kind",
    "notification",
    "state",
    "session_id",
    "user_ref",
    "received_at",
    "applied_at",
    "attempts",
    "last_error",
    "parse_error",
)
"""The columns of `events list --format csv` (JSON carries every field the API shows)."""


def cli_actor_name() -> str:
    """`cli-<os user>`: who the audit history says acted from the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return "cli-" + (re.sub(r"[^A-Za-z0-9._@-]", "_", user)[:40] or "unknown")


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The event filter options shared by `events list` and `replay`."""
    for option in reversed(
        [
            click.option("--provider", help="Only this provider (comma-separated for several)."),
            click.option(
                "--state", help=f"Only this state ({', '.join(STATES)}; comma-separated ok)."
            ),
            click.option("--session-id", help="Only this provider session id."),
            click.option("--user-ref", help="Only this user ref."),
            time_option("--since", help="Received at or after"),
            time_option("--until", help="Received before"),
        ]
    ):
        command = option(command)
    return command


def filter_values(**values: Any) -> dict[str, Any]:
    """The filter options given, as the text the shared filter parser takes."""
    return {
        key: iso(value) if isinstance(value, datetime) else value
        for key, value in values.items()
        if value
    }


def dump(data: Any) -> None:
    """Data as indented JSON, control characters escaped."""
    click.echo(safe_json(data, indent=2, sort_keys=True))


@click.group(cls=StoreGroup)
def events() -> None:
    """Stored inbound events: list them, show one, replay one."""


@events.command("list")
@filter_options
@click.option(
    "--limit",
    default=DEFAULT_LIMIT,
    show_default=True,
    type=click.IntRange(1, MAX_LIMIT),
    help="Events per page.",
)
@click.option("--cursor", help="Continue after the previous page (its `next cursor`).")
@format_option()
def events_list(limit: int, cursor: str | None, fmt: str, **filters: Any) -> None:
    """List events, newest first (`--format json` is the API's page)."""
    params: dict[str, Any] = {**filter_values(**filters), "limit": limit}
    if cursor:
        params["cursor"] = cursor
    try:
        wanted = ListRequest.parse(params)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from exc
    engine = engine_or_exit()
    try:
        with transaction(engine) as db:
            rows, next_cursor = list_events(db, wanted)
            shown = [event_json(row) for row in rows]
    finally:
        engine.dispose()
    if fmt != "table":
        document = {"events": shown, "next_cursor": next_cursor, "limit": limit}
        write_records(shown, fmt, EVENT_COLUMNS, document)
        next_page(next_cursor, fmt)
        return
    click.echo(
        f"{'id':>8}  {'provider':<10} {'kind':<8} {'state':<11} {'session_id':<30} "
        f"{'user_ref':<20} {'received_at':<20} {'att':>3}  error"
    )
    for e in shown:
        error = safe(e["last_error"] or e["parse_error"] or "")[:60]
        echo(
            f"{e['id']:>8}  {safe(e['provider']):<10} {safe(e['kind']):<8} {e['state']:<11} "
            f"{safe(e['session_id'] or '-'):<30} {safe(e['user_ref'] or '-'):<20} "
            f"{stamp(e['received_at']):<20} {e['attempts']:>3}  {error}"
        )
    if not shown:
        click.echo("(no events)")
    next_page(next_cursor, fmt)


@events.command("show")
@click.argument("event_id", metavar="ID", type=int)
@click.option("--redacted", is_flag=True, help="Metadata only, as an auditor sees it.")
@format_option(REPORT_FORMATS)
def events_show(event_id: int, redacted: bool, fmt: str) -> None:
    """Show one event and its delivery (headers and body; the view is audited).

    Control characters in what the provider sent are shown escaped (`\\x1b`), never raw.
    """
    from reconciler.replay.shaping import show_event

    services = services_or_exit()
    try:
        shown = show_event(
            services,
            event_id,
            redacted=redacted,
            actor_name=None if redacted else cli_actor_name(),
        )
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    if fmt == "json":
        dump(shown)
        return
    delivery = shown.pop("delivery")
    observations = shown.pop("observations")
    for key, value in shown.items():
        if value is not None:
            echo(f"{key + ':':<13} {safe(value)}")
    for obs in observations:
        echo(
            f"observation:  {safe(obs['provider'])}/{safe(obs['session_id'])} {obs['status']} "
            f"({obs['decided_by']}) {obs['disposition']} at {obs['occurred_at']}"
        )
    if not delivery.get("available"):
        echo(f"delivery:     unavailable ({safe(delivery.get('error'))})")
        return
    click.echo(f"delivery:     {delivery['source']}, {delivery['body_bytes']} bytes")
    if redacted:
        echo(f"headers:      {', '.join(safe(name) for name in delivery['header_names'])}")
        return
    for name, value in delivery["headers"]:
        echo(f"  {safe(name)}: {safe(value)}")
    for name, value in delivery["query"]:
        echo(f"  ?{safe(name)}={safe(value)}")
    echo("")
    echo(safe_text(indented_json(delivery["body"]) or delivery["body"]))


@events.command("replay")
@click.argument("event_id", metavar="ID", type=int)
@click.option("--dry-run", is_flag=True, help="Show what it would change; change nothing.")
@format_option(REPORT_FORMATS)
def events_replay(event_id: int, dry_run: bool, fmt: str) -> None:
    """Process one event again now, with the worker's code."""
    from reconciler.replay.execution import replay_event

    services = services_or_exit()
    try:
        outcome = replay_event(services, event_id, actor_name=cli_actor_name(), dry_run=dry_run)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    if fmt == "json":
        dump(outcome)
        return
    verb = "would become" if dry_run else "is now"
    click.echo(
        f"event {event_id} was {outcome['state_before']}, {verb} {outcome['event']['state']}"
    )
    if outcome["event"]["state"] == EventState.QUARANTINED:
        echo(f"  why: {safe(outcome['event']['parse_error'])}")
    echo_changes(outcome)


def _status(pair: dict[str, str] | None) -> str:
    return f"{safe(pair['status'])} ({safe(pair['decided_by'])})" if pair else "(none)"


def echo_changes(effect: dict[str, Any]) -> None:
    """What a replay changed (or would): counts, then each session and user, from and to."""
    echo(
        f"  applied {effect['applied']}, superseded {effect['superseded']}, "
        f"quarantined {effect['quarantined']}, failed {effect['failed']}, "
        f"deferred {effect['deferred']}"
    )
    echo(f"  sessions changed: {effect['sessions_changed']}")
    for item in effect["sessions"]:
        echo(
            f"    {safe(item['provider'])}/{safe(item['session_id'])} "
            f"({safe(item.get('user_ref') or '-')}): "
            f"{_status(item['from'])} -> {_status(item['to'])}"
        )
    echo(f"  users changed: {effect['users_changed']}")
    for item in effect["users"]:
        echo(f"    {safe(item['user_ref'])}: {_status(item['from'])} -> {_status(item['to'])}")
    if effect.get("truncated"):
        echo("  (more changes than listed)")
    for failure in effect["failures"]:
        echo(f"  failed: event {failure['event_id']}: {safe(failure['error'])}")
