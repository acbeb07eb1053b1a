"""Every error the receiver raises, in one flat module."""


class VerihookError(Exception):
    """Base class of verihook's own errors."""


class ConfigurationError(VerihookError):
    """The configuration is missing something or holds a bad value."""


class AuthenticationError(VerihookError):
    """A delivery failed its provider's authentication; `reason` is a short metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"authentication failed: {reason}")
        self.reason = reason


class ParseError(VerihookError):
    """An authentic delivery we cannot turn into observations (it is quarantined)."""


class UnknownValueError(ParseError):
    """A value, shape or notification the provider's documents do not define (DESIGN §2:
    unknown is not a verdict). The delivery is quarantined with its raw form and counted in
    `verihook_unknown_provider_values_total{provider,field}`. The message and `field` name the
    field, never the value: an undocumented value may be personal data."""

    def __init__(self, provider: str, field: str, what: str = "value") -> None:
        super().__init__(
            f"undocumented {provider} {what} in {field!r} (value withheld: it may be personal "
            "data); not a verdict, kept for a person"
        )
        self.provider, self.field = provider, field


class DecryptionError(VerihookError):
    """Stored ciphertext could not be decrypted (unknown key id, wrong key, or tampering)."""


class UnknownProviderError(VerihookError):
    """A provider name that verihook does not know or has not enabled."""


class StoreUnavailableError(VerihookError):
    """The database could not be reached; the caller should retry later."""
