"""Hypothesis strategies and independent oracles for hostile inbound traffic (tests/test_fuzz.py).

Nothing here imports receiver/ or reconciler/: requests are signed with hmac/hashlib, and the
oracles (what the answer must be) are written from the README's contract, not from the code.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.support.signing import CONTIGUITY_SECRET, IDENFY_SECRET

DEFAULT_EXAMPLES = 60
EXAMPLES_PER_ENDPOINT = int(os.environ.get("VERIHOOK_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
"""Generated requests per inbound endpoint (split between its signed and unsigned variants)."""

FUZZ_BODY_LIMIT = 8192
"""`max_body_bytes` of the fuzzed receiver: small, so bodies around the limit stay cheap."""


def fuzz_settings(share: int = 2) -> settings:
    """Hypothesis settings for one variant of an endpoint (`share` variants split the budget).

    The default run is derandomized (the same requests every time, so `make test` is stable);
    a run with VERIHOOK_FUZZ_EXAMPLES set explores new requests each time.
    """
    return settings(
        max_examples=max(1, EXAMPLES_PER_ENDPOINT // share),
        deadline=None,
        database=None,
        derandomize="VERIHOOK_FUZZ_EXAMPLES" not in os.environ,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )


# --- independent signers over raw bytes ------------------------------------------------------


def contiguity_v1(body: bytes, timestamp: int | str, secret: str = CONTIGUITY_SECRET) -> str:
    """hex HMAC-SHA256 of `<t>.<raw body>` (Stripe's scheme, which Contiguity uses)."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def contiguity_signature(body: bytes, timestamp: int, secret: str = CONTIGUITY_SECRET) -> str:
    """A complete `t=…,v1=…` header value over raw bytes (any bytes, not only UTF-8)."""
    return f"t={timestamp},v1={contiguity_v1(body, timestamp, secret)}"


def idenfy_hex(body: bytes, secret: str = IDENFY_SECRET) -> str:
    """hex HMAC-SHA256 of the raw body (iDenfy)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- oracles from the README contract ---------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NINE_DIGITS = re.compile(r"[0-9]{9}")


def mimetype_of(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower-cased, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str | None) -> bool:
    """True when the contract accepts this Content-Type for a webhook (application/json)."""
    return mimetype_of(content_type) == "application/json"


def has_malformed_check_id(body: bytes) -> bool:
    """True when the body is a JSON object whose `check_id` is present and not a UUID string."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(payload, dict) or "check_id" not in payload:
        return False
    value = payload["check_id"]
    return not (isinstance(value, str) and _UUID.fullmatch(value) is not None)


def query_pairs(query: str) -> list[tuple[str, str]]:
    """How a query string decodes (`&`-separated, `+` is a space, bad UTF-8 replaced)."""
    return parse_qsl(query, keep_blank_values=True, errors="replace")


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def url_has_control_characters(path: str, query: str) -> bool:
    """True when the decoded path or any decoded query key/value holds a control character:
    such a URL is refused with 400 before any provider code runs (commit c3fd481)."""
    texts = [unquote(path, errors="replace")] + [t for pair in query_pairs(query) for t in pair]
    return any(CONTROL_CHARACTERS.search(text) for text in texts)


def single_value(pairs: list[tuple[str, str]], name: str) -> str | None:
    """The value of `name` when it appears exactly once."""
    values = [v for k, v in pairs if k == name]
    return values[0] if len(values) == 1 else None


# --- text and JSON ------------------------------------------------------------------------------

SPECIAL_CHARS = [
    "\x00",
    "\ud800",  # lone surrogates: valid in a JSON escape, not encodable as UTF-8
    "\udfff",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\U0001d54f",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() but not ASCII
    "'",
    '"',
    "\\",
    "%",
    "\n",
    "\t",
    " ",
]

_some_text = st.lists(st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARS)), max_size=12).map(
    "".join
)
hostile_text = st.one_of(
    st.tuples(_some_text, st.sampled_from(SPECIAL_CHARS), _some_text).map("".join),
    _some_text,
)
"""Short text, mostly with a NUL byte, a lone surrogate, a bidi control or another troublemaker."""

