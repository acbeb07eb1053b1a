"""Reconciler-side commands: `worker`, `simulate`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from receiver.cli import services_or_exit
from receiver.terminal import echo, safe

if TYPE_CHECKING:  # each command imports what it needs: `verihook --help` stays fast
    from receiver.health_server import Heartbeat
    from receiver.services import Services


def serve_health(services: Services, heartbeat: Heartbeat) -> None:
    """Start the health endpoints when VERIHOOK_HEALTH_BIND is set; a clean exit if they cannot."""
    from receiver.exceptions import VerihookError
    from receiver.health_server import start_health_server

    try:
        start_health_server(services, heartbeat)
    except (VerihookError, OSError) as exc:
        raise click.ClickException(f"health endpoints: {exc}") from exc


@click.command()
@click.option("--burst", is_flag=True, help="Drain what is ready, then exit.")
def worker(burst: bool) -> None:
    """Run an RQ worker that applies stored events (and delivers notifications).

    It outlives Redis outages (reconciler/worker_loop.py); `--burst` does not retry.
    """

    from receiver.health_server import Heartbeat
    from receiver.logs import configure_logging
    from reconciler import jobs

    services = services_or_exit()
    configure_logging(services.settings.log_level)
    jobs.use_services(services)
    queue = services.settings.queue_name
    if not burst:
        from reconciler.worker_loop import run_worker

        heartbeat = Heartbeat("worker")
        serve_health(services, heartbeat)
        sys.exit(run_worker(services, heartbeat=heartbeat))
    stats = jobs.apply_ready_events()
    click.echo(
        f"applied {stats['applied']}, superseded {stats['superseded']}, "
        f"quarantined {stats['quarantined']}, failed {stats['failed']}"
    )
    from reconciler.worker_loop import PromptWorker

    PromptWorker([queue], connection=services.redis).work(burst=True, with_scheduler=True)


@click.command()
@click.argument("provider")
@click.option("--port", default=0, show_default=True, type=int, help="Port on 127.0.0.1.")
@click.option("--webhook-url", default=None, help="Where to deliver webhooks (verihook's URL).")
@click.option("--callback-url", default=None, help="Where to send redirect callbacks.")
def simulate(provider: str, port: int, webhook_url: str | None, callback_url: str | None) -> None:
    """Run a provider simulator (contiguity, docverify, idvapi, idenfy, nevis) on 127.0.0.1.

    Its control API (`/_sim/…`) scripts outcomes and chaos; see docs/PROVIDERS.md.
    """
    from reconciler import simulators

    if provider not in simulators.PROVIDERS:
        raise click.BadParameter(
            f"unknown provider {provider!r}; one of " + ", ".join(simulators.PROVIDERS),
            param_hint="PROVIDER",
        )
    config = {k: v for k, v in (("webhook_url", webhook_url), ("callback_url", callback_url)) if v}
    simulators.serve(provider, port, **config)


@click.command()
def scheduler() -> None:
    """Run the scheduler: polls due sessions and sweeps the outbox while it holds the lead."""
    from receiver.health_server import Heartbeat
    from receiver.logs import configure_logging
    from reconciler.scheduler import run_scheduler

    services = services_or_exit()
    configure_logging(services.settings.log_level)
    heartbeat = Heartbeat("scheduler")
    serve_health(services, heartbeat)
    run_scheduler(services, heartbeat)


@click.group()
def sessions() -> None:
    """Verification sessions: list them, reconcile one now."""


@sessions.command("list")
@click.option("--provider", default=None, help="Only this provider's sessions.")
@click.option("--status", default=None, help="Only sessions in this canonical status.")
@click.option("--overdue", is_flag=True, help="Only sessions flagged overdue.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def sessions_list(provider: str | None, status: str | None, overdue: bool, limit: int) -> None:
    """List sessions, most recently updated first."""
    from reconciler.session_queries import list_sessions

    services = services_or_exit()
    try:
        rows = list_sessions(
            services, provider=provider, status=status, overdue=overdue, limit=limit
        )
    finally:
        services.close()
    click.echo(
        f"{'provider':<11} {'session_id':<38} {'user_ref':<20} {'status':<15} "
        f"{'by':<7} {'next check':<20} overdue"
    )
    for row in rows:
        next_check = row.next_check_at.strftime("%Y-%m-%d %H:%M:%S") if row.next_check_at else "-"
        echo(
            f"{safe(row.provider):<11} {safe(row.session_id):<38} {safe(row.user_ref or '-'):<20} "
            f"{row.status:<15} {row.decided_by:<7} {next_check:<20} "
            f"{'yes' if row.overdue else 'no'}"
        )


@sessions.command("reconcile")
@click.argument("provider")
@click.argument("session_id")
def sessions_reconcile(provider: str, session_id: str) -> None:
    """Poll one session now and apply the answer, showing its status before and after."""
    from reconciler.session_queries import reconcile_now

    services = services_or_exit()
    try:
        before, outcome, after = reconcile_now(services, provider, session_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    echo(f"before: {safe(before)}")
    echo(f"poll:   {safe(outcome)}")
    echo(f"after:  {safe(after)}")


@click.group()
def keys() -> None:
    """Encryption keys."""


@keys.command("rotate")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 100_000))
def keys_rotate(batch: int) -> None:
    """Re-encrypt every stored payload to the newest key (the first in VERIHOOK_ENCRYPTION_KEYS).

    Resumable: run it again after an interruption. Afterwards the old keys can be dropped.
    """
    from receiver.exceptions import DecryptionError
    from reconciler.privacy import rotate_keys, rows_to_rotate

    services = services_or_exit()
    try:
        total = rows_to_rotate(services)
        with click.progressbar(length=total, label="re-encrypting") as bar:
            stats = rotate_keys(services, batch=batch, progress=bar.update)
    except DecryptionError as exc:
        raise click.ClickException(f"stopped: {exc}") from exc
    finally:
        services.close()
    click.echo(
        f"re-encrypted {stats.total} row(s) to key {services.keyring.current_key_id!r}: "
        + ", ".join(f"{table} {n}" for table, n in stats.rotated.items())
    )


@click.command()
@click.option(
    "--days",
    type=click.IntRange(0, None),
    default=None,
    help="Retention in days (default: VERIHOOK_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
def purge(days: int | None, dry_run: bool) -> None:
    """Purge raw deliveries and personal details older than the retention period."""
    from reconciler.privacy import purge_expired

    services = services_or_exit()
    try:
        stats = purge_expired(
            services,
            days=services.settings.retention_days if days is None else days,
            dry_run=dry_run,
        )
    finally:
        services.close()
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {stats.event_payloads} raw deliveries and {stats.observation_details} "
        f"observation details received before {stats.cutoff.isoformat()}"
    )


@click.group()
def users() -> None:
    """User records."""


@users.command("forget")
@click.argument("user_ref")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--at-provider",
    is_flag=True,
    help="Also ask providers with a deletion endpoint (docverify) to delete the sessions.",
)
def users_forget(user_ref: str, yes: bool, at_provider: bool) -> None:
    """Erase one person's personal data (statuses and the audit chain stay verifiable)."""
    from reconciler.privacy import forget_user
    from reconciler.provider_erasure import erase_at_providers, sessions_of

    if not yes:
        click.confirm(f"Erase every stored piece of personal data of {user_ref!r}?", abort=True)
    services = services_or_exit()
    try:
        sessions = sessions_of(services, user_ref) if at_provider else []
        stats = forget_user(services, user_ref, actor="cli")
        at_providers = erase_at_providers(services, sessions)
    finally:
        services.close()
    click.echo(
        f"erased: {stats.events} event(s), {stats.observations} observation(s), "
        f"{stats.sessions} session(s) renamed to {stats.user_ref_digest}, "
        f"{stats.notifications} notification(s), {stats.audit_entries} audit ref(s)"
    )
    for outcome in at_providers:
        detail = f" ({safe(outcome.detail)})" if outcome.detail else ""
        echo(f"at {outcome.provider}: session {safe(outcome.session_id)} {outcome.outcome}{detail}")
    if any(outcome.outcome == "failed" for outcome in at_providers):
        raise click.ClickException("some providers did not delete; run again to retry them")
