"""What input from outside may be: one rule for refs and ids, one for JSON, at every entrance.

Pure: no I/O. Webhooks (receiver/providers/base.py), the API's bodies, query strings and path
parameters (reconciler/api/, the `ref` URL converter of receiver/request_rules.py), the console and
the CLI all use these, on SQLite and PostgreSQL alike:

- A **ref or id** (a user ref, a session id) is 1 to MAX_REF_LENGTH characters, not only white
  space, without control characters (C0, DEL, C1) or lone surrogates: PostgreSQL text refuses
  NUL, UTF-8 cannot encode a surrogate, and an operator's terminal must not run what a ref holds.
- **JSON** is nested at most MAX_JSON_DEPTH levels. A body the API reads is also strict JSON: no
  `NaN`/`Infinity`, no number that is infinite as a float, no lone surrogate in any string.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeGuard

MAX_REF_LENGTH = 128
"""The longest user ref or session id accepted anywhere (the columns' length)."""

UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (C0, DEL, C1) and lone surrogates. JSON can carry both (`"\\u0000"`,
`"\\ud800"`), but PostgreSQL text refuses NUL and UTF-8 cannot encode a surrogate, so a value
holding one must never reach a database column."""

SURROGATE = re.compile(r"[\ud800-\udfff]")
"""A lone surrogate: JSON can carry one (`"\\ud800"`), UTF-8 cannot encode it."""

_REF_CHAR = "[^\\u0000-\\u001f\\u007f-\\u009f]"
REF_PATTERN = f"^{_REF_CHAR}*[^\\s\\u0000-\\u001f\\u007f-\\u009f]{_REF_CHAR}*$"
"""The ref rule as a regular expression (JSON Schema, pydantic): no control characters, one
character at least that is not white space. (Lone surrogates are refused by every str check
too; a JSON Schema pattern cannot name them.)"""

REF_RULE = f"1 to {MAX_REF_LENGTH} characters, not only white space, without control characters"
"""The rule in words, for error messages."""

MAX_JSON_DEPTH = 32
"""Deepest nesting accepted in a JSON document (the top value is level 1)."""


def is_ref(value: object) -> TypeGuard[str]:
    """True when `value` may be a user ref or a session id (see the module docstring)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_REF_LENGTH
        and not value.isspace()
        and UNSTORABLE.search(value) is None
    )


def check_ref(value: object, name: str) -> str:
    """`value` when it is a ref (`is_ref`), else ValueError naming the field `name`."""
    if not is_ref(value):
        raise ValueError(f"{name} must be {REF_RULE}")
    return value


def too_deep(value: Any, text: str | bytes | None = None) -> bool:
    """True when a value sits deeper than MAX_JSON_DEPTH (the top object is level 1).

    `text`, the JSON `value` was parsed from, makes the common case cheap: a value cannot sit
    deeper than the number of opening brackets in its text (those inside strings only add to it),
    and its scalars one level deeper.
    """
    if isinstance(text, str):
        text = text.encode()
    if text is not None and text.count(b"{") + text.count(b"[") < MAX_JSON_DEPTH:
        return False
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if not isinstance(item, (dict, list)):
            continue  # a scalar at the top
        children: Any = item.values() if isinstance(item, dict) else item
        if level == MAX_JSON_DEPTH and children:
            return True  # its children would sit one level too deep
        pending.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return False


class JsonRefused(ValueError):
    """A body that is not strict, bounded JSON; the message says why (never quoting it)."""


class NotJson(JsonRefused):
    """A body that is not JSON at all (not even UTF-8, or not the grammar)."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonRefused("a number in the body is out of range")
    return number


def _no_constants(name: str) -> Any:
    raise NotJson(f"{name} is not JSON")


def load_strict_json(body: bytes) -> Any:
    """Decode a body as strict JSON within MAX_JSON_DEPTH; JsonRefused saying what is wrong."""
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_no_constants)
    except RecursionError as exc:
        raise JsonRefused(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except JsonRefused:
        raise
    except ValueError as exc:  # not JSON, not UTF-8, an integer of over 4,300 digits
        raise NotJson("the body is not valid JSON") from exc
    if too_deep(value, body):
        raise JsonRefused(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if _holds_surrogate(value):
        raise JsonRefused("a string in the body holds a lone surrogate")
    return value


def _holds_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
