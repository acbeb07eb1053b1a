"""The audit API and CLI on both databases: history, exports, as-of status, tamper detection.

Status changes are driven for real (signed webhooks through HTTP, then the worker's apply);
tampering is done with raw SQL, the way someone with database access would.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select, text
from sqlmodel import Session

from app import create_app
from receiver.store.audit_models import AuditEntry, AuditHead
from receiver.store.db import transaction
from reconciler import jobs
from reconciler.api import audit as audit_api
from reconciler.api import openapi
from reconciler.audit import queries as aq
from reconciler.audit.chain import AuditDraft, append_audit
from reconciler.cli import audit as audit_cli
from tests.support import signing
from tests.support.flow import (
    API_TOKENS,
    AUDITOR,
    BACKEND,
    OPERATOR,
    apply_all,
    audit_rows,
    send_contiguity,
)

ENTRIES = 10_000


def build_app(services):  # type: ignore[no-untyped-def]
    """The app (app.py registers the audit and OpenAPI blueprints)."""
    app = create_app(services=services)
    assert {audit_api.bp.name, openapi.bp.name} <= set(app.blueprints)
    return app


@pytest.fixture
def api(make_services, redis_server):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    return services, build_app(services).test_client()


@pytest.fixture
def cli(make_services, monkeypatch):  # type: ignore[no-untyped-def]
    """Run `verihook audit …` in-process on the test database."""
    monkeypatch.setattr(audit_cli, "services_or_exit", lambda: make_services())
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(audit_cli.audit, list(args), catch_exceptions=False)

    return invoke


def deliver(services, client, kind: str, session_id: str, user_ref: str, at: int) -> None:  # type: ignore[no-untyped-def]
    body = signing.contiguity_event(kind, session_id, user_ref=user_ref, timestamp=at)
    assert send_contiguity(client, body).status_code == 200
    apply_all(services)


def drive_changes(services, client) -> int:  # type: ignore[no-untyped-def]
    """Several real status changes for two users; returns the number of audit entries."""
    deliver(services, client, "processing", "vs_a1", "user-a", 100)
    deliver(services, client, "requires_input", "vs_a1", "user-a", 200)
    deliver(services, client, "verified", "vs_a1", "user-a", 300)
    deliver(services, client, "processing", "vs_b1", "user-b", 150)
    deliver(services, client, "failed", "vs_b1", "user-b", 250)
    deliver(services, client, "manually_approved", "vs_b1", "user-b", 350)
    rows = audit_rows(services.engine)
    assert len(rows) >= 10
    return len(rows)


def tamper(engine, sql: str, **params: object) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        assert conn.execute(text(sql), params).rowcount == 1


# --- verify ---------------------------------------------------------------------------------


def test_untouched_chain_verifies_with_count_and_head(api, cli):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    with Session(services.engine) as db:
        head = db.get(AuditHead, 1)
        last = db.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())).scalars().first()
    assert head is not None and last is not None and (head.seq, last.seq) == (total, total)

    for headers in (AUDITOR, OPERATOR):
        answer = client.get("/api/v1/audit/verify", headers=headers)
        assert answer.status_code == 200
        assert answer.get_json() == {
            "ok": True,
            "entries": total,
            "head": head.entry_hash,
            "first_bad": None,
            "problem": None,
        }
    assert last.entry_hash == head.entry_hash
    assert client.get("/api/v1/audit/verify", headers=BACKEND).status_code == 403
    assert client.get("/api/v1/audit/verify").status_code == 401

    result = cli("verify")
    assert result.exit_code == 0
    assert f"audit chain ok: {total} entries, head {head.entry_hash}" in result.output


def test_empty_chain_verifies(api, cli):  # type: ignore[no-untyped-def]
    _, client = api
    body = client.get("/api/v1/audit/verify", headers=AUDITOR).get_json()
    assert body == {
        "ok": True,
        "entries": 0,
        "head": "0" * 64,
        "first_bad": None,
        "problem": None,
    }
    assert cli("verify").exit_code == 0


@pytest.mark.parametrize("column", ["new_status", "decided_by", "at", "user_ref"])
def test_an_edited_row_is_named_by_its_seq(api, cli, column):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    victim = total // 2
    with Session(services.engine) as db:
        row = db.execute(select(AuditEntry).where(AuditEntry.seq == victim)).scalar_one()
    new_value: object = {
        "new_status": "rejected" if row.new_status != "rejected" else "verified",
        "decided_by": "manual" if row.decided_by != "manual" else "auto",
        "at": row.at + timedelta(seconds=1),
        "user_ref": "someone-else",
    }[column]
    tamper(
        services.engine,
        f"UPDATE audit_entries SET {column} = :value WHERE seq = :seq",
        value=new_value,
        seq=victim,
    )

    body = client.get("/api/v1/audit/verify", headers=AUDITOR).get_json()
    assert body["ok"] is False and body["first_bad"] == victim
    assert body["entries"] == victim
    expected = "user_ref does not match" if column == "user_ref" else "content does not match"
    assert expected in body["problem"]

    result = cli("verify")
    assert result.exit_code == 1
    assert f"broken at entry seq {victim}" in result.output and expected in result.output

    as_json = cli("verify", "--format", "json")
    assert as_json.exit_code == 1 and json.loads(as_json.output)["first_bad"] == victim


def test_a_deleted_middle_row_is_reported_at_the_gap(api, cli):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    victim = total // 2
    tamper(services.engine, "DELETE FROM audit_entries WHERE seq = :seq", seq=victim)

    body = client.get("/api/v1/audit/verify", headers=OPERATOR).get_json()
    assert body["ok"] is False
    assert body["first_bad"] == victim + 1  # the entry after the gap
    assert body["problem"] == f"expected seq {victim}"
    result = cli("verify")
    assert result.exit_code == 1
    assert f"broken at entry seq {victim + 1}: expected seq {victim}" in result.output


def test_a_deleted_last_row_is_reported_against_the_head(api, cli):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    tamper(services.engine, "DELETE FROM audit_entries WHERE seq = :seq", seq=total)

    body = client.get("/api/v1/audit/verify", headers=AUDITOR).get_json()
    assert body["ok"] is False
    assert (body["first_bad"], body["entries"]) == (total, total - 1)
    assert "head is further on" in body["problem"]
    result = cli("verify")
    assert result.exit_code == 1 and f"broken at entry seq {total}" in result.output


def test_a_deleted_head_row_is_reported(api, cli):  # type: ignore[no-untyped-def]
    services, client = api
    drive_changes(services, client)
    tamper(services.engine, "DELETE FROM audit_head WHERE id = 1")
    body = client.get("/api/v1/audit/verify", headers=AUDITOR).get_json()
    assert body["ok"] is False and body["problem"] == "the audit head row is missing"
    result = cli("verify")
    assert result.exit_code == 1 and "head row is missing" in result.output


def test_swapped_rows_are_reported(api):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    first, second = total // 2, total // 2 + 1
    with services.engine.begin() as conn:  # swap the seq of two neighbours (via a free value)
        conn.execute(text("UPDATE audit_entries SET seq = -1 WHERE seq = :s"), {"s": first})
        conn.execute(
            text("UPDATE audit_entries SET seq = :a WHERE seq = :b"), {"a": first, "b": second}
        )
        conn.execute(text("UPDATE audit_entries SET seq = :b WHERE seq = -1"), {"b": second})
    body = client.get("/api/v1/audit/verify", headers=AUDITOR).get_json()
    assert body["ok"] is False and body["first_bad"] == first


# --- history and filters --------------------------------------------------------------------


def test_history_filters_and_pages(api):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    rows = audit_rows(services.engine)

    everything = client.get("/api/v1/audit", headers=AUDITOR).get_json()
    assert [e["seq"] for e in everything["entries"]] == list(range(1, total + 1))
    assert everything["next_cursor"] is None
    assert set(everything["entries"][0]) == set(aq.COLUMNS)

    mine = client.get("/api/v1/audit?user_ref=user-b", headers=OPERATOR).get_json()["entries"]
    assert mine and {e["user_ref"] for e in mine} == {"user-b"}
    assert len(mine) == sum(r.user_ref == "user-b" for r in rows)
    session_only = client.get(
        "/api/v1/audit?provider=contiguity&session_id=vs_a1", headers=AUDITOR
    ).get_json()["entries"]
    assert {e["session_id"] for e in session_only} == {"vs_a1"}
    assert len(session_only) == sum(r.session_id == "vs_a1" for r in rows)

    # pages of 3 by cursor cover everything exactly once
    seen, cursor = [], 0
    while True:
        page = client.get(f"/api/v1/audit?limit=3&cursor={cursor}", headers=AUDITOR).get_json()
        seen += [e["seq"] for e in page["entries"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == list(range(1, total + 1))

    # time range: since inclusive, until exclusive
    middle = rows[total // 2].at
    since = client.get(
        "/api/v1/audit", query_string={"since": middle.isoformat()}, headers=AUDITOR
    ).get_json()["entries"]
    until = client.get(
        "/api/v1/audit",
        query_string={"until": middle.isoformat().replace("+00:00", "Z")},
        headers=AUDITOR,
    ).get_json()["entries"]
    assert [e["seq"] for e in since] == [r.seq for r in rows if r.at >= middle]
    assert [e["seq"] for e in until] == [r.seq for r in rows if r.at < middle]
    assert len(since) + len(until) == total


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2024-13-01",
        "since=2024-05-02&until=2024-05-01",
        "format=xml",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "cursor=-1",
        "cursor=2147483648",  # over the INTEGER column: PostgreSQL would refuse the parameter
        "user_ref=" + "x" * 200,
        "user_ref=a%00b",
        "since=0001-01-01T00:00:00%2B14:00",
    ],
)
def test_bad_parameters_are_400(api, query):  # type: ignore[no-untyped-def]
    _, client = api
    answer = client.get(f"/api/v1/audit?{query}", headers=AUDITOR)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert "error" in answer.get_json()


def test_audit_needs_auditor_or_operator(api):  # type: ignore[no-untyped-def]
    _, client = api
    for path in (
        "/api/v1/audit",
        "/api/v1/audit/verify",
        "/api/v1/audit/as-of?user_ref=u&at=2024-01-01",
    ):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=BACKEND).status_code == 403
        assert client.get(path, headers=AUDITOR).status_code == 200
        assert client.get(path, headers=OPERATOR).status_code == 200


def test_cli_query_table_and_json(api, cli):  # type: ignore[no-untyped-def]
    services, client = api
    total = drive_changes(services, client)
    table = cli("query", "--user", "user-a")
    assert table.exit_code == 0, table.output
    header, *lines = table.output.splitlines()
    assert header.split()[:4] == ["seq", "at", "subject", "provider"]
    assert lines and all("user-a" in line for line in lines)

    as_json = cli("query", "--format", "json", "--limit", "4")
    body = json.loads(as_json.output)
    assert [e["seq"] for e in body["entries"]] == [1, 2, 3, 4] and body["next_cursor"] == 4
    rest = json.loads(cli("query", "--format", "json", "--after", "4", "--limit", "1000").output)
    assert [e["seq"] for e in rest["entries"]] == list(range(5, total + 1))

    bad = cli("query", "--since", "not-a-time")
    assert bad.exit_code == 2 and "since must be an ISO 8601 time" in bad.output


# --- as-of ----------------------------------------------------------------------------------


def test_status_as_of_a_time_from_the_history(api, cli):  # type: ignore[no-untyped-def]
    services, client = api
    before = datetime.now(UTC)
    time.sleep(0.01)
    deliver(services, client, "processing", "vs_x1", "user-x", 100)
    deliver(services, client, "verified", "vs_x1", "user-x", 200)
    t1 = datetime.now(UTC)  # verified
    deliver(services, client, "processing", "vs_other", "user-other", 250)  # someone else
    time.sleep(0.01)
    deliver(services, client, "manually_denied", "vs_x1", "user-x", 300)
    t2 = datetime.now(UTC)  # rejected by a person

    def as_of(at: datetime) -> dict:  # type: ignore[type-arg]
        answer = client.get(
            "/api/v1/audit/as-of",
            query_string={"user_ref": "user-x", "at": at.isoformat()},
            headers=AUDITOR,
        )
        assert answer.status_code == 200
        return answer.get_json()

    unknown = as_of(before)
    assert (unknown["status"], unknown["entries"], unknown["session_id"]) == ("unknown", [], None)

    verified = as_of(t1)
    assert (verified["status"], verified["decided_by"]) == ("verified", "auto")
    assert (verified["provider"], verified["session_id"]) == ("contiguity", "vs_x1")
    changes = [(e["subject"], e["previous_status"], e["new_status"]) for e in verified["entries"]]
    assert changes == [  # the deciding session's changes, then the user's (chain order)
        ("session", "pending", "processing"),
        ("session", "processing", "verified"),
        ("user", "processing", "verified"),
    ]
    assert all(datetime.fromisoformat(e["at"]) <= t1 for e in verified["entries"])
    assert all(e["session_id"] == "vs_x1" for e in verified["entries"])

    rejected = as_of(t2)
    assert (rejected["status"], rejected["decided_by"]) == ("rejected", "manual")
    assert [
        (e["subject"], e["previous_status"], e["new_status"], e["decided_by"])
        for e in rejected["entries"][-2:]
    ] == [
        ("session", "verified", "rejected", "manual"),
        ("user", "verified", "rejected", "manual"),
    ]
    user_entries = [e for e in rejected["entries"] if e["subject"] == "user"]
    assert len(user_entries) == 1  # only the deciding user entry

    result = cli("query", "--user", "user-x", "--as-of", t1.isoformat(), "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output) == verified
    text_answer = cli("query", "--user", "user-x", "--as-of", t2.isoformat())
    assert (
        "user-x at" in text_answer.output
        and ": rejected (manual) by contiguity session vs_x1" in text_answer.output
    )
    assert cli("query", "--as-of", t2.isoformat()).exit_code == 2

    missing = client.get("/api/v1/audit/as-of?user_ref=user-x", headers=AUDITOR)
    assert missing.status_code == 400
    bad = client.get("/api/v1/audit/as-of?user_ref=user-x&at=soon", headers=AUDITOR)
    assert bad.status_code == 400


# --- exports --------------------------------------------------------------------------------


def insert_entries(engine, n: int = ENTRIES, batch: int = 1000) -> None:  # type: ignore[no-untyped-def]
    """n chained entries, appended in batches the way the worker appends them."""
    for start in range(0, n, batch):
        drafts = [
            AuditDraft(
                actor="test",
                source="webhook",
                subject="session",
                provider="contiguity",
                session_id=f"vs_{i:06d}",
                user_ref=f"user-{i % 97}",
                previous_status="processing",
                new_status="verified",
                decided_by="auto",
                event_id=i,
                reason=f'reason, with "quotes" {i}',
            )
            for i in range(start, min(n, start + batch))
        ]
        with transaction(engine) as db:
            append_audit(db, drafts)


def _materialized_peak(engine, sample: int = 1000) -> int:  # type: ignore[no-untyped-def]
    """What holding every entry at once takes (a naive export), from loading `sample` of them."""
    tracemalloc.start()
    try:
        with Session(engine) as db:
            some = list(db.execute(select(AuditEntry).limit(sample)).scalars())
        assert len(some) == sample
        return tracemalloc.get_traced_memory()[1] * ENTRIES // sample
    finally:
        tracemalloc.stop()


@pytest.fixture
def ten_thousand(api):  # type: ignore[no-untyped-def]
    services, client = api
    insert_entries(services.engine)
    return services, client


class SelectCounter:
    """Counts the SELECTs that read audit entries, while installed on an engine."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.count = engine, 0

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "FROM audit_entries" in statement:
            self.count += 1

    def __enter__(self) -> SelectCounter:
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self)


