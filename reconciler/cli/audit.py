"""`verihook audit query|export|verify`: read, export and verify the hash-chained audit history."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TextIO

import click
from sqlalchemy import Engine

from receiver.terminal import echo, safe, safe_json, safe_json_text, safe_text
from reconciler.audit import queries as aq
from reconciler.cli.common import StoreGroup, services_or_exit
from reconciler.cli.options import (
    LIST_FORMATS,
    format_option,
    iso,
    next_page,
    old_spelling,
    print_table,
    stamp,
    time_option,
    write_records,
)

TABLE_COLUMNS = (
    "seq",
    "at",
    "subject",
    "provider",
    "session_id",
    "user_ref",
    "change",
    "decided_by",
    "source",
    "actor",
    "event_id",
    "reason",
)


def _filters(function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options shared by query and export."""
    options = [
        click.option("--user-ref", metavar="REF", help="Only this user's entries."),
        old_spelling("--user", "user_ref", "--user-ref", metavar="REF"),
        click.option("--provider", metavar="NAME", help="Only this provider's entries."),
        click.option("--session-id", metavar="ID", help="Only this session's entries."),
        old_spelling("--session", "session_id", "--session-id", metavar="ID"),
        time_option("--since", help="Entries at or after this time"),
        time_option("--until", help="Entries before this time"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _parse_filter(**values: Any) -> aq.AuditFilter:
    try:
        return aq.AuditFilter.parse(
            {
                key: iso(value) if isinstance(value, datetime) else value
                for key, value in values.items()
            }
        )
    except aq.AuditQueryError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group(cls=StoreGroup)
def audit() -> None:
    """The hash-chained audit history of every status change."""


@audit.command("query")
@_filters
@time_option("--as-of", "as_of", help="With --user-ref: the user's status then, and why")
@click.option(
    "--limit",
    default=aq.DEFAULT_PAGE,
    show_default=True,
    type=click.IntRange(1, aq.MAX_PAGE),
    help="At most this many entries.",
)
@click.option(
    "--cursor",
    default=0,
    type=click.IntRange(0, aq.MAX_SEQ),
    metavar="SEQ",
    help="Entries after this seq (the previous page's `next cursor`).",
)
@old_spelling("--after", "cursor", "--cursor", type=click.IntRange(0, aq.MAX_SEQ))
@format_option(LIST_FORMATS)
def query(
    user_ref: str | None,
    provider: str | None,
    session_id: str | None,
    since: datetime | None,
    until: datetime | None,
    as_of: datetime | None,
    limit: int,
    cursor: int,
    fmt: str,
) -> None:
    """Show audit entries (oldest first), or a user's status as of a time."""
    if as_of is not None:
        if user_ref is None:
            raise click.UsageError("--as-of needs --user-ref")
        if any(v is not None for v in (provider, session_id, since, until)):
            raise click.UsageError("--as-of takes only --user-ref")
        _query_as_of(user_ref, as_of, fmt)
        return
    flt = _parse_filter(
        user_ref=user_ref, provider=provider, session_id=session_id, since=since, until=until
    )
    services = services_or_exit()
    engine = services.engine
    try:
        page = aq.query_page(engine, flt, limit, cursor)
    finally:
        services.close()
    if fmt == "table":
        _print_table(page.entries)
    else:
        document = {"entries": page.entries, "next_cursor": page.next_cursor}
        write_records(page.entries, fmt, aq.COLUMNS, document)
    next_page(page.next_cursor, fmt)


def _query_as_of(user_ref: str, at: datetime, fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise click.UsageError("--as-of answers in --format table or json")
    try:
        aq.check_ref(user_ref, "--user-ref")
    except aq.AuditQueryError as exc:
        raise click.UsageError(str(exc)) from exc
    services = services_or_exit()
    engine = services.engine
    try:
        answer = aq.status_as_of(engine, user_ref, at)
    finally:
        services.close()
    if fmt == "json":
        click.echo(safe_json(answer.as_json(), indent=2))
        return
    decided = f" ({answer.decided_by})" if answer.decided_by else ""
    where = f" by {answer.provider} session {answer.session_id}" if answer.provider else ""
    echo(safe(f"{answer.user_ref} at {stamp(answer.at)}: {answer.status}{decided}{where}"))
    if answer.entries:
        _print_table(answer.entries)


def _cells(entry: dict[str, Any]) -> tuple[str, ...]:
    change = f"{entry['previous_status'] or '-'} -> {entry['new_status'] or '-'}"
    values = {**entry, "change": change, "at": stamp(entry["at"])}
    return tuple("" if values[c] is None else safe(values[c]) for c in TABLE_COLUMNS)


def _print_table(entries: list[dict[str, Any]]) -> None:
    print_table(TABLE_COLUMNS, [_cells(e) for e in entries], "(no audit entries)")


@audit.command("export")
@_filters
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="Export format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default="-",
    show_default=True,
    help="Write to this file ('-' for stdout).",
)
def export(
    user_ref: str | None,
    provider: str | None,
    session_id: str | None,
    since: datetime | None,
    until: datetime | None,
    fmt: str,
    output: str,
) -> None:
    """Stream every matching entry as CSV or JSON Lines (never all in memory)."""
    flt = _parse_filter(
        user_ref=user_ref, provider=provider, session_id=session_id, since=since, until=until
    )
    services = services_or_exit()
    engine = services.engine
    try:
        upto = aq.current_head_seq(engine)
        if output == "-":
            written = _write(engine, flt, fmt, upto, sys.stdout, progress=False)
        else:
            with open(output, "w", encoding="utf-8", newline="") as stream:
                written = _write(engine, flt, fmt, upto, stream, progress=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        services.close()
    if output != "-":
        click.echo(f"exported {written} audit entries to {output}", err=True)


def _write(
    engine: Engine, flt: aq.AuditFilter, fmt: str, upto: int, stream: TextIO, progress: bool
) -> int:
    """Write the export to `stream`; show a progress bar on stderr when writing to a file."""
    batches = aq.iter_records(engine, flt, upto)
    written = 0

    def counted() -> Iterator[list[dict[str, Any]]]:
        nonlocal written
        with click.progressbar(
            length=upto, label="exporting", file=sys.stderr, hidden=not progress
        ) as bar:
            last = 0
            for batch in batches:
                written += len(batch)
                bar.update(batch[-1]["seq"] - last)
                last = batch[-1]["seq"]
                yield batch
            bar.update(upto - last)

    chunks = aq.csv_chunks(counted()) if fmt == "csv" else aq.jsonl_chunks(counted())
    for chunk in chunks:  # control characters escaped, whether it goes to a terminal or a file
        stream.write(safe_text(chunk) if fmt == "csv" else safe_json_text(chunk))
    stream.flush()
    return written


@audit.command("verify")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def verify(fmt: str) -> None:
    """Walk the hash chain; exit 1 naming the first entry that does not chain."""
    services = services_or_exit()
    engine = services.engine
    try:
        report = aq.verify_stored_chain(engine)
    finally:
        services.close()
    if fmt == "json":
        click.echo(safe_json(aq.report_json(report), indent=2))
        if not report.ok:
            sys.exit(1)
        return
    if not report.ok:
        raise click.ClickException(aq.report_message(report))
    click.echo(aq.report_message(report))
