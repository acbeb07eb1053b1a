"""`/healthz` (alive), `/readyz` (database, Redis and schema ready) and `/metrics`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from receiver.metrics import render
from receiver.services import get_services
from receiver.store.migrate import is_at_head

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """Ready to take traffic: the database answers at the newest schema and Redis answers."""
    services = get_services()
    checks = {"database": False, "migrations": False, "redis": False}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
        checks["migrations"] = is_at_head(services.engine)
    except SQLAlchemyError:
        pass
    try:
        checks["redis"] = bool(services.redis.ping())
    except RedisError:
        pass
    ready = all(checks.values())
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), (
        200 if ready else 503
    )


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition."""
    body, content_type = render(get_services().engine)
    return Response(body, content_type=content_type)
