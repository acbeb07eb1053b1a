"""The one small interface every provider module implements, and what flows through it.

A provider module is pure on the inbound side: `authenticate` and `parse` take plain data
(`Delivery`, an `AuthContext`) and return plain data (`Parsed`). Outbound calls (create a session,
fetch its status) live in the provider's client, used only off the request path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from receiver.canonical import Observation, Source
from receiver.exceptions import AuthenticationError, ParseError
from receiver.inputs import MAX_JSON_DEPTH, MAX_REF_LENGTH, UNSTORABLE, too_deep
from receiver.settings import ProviderSettings

HEADER_LINES_KEY = "verihook.repeated_header_lines"
"""The WSGI environ key under which the server gives the values of every header sent on more
than one line, one per line: `{lower-case name: [value, …]}` (receiver/gunicorn_worker.py).

WSGI has one environ entry per header name, so gunicorn (and werkzeug) join repeated lines with a
comma before the app sees them. Two `Contiguity-Signature` lines, a genuine one and a bare
`v1=…`, would then read as one header with two signatures, which Contiguity's multi-signature
format allows. With the lines kept apart, `Delivery.single_header` refuses the repeat."""


def repeated_header_lines(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """`{lower-case name: values}` of the headers that occur more than once in `headers`."""
    seen: dict[str, list[str]] = {}
    for name, value in headers:
        seen.setdefault(name.lower(), []).append(value)
    return {name: values for name, values in seen.items() if len(values) > 1}


def separate_header_lines(
    headers: Iterable[tuple[str, str]], lines: Mapping[str, list[str]]
) -> tuple[tuple[str, str], ...]:
    """`headers` (one joined value per name, as WSGI gives them) with each name that `lines`
    holds given back as one entry per line."""
    separated: list[tuple[str, str]] = []
    for name, value in headers:
        values = lines.get(name.lower()) or [value]
        separated.extend((name, line) for line in values)
    return tuple(separated)


@dataclass(frozen=True)
class Delivery:
    """One inbound request as received: raw bytes and what the URL said. Never logged."""

    provider: str
    source: Source
    body: bytes
    headers: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...] = ()
    notification: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    path_token: str | None = field(default=None, repr=False)
    """A secret carried in the URL path (idvapi); used to authenticate, never stored."""

    def header_values(self, name: str) -> list[str]:
        """Every value sent for header `name` (case-insensitive)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def single_header(self, name: str) -> str:
        """The one value of header `name`; missing, empty or repeated is an auth failure."""
        values = self.header_values(name)
        if not values:
            raise AuthenticationError("missing_signature")
        if len(values) > 1:
            raise AuthenticationError("repeated_signature_header")
        if not values[0].strip():
            raise AuthenticationError("empty_signature")
        return values[0]

    def query_value(self, name: str) -> str | None:
        """The single value of query parameter `name`; None when missing or repeated."""
        values = [value for key, value in self.query if key == name]
        return values[0] if len(values) == 1 else None

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe record of everything needed to parse this delivery again."""
        return {
            "provider": self.provider,
            "source": self.source.value,
            "body": self.body.decode("latin-1"),
            "headers": [list(h) for h in self.headers],
            "query": [list(q) for q in self.query],
            "notification": self.notification,
            "received_at": self.received_at.isoformat(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Delivery:
        """Rebuild a delivery stored by `to_record`."""
        return cls(
            provider=record["provider"],
            source=Source(record["source"]),
            body=record["body"].encode("latin-1"),
            headers=tuple((k, v) for k, v in record["headers"]),
            query=tuple((k, v) for k, v in record["query"]),
            notification=record.get("notification"),
            received_at=datetime.fromisoformat(record["received_at"]),
        )


@dataclass(frozen=True)
class Parsed:
    """What a delivery says: which session, whose, the observations, and whether to poll now."""

    session_id: str | None
    user_ref: str | None
    observations: tuple[Observation, ...] = ()
    poll_now: bool = False
    delivery_id: str | None = None
    """The provider's own id for this delivery, when it sends one (used for dedupe)."""
    creates_session: bool = True
    """False for what a stranger can send (a browser redirect): it may only touch a session the
    backend registered (or an authentic delivery created), never create one."""
    poll_recent: bool = False
    """A redirect that names no session: poll the provider's recently started sessions early."""


