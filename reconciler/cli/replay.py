"""`verihook replay`: replay the events matching a filter, a dry run first, in resumable batches.

Like `verihook events`, it acts as operator `cli-<os user>` in the audit history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from receiver.terminal import echo, safe
from reconciler.cli.answers import confirm_or_stop
from reconciler.cli.common import StoreCommand, services_or_exit
from reconciler.cli.events import cli_actor_name, dump, echo_changes, filter_options, filter_values
from reconciler.cli.options import REPORT_FORMATS, format_option
from reconciler.event_queries import EventFilter, FilterError, NotFound

if TYPE_CHECKING:  # the replay machinery is imported when a replay runs
    from receiver.services import Services
    from receiver.store.replay_models import Replay


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
@format_option(REPORT_FORMATS)
def replay(
    dry_run: bool,
    yes: bool,
    background: bool,
    resume_id: int | None,
    max_events: int | None,
    batch_size: int | None,
    fmt: str,
    **filters: Any,
) -> None:
    """Replay the events matching a filter: a dry run shows the effect first.

    Example: verihook replay --state failed --provider idenfy --since 2h
    """
    as_json = fmt == "json"
    values = filter_values(**filters)
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
        dump(effect)
        return
    if not as_json:
        echo(f"dry run: {effect['total']} event(s) match {safe(flt.describe())}")
        if effect["events_truncated"]:
            click.echo(f"  (the effect below covers the first {effect['considered']})")
        echo_changes(effect)
    if only_dry_run:
        return
    if effect["total"] == 0:
        click.echo("nothing to replay")
        return
    if not yes:
        confirm_or_stop(f"Replay these {effect['total']} event(s)?")
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
        dump(shown)
        return
    if row.state != ReplayState.DONE:
        click.echo(
            f"replay {replay_id} paused after {row.done} of {row.total} event(s); "
            f"continue with: verihook replay --resume {replay_id}"
        )
    else:
        click.echo(f"replay {replay_id} done: {row.done} event(s)")
    echo_changes(shown["summary"])


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
