"""The ingest path: authenticate → parse → store event + outbox (a group commit).

Plain function, no Flask: the webhook blueprint calls it and enqueues after it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

from receiver.event_writer import EventWriter, Refused
from receiver.exceptions import ParseError, StoreUnavailableError, UnknownValueError
from receiver.logs import crash_site
from receiver.metrics import UNKNOWN_VALUES, inc
from receiver.providers.base import AuthContext, Delivery, Parsed, Provider
from receiver.store.crypto import Keyring
from receiver.store.db import UNAVAILABLE_ERRORS, transaction
from receiver.store.event_batches import NewEvent, prepare_event
from receiver.store.models import VerificationSession

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How an authentic delivery was taken in (DESIGN §3 answers)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class IngestResult:
    """The stored event's id and what happened to the delivery."""

    outcome: Outcome
    event_id: int
    parsed: Parsed | None

    @property
    def needs_apply(self) -> bool:
        """True when a new event is waiting for a worker."""
        return self.outcome is Outcome.ACCEPTED


def stored_state_lookup(engine: Engine, provider: str) -> Callable[[str], str | None]:
    """A callback that reads the `state` digest stored for one of `provider`'s sessions."""

    def lookup(session_id: str) -> str | None:
        with transaction(engine) as db:
            return db.execute(
                select(col(VerificationSession.state_digest)).where(
                    col(VerificationSession.provider) == provider,
                    col(VerificationSession.session_id) == session_id,
                )
            ).scalar_one_or_none()

    return lookup


def ingest(
    delivery: Delivery,
    provider: Provider,
    *,
    engine: Engine,
    keyring: Keyring,
    writer: EventWriter,
    now: float,
) -> IngestResult:
    """Authenticate (raises AuthenticationError, nothing stored), parse, and store durably.

    `writer` stores the event in a group commit with the deliveries arriving at the same time;
    this returns once that transaction committed. Raises StoreUnavailableError only when the
    database cannot be used; an authentic delivery whose parsed form the store refuses is stored
    raw and quarantined instead.
    """
    context = AuthContext(
        now=now, stored_state_digest=_guarded(stored_state_lookup(engine, provider.name))
    )
    provider.authenticate(delivery, context)
    parsed, parse_error, unknown = _parse(delivery, provider)
    stored = writer.store(
        prepare_event(_new_event(delivery, provider, parsed, parse_error), keyring=keyring)
    )
    if isinstance(stored, Refused):  # not a connection error: about this content
        log.error(
            "store refused a parsed %s delivery; storing it raw, quarantined",
            provider.name,
            extra={"provider": provider.name, "reason": stored.error},
        )
        parsed = None
        parse_error = f"the store refused the parsed delivery ({stored.error}); kept raw"
        raw = _new_event(delivery, provider, None, parse_error)
        stored = writer.store(prepare_event(raw, keyring=keyring))
        if isinstance(stored, Refused):  # a raw event holds no provider text: the store is at fault
            raise StoreUnavailableError("the event store refuses every write")
    if not stored.created:
        outcome = Outcome.DUPLICATE
    else:
        outcome = Outcome.QUARANTINED if parse_error else Outcome.ACCEPTED
        if unknown is not None:
            inc(UNKNOWN_VALUES, provider.name, unknown.field)
    return IngestResult(outcome=outcome, event_id=stored.event_id, parsed=parsed)


def _parse(
    delivery: Delivery, provider: Provider
) -> tuple[Parsed | None, str | None, UnknownValueError | None]:
    """The parsed delivery, or None and why it is quarantined (and, for a value the provider's
    documents do not define, that error, to count it).

    Parsing is pure, so any exception is about this content and this code, never the
    infrastructure: an unexpected one quarantines the delivery (replayable once fixed) rather
    than answering 500 to an authentic delivery.
    """
    try:
        return provider.parse(delivery), None, None
    except UnknownValueError as exc:
        return None, str(exc)[:2000], exc
    except ParseError as exc:
        return None, str(exc)[:2000], None
    except Exception as exc:
        site = crash_site(exc)
        log.error("%s parser failed; quarantining", provider.name, extra={"reason": site})
        return None, f"unexpected {site} while parsing", None


def _new_event(
    delivery: Delivery, provider: Provider, parsed: Parsed | None, parse_error: str | None
) -> NewEvent:
    return NewEvent(
        provider=provider.name,
        dedupe_key=provider.dedupe_key(delivery, parsed),
        kind=delivery.source.value,
        record=delivery.to_record(),
        received_at=delivery.received_at,
        notification=delivery.notification,
        session_id=parsed.session_id if parsed else None,
        user_ref=parsed.user_ref if parsed else None,
        parse_error=parse_error,
    )


_LOOKUP_ERRORS: tuple[type[Exception], ...] = (*UNAVAILABLE_ERRORS, DBAPIError)
"""Every database error (store/db.py's UNAVAILABLE_ERRORS and any driver error)."""


def _guarded(lookup: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """Any database error while reading callback state is the store's: the session id looked up
    is printable text checked by the provider before, so it cannot be the content's fault."""

    def guarded(session_id: str) -> str | None:
        try:
            return lookup(session_id)
        except _LOOKUP_ERRORS as exc:
            raise StoreUnavailableError("the event store is unavailable") from exc

    return guarded
