"""What `verihook up` tells a new user, and the simulators of its guided first run.

In development, with no provider configured at all, `up` starts the five provider simulators on
127.0.0.1 and points verihook at them (and them at verihook), so the main job can be watched end
to end: a session created through the API, finished at its (simulated) provider, settled by the
provider's webhook. Never in production, and never once any provider has a credential.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from receiver.settings import ProvidersSettings, Settings

if TYPE_CHECKING:
    from reconciler.simulators import Simulator

PROVIDER_NAMES = tuple(ProvidersSettings.model_fields)
EXAMPLE_USER = "first-user"
WHERE = {
    "contiguity": "webhook  POST {url}/webhooks/contiguity",
    "docverify": "callback GET  {url}/callbacks/docverify",
    "idvapi": "webhook  POST {url}/webhooks/idvapi/{token}",
    "idenfy": "webhook  POST {url}/webhooks/idenfy",
    "nevis": "redirect GET  {url}/callbacks/nevis",
}
"""The URL to give each provider (README, "Providers")."""


def configured_providers(settings: Settings) -> list[str]:
    """Providers given any credential (each one's endpoints answer only when it has them)."""
    return settings.configured_providers()


def wants_simulators(settings: Settings) -> bool:
    """The guided first run: development, and no provider configured at all."""
    return not settings.is_production and not configured_providers(settings)


def start_simulators(sims: dict[str, Simulator], url: str) -> dict[str, str]:
    """Start the five simulators, each pointed at verihook; return verihook's provider env."""
    from reconciler import simulators
    from reconciler.demo.run import point_simulators, simulated_providers_env, simulator_credentials

    credentials = simulator_credentials()
    for name in PROVIDER_NAMES:
        sims[name] = simulators.start(name, **credentials[name])
    path_token = secrets.token_urlsafe(24)
    point_simulators(sims, url, path_token, {}, 0)
    env = simulated_providers_env(sims, credentials)
    env["VERIHOOK_PROVIDERS__IDVAPI__WEBHOOK_TOKEN"] = path_token
    return env


def first_run_block(
    url: str, env: dict[str, str], sims: dict[str, Simulator], settings: Settings
) -> str:
    """What runs where, the URL to give each provider, the console, a token, a first session."""
    lines = [f"verihook is up on {url} (Ctrl-C stops it)", ""]
    token = env.get("VERIHOOK_PROVIDERS__IDVAPI__WEBHOOK_TOKEN", "<WEBHOOK_TOKEN>")
    if sims:
        lines += [
            "No provider is configured, so this development run started the five provider",
            "simulators on 127.0.0.1 and wired verihook to them (never in production, and never",
            "once any VERIHOOK_PROVIDERS__<NAME>__… credential is set):",
        ]
        for name, sim in sims.items():
            lines.append(f"  {name:<11} simulated at {sim.root_url}, control API {sim.control_url}")
    else:
        enabled = configured_providers(settings)
        lines.append("Providers: " + (", ".join(enabled) or "none configured"))
        if settings.is_production and not enabled:
            lines.append("  (production: no simulators; configure VERIHOOK_PROVIDERS__<NAME>__…)")
    lines += ["", "Give each provider this URL:"]
    shown = list(sims) or configured_providers(settings)
    lines += [f"  {name:<11} {WHERE[name].format(url=url, token=token)}" for name in shown]
    lines += ["", f"Console: {url}/console/  (sign in with an operator token:"]
    lines += ["  verihook tokens create --role operator --name you)"]
    api_token = _dev_token(env, settings)
    if api_token:
        lines += [f"API token (backend, this run only, shown once): {api_token}"]
    else:
        lines += ["API token: verihook tokens create --role backend --name my-app"]
    if sims and api_token:
        lines += ["", *try_it(url, api_token, sims["idvapi"].control_url)]
    return "\n".join(lines)


def _dev_token(env: dict[str, str], settings: Settings) -> str | None:
    if settings.api_tokens:
        return None
    role, _, token = env.get("VERIHOOK_API_TOKENS", "").partition(":")
    return token if role == "backend" else None


def try_it(url: str, token: str, control_url: str) -> list[str]:
    """Three commands: create a session, let the simulator finish it, wait until it settled
    (the user is unknown, 404, until the provider's webhook has been applied)."""
    auth = f"-H 'Authorization: Bearer {token}'"
    body = f'{{"provider":"idvapi","user_ref":"{EXAMPLE_USER}"}}'
    return [
        "Try it: create a session through verihook, finish it at the (simulated) provider, and",
        "watch verihook settle it from the provider's webhook:",
        f"  curl -s {auth} -H 'Content-Type: application/json' \\",
        f"       -d '{body}' {url}/api/v1/sessions",
        "  curl -s -H 'Content-Type: application/json' -d '{\"outcome\":\"verified\"}' \\",
        f"       {control_url}/sessions/{EXAMPLE_USER}/script",
        f"  until curl -sf {auth} {url}/api/v1/users/{EXAMPLE_USER}; do sleep 1; done",
        "       # 404 (user unknown) until the webhook is applied, then the user, status: verified",
    ]
