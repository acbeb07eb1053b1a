"""`verihook events list|show|replay` and `verihook replay` (bulk, dry run first, resumable).

The command line is trusted like the database it reaches: it acts as operator `cli-<os user>`,
and that name is what the audit history records for its replays and raw-body views.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from receiver.store.db import transaction
from receiver.store.models import EventState
from receiver.terminal import echo, safe, safe_json, safe_text
from reconciler.cli.common import StoreCommand, StoreGroup, engine_or_exit, services_or_exit
from reconciler.event_queries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    EventFilter,
    FilterError,
    ListRequest,
    NotFound,
    event_json,
    list_events,
)

if TYPE_CHECKING:  # the replay machinery is imported by the commands that replay
    from receiver.services import Services
    from receiver.store.replay_models import Replay

STATES = [s.value for s in EventState]


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
            click.option("--since", help="Received at or after: ISO 8601 time or an age (2h)."),
            click.option("--until", help="Received before: ISO 8601 time or an age (30m)."),
        ]
    ):
        command = option(command)
    return command


def _filter_values(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}


def _dump(data: Any) -> None:
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON like the API.")
def events_list(limit: int, cursor: str | None, as_json: bool, **filters: str | None) -> None:
    """List events, newest first."""
    params: dict[str, Any] = {**_filter_values(**filters), "limit": limit}
    if cursor:
        params["cursor"] = cursor
    try:
        wanted = ListRequest.parse(params)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from exc
    engine = engine_or_exit()
    try:
        with transaction(engine) as session:
            rows, next_cursor = list_events(session, wanted)
            shown = [event_json(row) for row in rows]
    finally:
        engine.dispose()
    if as_json:
        _dump({"events": shown, "next_cursor": next_cursor, "limit": limit})
        return
    click.echo(
        f"{'id':>8}  {'provider':<10} {'kind':<8} {'state':<11} {'session_id':<30} "
        f"{'user_ref':<20} {'received_at':<19} {'att':>3}  error"
    )
    for e in shown:
        error = safe(e["last_error"] or e["parse_error"] or "")[:60]
        echo(
            f"{e['id']:>8}  {safe(e['provider']):<10} {safe(e['kind']):<8} {e['state']:<11} "
            f"{safe(e['session_id'] or '-'):<30} {safe(e['user_ref'] or '-'):<20} "
            f"{e['received_at'][:19]:<19} {e['attempts']:>3}  {error}"
        )
    if not shown:
        click.echo("(no events)")
    if next_cursor:
        click.echo(f"next cursor: {next_cursor}")


@events.command("show")
@click.argument("event_id", metavar="ID", type=int)
@click.option("--redacted", is_flag=True, help="Metadata only, as an auditor sees it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON like the API.")
def events_show(event_id: int, redacted: bool, as_json: bool) -> None:
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
    if as_json:
        _dump(shown)
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
    echo(safe_text(delivery["body"]))


@events.command("replay")
@click.argument("event_id", metavar="ID", type=int)
@click.option("--dry-run", is_flag=True, help="Show what it would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON like the API.")
def events_replay(event_id: int, dry_run: bool, as_json: bool) -> None:
    """Process one event again now, with the worker's code."""
    from reconciler.replay.execution import replay_event

    services = services_or_exit()
    try:
        outcome = replay_event(services, event_id, actor_name=cli_actor_name(), dry_run=dry_run)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    if as_json:
        _dump(outcome)
        return
    verb = "would become" if dry_run else "is now"
    click.echo(
        f"event {event_id} was {outcome['state_before']}, {verb} {outcome['event']['state']}"
    )
    _echo_changes(outcome)


def _status(pair: dict[str, str] | None) -> str:
    return f"{safe(pair['status'])} ({safe(pair['decided_by'])})" if pair else "(none)"


def _echo_changes(effect: dict[str, Any]) -> None:
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


