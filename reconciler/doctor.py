"""`verihook doctor`: what is wrong with a provider's setup, on one screen.

For each configured provider: the URLs to give it, the settings it lacks, whether its API takes
our credentials (reconciler/provider_checks.py), when it last delivered something, and the
deliveries refused lately by reason, with the likely cause. Anything failing, and any refusal in
the last hour, makes the report not ok (the command exits 1, so a deploy pipeline can run it).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from receiver.settings import ProvidersSettings, Settings
from receiver.store.db import UNAVAILABLE_ERRORS
from receiver.store.migrate import current_revision, head_revision
from receiver.store.models import InboundEvent
from receiver.store.refusals import bucket_of, refusals_since
from reconciler.provider_checks import (
    Check,
    DashboardUrl,
    Level,
    check_credentials,
    dashboard_urls,
    env_name,
    missing_settings,
)

REFUSAL_WINDOW = timedelta(hours=1)

REFUSAL_HINTS = {
    "signature_mismatch": "is the signing secret ({prefix}WEBHOOK_SECRET) the one in the "
    "provider's dashboard?",
    "timestamp_outside_tolerance": "the signed time is too far from ours: check this machine's "
    "clock (NTP), or deliveries held back by a queue",
    "bad_timestamp": "the signature's t= is not a plain number: not the provider's format",
    "token_mismatch": "the URL's token differs from {prefix}WEBHOOK_TOKEN: give the provider "
    "the URL `verihook doctor` shows",
    "missing_token": "the URL lacks the token: give the provider the URL `verihook doctor` shows",
    "missing_signature": "no signature header: a sender that is not the provider, or a proxy "
    "that drops the header",
    "empty_signature": "an empty signature header: not the provider's format",
    "malformed_signature": "a signature header not in the provider's format (a proxy rewriting "
    "it, or another sender)",
    "no_v1_signature": "a signature header without v1=: not the provider's format",
    "signature_header_too_long": "a signature header too long to be the provider's",
    "repeated_signature_header": "the signature header came on several lines: a proxy adding "
    "a copy?",
    "unknown_notification": "a webhook URL whose last segment is no notification name: check "
    "the URLs in the dashboard",
    "malformed_check_id": "check_id is not a UUID: has the provider changed its format? "
    "(docs/PROVIDERS.md)",
    "missing_state": "a redirect without its state: a link opened by hand or cut short",
    "state_mismatch": "a redirect whose state is not the one sent: an old or forged link",
    "unknown_session": "a redirect for a session verihook did not create (another "
    "environment's callback URL?)",
    "missing_session_id": "a redirect without a session id: is the callback URL the one "
    "`verihook doctor` shows?",
}
"""The likely cause of each refusal reason (receiver/signatures.py and the providers)."""


@dataclass
class ProviderReport:
    """One configured provider's part of the report."""

    provider: str
    urls: list[DashboardUrl]
    checks: list[Check]
    last_delivery_at: datetime | None = None
    refusals: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """Everything `verihook doctor` found."""

    public_url: str
    checks: list[Check]
    providers: list[ProviderReport]
    unconfigured: list[str]
    refusals_since: datetime
    checked_at: datetime

    def problems(self) -> list[str]:
        """One line per failing check and per refusal reason of the last hour."""
        found = [f"{c.name}: {c.detail}" for c in self.checks if c.level is Level.FAIL]
        for part in self.providers:
            found += [
                f"{part.provider} {c.name}: {c.detail}"
                for c in part.checks
                if c.level is Level.FAIL
            ]
            found += [
                f"{part.provider}: {r['count']} refused ({r['reason']}): {r['hint']}"
                for r in part.refusals
            ]
        return found

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems()

    def to_json(self) -> dict[str, Any]:
        """As `verihook doctor --format json` prints it."""
        return {
            "ok": self.ok,
            "problems": self.problems(),
            "public_url": self.public_url,
            "checks": [c.to_json() for c in self.checks],
            "checked_at": self.checked_at.isoformat(),
            "refusals_since": self.refusals_since.isoformat(),
            "providers": [
                {
                    "provider": p.provider,
                    "urls": [asdict(u) for u in p.urls],
                    "checks": [c.to_json() for c in p.checks],
                    "last_delivery_at": _iso(p.last_delivery_at),
                    "refusals": [{**r, "last_at": _iso(r["last_at"])} for r in p.refusals],
                }
                for p in self.providers
            ],
            "unconfigured": self.unconfigured,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def diagnose(settings: Settings, engine: Engine, http: httpx.Client, *, now: datetime) -> Report:
    """Check every configured provider (their APIs concurrently) and read the store."""
    names = settings.configured_providers()
    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
        credentials = {
            name: pool.submit(check_credentials, name, settings.provider(name), http)
            for name in names
        }
        database = check_database(engine)
        since = bucket_of(now - REFUSAL_WINDOW)
        deliveries, refusals = {}, {}
        if database.level is Level.OK:
            with Session(engine) as db:
                deliveries = last_deliveries(db, names)
                refusals = recent_refusals(db, since)
        providers = [
            ProviderReport(
                provider=name,
                urls=dashboard_urls(name, settings.provider(name), settings.public_url),
                checks=[
                    *missing_settings(name, settings.provider(name)),
                    credentials[name].result(),
                ],
                last_delivery_at=deliveries.get(name),
                refusals=refusals.get(name, []),
            )
            for name in names
        ]
    return Report(
        public_url=settings.public_url,
        checks=[check_public_url(settings), database],
        providers=providers,
        unconfigured=[n for n in ProvidersSettings.model_fields if n not in names],
        refusals_since=since,
        checked_at=now,
    )


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})


