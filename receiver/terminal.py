"""Safe terminal output: provider-controlled text never reaches an operator's terminal raw.

A webhook body, a header, a query value or an id may hold escape sequences (`ESC ]0;…BEL` sets a
terminal's title, CSI sequences move the cursor or recolour text), C1 controls that some
terminals act on, or bidi overrides that make text read differently from what it is. Every CLI
line that can hold such text goes through `safe()` (a single field: newlines escaped too),
`safe_text()` (a multi-line block: newlines kept) or `safe_json()` (still valid JSON), on a
terminal and in pipes alike: whatever reads the pipe may be a terminal too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

_UNSAFE = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0, DEL, C1 (ESC is \x1b)
    "\u061c\u200e\u200f"  # Arabic letter mark, LRM, RLM
    "\u2028\u2029"  # line and paragraph separators
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides and isolates
    "\ud800-\udfff"  # lone surrogates (not encodable; would crash the write)
    "]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object) -> str:
    """One field for a terminal line: every control, bidi and separator character escaped."""
    return _UNSAFE.sub(_escape, value if isinstance(value, str) else str(value))


def safe_text(value: object) -> str:
    """A multi-line block (a body): like `safe`, but its line breaks stay line breaks."""
    return "\n".join(safe(line) for line in str(value).split("\n"))


def safe_json(data: Any, **options: Any) -> str:
    """JSON whose text holds no control character raw: strings carry them escaped (ESC as \\u001b).

    `ensure_ascii` escapes C0, C1, bidi and everything else outside ASCII; DEL, the one ASCII
    control JSON allows raw, can only occur inside a string, where `\\u007f` means the same.
    """
    options["ensure_ascii"] = True
    return safe_json_text(json.dumps(data, **options))


def safe_json_text(text: str) -> str:
    """JSON text made by `json.dumps` with `ensure_ascii` (the default): its DEL escaped."""
    return text.replace("\x7f", "\\u007f")


def echo(line: object = "", **options: Any) -> None:
    """`click.echo` for lines that may hold provider text: line breaks kept, the rest escaped."""
    click.echo(safe_text(line), **options)
