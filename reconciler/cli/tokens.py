"""`verihook tokens create|list|revoke`: API tokens stored as hashes (DESIGN §4).

`create` prints the token once, on stdout alone (`TOKEN=$(verihook tokens create --role
operator)`), and stores only its sha256; the notice goes to stderr. Bootstrap tokens from
`VERIHOOK_API_TOKENS` keep working beside stored ones.
"""

from __future__ import annotations

import click

from receiver.canonical import utc
from reconciler.api.auth import ROLES
from reconciler.api.tokens import TokenError, create_token, list_tokens, revoke_token
from reconciler.cli.common import StoreGroup, engine_or_exit, services_or_exit
from reconciler.cli.events import cli_actor_name
from reconciler.cli.options import format_option, print_table, stamp, write_records

COLUMNS = ("name", "role", "created", "revoked", "created_by")
RECORD_COLUMNS = ("name", "role", "created_at", "revoked_at", "created_by")


@click.group(cls=StoreGroup)
def tokens() -> None:
    """API tokens for the backend, operators and auditors."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice(sorted(ROLES)), help="What it may do.")
@click.option(
    "--name",
    default=None,
    help="Who or what holds it (the audit history shows operator:<name>); default role-<hex>.",
)
def create(role: str, name: str | None) -> None:
    """Create a token; it is printed once and stored only as its sha256."""
    services = services_or_exit()
    try:
        row, token = create_token(services.engine, role, name, created_by=cli_actor_name())
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    click.echo(
        f"created {role} token {row.name!r}; it is shown only this once and stored as a hash:",
        err=True,
    )
    click.echo(token)


@tokens.command("list")
@format_option()
def list_command(fmt: str) -> None:
    """Stored tokens: name, role, when created and revoked (never the token)."""
    engine = engine_or_exit()
    try:
        records = [
            {
                "name": t.name,
                "role": t.role,
                "created_at": utc(t.created_at).isoformat(),
                "revoked_at": utc(t.revoked_at).isoformat() if t.revoked_at else None,
                "created_by": t.created_by,
            }
            for t in list_tokens(engine)
        ]
    finally:
        engine.dispose()
    if fmt != "table":
        write_records(records, fmt, RECORD_COLUMNS, {"tokens": records})
        return
    rows = [
        (
            r["name"],
            r["role"],
            stamp(r["created_at"]),
            stamp(r["revoked_at"]),
            r["created_by"] or "-",
        )
        for r in records
    ]
    print_table(COLUMNS, rows, "(no stored tokens; bootstrap tokens come from VERIHOOK_API_TOKENS)")


@tokens.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a stored token by name: it is refused (401) from now on."""
    services = services_or_exit()
    try:
        row = revoke_token(services.engine, name)
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        services.close()
    click.echo(f"token {row.name!r} ({row.role}) is revoked")