def read_export(chunks, fmt: str) -> tuple[tuple[str, ...] | None, int]:  # type: ignore[no-untyped-def]
    """Consume an export chunk by chunk (never joined): its CSV header and its row count.

    Each chunk holds whole lines; its first and last line must carry the seqs that continue the
    previous chunk without a gap (no reason here holds a newline).
    """
    header, rows = None, 0
    for chunk in chunks:
        lines = (chunk.decode() if isinstance(chunk, bytes) else chunk).splitlines()
        if fmt == "csv" and header is None:
            header, lines = tuple(next(csv.reader(lines[:1]))), lines[1:]
        if not lines:
            continue
        if fmt == "csv":
            seqs = [int(next(csv.reader([line]))[0]) for line in (lines[0], lines[-1])]
        else:
            seqs = [json.loads(line)["seq"] for line in (lines[0], lines[-1])]
        assert seqs == [rows + 1, rows + len(lines)]
        rows += len(lines)
    return header, rows


def test_exports_stream_ten_thousand_entries(ten_thousand):  # type: ignore[no-untyped-def]
    services, client = ten_thousand
    materialized = _materialized_peak(services.engine)
    for fmt in ("csv", "jsonl"):
        with SelectCounter(services.engine) as selects:
            tracemalloc.start()
            try:
                response = client.get(f"/api/v1/audit?format={fmt}", headers=AUDITOR)
                assert response.status_code == 200 and response.is_streamed
                chunks = iter(response.response)
                first = next(chunks)
                reads_before_first_chunk = selects.count
                header, rows = read_export(itertools.chain([first], chunks), fmt)
                response.close()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert response.mimetype == ("text/csv" if fmt == "csv" else "application/x-ndjson")
        assert rows == ENTRIES
        if fmt == "csv":
            assert header == aq.COLUMNS
        # a generator: the first chunk left before any row was read, then pages followed
        assert reads_before_first_chunk <= 1
        assert selects.count >= ENTRIES // aq.EXPORT_BATCH
        # bounded by a page, not by the history: far below holding every entry at once
        assert peak < materialized / 6, (fmt, peak, materialized)