long_text = st.integers(min_value=60, max_value=300).flatmap(
    lambda n: st.sampled_from(["a", "é", "\x00", "7"]).map(lambda c: c * n)
)
"""Text around the 64/128-character field bounds and well beyond."""

texts = st.one_of(hostile_text, long_text, st.text(max_size=12))

huge_numbers = st.sampled_from(
    [
        0,
        -1,
        2**31,
        2**63,
        -(2**63) - 1,
        10**20,
        10**300,
        -(10**300),
        253_402_300_799,  # 9999-12-31T23:59:59Z
        253_402_300_800,  # year 10000
        -62_135_596_800,  # 0001-01-01T00:00:00Z
        -62_135_596_801,
        1e300,
        -1e300,
        float("inf"),
        float("-inf"),
        float("nan"),
        1.5,
        -0.0,
        5e-324,
    ]
)
numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), huge_numbers)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def iso_times(draw: st.DrawFn) -> str:
    """ISO-8601-ish timestamps, including the extremes that overflow when moved to UTC."""
    extreme = st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59.999999-00:01",
            "2024-01-15T10:30:00.000Z",
            "2024-01-15T10:30:00",
            "2024-02-30T10:30:00Z",
            "",
            "Z",
            "2024-01-15T10:30:00+24:00",
        ]
    )
    offset = draw(st.integers(min_value=-1439, max_value=1439))
    moment = draw(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))
    )
    built = moment.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat()
    return draw(st.one_of(extreme, st.just(built), hostile_text))


def nested(depth: int, kind: str) -> Any:
    """A value nested `depth` levels deep (lists or objects)."""
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


around_json_depth = st.builds(
    nested, st.integers(min_value=28, max_value=40), st.sampled_from(["list", "dict"])
)
"""Values nested around the receiver's 32-level bound."""


# --- provider-shaped payloads -----------------------------------------------------------------
#
# A payload that is wrong everywhere stops at its first bad field. Each object below is valid
# except for at most two of its fields, drawn hostile (or left out), so that hostile values reach
# every field's code path. Shrinking goes towards "no hostile field".

DROPPED = object()
"""A field value meaning "leave the field out"."""

Field = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]
"""(valid values, hostile values) of one field."""


@st.composite
def _shaped(draw: st.DrawFn, fields: dict[str, Field]) -> dict[str, Any]:
    hostile = draw(st.sets(st.sampled_from(sorted(fields)), max_size=2))
    drawn = {name: draw(bad if name in hostile else good) for name, (good, bad) in fields.items()}
    return {name: value for name, value in drawn.items() if value is not DROPPED}


def shaped(**fields: Field) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object valid in every field but at most two (hostile, or left out)."""
    return _shaped(fields)


def or_dropped(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy`, or the field left out."""
    return st.one_of(strategy, st.just(DROPPED))


def absent() -> st.SearchStrategy[Any]:
    """A field that is normally not there."""
    return st.just(DROPPED)


hostile_values = st.one_of(hostile_text, hostile_text, long_text, json_values)
hostile_ids = or_dropped(hostile_values)
"""What a hostile id field holds: NULs, surrogates, 60–300 chars, not a string, or nothing."""
hostile_times = or_dropped(st.one_of(huge_numbers, huge_numbers, numbers, st.booleans(), texts))
hostile_json = or_dropped(st.one_of(json_values, around_json_depth))
plain_ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=16)
unix_times = st.integers(min_value=1_600_000_000, max_value=1_800_000_000)

CONTIGUITY_SUFFIXES = [
    "created",
    "started",
    "processing",
    "requires_input",
    "verified",
    "failed",
    "manually_approved",
    "manually_denied",
    "canceled",
]