@click.command("replay", cls=StoreCommand)
@filter_options
@click.option("--dry-run", is_flag=True, help="Only show the effect (sessions and users).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation after the dry run.")
@click.option("--background", is_flag=True, help="Queue it for the workers instead of waiting.")
@click.option("--resume", "resume_id", type=int, metavar="ID", help="Continue replay ID.")
@click.option(
    "--max-events",
    type=click.IntRange(min=1),
    help="Stop after this many events (continue later with --resume).",
)
@click.option("--batch-size", type=click.IntRange(1, 5000), help="Events per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print the dry run or summary as JSON.")
def replay(
    dry_run: bool,
    yes: bool,
    background: bool,
    resume_id: int | None,
    max_events: int | None,
    batch_size: int | None,
    as_json: bool,
    **filters: str | None,
) -> None:
    """Replay the events matching a filter: a dry run shows the effect first.

    Example: verihook replay --state failed --provider idenfy --since 2h
    """
    values = _filter_values(**filters)
    if resume_id is not None:
        if values or dry_run:
            raise click.UsageError("--resume takes no filter and no --dry-run")
        services = services_or_exit()
        try:
            _run_foreground(services, resume_id, max_events, batch_size, as_json)
        finally:
            services.close()
        return
    try:
        flt = EventFilter.parse(values)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from exc
    if flt.is_empty():
        raise click.UsageError("give at least one filter (--state, --provider, --since, …)")
    services = services_or_exit()
    try:
        _bulk(services, flt, dry_run, yes, background, max_events, batch_size, as_json)
    finally:
        services.close()


def _bulk(
    services: Services,
    flt: EventFilter,
    only_dry_run: bool,
    yes: bool,
    background: bool,
    max_events: int | None,
    batch_size: int | None,
    as_json: bool,
) -> None:
    from reconciler.replay.execution import dry_run
    from reconciler.replay.queueing import QueueUnavailable, enqueue_replay
    from reconciler.replay.runs import create_replay

    effect = _computed(lambda: dry_run(services, flt))
    if as_json and only_dry_run:
        _dump(effect)
        return
    if not as_json:
        echo(f"dry run: {effect['total']} event(s) match {safe(flt.describe())}")
        if effect["events_truncated"]:
            click.echo(f"  (the effect below covers the first {effect['considered']})")
        _echo_changes(effect)
    if only_dry_run:
        return
    if effect["total"] == 0:
        click.echo("nothing to replay")
        return
    if not yes:
        click.confirm(f"Replay these {effect['total']} event(s)?", abort=True)
    row = _computed(lambda: create_replay(services, flt, actor_name=cli_actor_name()))
    assert row.id is not None
    if background:
        try:
            enqueue_replay(services, row.id)
        except QueueUnavailable as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"replay {row.id} queued; follow it with GET /api/v1/replays/{row.id}")
        return
    _run_foreground(services, row.id, max_events, batch_size, as_json)


def _computed(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except FilterError as exc:
        raise click.UsageError(str(exc)) from exc


def _run_foreground(
    services: Services,
    replay_id: int,
    max_events: int | None,
    batch_size: int | None,
    as_json: bool,
) -> None:
    from receiver.store.replay_models import ReplayState
    from reconciler.replay.runs import get_replay
    from reconciler.replay.shaping import replay_json

    try:
        row = get_replay(services, replay_id)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    if row.state == ReplayState.DONE:
        click.echo(f"replay {replay_id} is done already")
    else:
        row = _with_progress(services, row, max_events, batch_size, hidden=as_json)
    shown = replay_json(row)
    if as_json:
        _dump(shown)
        return
    if row.state != ReplayState.DONE:
        click.echo(
            f"replay {replay_id} paused after {row.done} of {row.total} event(s); "
            f"continue with: verihook replay --resume {replay_id}"
        )
    else:
        click.echo(f"replay {replay_id} done: {row.done} event(s)")
    _echo_changes(shown["summary"])


def _with_progress(
    services: Services,
    row: Replay,
    max_events: int | None,
    batch_size: int | None,
    *,
    hidden: bool = False,
) -> Replay:
    assert row.id is not None
    with click.progressbar(
        length=max(row.total, 1), label=f"replay {row.id}", show_pos=True, hidden=hidden
    ) as bar:
        bar.update(row.done)

        def advance(current: Replay, count: int) -> None:
            bar.length = max(current.total, 1)
            bar.update(count)

        from reconciler.replay.execution import run_replay

        try:
            return run_replay(
                services,
                row.id,
                max_events=max_events,
                batch_size=batch_size,
                progress=advance,
            )
        except Exception as exc:
            raise click.ClickException(
                f"replay {row.id} stopped: {type(exc).__name__}; "
                f"continue with: verihook replay --resume {row.id}"
            ) from exc