@dataclass(frozen=True)
class AuthContext:
    """What authentication may need besides the request: the clock and stored callback state."""

    now: float
    stored_state_digest: Callable[[str], str | None] = lambda _session_id: None


@dataclass(frozen=True)
class CreatedSession:
    """A session just created at the provider: its id, where to send the user, and our state."""

    session_id: str
    start_url: str | None
    state: str | None = None


class ProviderClient(Protocol):
    """What every provider client offers (off the request path; httpx underneath)."""

    def create_session(
        self, user_ref: str, options: dict[str, Any], *, callback_url: str | None
    ) -> CreatedSession:
        """Create a verification session at the provider."""
        ...

    def fetch_status(self, session_id: str) -> Any:
        """The provider's status answer for a session (JSON), for `parse_status`."""
        ...


@runtime_checkable
class DeletesProviderData(Protocol):
    """A client whose provider can delete a session's personal data on request (docverify)."""

    def delete_session(self, session_id: str) -> bool:
        """Ask the provider to delete the session: True if deleted, False if already unknown."""
        ...


class Provider(Protocol):
    """What every provider module offers on the inbound side."""

    name: ClassVar[str]
    content_types: ClassVar[frozenset[str]]
    sources: ClassVar[frozenset[Source]]
    path_segment: ClassVar[str | None]
    """What `/webhooks/<name>/<segment>` carries: "notification", "token", or None (404)."""

    def __init__(self, settings: ProviderSettings) -> None: ...

    def is_enabled(self) -> bool:
        """True when configured well enough to accept deliveries."""
        ...

    def authenticate(self, delivery: Delivery, context: AuthContext) -> None:
        """Raise AuthenticationError unless the delivery is authentic. Reads raw bytes only."""
        ...

    def parse(self, delivery: Delivery) -> Parsed:
        """Turn an authentic delivery into observations; raise ParseError if not understood."""
        ...

    def dedupe_key(self, delivery: Delivery, parsed: Parsed | None) -> str:
        """The key that makes a redelivery of the same thing a duplicate."""
        ...

    def parse_status(self, session_id: str, answer: Any, received_at: datetime) -> Parsed:
        """Turn a status-endpoint answer into observations (source poll)."""
        ...

    def client(self, http: Any) -> ProviderClient:
        """This provider's API client over an httpx.Client."""
        ...


def content_digest(*parts: bytes | str) -> str:
    """A sha256 over the parts, for content-based dedupe keys."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def load_json_object(body: bytes) -> dict[str, Any]:
    """Decode a JSON object, bounded in depth; anything else is a ParseError."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError("body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ParseError("body is not a JSON object")
    if too_deep(value, body):
        raise ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH}")
    return value


def storable(value: str, key: str) -> str:
    """`value` (the provider's field `key`) unchanged, or ParseError when it holds characters that
    cannot be stored as text: the delivery is then quarantined instead of failing in the store."""
    if UNSTORABLE.search(value):
        raise ParseError(f"field {key!r} holds control characters or lone surrogates")
    return value


def require_str(data: Mapping[str, Any], key: str, *, max_length: int = MAX_REF_LENGTH) -> str:
    """A non-empty, storable string field of bounded length, else ParseError naming the field."""
    value = data.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ParseError(f"field {key!r} missing or not a short string")
    return storable(value, key)


def optional_str(
    data: Mapping[str, Any], key: str, *, max_length: int = MAX_REF_LENGTH
) -> str | None:
    """A string field of bounded length when present and non-empty, else None.

    A value holding characters that cannot be stored, or longer than `max_length`, is a
    ParseError, not None: an id the provider did send must not be silently dropped (the delivery
    is quarantined, and a replay recovers it once the limit is raised).
    """
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    if len(value) > max_length:
        raise ParseError(f"field {key!r} is longer than {max_length} characters")
    return storable(value, key)
