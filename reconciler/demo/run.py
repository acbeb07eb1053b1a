"""`verihook demo`: the five provider simulators under chaos against verihook's real processes.

It starts the simulators (30 % of webhooks and redirects dropped, 20 % duplicated, deliveries
shuffled and delayed, seeded; the providers' real-world variants mixed in, see
verdict.DEMO_VARIANTS), then verihook on its embedded defaults in a fresh directory: a
private Redis, SQLite, `verihook web`, two `verihook worker`s and one `verihook scheduler`, with
short intervals. It creates sessions through verihook's API, scripts each one's outcome at its
simulator, waits until verihook agrees with every simulator (or a timeout), stops everything it
started and reports who settled what: webhook, healing poll, or an overdue flag.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
from sqlalchemy import create_engine

from receiver.embedded_redis import EmbeddedRedis
from receiver.store.crypto import new_key_spec
from reconciler.demo.processes import ROOT, WORKERS, Processes, wait_until_up
from reconciler.demo.report import (
    DemoReport,
    build_report,
    delivery_notes,
    format_report,
    result_shape_notes,
    review_notes,
    variant_notes,
)
from reconciler.demo.verdict import (
    DEMO_CHAOS,
    DEMO_VARIANTS,
    PlannedSession,
    evaluate,
    plan_sessions,
)

if TYPE_CHECKING:  # the simulators are imported when a demo runs, not with every command
    from reconciler.simulators import Simulator

DEMO_POLICY = {
    "POLL_INTERVAL_SECONDS": "2.5",  # poll-only providers: first poll after the session finished
    "WEBHOOK_DEADLINE_SECONDS": "4",  # webhook providers (iDenfy too): the silence before a poll
    "MAX_POLL_INTERVAL_SECONDS": "10",
    "RATE_LIMIT_PER_SECOND": "100",
}
"""Per-provider settings: short, but every first poll comes after the scripted completion."""

DEMO_SETTINGS = {
    "SCHEDULER_TICK_SECONDS": "0.5",
    "SCHEDULER_SWEEP_SECONDS": "2",
    "LEADER_LOCK_SECONDS": "3",
    "OUTBOX_GRACE_SECONDS": "2",
    "LOG_LEVEL": "WARNING",
}

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phase is "creating" or "settling"."""


