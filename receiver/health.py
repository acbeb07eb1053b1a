"""`/healthz` (alive), `/readyz` (database, Redis and schema ready) and `/metrics`."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from receiver.metrics import render
from receiver.services import get_services
from receiver.store.migrate import is_at_head

bp = Blueprint("health", __name__)
HEARTBEAT_KEY = "verihook_heartbeat"


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """The process is alive (for a worker or scheduler: its loop beat recently enough)."""
    heartbeat = current_app.extensions.get(HEARTBEAT_KEY)
    if heartbeat is None:  # the receiver: answering is the proof
        return jsonify({"status": "ok"})
    age, limit = heartbeat.age(), get_services().settings.health_max_age_seconds
    alive = age <= limit
    body = {"status": "ok" if alive else "stalled", "last_beat_seconds_ago": round(age, 1)}
    return jsonify(body), (200 if alive else 503)


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
