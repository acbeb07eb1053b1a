"""Read models (receiver/store/read_models.py): derived from the table models, checked against
their columns when defined, and writing times exactly as the API always has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

import pytest
from sqlmodel import SQLModel

from receiver.store.models import ObservationRecord, VerificationSession, table_of
from receiver.store.read_models import HistoryItem, RowModel, Session, Timestamp
from reconciler.sessions import _IDENTITY, _WRITABLE, SessionRow


def test_a_field_that_is_not_a_column_is_refused_when_the_model_is_defined() -> None:
    with pytest.raises(TypeError, match=r"not columns of VerificationSession: \['deadline'\]"):

        class Wrong(RowModel):
            table: ClassVar[type[SQLModel] | None] = VerificationSession

            provider: str
            deadline: Timestamp


def test_times_are_written_by_isoformat_not_pydantic() -> None:
    at = datetime(2026, 12, 6, 13, 0, 0, 5, tzinfo=UTC)
    row = VerificationSession(
        provider="contiguity", session_id="vs_1", created_at=at, updated_at=at, next_check_at=None
    )
    shown = Session.from_row(row).answer()
    assert shown["created_at"] == "2026-12-06T13:00:00.000005+00:00" == at.isoformat()
    assert shown["next_check_at"] is None and shown["status"] == "pending"
    two_hours = timezone(timedelta(hours=2))
    row.updated_at = at.replace(microsecond=0).astimezone(two_hours)
    assert Session.from_row(row).answer()["updated_at"] == "2026-12-06T15:00:00+02:00"


def test_history_reasons_are_read_from_their_json_text() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    record = ObservationRecord(
        session_pk=1,
        observation_key="k",
        status="rejected",
        decided_by="manual",
        status_class=4,
        occurred_at=at,
        source="webhook",
        reasons='["document_expired"]',
        recorded_at=at,
    )
    assert HistoryItem.from_row(record).answer()["reasons"] == ["document_expired"]


def test_the_apply_paths_session_row_is_columns_and_writes_all_but_the_identity() -> None:
    columns = set(table_of(VerificationSession).columns.keys())
    names = [name for name in SessionRow.__dataclass_fields__]
    assert set(names) <= columns
    assert set(_WRITABLE) == set(names) - set(_IDENTITY)
