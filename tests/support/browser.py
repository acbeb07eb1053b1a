"""A real headless browser for end-to-end tests: Debian's chromium driven by Playwright.

Nothing is downloaded at test time (never `playwright install`): Playwright launches the system's
`/usr/bin/chromium`. When either is missing the test is skipped with the reason, unless
VERIHOOK_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("VERIHOOK_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _unavailable(reason: str) -> None:
    if os.environ.get("VERIHOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"VERIHOOK_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def missing_reason() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        elsewhere = shutil.which("chromium")
        hint = f"; one is at {elsewhere} (set VERIHOOK_CHROMIUM)" if elsewhere else ""
        return f"no chromium at {CHROMIUM} (apt-get install chromium){hint}"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless chromium (a Playwright Browser); skips (or fails) when unavailable."""
    reason = missing_reason()
    if reason:
        _unavailable(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


def artifacts_dir(name: str) -> Path:
    """test-artifacts/<name>/, created (screenshots and the like go there)."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path
