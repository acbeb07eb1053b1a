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
        self._port_is_ours_to_change = port is None  # until the first start
        self.dir: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it answers (at most 10 s). A first start on a port someone took
        meanwhile tries another free port; a restart keeps its port (or fails)."""
        for _ in range(3 if self._port_is_ours_to_change else 1):
            try:
                return self._start()
            except RuntimeError:
                if not self._port_is_ours_to_change:
                    raise
                self.port = free_port()
        raise RuntimeError("redis-server did not start on any of three free ports")

    def _start(self) -> RedisServer:
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
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with Redis.from_url(self.url, socket_timeout=0.5) as client:
                    # ours, not another session's server on a port both took as free
                    # (pytest-xdist workers start theirs at the same moment)
                    if client.info("server")["process_id"] == self.process.pid:
                        self._port_is_ours_to_change = False
                        return self
            except RedisError:
                pass
            time.sleep(0.05)
        code = self.process.poll()
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port} (exit {code})")

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
