"""The key that signs the console's session cookie (Flask's SECRET_KEY).

`VERIHOOK_CONSOLE_SECRET` (`secret[,previous,…]`): the first signs, the others are still accepted
(Flask's SECRET_KEY_FALLBACKS) while rotating. In development a missing secret is generated once
under `var/` (as the encryption key is); in production the console stays off without one.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from receiver.exceptions import ConfigurationError
from receiver.settings import PLACEHOLDER_SECRETS, Settings, split_csv

log = logging.getLogger(__name__)

DEV_SECRET_FILE = "console.secret"
"""File under `var_dir` holding the generated development secret."""
MIN_SECRET_LENGTH = 32


def configured_secrets(settings: Settings) -> list[str]:
    """The secrets given in VERIHOOK_CONSOLE_SECRET, newest first (empty when unset)."""
    # `console_secret` is the proposed setting (receiver/settings.py); absent, nothing is set.
    value: Any = getattr(settings, "console_secret", None)
    return split_csv(value)


def secret_keys(settings: Settings) -> list[str]:
    """The signing secret and its fallbacks; [] when the console must stay off (production
    without a secret). A short or placeholder secret in production is a ConfigurationError."""
    given = configured_secrets(settings)
    if given:
        if settings.is_production and any(
            len(s) < MIN_SECRET_LENGTH or s.lower() in PLACEHOLDER_SECRETS for s in given
        ):
            raise ConfigurationError(
                f"VERIHOOK_CONSOLE_SECRET must be at least {MIN_SECRET_LENGTH} random characters"
            )
        return given
    if settings.is_production:
        return []
    path = Path(settings.var_dir) / DEV_SECRET_FILE
    if not path.exists():
        _create_dev_secret(path)
    return [path.read_text().strip()]


def _create_dev_secret(path: Path) -> None:
    """Write a new development secret atomically: processes starting together agree on one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)  # atomic; fails if another process won the race
        log.warning(
            "generated a development console secret in %s; set VERIHOOK_CONSOLE_SECRET "
            "for any real deployment",
            path,
        )
    except FileExistsError:
        pass
    finally:
        draft.unlink()
