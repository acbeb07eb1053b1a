"""serve(): the foreground entry point behind `verihook simulate`, stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD = "from reconciler.simulators import serve; serve('docverify', 0, token_expires_in=60)"


def read_until(process: subprocess.Popen[bytes], marker: str, timeout: float = 10.0) -> list[str]:
    """Lines printed by the child up to and including the one containing marker."""
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + timeout
    while marker not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if ready and not chunk:
            break
        output += chunk.decode("utf-8")
    assert marker in output, f"child did not print {marker!r}; got {output!r}"
    return output.splitlines()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_until_stopped(http: httpx.Client, stop_signal: signal.Signals) -> None:
    command = [sys.executable, "-c", CHILD]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE) as process:
        try:
            lines = read_until(process, "control API:")
            urls = dict(line.strip().split(": ", 1) for line in lines if ": " in line)
            assert urls["base URL"].endswith("/verify")
            assert urls["token URL"].endswith("/oidc/token")
            config = http.get(f"{urls['control API']}/config").json()
            assert config["token_expires_in"] == 60
            process.send_signal(stop_signal)
            assert process.wait(10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
