"""Reading the audit history: filtered pages, streamed exports, status as of a time, verify.

Shared by the API (`reconciler/api/audit.py`) and the CLI (`reconciler/cli/audit.py`); no Flask.

Exports never hold the whole history in memory. They walk the chain in keyset pages
(`seq > last ORDER BY seq LIMIT n`), each page read in its own short transaction, up to the chain
head as it was when the export began. Short transactions matter on both backends: on SQLite every
transaction takes the single write lock (BEGIN IMMEDIATE, and receiver.store.db's in-process
writer lock), so one long read would stall the workers for as long as a slow client downloads;
on PostgreSQL a slow client would pin a pooled connection and an open snapshot. Entries are
append-only, so pages up to a fixed head seq form a consistent snapshot without one.

Verifying is the exception: it reads the head and every entry in one transaction (a REPEATABLE
READ snapshot on PostgreSQL), so on SQLite it holds the write lock for the whole walk.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from receiver import inputs
from receiver.canonical import utc
from receiver.store import dialects
from receiver.store.audit_models import AuditEntry, AuditHead
from receiver.store.db import transaction
from receiver.store.models import table_of
from reconciler.audit.chain import ChainReport, verify_chain

COLUMNS = (
    "seq",
    "at",
    "actor",
    "source",
    "subject",
    "provider",
    "session_id",
    "user_ref",
    "user_digest",
    "previous_status",
    "new_status",
    "decided_by",
    "event_id",
    "reason",
    "prev_hash",
    "entry_hash",
)
"""The fields of an entry as the API, the CLI and the exports show it (and the CSV header)."""

FILTER_NAMES = ("user_ref", "provider", "session_id", "since", "until")
FORMATS = ("json", "csv", "jsonl")
DEFAULT_PAGE = 100
MAX_PAGE = 1000
EXPORT_BATCH = 250
MAX_SEQ = 2**31 - 1
"""The largest seq the column holds (INTEGER; PostgreSQL refuses a larger bound parameter)."""


class AuditQueryError(ValueError):
    """A filter or parameter that cannot be used (the API answers 400, the CLI exits 2)."""


def parse_instant(value: str, name: str) -> datetime:
    """An ISO-8601 date or date-time as an aware UTC datetime (naive values are UTC)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
        return utc(parsed)
    except (ValueError, OverflowError, TypeError) as exc:
        raise AuditQueryError(
            f"{name} must be an ISO-8601 date-time, e.g. 2024-05-01T12:00:00Z"
        ) from exc


def check_ref(value: str, name: str) -> str:
    """A user ref, provider or session id filter, by the one rule of receiver/inputs.py."""
    try:
        return inputs.check_ref(value, name)
    except ValueError as exc:
        raise AuditQueryError(str(exc)) from exc


@dataclass(frozen=True)
class AuditFilter:
    """Which entries: any combination of user, provider, session and a time range.

    `since` is inclusive and `until` exclusive: `since <= at < until`.
    """

    user_ref: str | None = None
    provider: str | None = None
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, values: dict[str, str | None]) -> AuditFilter:
        """Validate raw text filters (query arguments or CLI options)."""
        refs = {
            name: check_ref(raw, name) if (raw := values.get(name)) is not None else None
            for name in ("user_ref", "provider", "session_id")
        }
        times = {
            name: parse_instant(raw, name) if (raw := values.get(name)) is not None else None
            for name in ("since", "until")
        }
        since, until = times["since"], times["until"]
        if since is not None and until is not None and since > until:
            raise AuditQueryError("since must not be after until")
        return cls(since=since, until=until, **refs)

    def clauses(self) -> list[Any]:
        """SQL conditions for this filter."""
        table = table_of(AuditEntry).c
        found: list[Any] = []
        for name in ("user_ref", "provider", "session_id"):
            if (value := getattr(self, name)) is not None:
                found.append(table[name] == value)
        if self.since is not None:
            found.append(table.at >= self.since)
        if self.until is not None:
            found.append(table.at < self.until)
        return found


def _table() -> Any:
    return table_of(AuditEntry)


def record(row: Any) -> dict[str, Any]:
    """An entry (ORM object or row mapping) as a JSON-ready dict, fields in COLUMNS order."""
    get = row.__getitem__ if hasattr(row, "keys") else lambda name: getattr(row, name)
    answer = {name: get(name) for name in COLUMNS}
    answer["at"] = utc(answer["at"]).isoformat()
    return answer


def head_seq(db: Session) -> int:
    """The seq of the chain's last entry (0 for an empty chain)."""
    head = db.get(AuditHead, 1, populate_existing=True)
    return head.seq if head is not None else 0


def _page_query(flt: AuditFilter, after: int, limit: int, upto: int | None = None) -> Any:
    table = _table()
    query = select(*(table.c[name] for name in COLUMNS)).where(table.c.seq > after)
    if upto is not None:
        query = query.where(table.c.seq <= upto)
    return query.where(*flt.clauses()).order_by(table.c.seq).limit(limit)


@dataclass(frozen=True)
class Page:
    """One page of entries and the cursor that continues after it (None at the end)."""

    entries: list[dict[str, Any]]
    next_cursor: int | None


