"""The services RQ jobs use in this process: built on first use, or installed by the worker
command (and tests). Apart from `jobs.py` so that any job module can reach them without importing
the drain: jobs → drain → notify → here runs one way."""

from __future__ import annotations

from receiver.services import Services
from receiver.settings import load_settings

_services: Services | None = None


def services() -> Services:
    """This worker process's services (built on first use, then reused by every job)."""
    global _services
    if _services is None:
        _services = Services.build(load_settings())
    return _services


def use_services(value: Services | None) -> None:
    """Install the services jobs use (the worker command and tests call this)."""
    global _services
    _services = value
