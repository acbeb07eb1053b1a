"""Operator commands on stored records: `sessions`, `keys rotate`, `purge`, `users forget`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from receiver.canonical import Status, utc
from receiver.terminal import echo, safe
from reconciler.cli.answers import confirm_or_stop
from reconciler.cli.common import (
    StoreCommand,
    StoreGroup,
    engine_or_exit,
    ref_argument,
    services_or_exit,
)
from reconciler.cli.options import format_option, old_spelling, print_table, stamp, write_records

if TYPE_CHECKING:
    from receiver.services import Services
    from receiver.store.models import VerificationSession


@click.group(cls=StoreGroup)
def sessions() -> None:
    """Verification sessions: list them, reconcile one now, merge them again."""


SESSION_COLUMNS = (
    "provider",
    "session_id",
    "user_ref",
    "status",
    "decided_by",
    "settled",
    "overdue",
    "created_at",
    "updated_at",
    "next_check_at",
)
STATUSES = [s.value for s in Status]


def _statuses(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    wanted = tuple(sorted({v.strip() for v in value.split(",")})) if value else ()
    unknown = [v for v in wanted if v not in STATUSES]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: not one of {', '.join(STATUSES)}")
    return wanted


def _session_record(row: VerificationSession) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in SESSION_COLUMNS}
    for name in ("created_at", "updated_at", "next_check_at"):
        record[name] = utc(record[name]).isoformat() if record[name] else None
    return record


@sessions.command("list")
@click.option("--provider", default=None, help="Only this provider's sessions.")
@click.option(
    "--state",
    callback=_statuses,
    help=f"Only sessions in this status ({', '.join(STATUSES)}; comma-separated ok).",
)
@old_spelling("--status", "state", "--state", callback=_statuses)
@click.option("--user-ref", default=None, help="Only this user's sessions.")
@click.option("--overdue", is_flag=True, help="Only sessions flagged overdue.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@format_option()
def sessions_list(
    provider: str | None,
    state: tuple[str, ...],
    user_ref: str | None,
    overdue: bool,
    limit: int,
    fmt: str,
) -> None:
    """List sessions, most recently updated first."""
    from reconciler.session_listing import list_sessions

    engine = engine_or_exit()
    try:
        rows = list_sessions(
            engine,
            provider=provider,
            status=state,
            user_ref=user_ref,
            overdue=overdue,
            limit=limit,
        )
    finally:
        engine.dispose()
    records = [_session_record(row) for row in rows]
    if fmt != "table":
        write_records(records, fmt, SESSION_COLUMNS, {"sessions": records})
        return
    columns = ("provider", "session_id", "user_ref", "status", "by", "updated", "next check")
    print_table(
        (*columns, "overdue"),
        [
            (
                r["provider"],
                r["session_id"],
                r["user_ref"] or "-",
                r["status"],
                r["decided_by"],
                stamp(r["updated_at"]),
                stamp(r["next_check_at"]),
                "yes" if r["overdue"] else "no",
            )
            for r in records
        ],
        "(no sessions)",
    )


@sessions.command("reconcile")
@click.argument("provider")
@click.argument("session_id", callback=ref_argument)
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


@sessions.command("remerge")
@click.option("--dry-run", is_flag=True, help="List what would change; change nothing.")
def sessions_remerge(dry_run: bool) -> None:
    """Merge ended sessions again by the revised ordering rule (`db upgrade` runs it too)."""
    services = services_or_exit()
    try:
        report_remerge(services, dry_run=dry_run)
    finally:
        services.close()


def report_remerge(services: Services, *, dry_run: bool) -> None:
    """Run the remerge and print one line per session that changes (or would)."""
    from reconciler.remerge import remerge_ended_sessions

    report = remerge_ended_sessions(services, dry_run=dry_run)
    verb = "would change" if dry_run else "changed"
    for change in report.sessions:
        echo(
            f"{safe(change.provider)} {safe(change.session_id)}: {change.before} -> "
            f"{change.after} ({change.decided_by})"
        )
    tail = "" if dry_run else f"; {report.users_changed} user status(es) changed"
    examined = f"{report.examined} ended session(s) examined"
    echo(f"remerge: {examined}, {len(report.sessions)} {verb}{tail}")


@click.group(cls=StoreGroup)
def keys() -> None:
    """Encryption keys."""


@keys.command("rotate")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows per transaction.",
)
@old_spelling("--batch", "batch_size", "--batch-size", type=click.IntRange(1, 100_000))
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every stored payload to the newest key (the first in VERIHOOK_ENCRYPTION_KEYS).

    Resumable: run it again after an interruption. Afterwards the old keys can be dropped.
    """
    from receiver.exceptions import DecryptionError
    from reconciler.privacy.lifecycle import rotate_keys, rows_to_rotate

    services = services_or_exit()
    try:
        total = rows_to_rotate(services)
        with click.progressbar(length=total, label="re-encrypting") as bar:
            stats = rotate_keys(services, batch=batch_size, progress=bar.update)
    except DecryptionError as exc:
        raise click.ClickException(f"stopped: {exc}") from exc
    finally:
        services.close()
    click.echo(
        f"re-encrypted {stats.total} row(s) to key {services.keyring.current_key_id!r}: "
        + ", ".join(f"{table} {n}" for table, n in stats.rotated.items())
    )


@click.command(cls=StoreCommand)
@click.option(
    "--days",
    type=click.IntRange(0, None),
    default=None,
    help="Retention in days (default: VERIHOOK_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
def purge(days: int | None, dry_run: bool) -> None:
    """Purge raw deliveries and personal details older than the retention period."""
    from reconciler.privacy.lifecycle import purge_expired

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


@click.group(cls=StoreGroup)
def users() -> None:
    """User records."""


@users.command("forget")
@click.argument("user_ref", callback=ref_argument)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--at-provider",
    is_flag=True,
    help="Also ask providers with a deletion endpoint (docverify) to delete the sessions.",
)
def users_forget(user_ref: str, yes: bool, at_provider: bool) -> None:
    """Erase one person's personal data (statuses and the audit chain stay verifiable)."""
    from reconciler.privacy.at_providers import erase_at_providers, sessions_of
    from reconciler.privacy.lifecycle import forget_user

    if not yes:
        confirm_or_stop(f"Erase every stored piece of personal data of {user_ref!r}?")
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