contiguity_error = shaped(
    code=(st.sampled_from(["document_expired", "selfie_mismatch"]), hostile_ids),
    type=(st.just("invalid_request"), hostile_json),
)
contiguity_data = shaped(
    id=(plain_ids.map(lambda s: "vs_" + s), hostile_ids),
    object=(st.just("identity.verification_session"), hostile_json),
    status=(st.sampled_from(CONTIGUITY_SUFFIXES), or_dropped(texts)),
    verification_session=(absent(), st.one_of(hostile_ids, shaped(id=(plain_ids, hostile_ids)))),
    client_reference_id=(plain_ids.map(lambda s: "user-" + s), hostile_ids),
    error=(absent(), st.one_of(contiguity_error, hostile_json)),
    last_error=(absent(), st.one_of(contiguity_error, hostile_json)),
    metadata=(st.just({"order": "42"}), hostile_json),
    verification_report=(absent(), hostile_json),
)
contiguity_types = st.one_of(
    st.sampled_from(
        [
            "identity.verification_session.",
            "identity.verification_report.generated",
            "identity.",
            "charge.succeeded",
            "",
        ]
    ),
    texts.map(lambda s: "identity.verification_session." + s),
    hostile_json,
)
contiguity_envelopes = shaped(
    id=(plain_ids.map(lambda s: "evt_" + s), hostile_ids),
    type=(
        st.sampled_from([f"identity.verification_session.{s}" for s in CONTIGUITY_SUFFIXES]),
        contiguity_types,
    ),
    timestamp=(unix_times, hostile_times),
    api_version=(st.just("v2025.9.7"), hostile_json),
    data=(contiguity_data, hostile_json),
)

IDENFY_OVERALL = [
    "APPROVED",
    "DENIED",
    "SUSPECTED",
    "REVIEWING",
    "ACTIVE",
    "EXPIRED",
    "EXPIRED-DELETED",
    "DELETED",
    "ARCHIVED",
]
idenfy_tags = (
    st.lists(st.sampled_from(["FACE_MISMATCH", "DOC_EXPIRED"]), max_size=3),
    or_dropped(st.one_of(st.lists(hostile_values, max_size=25), json_values)),
)
idenfy_status = shaped(
    overall=(st.sampled_from(IDENFY_OVERALL), or_dropped(st.one_of(texts, json_values))),
    autoDocument=(st.just("DOC_VALIDATED"), hostile_ids),
    autoFace=(st.just("FACE_MATCH"), hostile_ids),
    manualDocument=(st.sampled_from([None, "DOC_VALIDATED"]), hostile_ids),
    manualFace=(st.sampled_from([None, "FACE_MATCH"]), hostile_ids),
    fraudTags=idenfy_tags,
    mismatchTags=idenfy_tags,
    suspicionReasons=(absent(), idenfy_tags[1]),
)
idenfy_payloads = shaped(
    scanRef=(plain_ids.map(lambda s: "scan-" + s), hostile_ids),
    clientId=(plain_ids.map(lambda s: "user-" + s), hostile_ids),
    final=(st.booleans(), hostile_json),
    platform=(st.just("PC"), hostile_json),
    startTime=(unix_times, hostile_times),
    finishTime=(unix_times, hostile_times),
    status=(idenfy_status, hostile_json),
    data=(st.just({"docFirstName": "ZELDA"}), hostile_json),
    fileUrls=(absent(), hostile_json),
    externalRef=(absent(), hostile_json),
)

iso_time_fields = (st.just("2024-01-15T10:30:00.000Z"), or_dropped(st.one_of(iso_times(), texts)))
idvapi_assessment = shaped(
    confidenceLevel=(st.sampled_from(["high", "low"]), hostile_ids),
    overallScore=(st.integers(0, 100), or_dropped(numbers)),
)
idvapi_results = shaped(
    sessionId=(st.uuids().map(str), hostile_json),
    timestamp=iso_time_fields,
    status=(st.sampled_from(["verified", "rejected"]), or_dropped(st.one_of(texts, json_values))),
    faceComparison=(st.just({"isIdentical": True, "confidence": 0.85}), hostile_json),
    verificationAssessment=(idvapi_assessment, hostile_json),
)
idvapi_payloads = shaped(
    check_id=(
        st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper())),
        hostile_ids,
    ),
    user_identifier=(plain_ids.map(lambda s: "user-" + s), hostile_ids),
    verification_result=(idvapi_results, hostile_json),
    completed_at=iso_time_fields,
    selfie_video_url=(st.just("https://storage.example.invalid/s.mp4"), hostile_json),
    id_photo_url=(absent(), hostile_json),
)