def test_export_filters_and_cli_file_and_stdout(api, cli, tmp_path):  # type: ignore[no-untyped-def]
    services, client = api
    insert_entries(services.engine, n=1200, batch=600)
    expected = [e.seq for e in audit_rows(services.engine) if e.user_ref == "user-5"]
    via_api = client.get("/api/v1/audit?format=jsonl&user_ref=user-5", headers=OPERATOR)
    assert [
        json.loads(line)["seq"] for line in via_api.get_data(as_text=True).splitlines()
    ] == expected
    assert via_api.headers["Content-Disposition"] == 'attachment; filename="audit.jsonl"'

    target = tmp_path / "audit.csv"
    written = cli("export", "--format", "csv", "-o", str(target))
    assert written.exit_code == 0, written.output
    assert "exported 1200 audit entries" in written.output
    with target.open(newline="") as stream:
        header, *lines = list(csv.reader(stream))
    assert tuple(header) == aq.COLUMNS and len(lines) == 1200
    assert lines[0][COLUMN_REASON] == 'reason, with "quotes" 0'
    assert target.read_text() == client.get("/api/v1/audit?format=csv", headers=AUDITOR).get_data(
        as_text=True
    )

    to_stdout = cli("export", "--format", "jsonl", "--user", "user-5")
    assert [json.loads(line)["seq"] for line in to_stdout.output.splitlines()] == expected
    bad = cli("export", "--until", "tomorrow")
    assert bad.exit_code == 2 and "until must be an ISO 8601 time" in bad.output


