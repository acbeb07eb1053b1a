"""A busy `--bind` address said in one line, with a free one to use instead.

gunicorn, given a port something else listens on, retries for five seconds and then exits with
lines of its own ("Connection in use", "Retrying in 1 second", "Can't connect"), which under
`verihook up` end in "verihook web exited with status 1". `up` and `web` look first.
"""

from __future__ import annotations

import errno
import socket

import click

NEAR_PORTS = 20
"""How many ports above a busy one are tried before any free port is suggested."""


def split_bind(bind: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` address (`[::1]:8000` too); None for anything else (a unix
    socket, a port that is not a number), which gunicorn judges itself."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or host.startswith("unix"):
        return None
    return host.strip("[]"), int(port)


def is_busy(host: str, port: int) -> bool:
    """True when binding `host:port` fails because something listens there (gunicorn binds
    with SO_REUSEADDR too, so a port in TIME_WAIT counts as free)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return False  # gunicorn says what is wrong with the host
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def free_port_near(host: str, port: int) -> int:
    """A port above `port` that is free on `host`, else any free one."""
    for candidate in range(port + 1, min(port + NEAR_PORTS, 65535) + 1):
        if not is_busy(host, candidate):
            return candidate
    with socket.socket(socket.getaddrinfo(host, 0)[0][0], socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def refuse_busy_bind(bind: str, command: str) -> None:
    """Exit in one line, naming a free address, when `bind` is taken."""
    address = split_bind(bind)
    if address is None or not is_busy(*address):
        return
    host, port = address
    free = free_port_near(host, port)
    other = f"[{host}]:{free}" if ":" in host else f"{host}:{free}"
    also = f" (make run BIND={other})" if command == "up" else ""
    raise click.ClickException(
        f"{bind} is already in use: serve on another address with "
        f"`verihook {command} --bind {other}`{also}"
    )
