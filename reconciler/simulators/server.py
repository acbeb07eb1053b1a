"""Serving a simulator: the Simulator handle (HTTP server thread), start() and serve()."""

from __future__ import annotations

import importlib
import signal
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from .base import ProviderSimulator

PROVIDERS = ("contiguity", "docverify", "idvapi", "idenfy", "nevis")
HOST = "127.0.0.1"
_CLASS_NAMES = {
    "contiguity": "ContiguitySimulator",
    "docverify": "DocverifySimulator",
    "idvapi": "IdvapiSimulator",
    "idenfy": "IdenfySimulator",
    "nevis": "NevisSimulator",
}


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Do not log successful requests."""


def engine_class(provider: str) -> type[ProviderSimulator]:
    """The simulator class for a provider name."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
    module = importlib.import_module(f"{__package__}.{provider}")
    simulator_class: type[ProviderSimulator] = getattr(module, _CLASS_NAMES[provider])
    return simulator_class


class Simulator:
    """A running provider simulator on 127.0.0.1; .stop() it or use it as a context manager."""

    def __init__(self, provider: str, port: int = 0, **config: Any) -> None:
        self.provider = provider
        self.engine = engine_class(provider)(**config)
        try:
            self._server = make_server(
                HOST, port, self.engine, threaded=True, request_handler=_QuietRequestHandler
            )
        except BaseException:
            self.engine.close()
            raise
        self.port: int = self._server.server_port
        self.root_url = f"http://{HOST}:{self.port}"
        self.engine.bind(self.root_url)
        self.url = self.engine.url
        self.control_url = f"{self.root_url}/_sim"
        self.token_url = self.root_url + self.engine.token_path if self.engine.token_path else None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"sim-{provider}-http",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Stop serving, close the socket and stop the background threads (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
        self.engine.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until scheduled status changes and deliveries are all done; False on timeout."""
        return self.engine.wait_idle(timeout)

    def configure(self, **update: Any) -> dict[str, Any]:
        """Same as POST /_sim/config; returns the whole config."""
        return self.engine.configure(update)

    def script(
        self,
        session_id: str,
        outcome: str,
        *,
        manual: bool = False,
        after: float = 0.0,
        provider_status: str | None = None,
        variant: str | None = None,
    ) -> dict[str, Any]:
        """Same as POST /_sim/sessions/<id>/script (variant None: drawn from config shares)."""
        request: dict[str, Any] = {"outcome": outcome, "manual": manual, "after": after}
        if provider_status is not None:
            request["provider_status"] = provider_status
        if variant is not None:
            request["variant"] = variant
        return self.engine.script(session_id, request)

    def truth(self, session_id: str) -> dict[str, Any] | None:
        """Same as GET /_sim/sessions/<id> (None when unknown)."""
        return self.engine.truth(session_id)

    def stats(self) -> dict[str, Any]:
        """Same as GET /_sim/stats."""
        return self.engine.stats_snapshot()

    def pii(self) -> list[str]:
        """Same as GET /_sim/pii."""
        return self.engine.pii.values()

    def reset(self) -> None:
        """Same as POST /_sim/reset."""
        self.engine.reset()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Simulator {self.provider} {self.root_url}>"


def start(provider: str, *, port: int = 0, **config: Any) -> Simulator:
    """Start a provider simulator on 127.0.0.1:port (0 = any free port) and return its handle."""
    return Simulator(provider, port, **config)


def serve(provider: str, port: int, **config: Any) -> None:
    """Run a provider simulator in the foreground until Ctrl-C (or SIGTERM)."""
    stop_requested = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    # Both signals only set a flag: a KeyboardInterrupt raised at an arbitrary point (inside a
    # lock's acquire, a thread join) could leave the shutdown hanging.
    previous = {sig: signal.getsignal(sig) for sig in stop_signals} if in_main_thread else {}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop_requested.set())
    try:
        with start(provider, port=port, **config) as simulator:
            token_line = f"\n  token URL:   {simulator.token_url}" if simulator.token_url else ""
            print(
                f"{provider} simulator listening\n  base URL:    {simulator.url}{token_line}\n"
                f"  control API: {simulator.control_url}\nPress Ctrl-C to stop.",
                flush=True,
            )
            while not stop_requested.wait(0.5):
                pass
    except KeyboardInterrupt:  # not in the main thread, or before the handlers were installed
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
