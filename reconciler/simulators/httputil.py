"""Small HTTP helpers shared by the simulators (werkzeug request/response plumbing)."""

from __future__ import annotations

import datetime as dt
import html
import json
import secrets
import string
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from werkzeug.wrappers import Request, Response


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON bytes (non-ASCII kept as is, as real providers send it)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response."""
    return Response(
        dumps(payload),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json; charset=utf-8",
    )


def json_body(request: Request) -> dict[str, Any] | None:
    """The request's JSON object body, or None when it is missing, malformed or not an object."""
    payload = request.get_json(force=True, silent=True)
    return payload if isinstance(payload, dict) else None


def html_page(title: str, text: str, status: int = 200) -> Response:
    """A trivial HTML page standing in for a provider's hosted verification UI."""
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def with_query(url: str, params: Mapping[str, str]) -> str:
    """url with params added to its query string (existing parameters kept)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def with_path_segment(url: str, segment: str) -> str:
    """url with one more path segment appended (query string kept)."""
    parts = urlsplit(url)
    return urlunsplit(
        (
            parts.scheme,
            parts.netloc,
            parts.path.rstrip("/") + "/" + segment,
            parts.query,
            parts.fragment,
        )
    )


def bearer_token(request: Request, scheme: str = "Bearer") -> str | None:
    """The credential after `<scheme> ` in the Authorization header, or None."""
    header = request.headers.get("Authorization", "")
    prefix = scheme + " "
    if header[: len(prefix)].lower() == prefix.lower():
        return header[len(prefix) :].strip() or None
    return None


def iso_utc(timestamp: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a Z suffix (now when timestamp is None)."""
    moment = dt.datetime.fromtimestamp(time.time() if timestamp is None else timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def random_alnum(length: int) -> str:
    """A random string of ASCII letters and digits."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))
