"""Search files for plaintext personal values (the full-run leak test of issue 6)."""

from __future__ import annotations

import json
from pathlib import Path


def encodings(value: str) -> set[bytes]:
    """The byte forms a value could take on disk or in a log: raw UTF-8 and JSON-escaped."""
    escaped = json.dumps(value)[1:-1]
    return {value.encode(), escaped.encode(), escaped.replace("/", "\\/").encode()}


def plaintext_leaks(root: Path, values: list[str]) -> dict[str, list[str]]:
    """{file: [values found in it]} for every file under `root` (database, WAL, logs, ...)."""
    found: dict[str, list[str]] = {}
    needles = {value: encodings(value) for value in values}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits = [value for value, forms in needles.items() if any(f in data for f in forms)]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found
