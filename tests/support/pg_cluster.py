"""A private PostgreSQL cluster for one test: initdb into a temporary directory, start, crash
(`stop -m immediate`), restart, stop and remove. It never touches the machine's own PostgreSQL.

`initdb` refuses to run as root, so as root every PostgreSQL command runs as the `postgres` OS
user (`runuser -u postgres -- …`) on a directory that user owns; as any other user the commands
run directly. `PgCluster.available()` says why a cluster cannot be made (the test skips then).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

OS_USER = "postgres"
START_TIMEOUT_SECONDS = 60
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on "
    "-c max_connections=300 -c shared_buffers=64MB"
)
"""fsync and synchronous commit stay on: a crash-restart must keep every committed event.
max_connections covers every process of the chaos stack (each holds a small pool)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl (else PATH's)."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in found:
        if os.access(Path(candidate) / "initdb", os.X_OK) and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


class PgCluster:
    """One private cluster on a free 127.0.0.1 port; use it as a context manager."""

    def __init__(self, port: int | None = None, database: str = "verihook") -> None:
        self.port = port or free_port()
        self.database = database
        self.bin = bin_dir()
        self.as_root = os.geteuid() == 0
        self.root: Path | None = None
        self.restarts = 0

    # ----- availability -------------------------------------------------------------------
    @classmethod
    def available(cls) -> str | None:
        """None when a private cluster can be made here, else the reason it cannot."""
        if bin_dir() is None:
            return "initdb/pg_ctl not found (/usr/lib/postgresql/*/bin or PATH)"
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                return "running as root without runuser (initdb refuses root)"
            try:
                pwd.getpwnam(OS_USER)
            except KeyError:
                return f"running as root and there is no {OS_USER!r} OS user for initdb"
        return None

    # ----- paths and URLs -----------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """PGDATA."""
        assert self.root is not None, "the cluster is not initialised"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """Where the server puts its unix socket (never the system's /var/run/postgresql)."""
        assert self.root is not None, "the cluster is not initialised"
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        """The server log."""
        assert self.root is not None, "the cluster is not initialised"
        return self.root / "postgres.log"

    @property
    def admin_url(self) -> str:
        """The maintenance database (`postgres`), trust auth over TCP."""
        return f"postgresql+psycopg://{OS_USER}@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The test's database."""
        return make_url(self.admin_url).set(database=self.database).render_as_string(False)

    # ----- lifecycle ----------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """Run a PostgreSQL binary (as the postgres OS user when we are root)."""
        assert self.bin is not None
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout)[-2000:]}{self._log_tail()}"
            )
        return done.stdout

    def _log_tail(self) -> str:
        try:
            return "\n--- postgres.log ---\n" + self.log_file.read_text()[-2000:]
        except (OSError, AssertionError):
            return ""

    def start(self) -> PgCluster:
        """initdb (first time), start the server, create the database; wait until it answers."""
        if self.bin is None:
            raise RuntimeError(self.available() or "no PostgreSQL binaries")
        try:
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix="verihook-pg-"))
                self.socket_dir.mkdir()
                if self.as_root:
                    owner = pwd.getpwnam(OS_USER)
                    for path in (self.root, self.socket_dir):
                        os.chown(path, owner.pw_uid, owner.pw_gid)
                self._run(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    OS_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",  # the cluster's files; the server itself runs with fsync on
                )
                self._server_start()
                self._create_database()
            else:
                self._server_start()
        except BaseException:
            self.stop()
            raise
        return self

    def _server_start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} {SERVER_OPTIONS}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "start",
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Block until the server accepts queries (crash recovery included)."""
        deadline = time.monotonic() + timeout
        engine = create_engine(
            self.admin_url, poolclass=NullPool, connect_args={"connect_timeout": 2}
        )
        try:
            while True:
                try:
                    with engine.connect() as connection:
                        connection.execute(text("SELECT 1"))
                        return
                except OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            engine.dispose()

    def _create_database(self) -> None:
        engine = create_engine(self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{self.database}"'))
        finally:
            engine.dispose()

    def crash(self) -> None:
        """Stop like a power cut (`pg_ctl stop -m immediate`: no checkpoint, recovery at start)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def restart(self, *, crash: bool = True, down_seconds: float = 0.0) -> float:
        """Crash (or fast-stop) and start again on the same port; return the seconds it was down.

        `down_seconds` keeps it down a while before starting again.
        """
        began = time.monotonic()
        if crash:
            self.crash()
        else:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        time.sleep(down_seconds)
        self._server_start()
        self.restarts += 1
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop the server (immediately) and remove its directory; safe to call repeatedly."""
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _kill_postmaster(self) -> None:
        """Last resort: SIGKILL the postmaster named in postmaster.pid (ours, by its PID)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 9)
        except (OSError, ValueError, IndexError):
            pass

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
