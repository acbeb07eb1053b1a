"""ruff's lint rules and its formatting hold on the whole tree (the settings of pyproject.toml),
so a change that `make check` would refuse cannot land through `make test` (what CI runs) either.

Not marked `unit`: `make check` runs ruff itself, first.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.processes import run_tool

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    """ruff with the project's configuration, run from the repository root."""
    return run_tool("ruff", *args, timeout=60)


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")])
def test_ruff_finds_nothing(command: tuple[str, ...]) -> None:
    done = ruff(*command)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_format_check_catches_an_unformatted_file(tmp_path: Path) -> None:
    """`ruff format --check` fails on a file it would change (so the test above can fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text("x = {  'a':1 }\n")
    done = ruff("format", "--check", "--config", str(ROOT / "pyproject.toml"), str(sample))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "would be reformatted" in done.stdout + done.stderr
