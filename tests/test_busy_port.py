"""`make run BIND=…` reaches `verihook up --bind`, and a busy port is said in one line that names a
free address to use instead (issue 20 item 7), before anything is started."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from reconciler.cli.bind import is_busy
from reconciler.cli.up import up
from reconciler.cli.web import web
from tests.support.processes import ROOT


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(("command", "make_hint"), [(up, True), (web, False)], ids=["up", "web"])
def test_a_busy_port_is_one_line_naming_a_free_one(busy_port: int, command, make_hint, tmp_path):  # type: ignore[no-untyped-def]
    env = {"VERIHOOK_VAR_DIR": str(tmp_path), "VERIHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/v.db"}
    result = CliRunner().invoke(command, ["--bind", f"127.0.0.1:{busy_port}"], env=env)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    name = command.name
    found = re.search(rf"`verihook {name} --bind 127\.0\.0\.1:(\d+)`", lines[0])
    assert found and lines[0].startswith(f"Error: 127.0.0.1:{busy_port} is already in use"), lines
    assert int(found[1]) != busy_port and not is_busy("127.0.0.1", int(found[1]))
    assert (f"(make run BIND=127.0.0.1:{found[1]})" in lines[0]) is make_hint
    assert not (tmp_path / "v.db").exists()  # nothing was started or migrated


def test_make_run_passes_bind_to_verihook_up() -> None:
    dry = subprocess.run(
        ["make", "-n", "run", "BIND=127.0.0.1:18123"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert ".venv/bin/verihook up --bind 127.0.0.1:18123" in dry.stdout.splitlines()
    default = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True)
    assert ".venv/bin/verihook up --bind 127.0.0.1:8000" in default.stdout.splitlines()
