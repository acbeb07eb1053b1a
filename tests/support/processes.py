"""Run verihook commands as real subprocesses configured like a test's Services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from receiver.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables (DESIGN §4 names) that reproduce `settings` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env["PYTHONPATH"] = str(ROOT)
    for key, value in settings.model_dump(exclude={"providers"}).items():
        if value is None:
            continue
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"VERIHOOK_{key.upper()}"] = str(raw)
    env["VERIHOOK_LOG_LEVEL"] = "WARNING"
    for name in ("contiguity", "docverify", "idvapi", "idenfy", "nevis"):
        for key, value in settings.provider(name).model_dump().items():
            if value is None or value == "":
                continue
            raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[f"VERIHOOK_PROVIDERS__{name.upper()}__{key.upper()}"] = str(raw)
    return env


def verihook(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `verihook ARGS…` as a child process."""
    return subprocess.Popen(
        [sys.executable, "-c", "from app import main; main()", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_tool(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """A development tool (`python -m mypy`, `python -m ruff`) with the project's configuration
    (pyproject.toml), run from the repository root; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
