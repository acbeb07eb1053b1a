"""All configuration, read once from the environment (and an optional TOML file).

DESIGN §4 is the contract: `VERIHOOK_` prefix, nesting with `__`, `VERIHOOK_CONFIG` names a TOML
file holding the same keys. One `Settings` object is built by `load_settings()` and passed down.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from receiver.exceptions import ConfigurationError

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "placeholder", "example", "xxx", "todo"}
)


def split_csv(value: str | SecretStr | None) -> list[str]:
    """Split a comma-separated setting into its non-empty, stripped parts."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
    return [part.strip() for part in raw.split(",") if part.strip()]


class ProviderSettings(BaseModel):
    """One provider's settings (`VERIHOOK_PROVIDERS__<NAME>__<KEY>`)."""

    base_url: str = ""
    return_url: str = ""
    token_url: str = ""
    api_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    access_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    webhook_token: SecretStr | None = None
    signature_tolerance_seconds: int = Field(default=300, ge=0)
    poll_interval_seconds: float = Field(default=30.0, gt=0)
    max_poll_interval_seconds: float = Field(default=3600.0, gt=0)
    webhook_deadline_seconds: float | None = Field(default=None, gt=0)
    session_ttl_seconds: float = Field(default=86_400.0, gt=0)
    max_fallback_polls: int = Field(default=4, ge=0)
    rate_limit_per_second: float = Field(default=5.0, gt=0)

    def secrets(self) -> dict[str, SecretStr | None]:
        """Every secret-bearing field by name (for placeholder checks)."""
        return {
            name: getattr(self, name)
            for name in (
                "api_token",
                "client_secret",
                "api_key",
                "api_secret",
                "access_key",
                "webhook_secret",
                "webhook_token",
            )
        }

    def has_credentials(self) -> bool:
        """True once any credential is set (the provider is meant to be used)."""
        return bool(self.client_id) or any(v is not None for v in self.secrets().values())

    @cached_property
    def webhook_secrets(self) -> list[bytes]:
        """The inbound signing secrets, newest first; several while rotating (read once: settings
        are not changed after they are loaded)."""
        return [s.encode() for s in split_csv(self.webhook_secret)]


class ProvidersSettings(BaseModel):
    """Settings for each of the five providers."""

    contiguity: ProviderSettings = ProviderSettings()
    docverify: ProviderSettings = ProviderSettings()
    idvapi: ProviderSettings = ProviderSettings()
    idenfy: ProviderSettings = ProviderSettings()
    nevis: ProviderSettings = ProviderSettings()


class Settings(BaseSettings):
    """verihook's configuration (DESIGN §4)."""

    model_config = SettingsConfigDict(
        env_prefix="VERIHOOK_", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///var/verihook.db"
    redis_url: str | None = None
    api_tokens: SecretStr | None = None
    encryption_keys: SecretStr | None = None
    notify_url: str | None = None
    notify_secret: SecretStr | None = None
    providers: ProvidersSettings = ProvidersSettings()
    var_dir: Path = Path("var")
    queue_name: str = "verihook"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    client_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a request's head and body to `verihook web` (slow clients
    are answered 408 and disconnected; receiver/gunicorn_worker.py)."""
    log_level: str = "INFO"
    log_deliveries_per_second: int = Field(default=100, ge=0)
    apply_batch_size: int = Field(default=200, gt=0)
    apply_max_attempts: int = Field(default=5, gt=0)
    outbox_grace_seconds: float = Field(default=10.0, ge=0)
    public_url: str = "http://127.0.0.1:8000"
    retention_days: int = Field(default=30, ge=0)
    scheduler_tick_seconds: float = Field(default=1.0, gt=0)
    scheduler_sweep_seconds: float = Field(default=5.0, gt=0)
    leader_lock_seconds: float = Field(default=15.0, gt=0)
    poll_batch_size: int = Field(default=200, gt=0)
    poll_concurrency: int = Field(default=8, gt=0)
    poll_lease_seconds: float = Field(default=60.0, gt=0)
    console_secret: SecretStr | None = None
    console_session_seconds: int = Field(default=12 * 3600, gt=0)
    health_bind: str | None = None
    health_max_age_seconds: float = Field(default=180.0, gt=0)
    audit_verify_seconds: float = Field(default=300.0, gt=0)
    audit_full_verify_seconds: float = Field(default=86_400.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments, then the environment, then the TOML file named by VERIHOOK_CONFIG."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("VERIHOOK_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ConfigurationError(f"VERIHOOK_CONFIG names no file: {config_file!r}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def is_production(self) -> bool:
        """True when running with production strictness."""
        return self.env == "production"

    def provider(self, name: str) -> ProviderSettings:
        """One provider's settings by name."""
        settings: ProviderSettings = getattr(self.providers, name)
        return settings

    def configured_providers(self) -> list[str]:
        """The providers given any credential, in the registry's order."""
        return [n for n in ProvidersSettings.model_fields if self.provider(n).has_credentials()]


def refuse_placeholders(settings: Settings) -> None:
    """In production, refuse missing keys and placeholder secrets (raise ConfigurationError)."""
    if not settings.is_production:
        return
    problems = []
    if not split_csv(settings.encryption_keys):
        problems.append("VERIHOOK_ENCRYPTION_KEYS is not set")
    if settings.notify_url and _is_placeholder(settings.notify_secret):
        problems.append("VERIHOOK_NOTIFY_SECRET is missing or a placeholder")
    for name in ProvidersSettings.model_fields:
        for key, value in settings.provider(name).secrets().items():
            if value is not None and _is_placeholder(value):
                problems.append(
                    f"VERIHOOK_PROVIDERS__{name.upper()}__{key.upper()} is a placeholder"
                )
    console = split_csv(settings.console_secret)
    if any(len(s) < 32 or s.lower() in PLACEHOLDER_SECRETS for s in console):
        problems.append("VERIHOOK_CONSOLE_SECRET must be at least 32 random characters")
    for role_token in split_csv(settings.api_tokens):
        _, _, token = role_token.partition(":")
        if len(token) < 16 or token.lower() in PLACEHOLDER_SECRETS:
            problems.append("VERIHOOK_API_TOKENS holds a short or placeholder token")
    if problems:
        raise ConfigurationError("refusing to start in production: " + "; ".join(problems))


def _is_placeholder(value: SecretStr | None) -> bool:
    """Missing, empty, or any comma-separated part of it a placeholder (rotation lists)."""
    if value is None:
        return True
    parts = value.get_secret_value().split(",")
    return any(part.strip().lower() in PLACEHOLDER_SECRETS for part in parts)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and VERIHOOK_CONFIG), then `overrides`."""
    settings = Settings(**overrides)
    refuse_placeholders(settings)
    return settings
