"""Every command that uses the store fails in one clear line for every database problem (an
unreachable PostgreSQL, an unsupported `mysql://` URL, a store never migrated, a mistyped SQLite
path): exit 1, one line on stderr naming VERIHOOK_DATABASE_URL and what to do, no traceback,
and no file created (not the mistyped path's directory or database, not a development key)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from app import cli
from tests.conftest import create_private_database, drop_private_database
from tests.support.processes import ROOT

READING = [
    ["events", "list"],
    ["events", "show", "1"],
    ["sessions", "list"],
    ["audit", "query"],
    ["audit", "export"],
    ["audit", "verify"],
    ["tokens", "list"],
    ["notifications", "list"],
    ["db", "check"],
]
WRITING = [
    ["events", "replay", "1", "--dry-run"],
    ["replay", "--state", "failed", "--dry-run"],
    ["sessions", "reconcile", "nevis", "123456789"],
    ["sessions", "remerge", "--dry-run"],
    ["tokens", "create", "--role", "operator"],
    ["tokens", "revoke", "ann"],
    ["notifications", "resend", "1"],
    ["notifications", "sweep"],
    ["keys", "rotate"],
    ["purge", "--dry-run"],
    ["users", "forget", "u-1", "--yes"],
    ["outbox", "flush"],
]
"""Every command of every group that reaches the store (the long-running ones aside)."""


@pytest.fixture(scope="module")
def empty_postgres() -> Iterator[str | None]:
    """A PostgreSQL database nobody migrated (None when PostgreSQL is not reachable)."""
    try:
        url = create_private_database()
    except OperationalError:
        if os.environ.get("VERIHOOK_REQUIRE_POSTGRES") == "1":
            raise
        yield None
        return
    yield url
    drop_private_database(url)


def _empty_sqlite(directory: Path, _postgres: str | None) -> str:
    path = directory / "never-migrated.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


PROBLEMS: dict[str, tuple[Callable[[Path, str | None], str | None], str]] = {
    "mysql": (lambda d, pg: "mysql://verihook:pw@127.0.0.1/verihook", "not supported"),
    "postgresql-unreachable": (
        lambda d, pg: "postgresql+psycopg://postgres@127.0.0.1:1/verihook",
        "cannot connect to the PostgreSQL database verihook at 127.0.0.1:1",
    ),
    "sqlite-mistyped-path": (
        lambda d, pg: f"sqlite:///{d}/no/such/dir/verihook.db",
        "no SQLite database at",
    ),
    "sqlite-never-migrated": (_empty_sqlite, "run `verihook db upgrade`"),
    "postgresql-never-migrated": (lambda d, pg: pg, "run `verihook db upgrade`"),
}


def files_under(directory: Path) -> set[Path]:
    return {path.relative_to(directory) for path in directory.rglob("*")}


def run(args: list[str], url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(workdir)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("VERIHOOK_")}
    env |= {"VERIHOOK_DATABASE_URL": url, "VERIHOOK_VAR_DIR": str(workdir / "var")}
    return CliRunner().invoke(cli, args, env=env)


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("args", READING + WRITING, ids=" ".join)
def test_each_command_fails_in_one_line_and_creates_nothing(  # type: ignore[no-untyped-def]
    args, problem, tmp_path, empty_postgres, monkeypatch
):
    make_url, expected = PROBLEMS[problem]
    url = make_url(tmp_path, empty_postgres)
    if url is None:
        pytest.skip("PostgreSQL is not reachable (set VERIHOOK_REQUIRE_POSTGRES=1 to fail)")
    before = files_under(tmp_path)
    result = run(args, url, tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped error
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and "VERIHOOK_DATABASE_URL" in line, line
    assert expected in line and "Traceback" not in result.output
    assert ":pw@" not in line  # the password is masked
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://verihook@127.0.0.1/verihook", "not supported"),
        ("postgresql+psycopg2://verihook@127.0.0.1/verihook", "use postgresql+psycopg://"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/verihook", "cannot connect"),
        ("sqlite:////proc/version/verihook.db", "is a file, not a directory"),
        ("not a url", "is not a database URL"),
    ],
)
def test_db_upgrade_fails_in_one_line(url, expected, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    result = run(["db", "upgrade"], url, tmp_path, monkeypatch)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [line] = result.stderr.splitlines()
    assert "VERIHOOK_DATABASE_URL" in line and expected in line, line
    assert files_under(tmp_path) == set()


def test_db_upgrade_creates_the_sqlite_database_other_commands_then_use(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/new/verihook.db"
    assert run(["events", "list"], url, tmp_path, monkeypatch).exit_code == 1
    assert not (tmp_path / "new").exists()
    upgraded = run(["db", "upgrade"], url, tmp_path, monkeypatch)
    assert upgraded.exit_code == 0, upgraded.output
    listed = run(["events", "list"], url, tmp_path, monkeypatch)
    assert listed.exit_code == 0 and "(no events)" in listed.output, listed.output


def test_the_installed_command_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "VERIHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/mistyped/verihook.db",
        "VERIHOOK_VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from app import main; main()", "events", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: no SQLite database at ") and "VERIHOOK_DATABASE_URL" in line
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_redis_is_one_line_too(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "VERIHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/verihook.db",
        "VERIHOOK_VAR_DIR": str(tmp_path / "var"),
        "VERIHOOK_REDIS_URL": "redis://127.0.0.1:1/0",
    }

    def verihook(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from app import main; main()", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert verihook("db", "upgrade").returncode == 0
    done = verihook("worker", "--burst")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = done.stderr.splitlines()[-1]
    assert line.startswith("Error: cannot reach Redis (VERIHOOK_REDIS_URL=redis://127.0.0.1:1/0)")


@pytest.mark.parametrize(
    ("args", "url", "expected"),
    [
        (["up", "--no-simulators"], "mysql://verihook@127.0.0.1/verihook", "not supported"),
        (["web"], "mysql://verihook@127.0.0.1/verihook", "not supported"),
        (["worker"], "mysql://verihook@127.0.0.1/verihook", "not supported"),
        (["scheduler"], "mysql://verihook@127.0.0.1/verihook", "not supported"),
        (
            ["up", "--no-simulators"],
            "postgresql+psycopg://postgres@127.0.0.1:1/v",
            "cannot connect",
        ),
    ],
    ids=["up-mysql", "web-mysql", "worker-mysql", "scheduler-mysql", "up-unreachable"],
)
def test_the_long_running_commands_fail_in_one_line_too(  # type: ignore[no-untyped-def]
    args, url, expected, tmp_path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIHOOK_")}
    env |= {"PYTHONPATH": str(ROOT), "VERIHOOK_DATABASE_URL": url}
    env["VERIHOOK_VAR_DIR"] = str(tmp_path / "var")
    done = subprocess.run(
        [sys.executable, "-c", "from app import main; main()", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.splitlines()[-1]
    assert line.startswith("Error: ") and "VERIHOOK_DATABASE_URL" in line and expected in line
