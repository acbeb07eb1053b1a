"""Structured JSON logs. Only named, non-PII fields are emitted; bodies never reach a logger."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import PurePath

SAFE_FIELDS = (
    "provider",
    "event_id",
    "outcome",
    "reason",
    "request_id",
    "job_id",
    "count",
    "session_pk",
    "state",
)
"""The `extra=` fields copied into a log line; anything else passed as extra is dropped."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the safe fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON."""
        line = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in SAFE_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return json.dumps(line, default=str)


ROUTINE_LOGGERS = (
    "apscheduler",  # "Running job …" / "… executed successfully", twice a second
    "rq",  # "Job OK", "Result is kept for …", "Listening on …" for every job
    "rq.worker",  # rq sets this one to INFO itself when imported
    "httpx",  # "HTTP Request: GET …" for every status call and notification
    "httpcore",
    "alembic",  # "Context impl …", "Will assume transactional DDL" at every start
    "werkzeug",  # the simulators' development server
)
"""Libraries whose INFO lines are routine: at INFO they show warnings and errors only, at DEBUG
everything. verihook's own loggers write the one INFO line per meaningful event (a delivery
stored, a batch applied, a session healed, a leader change)."""


def library_level(level: str) -> int:
    """The level of the routine library loggers when verihook logs at `level`."""
    number = logging.getLevelName(level.upper())
    number = number if isinstance(number, int) else logging.INFO
    return number if number <= logging.DEBUG else max(number, logging.WARNING)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON logs to stderr at `level`, routine library lines quieter (idempotent)."""
    root = logging.getLogger()
    for name in ROUTINE_LOGGERS:
        logging.getLogger(name).setLevel(library_level(level))
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())


def crash_site(exc: BaseException) -> str:
    """`OverflowError at providers/idvapi.py:140`: an exception's type and innermost frame.

    Enough to find a bug, and safe to log or store: an exception's message may quote the content
    that caused it (personal data), so it is left out.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    path = PurePath(frames[-1].filename)
    return f"{type(exc).__name__} at {PurePath(*path.parts[-2:])}:{frames[-1].lineno}"