COLUMN_REASON = aq.COLUMNS.index("reason")


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised() -> None:
    from reconciler.audit.queries import csv_cell

    assert csv_cell('=HYPERLINK("http://x.invalid","y")') == '\'=HYPERLINK("http://x.invalid","y")'
    risky = ("+1", "-1", "@SUM(A1)", "\tx")
    assert [csv_cell(v) for v in risky] == ["'+1", "'-1", "'@SUM(A1)", "'\tx"]
    assert [csv_cell(v) for v in ("user-1", None, 7, "a=b")] == ["user-1", "", 7, "a=b"]


def spreadsheet_rows(csv_text: str) -> list[list[str]]:
    """How a spreadsheet reads the export: a bare CR ends a row too, unless it is quoted."""
    return list(csv.reader(csv_text.splitlines(keepends=True)))


def test_csv_formula_refs_from_the_api_are_prefixed_and_control_characters_refused(api):  # type: ignore[no-untyped-def]
    """User refs that read as formulas reach the export through the API and are prefixed with
    `'`; refs holding a tab, CR or LF no longer enter at all (one input rule, issue 18)."""
    services, client = api
    refs = ('=HYPERLINK("http://x.invalid","y")', "@SUM(A1)", "-2", "+3")
    for index, ref in enumerate(refs):  # the backend registers a session under that ref
        session = {"provider": "contiguity", "session_id": f"vs_csv{index}", "user_ref": ref}
        registered = client.post("/api/v1/sessions", json=session, headers=BACKEND)
        assert registered.status_code == 201, registered.get_data(as_text=True)
        deliver(services, client, "verified", f"vs_csv{index}", "plain-ref", 100 + index)
    for ref in ('u\r=HYPERLINK("http://x.invalid","y")', "\t=1+1", "\n-2"):
        refused = {"provider": "contiguity", "session_id": "vs_csv_bad", "user_ref": ref}
        assert client.post("/api/v1/sessions", json=refused, headers=BACKEND).status_code == 400
    exported = client.get("/api/v1/audit?format=csv", headers=AUDITOR)
    assert exported.status_code == 200
    rows = spreadsheet_rows(exported.get_data(as_text=True))
    assert rows[0] == list(aq.COLUMNS)
    cells = [cell for row in rows[1:] for cell in row]
    assert [cell for cell in cells if cell.startswith((*aq.FORMULA_PREFIXES, "\n"))] == []
    user_refs = {row[aq.COLUMNS.index("user_ref")] for row in rows[1:]}
    assert user_refs >= {"'" + ref for ref in refs}


