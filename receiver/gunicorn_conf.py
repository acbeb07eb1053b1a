"""gunicorn settings for the verihook receiver (`gunicorn -c python:receiver.gunicorn_conf`).

Providers give up after 10 s (iDenfy, idvapi), so a request may never take longer than 8 s.
gunicorn's access log is off: the app logs each request itself by its route template, never the
path or query string as sent (receiver/request_rules.py), and gunicorn's own lines leave the request
out too: `pre_request` below replaces the default hook that logs every path at debug, and
receiver/gunicorn_worker.py keeps the request line out of the refusals it logs. Metrics from
every worker are aggregated through PROMETHEUS_MULTIPROC_DIR (default `var/prometheus`, emptied
at start).

Worker class: gthread (receiver/gunicorn_worker.py): a client must send each request's head and
body within VERIHOOK_CLIENT_TIMEOUT (default 10 s) or is answered 408 and disconnected, so slow
clients cannot hold the threads; gunicorn's own 400/414/431 answers are in JSON.
Deliveries arriving together on one process share one database commit
(receiver/group_commit.py), which needs several requests in flight per process: with the sync
class a process holds one request at a time, so every delivery pays a commit of its own. The app
is preloaded: the master imports it once and the workers share those pages (copy-on-write; the
objects are frozen out of the garbage collector's reach so that it does not dirty them);
connections are opened only in the workers, after the fork.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
from typing import TYPE_CHECKING

from receiver.logs import ROUTINE_LOGGERS, library_level

if TYPE_CHECKING:  # gunicorn has no type hints: these are Any to mypy, named for the reader
    from gunicorn.arbiter import Arbiter
    from gunicorn.http.message import Request
    from gunicorn.workers.base import Worker

    from receiver.services import Services

wsgi_app = "app:app"
bind = os.environ.get("VERIHOOK_BIND", "127.0.0.1:8000")
# Processes: one per CPU, not gunicorn's 2 × CPUs + 1. Deliveries on one process's threads share
# a commit, so more processes only mean smaller batches, more memory and more database
# connections (bench.ingest, PostgreSQL on 2 CPUs: 2 processes 1,336 deliveries/s, 5 processes
# 1,369, medians of 3; the noise here is ±30%). SQLite (the embedded default) has a
# single writer: processes take turns through a file lock (receiver/store/db.sqlite_write_lock);
# two keep it busy while the other parses and verifies (2,350 vs 1,206 deliveries/s for one),
# more only queue on the lock.
_sqlite = os.environ.get("VERIHOOK_DATABASE_URL", "sqlite:").startswith("sqlite:")
_cpus = multiprocessing.cpu_count()
_default_workers = min(2, _cpus) if _sqlite else _cpus
workers = int(os.environ.get("VERIHOOK_WEB_WORKERS", _default_workers))
worker_class = "receiver.gunicorn_worker.DeadlineThreadWorker"  # gthread + client deadline
threads = int(os.environ.get("VERIHOOK_WEB_THREADS", "8" if _sqlite else "4"))
timeout = 8
graceful_timeout = 8
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("VERIHOOK_LOG_LEVEL", "info").lower()
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True  # gunicorn's control socket wants a writable $HOME
preload_app = True

# gunicorn's own lines ("Starting gunicorn", "Booting worker", "Worker exiting", its refusals of
# malformed requests) in verihook's JSON, on stderr like the app's. gunicorn applies this before it
# loads the app, so the root logger and the routine libraries' levels are set here as
# configure_logging sets them (which then finds the JSON handler and adds no second one).
_LOG_LEVEL = loglevel.upper()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "receiver.logs.JsonFormatter"}},
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": _LOG_LEVEL, "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": _LOG_LEVEL, "handlers": ["json"], "propagate": False},
        **{name: {"level": library_level(_LOG_LEVEL)} for name in ROUTINE_LOGGERS},
    },
}

os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(os.environ.get("VERIHOOK_VAR_DIR", "var"), "prometheus"),
)


def on_starting(server: Arbiter) -> None:  # noqa: ARG001 - gunicorn hook signature
    """Start with an empty metrics directory (stale files would add old counts)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if os.environ.get("VERIHOOK_KEEP_METRICS") != "1":
        shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def pre_fork(server: Arbiter, worker: Worker) -> None:  # noqa: ARG001 - gunicorn hook signature
    """Keep what the preloaded app allocated out of the collector's reach (pages stay shared)."""
    gc.freeze()


def _services(server: Arbiter) -> Services | None:
    """The preloaded app's Services, if it has any."""
    from receiver.services import EXTENSION_KEY

    application = server.app.wsgi()
    services: Services | None = getattr(application, "extensions", {}).get(EXTENSION_KEY)
    return services


def post_fork(server: Arbiter, worker: Worker) -> None:  # noqa: ARG001 - gunicorn hook signature
    """Connections are never shared across a fork: drop any the master's app may hold."""
    services = _services(server)
    if services is not None:
        services.after_fork()


def pre_request(worker: Worker, req: Request) -> None:  # noqa: ARG001 - gunicorn hook signature
    """Nothing: gunicorn's default logs `method path` at debug, and a path may carry idvapi's
    token or a user ref (the app's access log writes the route template instead)."""


def worker_exit(server: Arbiter, worker: Worker) -> None:  # noqa: ARG001 - gunicorn hook signature
    """In the stopping worker: write the refusals it counted and has not written yet."""
    services = _services(server)
    if services is not None:
        services.flush_refusals()


def child_exit(server: Arbiter, worker: Worker) -> None:  # noqa: ARG001 - gunicorn hook signature
    """Forget a dead worker's live gauges."""
    from receiver.metrics import mark_process_dead

    mark_process_dead(worker.pid)
