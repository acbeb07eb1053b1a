"""The JSON API for the product backend, operators and auditors (DESIGN §3).

`init_app(app)` registers its blueprints (`views.py`, `audit.py`, `events.py`, `erasure.py`,
`openapi.py`). It imports them when called, so that a command needing only `tokens.py` does not
load the views, spectree and pydantic models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """Register the API's blueprints (all under /api/v1)."""
    from reconciler.api import audit, erasure, events, openapi, views

    for blueprint in (views.bp, audit.bp, events.bp, erasure.bp, openapi.bp):
        app.register_blueprint(blueprint)
