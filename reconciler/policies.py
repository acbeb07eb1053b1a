"""Each provider's planning policy, read from the settings."""

from __future__ import annotations

from receiver.settings import Settings
from reconciler.planner import MODES, Policy, policy_for


def policies(settings: Settings) -> dict[str, Policy]:
    """Provider name → policy."""
    built = {}
    for name in MODES:
        ps = settings.provider(name)
        built[name] = policy_for(
            name,
            poll_interval=ps.poll_interval_seconds,
            webhook_deadline=ps.webhook_deadline_seconds,
            ttl=ps.session_ttl_seconds,
            max_interval=ps.max_poll_interval_seconds,
            max_fallback_polls=ps.max_fallback_polls,
        )
    return built
