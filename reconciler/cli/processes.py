"""The long-running processes: `worker`, `scheduler`, and `simulate` (a provider simulator)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from reconciler.cli.common import StoreCommand, services_or_exit

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


@click.command(cls=StoreCommand)
@click.option("--burst", is_flag=True, help="Drain what is ready, then exit.")
def worker(burst: bool) -> None:
    """Run an RQ worker that applies stored events (and delivers notifications).

    It outlives Redis outages (reconciler/worker_loop.py); `--burst` does not retry.
    """

    from receiver.health_server import Heartbeat
    from receiver.logs import configure_logging
    from reconciler import jobs
    from reconciler.job_services import use_services

    services = services_or_exit(store="any")
    configure_logging(services.settings.log_level)
    use_services(services)
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


@click.command(cls=StoreCommand)
def scheduler() -> None:
    """Run the scheduler: polls due sessions and sweeps the outbox while it holds the lead."""
    from receiver.health_server import Heartbeat
    from receiver.logs import configure_logging
    from reconciler.scheduler import run_scheduler

    services = services_or_exit(store="any")
    configure_logging(services.settings.log_level)
    heartbeat = Heartbeat("scheduler")
    serve_health(services, heartbeat)
    run_scheduler(services, heartbeat)