def query_page(engine: Engine, flt: AuditFilter, limit: int = DEFAULT_PAGE, after: int = 0) -> Page:
    """Entries matching `flt` with seq > `after`, oldest first, at most `limit` of them."""
    if not 1 <= limit <= MAX_PAGE:
        raise AuditQueryError(f"limit must be between 1 and {MAX_PAGE}")
    if not 0 <= after <= MAX_SEQ:
        raise AuditQueryError(f"cursor must be an integer from 0 to {MAX_SEQ}")
    with transaction(engine) as db:
        rows = db.execute(_page_query(flt, after, limit + 1)).mappings().all()
    entries = [record(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(entries, entries[-1]["seq"] if more else None)


def current_head_seq(engine: Engine) -> int:
    """The chain head's seq now (0 for an empty chain)."""
    with transaction(engine) as db:
        return head_seq(db)


def iter_records(
    engine: Engine, flt: AuditFilter, upto: int, batch: int = EXPORT_BATCH
) -> Iterator[list[dict[str, Any]]]:
    """Every entry matching `flt` with seq <= `upto`, in seq order, in lists of <= `batch`.

    One short transaction per batch (see the module docstring).
    """
    after = 0
    while after < upto:
        with transaction(engine) as db:
            rows = db.execute(_page_query(flt, after, batch, upto)).mappings().all()
        if not rows:
            return
        yield [record(r) for r in rows]
        after = rows[-1]["seq"]
        if len(rows) < batch:
            return


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
"""What may make a spreadsheet read a cell as a formula (CSV injection): OWASP's `=`, `+`, `-`,
`@`, tab and carriage return, ASVS's NUL, and a line feed (a line break before a formula)."""


def csv_cell(value: Any) -> Any:
    """A CSV cell: empty for None; a text that a spreadsheet would run as a formula (a user ref
    such as `=HYPERLINK(…)` coming from a provider payload or the backend) is prefixed with `'`,
    as OWASP advises; the JSON Lines export carries every value unchanged."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_chunks(batches: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
    """The header, then one CSV text chunk per batch. Every cell is quoted (as OWASP advises):
    Python's writer leaves a lone carriage return unquoted, and a spreadsheet ends the row there,
    so the rest of the cell (`'\r=HYPERLINK(…)`) would start a row of its own, as a formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([csv_cell(r[name]) for name in COLUMNS] for r in batch)
        yield buffer.getvalue()


def jsonl_chunks(batches: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
    """One JSON Lines text chunk per batch (one entry a line)."""
    for batch in batches:
        yield "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in batch)


def export_chunks(engine: Engine, flt: AuditFilter, fmt: str) -> Iterator[str]:
    """The export of the matching entries in `fmt` (csv or jsonl), streamed in chunks.

    The head is read now (so a database failure surfaces before anything is sent); the rows are
    read as the chunks are consumed, up to that head.
    """
    if fmt not in ("csv", "jsonl"):
        raise AuditQueryError("format must be csv or jsonl for an export")
    batches = iter_records(engine, flt, current_head_seq(engine))
    return csv_chunks(batches) if fmt == "csv" else jsonl_chunks(batches)


@dataclass(frozen=True)
class AsOf:
    """A user's status at a moment, derived from the audit history alone."""

    user_ref: str
    at: datetime
    status: str
    decided_by: str | None
    provider: str | None
    session_id: str | None
    entries: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """The API's answer."""
        return {
            "user_ref": self.user_ref,
            "at": self.at.isoformat(),
            "status": self.status,
            "decided_by": self.decided_by,
            "provider": self.provider,
            "session_id": self.session_id,
            "entries": self.entries,
        }


def status_as_of(engine: Engine, user_ref: str, at: datetime) -> AsOf:
    """The user's status at `at` and the entries that made it so.

    The last user entry for `user_ref` at or before `at` gives the status (and the deciding
    session); the answer's entries are that one and the deciding session's entries up to `at`,
    in chain order. A user with no entry by then is `unknown`.
    """
    table = _table()
    columns = [table.c[name] for name in COLUMNS]
    at = utc(at)
    with transaction(engine) as db:
        deciding = (
            db.execute(
                select(*columns)
                .where(table.c.user_ref == user_ref, table.c.subject == "user", table.c.at <= at)
                .order_by(table.c.seq.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if deciding is None:
            return AsOf(user_ref, at, "unknown", None, None, None, [])
        session_rows = (
            db.execute(
                select(*columns)
                .where(
                    table.c.subject == "session",
                    table.c.provider == deciding["provider"],
                    table.c.session_id == deciding["session_id"],
                    table.c.at <= at,
                )
                .order_by(table.c.seq)
            )
            .mappings()
            .all()
        )
    entries = sorted([*session_rows, deciding], key=lambda r: r["seq"])
    return AsOf(
        user_ref=user_ref,
        at=at,
        status=deciding["new_status"] or "unknown",
        decided_by=deciding["decided_by"],
        provider=deciding["provider"],
        session_id=deciding["session_id"],
        entries=[record(r) for r in entries],
    )


def verify_stored_chain(engine: Engine, batch: int = 1000) -> ChainReport:
    """Walk the stored chain against its head row in one snapshot.

    On PostgreSQL the walk runs in REPEATABLE READ, so an append committed while it runs cannot
    look like a head that is further on than the entries.
    """
    with transaction(dialects.snapshot(engine)) as db:
        return verify_chain(db, batch)


def report_json(report: ChainReport) -> dict[str, Any]:
    """The verify answer: {"ok","entries","head","first_bad","problem"}."""
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head": report.head,
        "first_bad": report.first_bad,
        "problem": report.problem,
    }


def report_message(report: ChainReport) -> str:
    """One line for people: ok with the count and head, or the first bad entry and why."""
    if report.ok:
        return f"audit chain ok: {report.entries} entries, head {report.head}"
    where = f"at entry seq {report.first_bad}" if report.first_bad is not None else "at its head"
    return (
        f"audit chain broken {where}: {report.problem} "
        f"({report.entries} entries read, last good hash {report.head})"
    )
