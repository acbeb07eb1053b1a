"""`verihook up`: the guided first run and clean stops, as real processes (issue 13).

- With no provider configured (development) it starts the five simulators, says so, and prints a
  block whose token and URLs take a session from creation to `verified` end to end.
- Ctrl-C, sent to the process group as a terminal does, stops receiver, worker and scheduler
  before the private Redis: exit 0, no traceback, no error line; SIGTERM the same; a second
  Ctrl-C forces (exit 130).
- With a provider configured there are no simulators, and a known but unconfigured provider's
  webhook answers 404 `provider not configured`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from receiver.settings import Settings
from reconciler.cli.first_run import wants_simulators
from reconciler.cli.up import local_url
from tests.support import signing
from tests.support.processes import ROOT
from tests.support.redis_server import free_port

START_SECONDS = 60.0


@dataclass
class Up:
    """A running `verihook up`: its process, URL, var dir and output files."""

    process: subprocess.Popen[bytes]
    url: str
    var_dir: Path
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.err.read_text(errors="replace")

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + START_SECONDS
        while text not in self.stdout():
            assert self.process.poll() is None, f"verihook up exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} in time:\n{self.output()}"
            time.sleep(0.2)
        return self.stdout()

    def signal(self, number: int) -> None:
        """As a terminal does: the signal goes to the whole foreground process group."""
        os.killpg(self.process.pid, number)

    def stopped(self) -> int:
        return self.process.wait(timeout=60)


def base_env(var_dir: Path) -> dict[str, str]:
    """A fresh development environment: SQLite and the private Redis under var_dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(ROOT)
    env["VERIHOOK_VAR_DIR"] = str(var_dir)
    env["VERIHOOK_DATABASE_URL"] = f"sqlite:///{var_dir / 'verihook.db'}"
    env["VERIHOOK_WEB_WORKERS"] = "1"
    return env


@contextmanager
def verihook_up(tmp_path: Path, **extra: str) -> Iterator[Up]:
    """Start `verihook up` in a process group of its own (a terminal's foreground job)."""
    var_dir, port = tmp_path / "var", free_port()
    var_dir.mkdir()
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from app import main; main()",
                "up",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            env=base_env(var_dir) | extra,
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    up = Up(process, f"http://127.0.0.1:{port}", var_dir, out, err)
    try:
        yield up
    finally:
        if process.poll() is None:  # a failed test: `up` and its children, each in its group
            for pid in [process.pid, *children_of(process.pid)]:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.wait(timeout=10)


