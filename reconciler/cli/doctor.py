"""`verihook doctor`: each configured provider's setup on one screen; exit 1 when something is
wrong, so that a deploy pipeline can run it."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from receiver.terminal import echo, safe, safe_json
from reconciler.cli.common import settings_or_exit

if TYPE_CHECKING:
    from reconciler.doctor import Report
    from reconciler.provider_checks import Check


@click.command()
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A screen for people, or JSON for scripts.",
)
def doctor(output: str) -> None:
    """Check each configured provider's setup: URLs to give it, credentials, deliveries, refusals.

    For each provider with credentials: the URLs to paste into its dashboard (built from
    VERIHOOK_PUBLIC_URL), the settings it lacks, whether its API accepts the credentials (a status
    call for a session that cannot exist: nothing is created), when it last delivered, and the
    deliveries refused in the last hour by reason, with the likely cause. Exits 1 when a check
    fails or a delivery was refused in the last hour.
    """
    from receiver.providers.http import new_client
    from receiver.store.db import make_engine
    from receiver.store.models import utcnow
    from reconciler.doctor import diagnose

    settings = settings_or_exit()
    engine, http = make_engine(settings.database_url), new_client()
    try:
        report = diagnose(settings, engine, http, now=utcnow())
    finally:
        http.close()
        engine.dispose()
    if output == "json":
        click.echo(safe_json(report.to_json(), indent=2))
    else:
        echo(render(report))
    if not report.ok:
        raise SystemExit(1)


def render(report: Report) -> str:
    """The report as a screen of text."""
    lines = [_check(c, "") for c in report.checks]
    since = report.refusals_since.strftime("%H:%M UTC")
    for part in report.providers:
        lines += ["", part.provider]
        for index, url in enumerate(part.urls):
            label = "give it" if index == 0 else ""
            lines.append(f"  {label:<14} {url.method:<4} {safe(url.url)}   ({url.what})")
        lines += [_check(c, "  ") for c in part.checks]
        last = part.last_delivery_at
        when = "none yet"
        if last is not None:
            when = f"{last:%Y-%m-%d %H:%M:%S} UTC ({_ago(report.checked_at - last)})"
        lines.append(f"  {'last delivery':<14} {when}")
        if not part.refusals:
            lines.append(f"  {'refused':<14} none since {since}")
        for index, refused in enumerate(part.refusals):
            label = "refused" if index == 0 else ""
            lines.append(
                f"  {label:<14} {refused['count']} × {refused['reason']} since {since}: "
                f"{refused['hint']}"
            )
    if report.unconfigured:
        lines += ["", f"not configured: {', '.join(report.unconfigured)}"]
    problems = report.problems()
    if problems:
        lines += ["", f"{len(problems)} problem(s):", *(f"  - {p}" for p in problems)]
    else:
        lines += ["", "ok: nothing wrong found"]
    return "\n".join(lines)


def _ago(age: timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _check(check: Check, indent: str) -> str:
    level = check.level.value.upper() if check.level.value == "fail" else check.level.value
    return f"{indent}{check.name:<{16 - len(indent)}} {level:<7} {check.detail}"
