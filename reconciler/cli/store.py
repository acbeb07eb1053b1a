"""Store commands: `db upgrade|check` and `outbox flush`."""

from __future__ import annotations

import click

from reconciler.cli.common import StoreGroup, services_or_exit


@click.group(cls=StoreGroup)
def db() -> None:
    """Database schema commands."""


@db.command("check")
def db_check() -> None:
    """Exit 0 when the database is at the newest schema, 1 otherwise (for init containers)."""
    from receiver.store.migrate import current_revision, head_revision

    services = services_or_exit()
    try:
        current, head = current_revision(services.engine), head_revision()
    finally:
        services.close()
    if current != head:
        raise click.ClickException(f"database is at {current!r}, this code needs {head!r}")
    click.echo(f"database is at the newest schema ({head})")


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema, then merge ended sessions again by the
    revised ordering rule (an audit entry for each status that changes)."""
    from receiver.store.migrate import upgrade
    from reconciler.cli.records import report_remerge

    services = services_or_exit(store="reachable")
    try:
        upgrade(services.engine)
        click.echo("database is at the newest schema")
        report_remerge(services, dry_run=False)
    finally:
        services.close()


@click.group(cls=StoreGroup)
def outbox() -> None:
    """The outbox of events waiting for a worker."""


@outbox.command("flush")
def outbox_flush() -> None:
    """Wake the workers for every event still waiting in the outbox."""
    from redis.exceptions import RedisError

    from receiver.outbox import flush_outbox

    services = services_or_exit()
    try:
        result = flush_outbox(services.engine, services.redis, services.settings.queue_name)
    except RedisError as exc:
        raise click.ClickException(f"Redis is unreachable: {type(exc).__name__}") from exc
    finally:
        services.close()
    click.echo(
        f"{result.pending} event(s) waiting; woke workers for {result.woken}"
        + (f" (job {result.job_id})" if result.job_id else "")
    )
