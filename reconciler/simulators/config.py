"""Simulator configuration: defaults, validation of partial updates, and seeded chaos dice."""

from __future__ import annotations

import copy
import itertools
import random
import threading
from collections.abc import Mapping
from typing import Any

CHAOS_DEFAULTS: dict[str, Any] = {
    "drop": 0.0,  # probability a webhook/redirect is never sent
    "duplicate": 0.0,  # probability it is sent twice (identical bytes)
    "shuffle": 0.0,  # probability a script's deliveries are held back, sent permuted
    "delay_max": 0.0,  # each delivery waits uniform(0, delay_max) seconds before it is sent
    "status_5xx": 0.0,  # probability a status call answers 503
    "status_429": 0.0,  # probability a status call answers 429 with Retry-After: 1
    "status_garbage": 0.0,  # probability a status call answers 200 with a JSON array (wrong shape)
    "slow_ms": 0,  # every status call sleeps this many milliseconds first
    "seed": None,  # int|str: makes every chaos draw reproducible; None = unseeded
}

COMMON_DEFAULTS: dict[str, Any] = {
    "webhook_url": None,  # where webhooks are POSTed
    "callback_url": None,  # where browser redirects go (nevis; docverify falls back to it)
    "webhook_secret": None,  # signing secret (provider default set by each simulator)
    "retry_on_failure": False,  # retry a failed delivery up to 3 times with short backoff
    "step_interval": 0.05,  # seconds between a script's successive provider statuses
    "delivery_timeout": 10.0,  # seconds allowed per webhook POST / redirect GET
    "max_sessions": 100_000,  # the oldest sessions are forgotten beyond this
    # {variant: share}: a script that names no variant gets one drawn with these probabilities
    # (the provider's real-world variants, e.g. idenfy late_expiry; see each simulator)
    "variants": {},
    "chaos": CHAOS_DEFAULTS,
}

# kind of each key: "url", "secret" (str or None), "credential" (non-empty str), "bool",
# ("float", lo, hi), ("int", lo, hi), ("choice", (values...)), ("shares", (names...)): an object
# {name: probability} over those names, the probabilities summing to at most 1 (replaced whole)
COMMON_KINDS: dict[str, Any] = {
    "webhook_url": "url",
    "callback_url": "url",
    "webhook_secret": "secret",
    "retry_on_failure": "bool",
    "step_interval": ("float", 0.0, 60.0),
    "delivery_timeout": ("float", 0.1, 60.0),
    "max_sessions": ("int", 1, 10_000_000),
}

CHAOS_KINDS: dict[str, Any] = {
    "drop": ("float", 0.0, 1.0),
    "duplicate": ("float", 0.0, 1.0),
    "shuffle": ("float", 0.0, 1.0),
    "delay_max": ("float", 0.0, 60.0),
    "status_5xx": ("float", 0.0, 1.0),
    "status_429": ("float", 0.0, 1.0),
    "status_garbage": ("float", 0.0, 1.0),
    "slow_ms": ("int", 0, 60_000),
    "seed": "seed",
}


class ConfigError(ValueError):
    """A configuration update named an unknown key or carried a bad value."""


def _check(key: str, value: Any, kind: Any) -> Any:
    """Return value if it fits kind, else raise ConfigError."""
    if kind == "url":
        if value is None or (isinstance(value, str) and value.startswith(("http://", "https://"))):
            return value
        raise ConfigError(f"{key}: expected an http(s) URL or null")
    if kind == "secret":
        if value is None or (isinstance(value, str) and value):
            return value
        raise ConfigError(f"{key}: expected a non-empty string or null")
    if kind == "credential":
        if isinstance(value, str) and value:
            return value
        raise ConfigError(f"{key}: expected a non-empty string")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false")
    if kind == "seed":
        if value is None or (isinstance(value, (int, str)) and not isinstance(value, bool)):
            return value
        raise ConfigError(f"{key}: expected an integer, a string or null")
    if kind[0] == "shares":
        return _check_shares(key, value, kind[1])
    if kind[0] == "choice":
        if value in kind[1]:
            return value
        raise ConfigError(f"{key}: expected one of {list(kind[1])}")
    name, low, high = kind
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number")
    if name == "int" and value != int(value):
        raise ConfigError(f"{key}: expected an integer")
    if not low <= value <= high:
        raise ConfigError(f"{key}: expected {low}..{high}")
    return int(value) if name == "int" else float(value)


def _check_shares(key: str, value: Any, names: tuple[str, ...]) -> dict[str, float]:
    """value as {name: probability} if every name is known and the probabilities sum to <= 1."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected an object {{name: probability}}")
    shares = {}
    for name, share in value.items():
        if name not in names:
            raise ConfigError(f"{key}.{name}: unknown (known: {sorted(names)})")
        shares[name] = _check(f"{key}.{name}", share, ("float", 0.0, 1.0))
    if sum(shares.values()) > 1.0 + 1e-9:
        raise ConfigError(f"{key}: the probabilities sum to more than 1")
    return shares


def draw_share(shares: Mapping[str, float], roll: float) -> str | None:
    """The name whose band of cumulative probability holds roll (None past the last band)."""
    total = 0.0
    for name, share in shares.items():
        total += share
        if roll < total:
            return name
    return None


def merge_config(
    current: Mapping[str, Any], update: Mapping[str, Any], kinds: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of current with the validated partial update applied (chaos merges per key)."""
    if not isinstance(update, Mapping):
        raise ConfigError("config must be a JSON object")
    merged = copy.deepcopy(dict(current))
    for key, value in update.items():
        if key == "chaos":
            if not isinstance(value, Mapping):
                raise ConfigError("chaos: expected an object")
            for chaos_key, chaos_value in value.items():
                if chaos_key not in CHAOS_KINDS:
                    raise ConfigError(
                        f"chaos.{chaos_key}: unknown key (known: {sorted(CHAOS_KINDS)})"
                    )
                merged["chaos"][chaos_key] = _check(
                    f"chaos.{chaos_key}", chaos_value, CHAOS_KINDS[chaos_key]
                )
        elif key in kinds:
            merged[key] = _check(key, value, kinds[key])
        else:
            raise ConfigError(f"{key}: unknown key (known: {sorted([*kinds, 'chaos'])})")
    return merged


class ChaosDice:
    """Chaos randomness: one stream for status calls, a fresh stream per script run.

    Seeded, the n-th run always gets the same stream, whatever the timing of other threads.
    """

    def __init__(self, seed: int | str | None) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._status = random.Random(None if seed is None else f"{seed}:status")
        self._variants = random.Random(None if seed is None else f"{seed}:variants")
        self._runs = itertools.count(1)

    def status(self) -> float:
        """Next draw in [0, 1) from the status-call stream."""
        with self._lock:
            return self._status.random()

    def variant(self) -> float:
        """Next draw in [0, 1) from the stream choosing variants from config shares."""
        with self._lock:
            return self._variants.random()

    def next_run(self) -> random.Random:
        """The stream for the next script run (or idvapi submission)."""
        with self._lock:
            number = next(self._runs)
        return random.Random(None if self._seed is None else f"{self._seed}:run:{number}")


def permutation(rng: random.Random, count: int) -> list[int]:
    """A permutation of range(count) drawn from rng, never the identity when count > 1."""
    order = list(range(count))
    rng.shuffle(order)
    if count > 1 and order == sorted(order):
        order = order[1:] + order[:1]
    return order
