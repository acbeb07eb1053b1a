"""The long-lived things a process needs, built once from the settings and hung off the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app
from redis import Redis
from sqlalchemy import Engine

from receiver.embedded_redis import EmbeddedRedis
from receiver.providers import build_providers
from receiver.providers.base import Provider
from receiver.queue import connect
from receiver.settings import Settings
from receiver.store.crypto import Keyring, load_keyring
from receiver.store.db import make_engine

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

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Build every service from the settings (fails loudly on bad configuration)."""
        return cls(
            settings=settings,
            engine=make_engine(settings.database_url),
            keyring=load_keyring(settings),
            providers=build_providers(settings),
        )

    @property
    def redis(self) -> Redis:
        """The Redis client (created on first use)."""
        if self._redis is None:
            self._redis = connect(redis_url_for(self.settings))
        return self._redis

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()
        if self._redis is not None:
            self._redis.close()


def init_app(app: Flask, services: Services) -> None:
    """Attach the services to the app."""
    app.extensions[EXTENSION_KEY] = services


def get_services() -> Services:
    """The current app's services."""
    return current_app.extensions[EXTENSION_KEY]