def simulator_credentials() -> dict[str, dict[str, Any]]:
    """Fresh credentials for each simulator (and the same for verihook)."""
    token = secrets.token_hex

    return {
        "contiguity": {"api_token": token(16), "webhook_secret": "whsec_" + token(24)},
        "docverify": {"client_id": token(8), "client_secret": token(16)},
        "idvapi": {"api_key": token(16)},
        "idenfy": {"api_key": token(8), "api_secret": token(16), "webhook_secret": token(24)},
        "nevis": {"access_key": token(16)},
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_env(
    sims: Mapping[str, Simulator],
    credentials: Mapping[str, Mapping[str, Any]],
    var_dir: Path,
    **values: str,
) -> dict[str, str]:
    """The environment (DESIGN §4 names) of every verihook process of the demo."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VERIHOOK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["VERIHOOK_VAR_DIR"] = str(var_dir)
    env["VERIHOOK_DATABASE_URL"] = f"sqlite:///{var_dir / 'verihook.db'}"
    env["VERIHOOK_ENCRYPTION_KEYS"] = new_key_spec("demo1")
    env.update({f"VERIHOOK_{key}": value for key, value in {**DEMO_SETTINGS, **values}.items()})
    env.update(simulated_providers_env(sims, credentials, DEMO_POLICY))
    return env


def simulated_providers_env(
    sims: Mapping[str, Simulator],
    credentials: Mapping[str, Mapping[str, Any]],
    policy: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`VERIHOOK_PROVIDERS__<NAME>__…` pointing each provider at its simulator."""
    env = {}
    for name, sim in sims.items():
        prefix = f"VERIHOOK_PROVIDERS__{name.upper()}__"
        provider = {**credentials[name], **(policy or {}), "BASE_URL": sim.url}
        if sim.token_url:
            provider["TOKEN_URL"] = sim.token_url
        env.update({prefix + key.upper(): value for key, value in provider.items()})
    return env


def create_and_script(
    api: httpx.Client, sims: Mapping[str, Simulator], item: PlannedSession
) -> None:
    """Create one session through verihook's API, then script its outcome at the simulator."""
    answer = api.post(
        "/api/v1/sessions", json={"provider": item.provider, "user_ref": item.user_ref}
    )
    if answer.status_code != 201:
        raise click.ClickException(f"creating a {item.provider} session: {answer.text}")
    item.session_id = answer.json()["session_id"]
    sims[item.provider].script(
        item.session_id,
        item.outcome,
        manual=item.manual,
        after=item.after,
        provider_status=item.provider_status,
        variant=item.variant,
    )


@dataclass
class Verihook:
    """The running verihook of a demo: where it listens, its secrets, its processes."""

    url: str
    api_token: str
    path_token: str
    database_url: str
    processes: Processes


def start_verihook(
    sims: Mapping[str, Simulator],
    credentials: Mapping[str, Mapping[str, Any]],
    var_dir: Path,
    redis_url: str,
) -> Verihook:
    """Migrate the database, start web, the workers and the scheduler; wait until they serve."""
    url = f"http://127.0.0.1:{free_port()}"
    api_token, path_token = secrets.token_hex(24), secrets.token_hex(24)
    env = demo_env(
        sims,
        credentials,
        var_dir,
        REDIS_URL=redis_url,
        API_TOKENS=f"backend:{api_token}",
        PUBLIC_URL=url,
        PROVIDERS__IDVAPI__WEBHOOK_TOKEN=path_token,
    )
    processes = Processes(env, var_dir / "logs")
    verihook = Verihook(url, api_token, path_token, env["VERIHOOK_DATABASE_URL"], processes)
    try:
        processes.run("db-upgrade", "db", "upgrade")
        processes.start("web", "web", "--bind", url.removeprefix("http://"))
        for number in range(1, WORKERS + 1):
            processes.start(f"worker-{number}", "worker")
        processes.start("scheduler", "scheduler")
        wait_until_up(url, redis_url, processes)
    except BaseException:
        processes.stop()
        raise
    return verihook


def run_demo(
    sessions: int = 300,
    *,
    chaos: Mapping[str, Any] | None = None,
    var_dir: str | Path | None = None,
    seed: int = 7,
    progress: Progress | None = None,
    timeout: float = 180.0,
    keep: bool = False,
    variants: bool = True,
) -> DemoReport:
    """Run the demo and return its report; everything started is stopped before returning.

    `chaos` defaults to DEMO_CHAOS (seeded per simulator from `seed`); `var_dir` defaults to a
    fresh temporary directory, removed afterwards unless `keep`; `timeout` bounds the wait for
    verihook to agree with the simulators once every session is created; `variants` mixes the
    providers' real-world variants in (DEMO_VARIANTS).
    """
    from reconciler import simulators

    began, own_dir = time.monotonic(), var_dir is None
    path = Path(tempfile.mkdtemp(prefix="verihook-demo-") if var_dir is None else var_dir)
    tell, credentials = _Throttled(progress), simulator_credentials()
    sims: dict[str, Simulator] = {}
    redis, processes = EmbeddedRedis(path), Processes({}, path / "logs")
    try:
        for name in simulators.PROVIDERS:
            sims[name] = simulators.start(name, **credentials[name])
        verihook = start_verihook(sims, credentials, path, redis.start())
        processes = verihook.processes
        point_simulators(sims, verihook.url, verihook.path_token, chaos, seed)
        planned = plan_sessions(sessions, seed, variants=DEMO_VARIANTS if variants else {})
        _create_sessions(verihook, sims, planned, tell)
        results, timed_out = _settle(verihook.database_url, sims, planned, processes, tell, timeout)
        report = build_report(
            results, sims, elapsed_seconds=time.monotonic() - began, timed_out=timed_out
        )
        report.notes += delivery_notes(results) + review_notes(results)
        report.notes += variant_notes(results) + result_shape_notes(sims, planned)
        report.notes += [f"database and logs kept in {path}"] if keep or not own_dir else []
        report.pii = sorted({value for sim in sims.values() for value in sim.pii()})
        return report
    finally:
        processes.stop()
        for sim in sims.values():
            sim.stop()
        redis.stop()
        if own_dir and not keep:
            shutil.rmtree(path, ignore_errors=True)


def _create_sessions(
    verihook: Verihook,
    sims: Mapping[str, Simulator],
    planned: list[PlannedSession],
    tell: _Throttled,
) -> None:
    """Create and script every planned session, one after the other (keeps the chaos seeded)."""
    headers = {"Authorization": f"Bearer {verihook.api_token}"}
    with httpx.Client(base_url=verihook.url, headers=headers, timeout=30.0) as api:
        for done, item in enumerate(planned, 1):
            create_and_script(api, sims, item)
            tell("creating", done, len(planned), final=done == len(planned))


def point_simulators(
    sims: Mapping[str, Simulator],
    url: str,
    path_token: str,
    chaos: Mapping[str, Any] | None,
    seed: int,
) -> None:
    """Tell each simulator where verihook listens, and set its chaos (seeded; {} for none)."""
    for name, sim in sims.items():
        hook = f"{url}/webhooks/{name}" + (f"/{path_token}" if name == "idvapi" else "")
        settings = {"seed": f"{seed}-{name}", **(DEMO_CHAOS if chaos is None else chaos)}
        sim.configure(webhook_url=hook, callback_url=f"{url}/callbacks/{name}", chaos=settings)


def _settle(
    database_url: str,
    sims: Mapping[str, Simulator],
    planned: list[PlannedSession],
    processes: Processes,
    tell: _Throttled,
    timeout: float,
) -> tuple[list[Any], bool]:
    """Judge every session each second until all match the truth or `timeout` passes."""
    deadline = time.monotonic() + timeout
    engine = create_engine(database_url)  # read-only here: no BEGIN IMMEDIATE like verihook's
    try:
        while True:
            results = evaluate(engine, sims, planned)
            settled = sum(result.matches for result in results)
            finished = settled == len(results) or time.monotonic() >= deadline
            tell("settling", settled, len(results), final=finished)
            if finished:
                return results, settled < len(results)
            processes.check_alive()
            time.sleep(1.0)
    finally:
        engine.dispose()


class _Throttled:
    """Calls progress at most once a second, and always for a phase's final count."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.last = progress, 0.0

    def __call__(self, phase: str, done: int, total: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (final or now - self.last >= 1.0):
            self.last = now
            self.progress(phase, done, total)


@click.command()
@click.option("--sessions", default=300, show_default=True, type=click.IntRange(5, 5000))
@click.option("--seed", default=7, show_default=True, type=int, help="Seeds outcomes and chaos.")
@click.option("--keep", is_flag=True, help="Keep the demo's directory (SQLite, logs) afterwards.")
@click.option("--timeout", default=180.0, show_default=True, type=click.FloatRange(1, 3600))
@click.option(
    "--variants/--no-variants",
    default=True,
    show_default=True,
    help="Mix in the providers' real-world variants (late iDenfy expiries, Nevis redirects "
    "without parameters, Contiguity report events, …).",
)
def demo(sessions: int, seed: int, keep: bool, timeout: float, variants: bool) -> None:
    """Run the five simulators under chaos against real verihook processes, then report."""

    def show(phase: str, done: int, total: int) -> None:
        click.echo(f"{phase}: {done}/{total}", err=True)

    mix = "real-world variants mixed in" if variants else "no real-world variants"
    click.echo(f"demo: {sessions} sessions, chaos {DEMO_CHAOS}, {mix}, seed {seed}", err=True)
    report = run_demo(
        sessions, seed=seed, progress=show, timeout=timeout, keep=keep, variants=variants
    )
    click.echo(format_report(report))
    if not report.ok:
        raise click.ClickException(
            f"{len(report.mismatches)} session(s) do not match the simulators"
            + (" (timed out)" if report.timed_out else "")
        )
