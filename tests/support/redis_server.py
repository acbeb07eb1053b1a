"""A private, real redis-server on a free 127.0.0.1 port, for tests that start and kill Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

from redis import Redis
from redis.exceptions import RedisError

from receiver.embedded_redis import redis_server_binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """Start, stop (kill -9) and restart a redis-server that keeps nothing on disk.

    Its working directory is a temporary one made by `start()` and removed by `kill()`.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it answers PING (at most 10 s)."""
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="verihook-redis-")
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with Redis.from_url(self.url, socket_timeout=0.5) as client:
                    if client.ping():
                        return self
            except RedisError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """kill -9 the server, wait for it and remove its directory."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    stop = kill