def children_of(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def assert_clean_stop(up: Up) -> None:
    """Exit 0, nothing left serving, and no traceback or error line on the way down."""
    assert up.stopped() == 0, up.output()
    output = up.output()
    for bad in ("Traceback", "ConnectionError", '"level": "ERROR"', "Error 111"):
        assert bad not in output, f"{bad!r} in the output:\n{output}"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{up.url}/healthz", timeout=1)
    socket = up.var_dir / "redis" / "redis.sock"
    with pytest.raises((RedisError, OSError)):
        Redis(unix_socket_path=str(socket), socket_timeout=1).ping()


def test_first_run_simulates_every_provider_and_settles_a_session(tmp_path: Path) -> None:
    with verihook_up(tmp_path) as up:
        block = up.wait_for("status: verified")
        assert "started the five provider\nsimulators on 127.0.0.1" in block
        for name in ("contiguity", "docverify", "idvapi", "idenfy", "nevis"):
            assert re.search(rf"^  {name} +simulated at http://127\.0\.0\.1:\d+", block, re.M)
        assert f"Console: {up.url}/console/" in block
        assert "verihook tokens create --role operator" in block
        token = re.search(r"API token \(backend, this run only, shown once\): (\S+)", block)
        control = re.search(r"idvapi +simulated at \S+ control API (\S+)", block)
        assert token and control, block
        assert re.search(rf"idvapi +webhook  POST {up.url}/webhooks/idvapi/\S+", block)

        tried = subprocess.run(  # the block's three commands, as a user pastes them
            ["bash", "-c", try_it_commands(block)], capture_output=True, text=True, timeout=60
        )
        assert tried.returncode == 0, (tried.stdout, tried.stderr, up.output())
        answers = json_objects(tried.stdout)
        assert answers[0]["session_id"] == "first-user", tried.stdout
        assert (answers[-1]["user_ref"], answers[-1]["status"]) == ("first-user", "verified")

        up.signal(signal.SIGINT)
        assert_clean_stop(up)
        output = up.output()
        assert "stopping (Ctrl-C again to force)" in output
        for routine in ("Running job", "executed successfully", "Job OK", "HTTP Request:"):
            assert routine not in output, f"{routine!r} logged at the default level:\n{output}"


def try_it_commands(block: str) -> str:
    """The shell commands of the block's "Try it" part (its indented lines, comments kept)."""
    lines = block.split("watch verihook settle it from the provider's webhook:\n", 1)[1]
    return "\n".join(line for line in lines.splitlines() if line.startswith("  "))


def json_objects(text: str) -> list[dict[str, object]]:
    """The JSON objects printed one after the other (curl adds no line break of its own)."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (index := text.find("{", index)) >= 0:
        value, index = decoder.raw_decode(text, index)
        found.append(value)
    return found


def test_configured_provider_means_no_simulators_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    contiguity = {"VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET": signing.CONTIGUITY_SECRET}
    with verihook_up(tmp_path, **contiguity) as up:
        block = up.wait_for("API token")
        assert "simulated" not in block and "Providers: contiguity" in block
        assert f"contiguity  webhook  POST {up.url}/webhooks/contiguity" in block
        body = signing.contiguity_event("verified", "vs_up1")
        headers = {
            "Content-Type": "application/json",
            "Contiguity-Signature": signing.contiguity_header(body),
        }
        stored = httpx.post(f"{up.url}/webhooks/contiguity", content=body, headers=headers)
        assert stored.status_code == 200, stored.text
        disabled = httpx.post(f"{up.url}/webhooks/idenfy", content=b"{}", headers=headers)
        assert (disabled.status_code, disabled.json()) == (
            404,
            {"error": "provider not configured"},
        )
        unknown = httpx.post(f"{up.url}/webhooks/acme", content=b"{}", headers=headers)
        assert (unknown.status_code, unknown.json()) == (404, {"error": "unknown provider"})
        gunicorn_refusals_are_json(up.url)
        os.kill(up.process.pid, signal.SIGTERM)  # a service manager signals the main process
        assert_clean_stop(up)


def raw_answer(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (what an HTTP client would refuse to) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def gunicorn_refusals_are_json(url: str) -> None:
    """What gunicorn refuses before the app sees it is answered in JSON too, echoing nothing."""
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    long_line = b"GET /" + b"b" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for request, status, error in (
        (big_header, 431, "request header fields too large"),
        (long_line, 414, "uri too long"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad request"),
    ):
        code, headers, body = raw_answer(url, request)
        assert (code, headers["content-type"]) == (status, "application/json"), body
        assert json.loads(body) == {"error": error}


def test_a_second_ctrl_c_forces(tmp_path: Path) -> None:
    with verihook_up(tmp_path, VERIHOOK_PROVIDERS__NEVIS__ACCESS_KEY="nevis-key") as up:
        up.wait_for("API token")
        up.signal(signal.SIGINT)
        time.sleep(0.3)
        up.signal(signal.SIGINT)
        assert up.stopped() == 130
        assert "Traceback" not in up.output()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{up.url}/healthz", timeout=1)


@pytest.mark.unit
def test_simulators_only_in_development_with_no_provider_configured() -> None:
    assert wants_simulators(Settings())
    assert not wants_simulators(Settings(env="production"))
    assert not wants_simulators(Settings(providers={"nevis": {"access_key": "k"}}))
    assert not wants_simulators(Settings(providers={"docverify": {"client_id": "c"}}))
    assert wants_simulators(Settings(providers={"nevis": {"base_url": "http://x.invalid"}}))
    assert local_url("0.0.0.0:8000") == "http://127.0.0.1:8000"
    assert local_url("127.0.0.1:9000") == "http://127.0.0.1:9000"