def check_public_url(settings: Settings) -> Check:
    """Providers must reach VERIHOOK_PUBLIC_URL: not loopback, https in production."""
    parts = urlsplit(settings.public_url)
    level = Level.FAIL if settings.is_production else Level.WARN
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return Check("public url", Level.FAIL, "VERIHOOK_PUBLIC_URL is not an http(s) URL")
    if (parts.hostname or "") in LOOPBACK:
        return Check(
            "public url",
            level,
            f"{settings.public_url} is this machine only: providers cannot reach it "
            "(set VERIHOOK_PUBLIC_URL to the address they can)",
        )
    if parts.scheme != "https":
        return Check("public url", level, "not https: providers send personal data to it")
    return Check("public url", Level.OK, settings.public_url)


def check_database(engine: Engine) -> Check:
    """The database answers, at the schema this code needs."""
    try:
        revision = current_revision(engine)
    except UNAVAILABLE_ERRORS as exc:
        return Check("database", Level.FAIL, f"unreachable ({type(exc).__name__})")
    if revision != head_revision():
        return Check(
            "database",
            Level.FAIL,
            f"schema at {revision or 'nothing'}, this code needs {head_revision()}: "
            "run `verihook db upgrade`",
        )
    return Check("database", Level.OK, f"{engine.dialect.name}, schema {revision}")


def last_deliveries(db: Session, providers: list[str]) -> dict[str, datetime | None]:
    """When each provider's newest webhook or redirect was received (the newest event id: a
    backward scan of the primary key that stops at the first match)."""
    found: dict[str, datetime | None] = {}
    for name in providers:
        found[name] = db.execute(
            select(col(InboundEvent.received_at))
            .where(
                col(InboundEvent.provider) == name,
                col(InboundEvent.kind).in_(("webhook", "callback")),
            )
            .order_by(col(InboundEvent.id).desc())
            .limit(1)
        ).scalar_one_or_none()
    return found


def recent_refusals(db: Session, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """Refusals counted since `since`, by provider, the most frequent reason first."""
    found: dict[str, list[dict[str, Any]]] = {}
    for total in refusals_since(db, since):
        hint = REFUSAL_HINTS.get(total.reason, "see the README, 'Answers to providers'")
        found.setdefault(total.provider, []).append(
            {
                "reason": total.reason,
                "count": total.count,
                "last_at": total.last_at,
                "hint": hint.format(prefix=env_name(total.provider)),
            }
        )
    return found
