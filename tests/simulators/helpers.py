"""Helpers for the simulator tests: drive the control API over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from reconciler.simulators import Simulator


def script(http: httpx.Client, sim: Simulator, session_id: str, **request: Any) -> dict[str, Any]:
    """POST /_sim/sessions/<id>/script and return the 202 answer."""
    response = http.post(f"{sim.control_url}/sessions/{session_id}/script", json=request)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def truth(http: httpx.Client, sim: Simulator, session_id: str) -> dict[str, Any]:
    """GET /_sim/sessions/<id>."""
    response = http.get(f"{sim.control_url}/sessions/{session_id}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def configure(http: httpx.Client, sim: Simulator, **update: Any) -> dict[str, Any]:
    """POST /_sim/config."""
    response = http.post(f"{sim.control_url}/config", json=update)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
