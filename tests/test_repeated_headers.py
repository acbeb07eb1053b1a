"""A signature header sent on two lines is refused, through `verihook web` (gunicorn).

gunicorn joins repeated header lines with "," before a WSGI app sees them, so two
`Contiguity-Signature` lines, a genuine one and a bare `v1=…`, used to reach the app as one
header holding two signatures (the multi-signature form Contiguity allows) and verify. The
receiver's gunicorn worker now keeps such lines apart (receiver/gunicorn_worker.py) and
`Delivery.single_header` refuses the repeat. The requests here are written byte by byte on a
socket, since HTTP clients merge repeated headers themselves.

The Flask test client (and werkzeug's own server) join the lines too and say nothing about it:
behind them the joined form is judged as one value (tests/test_bypass_catalogue.py); what runs
in production is gunicorn with this worker (`verihook web`, `verihook up`, deploy/).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from receiver.canonical import Source
from receiver.providers.base import Delivery, repeated_header_lines, separate_header_lines
from receiver.services import Services
from receiver.store.models import InboundEvent
from tests.support import signing
from tests.support.flow import count
from tests.support.processes import settings_env, verihook
from tests.support.redis_server import free_port

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
"""The server's side is what is tested: one backend is enough."""


@pytest.fixture
def web(services: Services, tmp_path: Path) -> Iterator[str]:
    """`verihook web` (gunicorn, one worker) on the test's database; its base URL."""
    port = free_port()
    env = settings_env(services.settings)
    env.update({"VERIHOOK_WEB_WORKERS": "1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    server = verihook("web", "--bind", f"127.0.0.1:{port}", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "verihook web did not start"
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def post(
    base: str, path: str, body: bytes, header_lines: list[tuple[str, str]]
) -> tuple[int, dict]:  # type: ignore[type-arg]
    """POST `body` with exactly these header lines (repeats included); (status, JSON answer)."""
    host, port = base.removeprefix("http://").split(":")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in header_lines),
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    answer = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(answer)


def stored(engine: Engine) -> int:
    return count(engine, InboundEvent)


@SQLITE_ONLY
def test_two_contiguity_signature_lines_are_refused_even_when_one_is_genuine(  # type: ignore[no-untyped-def]
    web, engine
):
    body = signing.contiguity_event("verified", "vs_lines")
    genuine = signing.contiguity_header(body)
    bare_v1 = f"v1={'0' * 64}"
    name = "Contiguity-Signature"
    for lines in (
        [(name, genuine), (name, bare_v1)],  # was accepted: joined as t=…,v1=<genuine>,v1=0…
        [(name, bare_v1), (name, genuine)],
        [(name, genuine), (name, genuine)],  # the same line twice
        [(name, genuine), (name.lower(), bare_v1)],  # names are case-insensitive
    ):
        assert post(web, "/webhooks/contiguity", body, lines) == (
            401,
            {"error": "authentication failed"},
        ), lines
    assert stored(engine) == 0
    # One line with two signatures (a sender rotating its secret) is still one header: accepted.
    status, answer = post(web, "/webhooks/contiguity", body, [(name, f"{genuine},{bare_v1}")])
    assert (status, answer["status"]) == (200, "accepted")
    assert stored(engine) == 1


@SQLITE_ONLY
def test_two_idenfy_signature_lines_are_refused(web, engine):  # type: ignore[no-untyped-def]
    body = signing.idenfy_result("APPROVED")
    genuine = signing.idenfy_signature(body)
    name = "Idenfy-Signature"
    for lines in ([(name, genuine), (name, genuine)], [(name, genuine), (name, "0" * 64)]):
        assert post(web, "/webhooks/idenfy", body, lines)[0] == 401, lines
    assert stored(engine) == 0
    assert post(web, "/webhooks/idenfy", body, [(name, genuine)])[0] == 200


@pytest.mark.unit
def test_repeated_lines_are_given_back_one_entry_per_line_in_order() -> None:
    headers = [("Accept", "a"), ("X-Trace", "1"), ("accept", "b"), ("ACCEPT", "c")]
    assert repeated_header_lines(headers) == {"accept": ["a", "b", "c"]}
    joined = (("Accept", "a,b,c"), ("X-Trace", "1"))
    separated = separate_header_lines(joined, repeated_header_lines(headers))
    assert separated == (("Accept", "a"), ("Accept", "b"), ("Accept", "c"), ("X-Trace", "1"))
    delivery = Delivery(provider="p", source=Source.WEBHOOK, body=b"", headers=separated)
    assert delivery.header_values("accept") == ["a", "b", "c"]
