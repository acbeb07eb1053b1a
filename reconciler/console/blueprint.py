"""The console's blueprint and the app-config flag its modules share.

Apart from the package `__init__` (which imports the page modules so that their routes exist):
the page, security and sign-in modules import this module, never the package, so imports run
one way.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")

ENABLED_KEY = "VERIHOOK_CONSOLE_ENABLED"
"""App config flag: False when no signing secret is available (production without one)."""
