"""ProviderSimulator: the core plus the control API under /_sim/ and the script runner."""

from __future__ import annotations

import copy
import functools
import random
from dataclasses import dataclass, field
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .config import ChaosDice, ConfigError, draw_share, merge_config, permutation
from .core import SimulatorCore
from .delivery import Delivery
from .httputil import json_body, json_response
from .session import SimSession, Step, new_stats

MAX_AFTER_S = 3600.0


class ScriptError(Exception):
    """A script request that cannot be carried out; status is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ScriptRun:
    """One running script: its steps, and the deliveries held back when shuffling."""

    session: SimSession
    generation: int
    steps: list[Step]
    rng: random.Random
    held_back: list[Delivery] | None
    finished: bool = field(default=False)


class ProviderSimulator(SimulatorCore):
    """Base class of the five provider simulators: core, control API and script runner."""

    def control_rules(self) -> list[Rule]:
        """Routes of the control API."""
        return [
            Rule("/_sim/config", methods=["GET", "POST"], endpoint="sim_config"),
            Rule("/_sim/reset", methods=["POST"], endpoint="sim_reset"),
            Rule("/_sim/stats", methods=["GET"], endpoint="sim_stats"),
            Rule("/_sim/pii", methods=["GET"], endpoint="sim_pii"),
            Rule("/_sim/sessions", methods=["GET"], endpoint="sim_sessions"),
            Rule("/_sim/sessions/<session_id>", methods=["GET"], endpoint="sim_session"),
            Rule("/_sim/sessions/<session_id>/script", methods=["POST"], endpoint="sim_script"),
        ]

    # ----- Python API (also used by the Simulator handle) ------------------------------------
    def configure(self, update: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial config update (raises ConfigError); return the whole config."""
        with self.lock:
            self.config = merge_config(self.config, update, self.kinds)
            if "seed" in update.get("chaos", {}):
                self.dice = ChaosDice(self.config["chaos"]["seed"])
            return copy.deepcopy(self.config)

    def reset(self) -> None:
        """Forget sessions, queued work, stats and PII; restore the start-up config and seed."""
        with self.lock:
            self.timers.clear()
            self.lanes.clear()
            for session in self.sessions.values():
                self.abort_script(session)
            self.sessions.clear()
            self.stats = new_stats()
            self.pii.clear()
            self.config = copy.deepcopy(self.initial_config)
            self.dice = ChaosDice(self.config["chaos"]["seed"])
            self.reset_provider_state()

    def truth(self, session_id: str) -> dict[str, Any] | None:
        """The simulator's truth about one session, or None if unknown."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return None
            return copy.deepcopy(session.truth(self.canonical(session), self.truth_extra(session)))

    def stats_snapshot(self) -> dict[str, Any]:
        """A copy of the counters."""
        with self.lock:
            return copy.deepcopy(self.stats)

    def abort_script(self, session: SimSession) -> None:
        """Make any running script of session stop at its next step."""
        session.script_generation += 1
        session.script_active = False

    def script(self, session_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Schedule the steps taking a session to an outcome (raises ScriptError).

        request: {"outcome", "manual"?, "after"?, "provider_status"?, "variant"?}; a variant
        named (or null for none) wins over one drawn from config "variants"."""
        outcome, manual = request.get("outcome"), request.get("manual", False)
        after, provider_status = request.get("after", 0), request.get("provider_status")
        if not isinstance(manual, bool):
            raise ScriptError(400, "manual must be true or false")
        if manual and not self.manual_outcomes:
            raise ScriptError(400, f"{self.name} has no manual review to simulate")
        valid = self.manual_outcomes if manual else self.outcomes
        if outcome not in valid:
            raise ScriptError(
                400, f"outcome must be one of {list(valid)}{' with manual' if manual else ''}"
            )
        if (
            isinstance(after, bool)
            or not isinstance(after, (int, float))
            or not 0 <= after <= MAX_AFTER_S
        ):
            raise ScriptError(400, f"after must be a number of seconds in 0..{MAX_AFTER_S:g}")
        if provider_status is not None and provider_status not in self.alternatives.get(
            outcome, ()
        ):
            raise ScriptError(
                400,
                f"provider_status for {outcome!r} must be one of "
                f"{list(self.alternatives.get(outcome, ()))}",
            )
        named = "variant" in request
        variant = request.get("variant")
        if variant is not None:
            self._check_variant(variant, outcome, manual, provider_status)
        with self.lock:
            session = self.sessions.get(session_id) or self.implicit_session(session_id)
            if session is None:
                raise ScriptError(404, f"no session {session_id!r}")
            if (
                session.deleted
                or session.script_active
                or (session.final and not self.rescript_final)
            ):
                raise ScriptError(
                    409, f"session {session_id!r} is deleted, final or already scripted"
                )
            if not named and self.config["variants"]:
                variant = self._drawn_variant(outcome, manual, provider_status)
            steps = self.plan(session, outcome, manual, provider_status, variant)
            self.abort_script(session)
            session.script_active = True
            session.scripted_outcome = outcome
            session.variant = variant
            rng = self.dice.next_run()
            shuffled = rng.random() < self.config["chaos"]["shuffle"]
            held_back: list[Delivery] | None = [] if shuffled else None
            run = ScriptRun(session, session.script_generation, steps, rng, held_back)
            pauses = 0.0
            for index, step in enumerate(steps):
                pauses += step.pause
                delay = float(after) + index * self.config["step_interval"] + pauses
                self.timers.submit(delay, functools.partial(self._run_step, run, index))
            return {
                "id": session.id,
                "outcome": outcome,
                "manual": manual,
                "after": after,
                "variant": variant,
                "steps": [step.status for step in steps],
                "shuffled": shuffled,
            }

    def _check_variant(
        self, variant: Any, outcome: str, manual: bool, provider_status: str | None
    ) -> None:
        """Raise ScriptError(400) unless variant is one of ours and fits the script."""
        if not isinstance(variant, str) or variant not in self.variants:
            known = list(self.variants)
            raise ScriptError(400, f"variant must be null or one of {known}")
        problem = self.variant_problem(variant, outcome, manual, provider_status)
        if problem is not None:
            raise ScriptError(400, f"variant {variant!r}: {problem}")

    def _drawn_variant(self, outcome: str, manual: bool, provider_status: str | None) -> str | None:
        """A variant drawn by config "variants" shares; None when the draw does not fit (lock
        held)."""
        drawn = draw_share(self.config["variants"], self.dice.variant())
        if drawn is None or self.variant_problem(drawn, outcome, manual, provider_status):
            return None
        return drawn

    def _run_step(self, run: ScriptRun, index: int) -> None:
        """Apply step index of run, unless the script was aborted or the simulator reset."""
        with self.lock:
            session = run.session
            current = self.sessions.get(session.id) is session
            alive = current and session.script_generation == run.generation and not session.deleted
            if alive:
                deliveries = run.steps[index].apply(session)
                if run.held_back is None:
                    self.emit(session, deliveries, run.rng)
                else:
                    run.held_back.extend(deliveries)
            if run.finished or (alive and index < len(run.steps) - 1):
                return
            run.finished = True
            if session.script_generation == run.generation:
                session.script_active = False
            if current and run.held_back:
                order = permutation(run.rng, len(run.held_back))
                self.emit(session, [run.held_back[position] for position in order], run.rng)

    # ----- HTTP handlers --------------------------------------------------------------------
    def on_sim_config(self, request: Request) -> Response:
        """GET: the config; POST: apply a partial update."""
        if request.method == "GET":
            with self.lock:
                return json_response(self.config)
        update = json_body(request)
        if update is None:
            return json_response(
                {"error": "invalid_config", "message": "expected a JSON object"}, 400
            )
        try:
            return json_response(self.configure(update))
        except ConfigError as exc:
            return json_response({"error": "invalid_config", "message": str(exc)}, 400)

    def on_sim_reset(self, request: Request) -> Response:
        """Reset all state."""
        self.reset()
        return json_response({"reset": True})

    def on_sim_stats(self, request: Request) -> Response:
        """The counters."""
        return json_response(self.stats_snapshot())

    def on_sim_pii(self, request: Request) -> Response:
        """Every fake PII string generated so far, as a JSON list."""
        return json_response(self.pii.values())

    def on_sim_sessions(self, request: Request) -> Response:
        """The ids of all known sessions."""
        with self.lock:
            return json_response({"sessions": list(self.sessions)})

    def on_sim_session(self, request: Request, session_id: str) -> Response:
        """The truth about one session."""
        found = self.truth(session_id)
        if found is None:
            return json_response(
                {"error": "not_found", "message": f"no session {session_id!r}"}, 404
            )
        return json_response(found)

    def on_sim_script(self, request: Request, session_id: str) -> Response:
        """Script a session to an outcome."""
        body = json_body(request)
        if body is None:
            return json_response(
                {"error": "invalid_script", "message": "expected a JSON object"}, 400
            )
        try:
            return json_response(self.script(session_id, body), 202)
        except ScriptError as exc:
            return json_response({"error": "invalid_script", "message": str(exc)}, exc.status)
