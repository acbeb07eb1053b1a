"""Provider registry: name → provider class. Adding a provider = one module + one line here."""

from __future__ import annotations

from receiver.exceptions import UnknownProviderError
from receiver.providers.base import Provider
from receiver.providers.contiguity import ContiguityProvider
from receiver.providers.docverify import DocverifyProvider
from receiver.providers.idenfy import IdenfyProvider
from receiver.providers.idvapi import IdvapiProvider
from receiver.providers.nevis import NevisProvider
from receiver.settings import Settings

REGISTRY: dict[str, type[Provider]] = {
    cls.name: cls
    for cls in (
        ContiguityProvider,
        DocverifyProvider,
        IdvapiProvider,
        IdenfyProvider,
        NevisProvider,
    )
}
"""Every provider verihook knows, by name."""


def build_providers(settings: Settings) -> dict[str, Provider]:
    """Instantiate every known provider with its settings."""
    return {name: cls(settings.provider(name)) for name, cls in REGISTRY.items()}


def get_provider(providers: dict[str, Provider], name: str) -> Provider:
    """An enabled provider by name, else UnknownProviderError."""
    provider = providers.get(name)
    if provider is None or not provider.is_enabled():
        raise UnknownProviderError(f"unknown or disabled provider {name[:40]!r}")
    return provider
