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


class DecryptionError(VerihookError):
    """Stored ciphertext could not be decrypted (unknown key id, wrong key, or tampering)."""


class UnknownProviderError(VerihookError):
    """A provider name that verihook does not know or has not enabled."""


class StoreUnavailableError(VerihookError):
    """The database could not be reached; the caller should retry later."""
