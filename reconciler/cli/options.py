"""One vocabulary for every command group: the option names, what a time option takes, the
output formats, and how a table shows a time.

- Names: `--user-ref`, `--session-id`, `--provider`, `--state`, `--since`/`--until`, `--cursor`,
  `--limit`, `--format`, `--dry-run`, `--yes`/`-y`, `--batch-size`. A spelling that changed
  stays for a release as a hidden alias of the new option (`old_spelling`).
- Times: every time option takes an ISO 8601 time (naive = UTC) or an age before now (`30m`,
  `2h`, `7d`): `TIME`.
- Output: a command whose output is data takes `--format table|json|csv|jsonl` (`--format
  text|json` for one record or a report); JSON and JSON Lines carry the API's ISO times, tables
  show `2026-05-01 12:00:05Z`, as the console does.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click
from click.core import ParameterSource

from receiver.canonical import utc
from receiver.store.models import utcnow
from receiver.terminal import echo, safe, safe_json, safe_text
from reconciler.event_queries import FilterError, parse_time

LIST_FORMATS = ("table", "json", "csv", "jsonl")
REPORT_FORMATS = ("text", "json")
TIME_HELP = "an ISO 8601 time (2026-05-01T12:00:00Z) or an age (30m, 2h, 7d)"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
"""A CSV cell starting with one of these is prefixed with `'` (as `audit export` does)."""


class When(click.ParamType[datetime, Any]):
    """A time option's value: an ISO 8601 time or an age before now, as an aware UTC datetime."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """The aware UTC datetime the value names."""
        if isinstance(value, datetime):
            return utc(value)
        name = param.opts[0] if param is not None and param.opts else "time"
        try:
            return parse_time(name, value, utcnow())
        except FilterError as exc:
            self.fail(str(exc), param, ctx)


TIME = When()


def iso(value: datetime | None) -> str | None:
    """A TIME option's value as the ISO text the shared filter parsers take."""
    return value.isoformat() if value is not None else None


def time_option(*decls: str, help: str) -> Callable[..., Any]:
    """A time option (`--since`, `--until`, `--as-of`): ISO 8601 or an age."""
    return click.option(*decls, type=TIME, metavar="TIME", help=f"{help}: {TIME_HELP}.")


def format_option(formats: Sequence[str] = LIST_FORMATS) -> Callable[..., Any]:
    """`--format`, with the old `--json` flag kept as a hidden alias of `--format json`."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        function = old_spelling("--json", "fmt", "--format json", is_flag=True, flag_value="json")(
            function
        )
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(formats),
            default=formats[0],
            show_default=True,
            help="Output format.",
        )(function)

    return decorate


def old_spelling(flag: str, target: str, new: str, **option: Any) -> Callable[..., Any]:
    """Keep `flag`, the old spelling of the option whose parameter is `target` (now spelled
    `new`), for a release: hidden from --help, its value goes to `target`. Giving both with
    different values is a usage error."""
    dest = f"{target}__old_{flag.lstrip('-').replace('-', '_')}"

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def folded(*args: Any, **values: Any) -> Any:
            old, ctx = values.pop(dest, None), click.get_current_context()
            if ctx.get_parameter_source(dest) is ParameterSource.COMMANDLINE:
                if (
                    ctx.get_parameter_source(target) is ParameterSource.COMMANDLINE
                    and values[target] != old
                ):
                    raise click.UsageError(f"{flag} is the old spelling of {new}: give one")
                values[target] = old
            return function(*args, **values)

        return click.option(flag, dest, hidden=True, **option)(folded)

    return decorate


def stamp(value: datetime | str | None) -> str:
    """A time for a table: `2026-05-01 12:00:05Z` (UTC, as the console shows it); `-` for none."""
    if value is None or value == "":
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return utc(moment).strftime("%Y-%m-%d %H:%M:%SZ")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    """Rows under their column names, each column as wide as its widest cell (cells escaped)."""
    cells = [[safe(cell) for cell in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    if not cells:
        click.echo(empty)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        value = json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_records(
    records: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str], document: Any
) -> None:
    """Data in a machine format: `json` is `document` (the API's shape), `jsonl` one record a
    line, `csv` a header and every cell quoted. Control characters are escaped either way."""
    if fmt == "json":
        click.echo(safe_json(document, indent=2, sort_keys=True))
    elif fmt == "jsonl":
        for record in records:
            click.echo(safe_json(record, separators=(",", ":")))
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(columns)
        writer.writerows([_csv_cell(record.get(name)) for name in columns] for record in records)
        click.echo(safe_text(buffer.getvalue()), nl=False)
    else:
        raise ValueError(f"not a data format: {fmt}")


def next_page(cursor: object, fmt: str, option: str = "--cursor") -> None:
    """Say how to continue: after a table on stdout; on stderr for csv and jsonl, whose stdout
    stays data (json carries it in the document)."""
    if cursor is not None and fmt != "json":
        click.echo(f"next cursor: {cursor} (continue with {option} {cursor})", err=fmt != "table")
