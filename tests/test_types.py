"""mypy --strict holds on receiver/, reconciler/ and app.py (the [tool.mypy] settings of
pyproject.toml), and those settings do catch what they are there for.

Not marked `unit`: `make check` runs mypy itself, before the unit tests; `make test` runs this.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.processes import run_tool

ROOT = Path(__file__).resolve().parent.parent


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """mypy with the project's configuration (pyproject.toml), run from the repository root."""
    return run_tool("mypy", *args, timeout=280)


@pytest.mark.timeout(300)
def test_mypy_strict_finds_nothing() -> None:
    done = mypy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("def f(x):\n    return x\n", "[no-untyped-def]"),
        ("import random\nif random.random() > 0.5:\n    y = 1\nprint(y)\n", "[possibly-undefined]"),
        ("x: int = 1  # type: ignore[assignment]\n", "[unused-ignore]"),
        ("x: int = 'a'  # type: ignore\n", "[ignore-without-code]"),
    ],
)
def test_the_settings_catch(code: str, error: str, tmp_path: Path) -> None:
    """The configuration is strict, flags a maybe-unbound name, and wants each ignore used and
    narrow (a snippet checked with pyproject.toml's settings, less what to check)."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    lines = ["[mypy]"] + [
        f"{key} = {', '.join(value) if isinstance(value, list) else value}"
        for key, value in settings.items()
        if key not in ("packages", "modules", "exclude", "overrides")
    ]
    config = tmp_path / "mypy.ini"
    config.write_text("\n".join(lines) + "\n")
    done = mypy("--config-file", str(config), "--no-incremental", "-c", code)
    assert done.returncode == 1, done.stdout + done.stderr
    assert error in done.stdout, done.stdout