# --- bodies -------------------------------------------------------------------------------------


def encode_json(value: Any, style: str) -> bytes:
    """Serialize `value` in one of several ways a sender might (some of them not UTF-8)."""
    if style == "compact":
        return json.dumps(value, separators=(",", ":")).encode()
    if style == "pretty":
        return json.dumps(value, indent=2, sort_keys=False).encode()
    raw = json.dumps(value, ensure_ascii=False)
    if style == "raw-utf8":  # lone surrogates become invalid UTF-8 bytes
        return raw.encode("utf-8", "surrogatepass")
    if style == "utf-16":
        return raw.encode("utf-16", "surrogatepass")
    if style == "utf-8-sig":
        return b"\xef\xbb\xbf" + raw.encode("utf-8", "surrogatepass")
    if style == "gzip":
        return gzip.compress(raw.encode("utf-8", "surrogatepass"), mtime=0)
    if style == "trailing-nul":
        return json.dumps(value).encode() + b"\x00"
    if style == "trailing-garbage":
        return json.dumps(value).encode() + b"}{"
    raise ValueError(f"unknown style {style!r}")


ENCODING_STYLES = [
    "compact",
    "pretty",
    "raw-utf8",
    "utf-16",
    "utf-8-sig",
    "gzip",
    "trailing-nul",
    "trailing-garbage",
]


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON documents from `values`, mostly compact, sometimes oddly encoded."""
    styles = st.one_of(st.just("compact"), st.sampled_from(ENCODING_STYLES))
    return st.builds(encode_json, values, styles)


def deep_document(depth: int, kind: str) -> bytes:
    """Raw JSON nested `depth` levels (beyond any recursion limit when large)."""
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def sized(size: int, kind: str) -> bytes:
    """A body of exactly `size` bytes: a padded JSON object, or raw filler."""
    if kind == "raw":
        return b"x" * size
    head = b'{"id":"evt_pad","type":"identity.verification_session.verified","pad":"'
    tail = b'"}'
    return (head + b"p" * max(0, size - len(head) - len(tail)) + tail)[:size]


def bodies_around(limit: int) -> st.SearchStrategy[bytes]:
    """Bodies a few bytes either side of `limit`, and far over it."""
    sizes = st.one_of(
        st.integers(min_value=limit - 3, max_value=limit + 3),
        st.sampled_from([limit * 4, limit * 64]),
    )
    return st.builds(sized, sizes, st.sampled_from(["json", "raw"]))


def hostile_bodies(
    shaped: st.SearchStrategy[Any], limit: int = FUZZ_BODY_LIMIT
) -> st.SearchStrategy[bytes]:
    """Everything a hostile (or broken) sender might put in a body."""
    return st.one_of(
        encoded(shaped),
        encoded(shaped),  # twice: provider-shaped payloads reach the deepest code
        encoded(json_values),
        st.binary(max_size=256),
        st.builds(deep_document, st.integers(1, 4000), st.just("list")),
        st.builds(deep_document, st.integers(1, 1300), st.just("dict")),
        st.sampled_from([b"", b"null", b"{}", b"[]", b'""', b"\x00", b"\xff\xfe\xfd", b"{" * 3]),
        bodies_around(limit),
    )


# --- headers, content types, query strings -----------------------------------------------------

TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
INTERESTING_HEADERS = [
    "Contiguity-Signature",
    "Idenfy-Signature",
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Transfer-Encoding",
    "Authorization",
    "Cookie",
    "X-Request-ID",
    "X-Forwarded-For",
    "Host",
    "Expect",
    "Accept-Encoding",
]


def random_case(name: str) -> st.SearchStrategy[str]:
    """`name` with each letter's case drawn independently."""
    return st.tuples(*[st.sampled_from(sorted({c.lower(), c.upper()})) for c in name]).map("".join)


