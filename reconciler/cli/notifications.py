"""`verihook notifications …`: list, resend and sweep the backend notifications."""

from __future__ import annotations

from contextlib import closing

import click
from sqlalchemy import select
from sqlmodel import col

from receiver.canonical import utc
from receiver.store.db import transaction
from receiver.store.notification_models import Notification
from reconciler import notify
from reconciler.cli.common import StoreGroup, services_or_exit
from reconciler.cli.options import format_option, old_spelling, print_table, stamp, write_records

COLUMNS = ("id", "user_ref", "state", "attempts", "last_error", "created")
RECORD_COLUMNS = ("id", "webhook_id", "user_ref", "state", "attempts", "last_error", "created_at")


@click.group(cls=StoreGroup)
def notifications() -> None:
    """Notifications of user-status changes sent to the product backend."""


@notifications.command("list")
@click.option(
    "--state",
    type=click.Choice([notify.PENDING, notify.DELIVERED, notify.FAILED]),
    help="Only notifications in this state.",
)
@click.option("--user-ref", metavar="REF", help="Only this user's notifications.")
@old_spelling("--user", "user_ref", "--user-ref", metavar="REF")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Newest this many."
)
@format_option()
def list_notifications(state: str | None, user_ref: str | None, limit: int, fmt: str) -> None:
    """Show notifications, newest first."""
    query = select(Notification).order_by(col(Notification.id).desc()).limit(limit)
    if state:
        query = query.where(col(Notification.state) == state)
    if user_ref:
        query = query.where(col(Notification.user_ref) == user_ref)
    services = services_or_exit()
    try:
        with transaction(services.engine) as db:
            records = [
                {
                    "id": n.id,
                    "webhook_id": n.webhook_id,
                    "user_ref": n.user_ref,
                    "state": n.state,
                    "attempts": n.attempts,
                    "last_error": n.last_error,
                    "created_at": utc(n.created_at).isoformat(),
                }
                for n in db.execute(query).scalars()
            ]
    finally:
        services.close()
    if fmt != "table":
        write_records(records, fmt, RECORD_COLUMNS, {"notifications": records})
        return
    rows = [
        (
            str(r["id"]),
            r["user_ref"],
            r["state"],
            str(r["attempts"]),
            r["last_error"] or "",
            stamp(r["created_at"]),
        )
        for r in records
    ]
    print_table(COLUMNS, rows, "(no notifications)")


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
