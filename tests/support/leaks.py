"""Search files for plaintext personal values (the full-run leak test of issue 6)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def read_from_another_process(path: Path) -> bytes:
    """The bytes of `path`, read by a child process.

    Opening and closing a live SQLite file (database, WAL or shm) in *this* process would drop
    every POSIX lock this process holds on it (closing any descriptor of a file releases them all;
    see https://www.sqlite.org/howtocorrupt.html section 2.2). Another process then believes it is
    the last connection, checkpoints and deletes the WAL under our open connections, and the next
    statement fails with "disk I/O error" or "database disk image is malformed".
    """
    return subprocess.run(["cat", "--", str(path)], capture_output=True, check=True).stdout


def encodings(value: str) -> set[bytes]:
    """The byte forms a value could take on disk or in a log: raw UTF-8 and JSON-escaped."""
    escaped = json.dumps(value)[1:-1]
    return {value.encode(), escaped.encode(), escaped.replace("/", "\\/").encode()}


def plaintext_leaks(root: Path, values: list[str]) -> dict[str, list[str]]:
    """{file: [values found in it]} for every file under `root` (database, WAL, logs, ...)."""
    found: dict[str, list[str]] = {}
    needles = {value: encodings(value) for value in values}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = read_from_another_process(path)
        hits = [value for value, forms in needles.items() if any(f in data for f in forms)]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found