def test_csv_rows_holding_a_cr_or_tab_stay_whole_and_inert() -> None:
    """Entries written before refs were checked may hold control characters: every cell is
    quoted, so a CR inside one stays inside it (RFC 4180), and a cell starting with one is
    prefixed like `=`. Was: `'\\r=…` written unquoted, so the CR ended the row and `=HYPERLINK`
    began the next one as a formula."""
    refs = ('u\r=HYPERLINK("http://x.invalid","y")', "\r@SUM(A1)", "\t=1+1", "\n-2", "+3")
    batch = [
        {name: None for name in aq.COLUMNS} | {"seq": n, "user_ref": r} for n, r in enumerate(refs)
    ]
    rows = spreadsheet_rows("".join(aq.csv_chunks(iter([batch]))))
    assert rows[0] == list(aq.COLUMNS)
    assert all(len(row) == len(aq.COLUMNS) for row in rows)  # no row was split
    cells = [cell for row in rows[1:] for cell in row]
    assert [cell for cell in cells if cell.startswith((*aq.FORMULA_PREFIXES, "\n"))] == []
    user_refs = [row[aq.COLUMNS.index("user_ref")] for row in rows[1:]]
    assert user_refs == [refs[0], *("'" + ref for ref in refs[1:])]


def test_csv_cell_prefixes_cr_newline_and_nul_too() -> None:
    assert [aq.csv_cell(v) for v in ("\rx", "\nx", "\0x")] == ["'\rx", "'\nx", "'\0x"]
