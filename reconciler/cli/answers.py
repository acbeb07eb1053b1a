"""Small pieces of what commands print and ask: a JSON body laid out for reading, and a
confirmation that a "no" ends without an error."""

from __future__ import annotations

import json

import click

INDENT = "  "


def confirm_or_stop(question: str) -> None:
    """Ask `question`; a "no" prints "Nothing done." and exits 0 (declining is not a failure).
    Ctrl-C or the end of input at the prompt stays click's "Aborted!", exit 1."""
    if not click.confirm(question, default=False):
        click.echo("Nothing done.")
        raise SystemExit(0)


def indented_json(text: str) -> str | None:
    """A JSON object or array laid out one member per line, every token as it was sent (numbers,
    escapes, key order, a key sent twice); None for anything else (shown as it came).

    Re-serializing the parsed value would not do: `0.950` would read `0.95`, and of a key sent
    twice only the last value would show. So the text is re-spaced, not rewritten."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict | list):
        return None
    out: list[str] = []
    depth, index, end = 0, 0, len(text)
    while index < end:
        char = text[index]
        if char == '"':
            close = _string_end(text, index)
            out.append(text[index:close])
            index = close
            continue
        if char in "{[":
            after = _skip_space(text, index + 1)
            if text[after] in "}]":  # an empty one stays on its line: {} or []
                out.append(char + text[after])
                index = after + 1
                continue
            depth += 1
            out.append(char + "\n" + INDENT * depth)
        elif char in "}]":
            depth -= 1
            out.append("\n" + INDENT * depth + char)
        elif char == ",":
            out.append(",\n" + INDENT * depth)
        elif char == ":":
            out.append(": ")
        elif char not in " \t\r\n":
            out.append(char)  # part of a number, true, false or null
        index += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """The index just after the string starting at `start` (valid JSON: it is closed)."""
    index = start + 1
    while text[index] != '"':
        index += 2 if text[index] == "\\" else 1
    return index + 1


def _skip_space(text: str, index: int) -> int:
    while text[index] in " \t\r\n":
        index += 1
    return index