header_names = st.one_of(
    st.text(TOKEN_CHARS, min_size=1, max_size=30),
    st.sampled_from(INTERESTING_HEADERS).flatmap(random_case),
)
header_values = st.one_of(
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=40,
    ),
    st.sampled_from(["", " ", "\t", "0", "-1", "99999999999999999999", "gzip", "chunked"]),
    st.integers(min_value=100, max_value=9000).map(lambda n: "v" * n),
)
header_lists = st.one_of(
    st.lists(st.tuples(header_names, header_values), max_size=6),
    # many headers, built rather than drawn one by one (drawing 100 texts is slow)
    st.builds(
        lambda n, name, value: [(f"{name}-{i}", value) for i in range(n)],
        st.integers(min_value=40, max_value=150),
        header_names,
        header_values,
    ),
    st.builds(
        lambda n, name, value: [(name, value)] * n,
        st.integers(min_value=2, max_value=100),
        header_names,
        header_values,
    ),
)


RESERVED_FOR_SIGNED = {
    "contiguity-signature",
    "idenfy-signature",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
}
"""Headers a signed variant sets itself (a random copy would change what is being tested)."""


def normalized(name: str) -> str:
    """How a WSGI server files a header name (case-folded, `_` and `-` alike)."""
    return name.lower().replace("_", "-")


def extra_headers(reserved: set[str] = RESERVED_FOR_SIGNED) -> st.SearchStrategy[Any]:
    """Random headers that leave the reserved ones alone."""
    return header_lists.map(lambda hs: [(k, v) for k, v in hs if normalized(k) not in reserved])


JSON_CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "Application/Json;charset=ISO-8859-1",
    "application/json; charset=utf-16",
    "application/json ; foo=bar",
    "application/json;",
]
OTHER_CONTENT_TYPES = [
    "",
    "text/plain",
    "text/json",
    "application/jsonx",
    "application/json-patch+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "application/octet-stream",
    "application/xml",
    ";application/json",
    "application",
]
content_types = st.one_of(
    st.sampled_from(JSON_CONTENT_TYPES),
    st.sampled_from(OTHER_CONTENT_TYPES),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
)

QUERY_KEYS = ["sessionId", "state", "status", "token", "recommendation", "a", "sessionid", ""]


def encode_query(pairs: list[tuple[str, str]]) -> str:
    """URL-encode pairs (lone surrogates become invalid UTF-8 percent-escapes)."""
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass")


query_values = st.one_of(texts, st.sampled_from(["123456789", "0", "%", "&", "=", "+"]))
query_strings = st.one_of(
    st.just(""),
    st.lists(
        st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), texts), query_values), max_size=6
    ).map(encode_query),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
        max_size=60,
    ),
)

signed_query_strings = st.integers(min_value=0, max_value=3).flatmap(
    lambda i: (
        query_strings
        if i == 0
        else st.lists(st.tuples(plain_ids, plain_ids), max_size=3).map(encode_query)
    )
)
"""For authentic requests: mostly harmless query strings (a control character in the URL is a
400 before authentication, so a hostile query would hide the body from the parser)."""


# --- one request --------------------------------------------------------------------------------


@dataclass
class Hostile:
    """One generated request."""

    path: str
    method: str = "POST"
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    query: str = ""

    def send(self, client):  # type: ignore[no-untyped-def]
        """Send it through a Flask test client."""
        headers = list(self.headers)
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type))
        return client.open(
            self.path,
            method=self.method,
            data=self.body,
            headers=headers,
            query_string=self.query,
        )

    def __repr__(self) -> str:  # shown by hypothesis on failure: keep it readable
        body = (
            self.body
            if len(self.body) <= 2000
            else self.body[:2000] + b"...(%d bytes)" % len(self.body)
        )
        return (
            f"Hostile({self.method} {self.path}?{self.query[:200]} "
            f"content_type={self.content_type!r} headers={self.headers[:10]!r} body={body!r})"
        )


def now_ts() -> int:
    """The current unix time (what the receiver compares a signature's `t` against)."""
    return int(datetime.now(UTC).timestamp())


def new_uuid() -> str:
    """A fresh check id."""
    return str(uuid.uuid4())


