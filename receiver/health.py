"""`/healthz` (alive), `/readyz` (ready for this process's role) and `/metrics`.

Readiness by role: the web role (the receivers) is ready when the database answers at the newest
schema, which is all that ingest needs (an event and its outbox row are committed without
Redis). Redis is reported there but does not fail it: `"redis": "degraded"` while it is out of
reach, so a Redis outage does not take every receiver out of its load balancer. The worker and
the scheduler (receiver/health_server.py) are useless without Redis, so they are not ready then.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from receiver.metrics import HEARTBEAT, render
from receiver.request_rules import ViewResult
from receiver.services import Services, get_services
from receiver.store.migrate import is_at_head

bp = Blueprint("health", __name__)
HEARTBEAT_KEY = "verihook_heartbeat"
ROLE_KEY = "verihook_role"
WEB_ROLE = "web"
"""The role of a process whose app carries no ROLE_KEY: the receiver."""
DEGRADED = "degraded"
"""A check that is down without making the process unready (Redis, for the web role)."""


def role() -> str:
    """This process's role: `web`, `worker` or `scheduler`."""
    name: str = current_app.extensions.get(ROLE_KEY, WEB_ROLE)
    return name


@bp.get("/healthz")
def healthz() -> ViewResult:
    """The process is alive (for a worker or scheduler: its loop beat recently enough)."""
    heartbeat = current_app.extensions.get(HEARTBEAT_KEY)
    if heartbeat is None:  # the receiver: answering is the proof
        return jsonify({"status": "ok"})
    age, limit = heartbeat.age(), get_services().settings.health_max_age_seconds
    alive = age <= limit
    body = {"status": "ok" if alive else "stalled", "last_beat_seconds_ago": round(age, 1)}
    return jsonify(body), (200 if alive else 503)


def database_checks(services: Services) -> dict[str, bool]:
    """Does the database answer, and is it at the newest schema?"""
    checks = {"database": False, "migrations": False}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
        checks["migrations"] = is_at_head(services.engine)
    except SQLAlchemyError:
        pass
    return checks


def redis_answers(services: Services) -> bool:
    """Does Redis answer PING?"""
    try:
        return bool(services.redis.ping())
    except RedisError:
        return False


@bp.get("/readyz")
def readyz() -> ViewResult:
    """Ready to take traffic for this role; 503 with the failing checks otherwise."""
    services, this_role = get_services(), role()
    checks: dict[str, bool | str] = dict(database_checks(services))
    ready = all(checks.values())
    if redis_answers(services):
        checks["redis"] = True
    elif this_role == WEB_ROLE:
        checks["redis"] = DEGRADED
    else:
        checks["redis"], ready = False, False
    body = {"status": "ready" if ready else "not ready", "role": this_role, "checks": checks}
    return jsonify(body), (200 if ready else 503)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition."""
    if role() == WEB_ROLE:  # a receiver has no loop: answering a scrape is its sign of life
        HEARTBEAT.labels(WEB_ROLE).set(time.time())
    body, content_type = render(get_services().engine)
    return Response(body, content_type=content_type)
