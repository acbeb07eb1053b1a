"""The long-lived things a process needs, built once from the settings and hung off the app.

Nothing here survives a fork: a process that forks after building its Services (gunicorn's
preloading master) calls `after_fork` in the child (receiver/gunicorn_conf.py `post_fork`), which
drops the parent's connections and the ingest writer, waker and refusal ledger, made again on
first use. Without a fork (the tests, `flask run`, gunicorn without preloading) they are made once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from flask import Flask, current_app
from redis import Redis
from sqlalchemy import Engine

from receiver.delivery_log import DeliveryLog
from receiver.embedded_redis import EmbeddedRedis
from receiver.event_writer import EventWriter
from receiver.providers import build_providers
from receiver.providers.base import Provider
from receiver.queue import Waker, connect
from receiver.refusals import RefusalLedger
from receiver.settings import Settings
from receiver.store.crypto import Keyring, load_keyring
from receiver.store.db import make_engine, make_ingest_engine
from receiver.store.statistics import StatisticsKeeper

EXTENSION_KEY = "verihook"


def redis_url_for(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's socket under `var/`."""
    return settings.redis_url or EmbeddedRedis(Path(settings.var_dir)).url


@dataclass
class Services:
    """Settings, database engine, keyring, providers and Redis for one process."""

    settings: Settings
    engine: Engine
    keyring: Keyring
    providers: dict[str, Provider]
    _redis: Redis | None = field(default=None, repr=False)
    _ingest_engine: Engine | None = field(default=None, repr=False)
    _ingest: tuple[EventWriter, Waker] | None = field(default=None, repr=False)
    _ingest_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _refusals: RefusalLedger | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, *, engine: Engine | None = None) -> Services:
        """Build every service from the settings (fails loudly on bad configuration); `engine`:
        one already made from `settings.database_url`."""
        return cls(
            settings=settings,
            engine=engine if engine is not None else make_engine(settings.database_url),
            keyring=load_keyring(settings),
            providers=build_providers(settings),
        )

    @property
    def redis(self) -> Redis:
        """The Redis client (created on first use)."""
        if self._redis is None:
            self._redis = connect(redis_url_for(self.settings))
        return self._redis

    @cached_property
    def delivery_log(self) -> DeliveryLog:
        """The receiver's delivery log lines, sampled under load."""
        return DeliveryLog(self.settings.log_deliveries_per_second)

    @cached_property
    def statistics(self) -> StatisticsKeeper:
        """Keeps the planner statistics of the tables the drain grows fresh (PostgreSQL)."""
        return StatisticsKeeper(self.engine)

    @property
    def event_writer(self) -> EventWriter:
        """This process's group-committing writer of inbound events (made on first use)."""
        return self._ingest_parts()[0]

    @property
    def waker(self) -> Waker:
        """This process's coalescing wake-up of the workers (made on first use)."""
        return self._ingest_parts()[1]

    @property
    def refusals(self) -> RefusalLedger:
        """This process's count of refused deliveries, written in the background (made on
        first use)."""
        found = self._refusals
        if found is None:
            with self._ingest_lock:
                found = self._refusals
                if found is None:
                    found = self._refusals = RefusalLedger(self.engine)
        return found

    def flush_refusals(self) -> None:
        """Write the refusals this process counted and has not written yet (at exit)."""
        if self._refusals is not None:
            self._refusals.flush()

    def _ingest_parts(self) -> tuple[EventWriter, Waker]:
        parts = self._ingest
        if parts is None:
            with self._ingest_lock:
                parts = self._ingest
                if parts is None:
                    if self._ingest_engine is None:
                        url = self.engine.url.render_as_string(hide_password=False)
                        self._ingest_engine = make_ingest_engine(url)
                    writer = EventWriter(self._ingest_engine)
                    waker = Waker(lambda: self.redis, self.settings.queue_name)
                    parts = self._ingest = (writer, waker)
        return parts

    def after_fork(self) -> None:
        """In a forked child: forget the parent's pooled connections without closing them, and
        its ingest writer (and the connection it kept), waker and refusal ledger (their threads
        stayed in the parent)."""
        if self._ingest is not None:
            self._ingest[0].abandon_after_fork()
        self.engine.dispose(close=False)
        if self._ingest_engine is not None:
            self._ingest_engine.dispose(close=False)
        self._redis = None
        self._ingest = None
        self._refusals = None
        self._ingest_lock = threading.Lock()  # the parent may have held it at the fork

    def close(self) -> None:
        """Release connections."""
        if self._ingest is not None:
            self._ingest[0].close()
        self.engine.dispose()
        if self._ingest_engine is not None:
            self._ingest_engine.dispose()
        if self._redis is not None:
            self._redis.close()


def init_app(app: Flask, services: Services) -> None:
    """Attach the services to the app."""
    app.extensions[EXTENSION_KEY] = services


def get_services() -> Services:
    """The current app's services."""
    services: Services = current_app.extensions[EXTENSION_KEY]
    return services