# --- the API: bodies, refs, booleans (tests/test_api_fuzz.py) ----------------------------------
#
# The oracles below are written from the README ("Input is held to one rule wherever it enters"),
# not from receiver/inputs.py: a second reading of the same rule.

API_REF_LIMIT = 128
_NOT_IN_A_REF = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def keeps_the_ref_rule(value: Any) -> bool:
    """README: 1 to 128 characters, not only white space, no C0/DEL/C1 control, no surrogate."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= API_REF_LIMIT
        and value.strip() != ""
        and not _NOT_IN_A_REF.search(value)
    )


def json_depth(value: Any) -> int:
    """How deeply a decoded JSON value nests (a scalar is 0, `{}` and `[]` are 1)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


def beyond_strict_json(body: bytes) -> bool:
    """README: a body holding `NaN`/`Infinity` or a number too large for a float is refused."""
    found = []

    def constant(name: str) -> float:
        found.append(name)
        return 0.0

    def number(text: str) -> float:
        if abs(float(text)) == float("inf"):
            found.append(text)
        return 0.0

    try:
        json.loads(body, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError):
        return False
    return bool(found)


def lenient_json(body: bytes) -> tuple[bool, Any]:
    """(True, value) when Python's own (lenient: NaN, any depth it can) parser reads the body."""
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):
        return False, None


REF_TROUBLE = [
    "",
    " ",
    "\t",
    "\u00a0\u2003",
    "a\x00b",
    "\x00",
    "a\x1b[31mred",
    "a\nb",
    "a\x7f",
    "a\x85b",
    "\x9b",
    "a\ud800",
    "\udfff",
    "x" * API_REF_LIMIT,
    "x" * (API_REF_LIMIT + 1),
    "é" * (API_REF_LIMIT + 1),
    "a/b",
    "..",
    "%00",
    "\u202eevil",
]
api_refs = st.one_of(
    plain_ids, st.sampled_from(REF_TROUBLE), hostile_text, long_text, st.text(max_size=20)
)
"""What a client may send where a user ref or session id belongs (as text)."""
api_ref_values = st.one_of(api_refs, api_refs, api_refs, json_values)
"""… or not even text."""
api_bools = st.one_of(
    st.booleans(),
    st.sampled_from([0, 1, 1.0, 0.0, -0.0, 2, "true", "false", "1", "", None, [], {}, [True]]),
    json_values,
)
"""What a client may send where a boolean belongs."""

RAW_API_BODIES = [
    b"",
    b"{}",
    b"null",
    b"0",
    b"true",
    b'"x"',
    b"[]",
    b"[{}]",
    b"NaN",
    b'{"x": NaN}',
    b'{"x": Infinity}',
    b'{"x": -Infinity}',
    b'{"x": 1e999}',
    b'{"x": -1e400}',
    b'{"x": 1e-400}',
    b'{"x": ' + b"9" * 5000 + b"}",
    b'{"x": ' + b"9" * 4000 + b"}",
    b'{"x": "\\ud800"}',
    b'{"\\udfff": 1}',
    b'{"x": "\\u0000"}',
    b"\xef\xbb\xbf{}",
    b'{"a": 1, "a": 2}',
    b"{}\x00",
    b"{" * 3,
    b"[" * 5000,
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"\xff\xfe{\x00}\x00",
]
"""Bodies that json.dumps cannot write: non-standard constants, huge numbers, lone surrogates as
escapes, byte-order marks, depth past Python's recursion limit."""


def api_bodies(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies for an API endpoint: mostly its own shape with hostile fields, else anything."""
    return st.one_of(
        encoded(shaped),
        encoded(shaped),
        encoded(shaped),
        encoded(json_values),
        st.sampled_from(RAW_API_BODIES),
        st.builds(deep_document, st.integers(1, 4000), st.sampled_from(["list", "dict"])),
        st.builds(lambda value: json.dumps({"x": value}).encode(), around_json_depth),
        st.binary(max_size=64),
    )


def ref_segment(value: str) -> str:
    """A ref as one percent-encoded path segment (a lone surrogate becomes invalid UTF-8)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")
