"""What a team setting a provider up needs to check: the URLs to give it, the settings it still
lacks, and whether its API accepts our credentials, asked without creating anything there.

The credential check asks for the status of a session that cannot exist: a 404 means the
provider looked the session up, so it accepted the credentials; 401 or 403 means it refused them.
docverify's OAuth token is fetched anew first (its refusal names the client credentials). idvapi
has no API to ask: its API key only goes into the start URL a person opens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import httpx

from receiver.providers import REGISTRY
from receiver.providers.docverify import DocverifyClient
from receiver.providers.http import ProviderRejected, ProviderUnavailable, time_budget
from receiver.settings import ProviderSettings

PROBE_SECONDS = 8.0
"""What one provider's credential check may take in all (token, attempts and retries)."""

PROBE_SESSION_IDS = {
    "contiguity": "vs_verihook_doctor_probe",
    "docverify": "verihook-doctor-probe",
    "idenfy": "00000000-0000-0000-0000-000000000000",
    "nevis": "000000000",
}
"""Session ids no provider hands out (Nevis's are nine digits from 100000000 on)."""

IDENFY_NOTIFICATIONS = ("auto-finished", "manual-finished", "resubmitted", "cancelled", "expired")
"""iDenfy's notification URLs, in the order of its documentation (one URL per notification)."""

API_KEYS = {
    "contiguity": ("api_token",),
    "docverify": ("client_id", "client_secret"),
    "idvapi": ("api_key",),
    "idenfy": ("api_key", "api_secret"),
    "nevis": ("access_key",),
}
"""The API credentials each provider's client needs (README, "Providers")."""

INBOUND_KEYS = {
    "contiguity": ("webhook_secret",),
    "idvapi": ("webhook_token",),
    "idenfy": ("webhook_secret",),
}
"""What authenticates each provider's webhooks; without it they are answered 404."""


class Level(StrEnum):
    """How a check came out; `fail` makes `verihook doctor` exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it came out, and what it means."""

    name: str
    level: Level
    detail: str

    def to_json(self) -> dict[str, Any]:
        """As `verihook doctor --format json` shows it."""
        return {**asdict(self), "level": self.level.value}


@dataclass(frozen=True)
class DashboardUrl:
    """A URL to paste into the provider's dashboard (or one verihook sends it)."""

    what: str
    method: str
    url: str


def env_name(provider: str, key: str = "") -> str:
    """`VERIHOOK_PROVIDERS__IDENFY__API_KEY` (or the prefix, without a key)."""
    return f"VERIHOOK_PROVIDERS__{provider.upper()}__{key.upper()}"


def masked(secret: str) -> str:
    """The first four characters of a long secret, then an ellipsis (nothing of a short one)."""
    return f"{secret[:4]}…" if len(secret) >= 16 else "…"


def dashboard_urls(
    provider: str, settings: ProviderSettings, public_url: str
) -> list[DashboardUrl]:
    """The URLs a provider must be given, from VERIHOOK_PUBLIC_URL (idvapi's token masked)."""
    base = public_url.rstrip("/")
    if provider == "contiguity":
        return [DashboardUrl("webhook", "POST", f"{base}/webhooks/contiguity")]
    if provider == "docverify":
        return [
            DashboardUrl(
                "callback, sent with each new session", "GET", f"{base}/callbacks/docverify"
            )
        ]
    if provider == "idvapi":
        token = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
        what = f"webhook; the path ends with {env_name(provider, 'webhook_token')}"
        return [DashboardUrl(what, "POST", f"{base}/webhooks/idvapi/{masked(token)}")]
    if provider == "idenfy":
        return [
            DashboardUrl(f"{name} webhook", "POST", f"{base}/webhooks/idenfy/{name}")
            for name in IDENFY_NOTIFICATIONS
        ]
    return [DashboardUrl("redirect", "GET", f"{base}/callbacks/{provider}")]


def missing_settings(provider: str, settings: ProviderSettings) -> list[Check]:
    """A failing check for each setting the provider needs and lacks."""
    found = []
    for key in INBOUND_KEYS.get(provider, ()):
        if not _is_set(getattr(settings, key)):
            found.append(
                Check(
                    "webhooks",
                    Level.FAIL,
                    f"{env_name(provider, key)} is not set: its webhooks are answered 404 "
                    "(provider not configured)",
                )
            )
    lacking = _lacking_api_settings(provider, settings)
    if lacking:
        found.append(
            Check(
                "api settings",
                Level.FAIL,
                f"{', '.join(lacking)} not set: sessions cannot be created or polled",
            )
        )
    return found


def _lacking_api_settings(provider: str, settings: ProviderSettings) -> list[str]:
    """The variables the provider's API client needs and does not have."""
    lacking = [
        env_name(provider, k) for k in API_KEYS[provider] if not _is_set(getattr(settings, k))
    ]
    return lacking + ([] if settings.base_url else [env_name(provider, "base_url")])


def _is_set(value: object) -> bool:
    secret = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return bool(secret)


def check_credentials(provider: str, settings: ProviderSettings, http: httpx.Client) -> Check:
    """Whether the provider's API accepts our credentials (nothing is created there)."""
    if provider not in PROBE_SESSION_IDS:
        return Check(
            "credentials",
            Level.SKIPPED,
            "not checkable: idvapi has no API to ask (its API key only goes into the start URL)",
        )
    if _lacking_api_settings(provider, settings):
        return Check("credentials", Level.SKIPPED, "not checked: API settings missing (above)")
    keys = " and ".join(env_name(provider, k) for k in API_KEYS[provider])
    client = REGISTRY[provider](settings).client(http)
    try:
        with time_budget(PROBE_SECONDS):
            if isinstance(client, DocverifyClient):
                refused = _token_refused(client, keys)
                if refused is not None:
                    return refused
            client.fetch_status(PROBE_SESSION_IDS[provider])
    except ProviderRejected as exc:
        return _rejected(exc.status_code, keys)
    except ProviderUnavailable as exc:
        return Check("credentials", Level.FAIL, f"not checked, the provider did not answer: {exc}")
    except Exception as exc:  # a surprising answer: report it, check the other providers
        return Check("credentials", Level.FAIL, f"not checked: {type(exc).__name__}: {exc}"[:300])
    return Check("credentials", Level.OK, "accepted (a status call was answered)")


def _token_refused(client: DocverifyClient, keys: str) -> Check | None:
    """Fetch a new OAuth token: a failing check if the token endpoint refuses, else None."""
    client.forget_token()
    try:
        client.access_token()
    except ProviderRejected as exc:
        return Check(
            "credentials",
            Level.FAIL,
            f"refused: the OAuth token endpoint answered HTTP {exc.status_code} "
            f"(check {keys}, and TOKEN_URL)",
        )
    return None


def _rejected(status_code: int, keys: str) -> Check:
    """What the provider's refusal of a status call for a session that cannot exist means."""
    if status_code == 404:
        return Check(
            "credentials",
            Level.OK,
            "accepted: a status call for a session that cannot exist was answered 404",
        )
    if status_code in (401, 403):
        return Check(
            "credentials",
            Level.FAIL,
            f"refused: a status call was answered HTTP {status_code} (check {keys})",
        )
    return Check(
        "credentials",
        Level.FAIL,
        f"unexpected HTTP {status_code} to a status call (check the BASE_URL)",
    )
