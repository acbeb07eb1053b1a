"""`verihook notifications …`: list, resend and sweep the backend notifications."""

from __future__ import annotations

from contextlib import closing

import click
from sqlalchemy import select
from sqlmodel import col

from receiver.store.db import transaction
from receiver.store.ledger_models import Notification
from receiver.terminal import echo, safe
from reconciler import notify
from reconciler.cli.common import StoreGroup, services_or_exit

COLUMNS = ("id", "user_ref", "state", "attempts", "last_error", "created")


@click.group(cls=StoreGroup)
def notifications() -> None:
    """Notifications of user-status changes sent to the product backend."""


@notifications.command("list")
@click.option(
    "--state",
    type=click.Choice([notify.PENDING, notify.DELIVERED, notify.FAILED]),
    help="Only notifications in this state.",
)
@click.option("--user", "user_ref", metavar="REF", help="Only this user's notifications.")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Newest this many."
)
def list_notifications(state: str | None, user_ref: str | None, limit: int) -> None:
    """Show notifications, newest first."""
    services = services_or_exit()
    query = select(Notification).order_by(col(Notification.id).desc()).limit(limit)
    if state:
        query = query.where(col(Notification.state) == state)
    if user_ref:
        query = query.where(col(Notification.user_ref) == user_ref)
    with closing(services), transaction(services.engine) as session:
        rows = [
            (
                str(n.id),
                safe(n.user_ref),
                n.state,
                str(n.attempts),
                safe(n.last_error or ""),
                n.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for n in session.execute(query).scalars()
        ]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(COLUMNS)]
    for line in [COLUMNS, *rows]:
        echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    if not rows:
        click.echo("(no notifications)")


@notifications.command("resend")
@click.argument("notification_id", metavar="ID", type=int)
def resend_notification(notification_id: int) -> None:
    """Deliver a failed (or delivered) notification again."""
    services = services_or_exit()
    try:
        found = notify.resend(services, notification_id)
    except notify.NotificationNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    click.echo(f"notification {found.id} ({found.webhook_id}) is pending again")


@notifications.command("sweep")
def sweep() -> None:
    """Wake the notifier for every user with a notification due now."""
    with closing(services_or_exit()) as services:
        click.echo(f"woke the notifier for {notify.sweep_due_notifications(services)} user(s)")
