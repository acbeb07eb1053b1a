"""The console's blueprint and the app-config flag its modules share.

Apart from the package `__init__` (which imports the page modules so that their routes exist):
the page, security and sign-in modules import this module, never the package, so imports run
one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, url_for

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")

ENABLED_KEY = "VERIHOOK_CONSOLE_ENABLED"
"""App config flag: False when no signing secret is available (production without one)."""


def page_url(endpoint: str, query: Mapping[str, str], **more: str | int) -> str:
    """`url_for(endpoint)` with `query` and `more` as its query string (a typed wrapper: url_for
    types its own keywords, such as `_external`, which a `**dict[str, str]` could collide with)."""
    values: dict[str, Any] = {**query, **more}
    return url_for(endpoint, **values)
