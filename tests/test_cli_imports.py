"""A fast CLI and a lean receiver worker, checked by what gets imported (not by a stopwatch:
bench/cli_startup.py measures the times), and library loggers that follow VERIHOOK_LOG_LEVEL."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from app import COMMAND_HELP, COMMANDS, cli
from receiver.logs import ROUTINE_LOGGERS, configure_logging
from tests.support.processes import ROOT

PROBE = """
import sys
sys.argv = ["verihook", *{argv!r}]
from app import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("LOADED:" + ",".join(m for m in {watched!r} if m in sys.modules), file=sys.stderr)
"""
HEAVY = ("flask", "redis", "rq", "httpx", "apscheduler", "cryptography.hazmat", "alembic")
VERIHOOK_HEAVY = (
    "receiver.services",
    "receiver.providers",
    "reconciler.replay",
    "reconciler.simulators",
    "reconciler.demo.run",
)


def loaded_by(argv: list[str], watched: tuple[str, ...], tmp_path: Path) -> list[str]:
    """The watched modules a fresh `verihook ARGV…` process imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "VERIHOOK_VAR_DIR": str(tmp_path),
        "VERIHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}",
    }
    code = PROBE.format(argv=argv, watched=watched)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED:"))
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_help_imports_no_command(tmp_path: Path) -> None:
    modules = sorted({target.partition(":")[0] for target in COMMANDS.values()})
    assert loaded_by(["--help"], (*HEAVY, *VERIHOOK_HEAVY, *modules), tmp_path) == []


def test_events_list_imports_only_the_store(tmp_path: Path) -> None:
    loaded_by(["db", "upgrade"], (), tmp_path)
    assert loaded_by(["events", "list"], (*HEAVY, *VERIHOOK_HEAVY), tmp_path) == []


def test_sessions_list_imports_only_the_store(tmp_path: Path) -> None:
    loaded_by(["db", "upgrade"], (), tmp_path)
    watched = (*HEAVY, *VERIHOOK_HEAVY, "reconciler.session_queries", "reconciler.poller")
    assert loaded_by(["sessions", "list"], watched, tmp_path) == []


def test_the_receiver_worker_imports_no_cli_only_module(tmp_path: Path) -> None:
    code = (
        "import sys; from app import create_app; create_app(); "
        "print(sorted(m for m in sys.modules if m.startswith(('reconciler.simulators', "
        "'reconciler.demo', 'reconciler.cli'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env |= {"PYTHONPATH": str(ROOT), "VERIHOOK_VAR_DIR": str(tmp_path)}
    env["VERIHOOK_DATABASE_URL"] = f"sqlite:///{tmp_path / 'v.db'}"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_and_its_summary_matches(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
    assert COMMAND_HELP[name] == first_paragraph
    assert sorted(COMMAND_HELP) == sorted(COMMANDS) == cli.list_commands(click.Context(cli))


@pytest.fixture
def logging_restored() -> Iterator[None]:
    names = ["", *ROUTINE_LOGGERS]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("level", "library"),
    [("DEBUG", "DEBUG"), ("INFO", "WARNING"), ("WARNING", "WARNING"), ("ERROR", "ERROR")],
)
def test_library_loggers_follow_the_level_with_routine_lines_quieter(
    level: str,
    library: str,
    logging_restored: None,
) -> None:
    configure_logging(level)
    assert logging.getLogger().level == logging.getLevelName(level)
    for name in ("apscheduler.executors.default", "rq.worker", "httpx", "alembic.runtime"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.getLevelName(library), name
