"""Configuration (DESIGN §4), the encryption keyring, and `verihook db upgrade`."""

from __future__ import annotations

import base64
import gc
import logging
import os
import stat
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from app import cli
from receiver.exceptions import ConfigurationError, DecryptionError
from receiver.providers import build_providers
from receiver.settings import Settings, load_settings
from receiver.store.crypto import DEV_KEY_FILE, Keyring, Sealed, load_keyring, new_key_spec
from receiver.store.migrate import head_revision

pytestmark = pytest.mark.unit

GOOD_KEYS = new_key_spec("prod1")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VERIHOOK_* variable from the outer environment leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("VERIHOOK_"):
            monkeypatch.delenv(name)


# --- environment variables -------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings()
    assert settings.env == "development" and not settings.is_production
    assert settings.database_url == "sqlite:///var/verihook.db"
    assert settings.redis_url is None
    assert settings.max_body_bytes == 1024 * 1024
    assert not any(p.is_enabled() for p in build_providers(settings).values())


def test_environment_variables_nested_with_double_underscore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "VERIHOOK_ENV": "development",
        "VERIHOOK_DATABASE_URL": "postgresql+psycopg://u:p@db.invalid/verihook",
        "VERIHOOK_REDIS_URL": "redis://redis.invalid:6379/3",
        "VERIHOOK_MAX_BODY_BYTES": "2048",
        "VERIHOOK_ENCRYPTION_KEYS": GOOD_KEYS,
        "VERIHOOK_API_TOKENS": "backend:tok-backend-0123456789,operator:tok-operator-0123456789",
        "VERIHOOK_NOTIFY_URL": "https://backend.invalid/hook",
        "VERIHOOK_NOTIFY_SECRET": "whsec_bm90aWZ5",
        "VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET": "whsec_new, whsec_old",
        "VERIHOOK_PROVIDERS__CONTIGUITY__API_TOKEN": "ctg-token",
        "VERIHOOK_PROVIDERS__CONTIGUITY__SIGNATURE_TOLERANCE_SECONDS": "60",
        "VERIHOOK_PROVIDERS__DOCVERIFY__CLIENT_ID": "dv-id",
        "VERIHOOK_PROVIDERS__DOCVERIFY__CLIENT_SECRET": "dv-secret",
        "VERIHOOK_PROVIDERS__DOCVERIFY__TOKEN_URL": "https://auth.invalid/oidc/token",
        "VERIHOOK_PROVIDERS__DOCVERIFY__RETURN_URL": "https://app.invalid/done",
        "VERIHOOK_PROVIDERS__IDVAPI__WEBHOOK_TOKEN": "path-token",
        "VERIHOOK_PROVIDERS__IDVAPI__API_KEY": "idv-key",
        "VERIHOOK_PROVIDERS__IDENFY__WEBHOOK_SECRET": "idenfy-key",
        "VERIHOOK_PROVIDERS__IDENFY__API_KEY": "k",
        "VERIHOOK_PROVIDERS__IDENFY__API_SECRET": "s",
        "VERIHOOK_PROVIDERS__NEVIS__ACCESS_KEY": "nevis-key",
        "VERIHOOK_PROVIDERS__NEVIS__BASE_URL": "https://x.mauth.nevis.cloud/api/v1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.database_url == env["VERIHOOK_DATABASE_URL"]
    assert settings.redis_url == env["VERIHOOK_REDIS_URL"]
    assert settings.max_body_bytes == 2048
    assert settings.notify_url == "https://backend.invalid/hook"
    contiguity = settings.provider("contiguity")
    assert contiguity.webhook_secrets == [b"whsec_new", b"whsec_old"]
    assert contiguity.signature_tolerance_seconds == 60
    assert contiguity.api_token and contiguity.api_token.get_secret_value() == "ctg-token"
    docverify = settings.provider("docverify")
    assert (docverify.client_id, docverify.token_url, docverify.return_url) == (
        "dv-id",
        "https://auth.invalid/oidc/token",
        "https://app.invalid/done",
    )
    idvapi = settings.provider("idvapi")
    assert idvapi.webhook_token and idvapi.webhook_token.get_secret_value() == "path-token"
    assert settings.provider("idenfy").webhook_secrets == [b"idenfy-key"]
    assert settings.provider("nevis").base_url == "https://x.mauth.nevis.cloud/api/v1"
    assert all(p.is_enabled() for p in build_providers(settings).values())
    # secrets never show in a repr
    shown = repr(settings)
    for secret in (
        "whsec_new",
        "dv-secret",
        "path-token",
        "idenfy-key",
        "nevis-key",
        "tok-backend-0123456789",
        GOOD_KEYS.split(":")[1],
    ):
        assert secret not in shown


def test_lowercase_variable_names_are_read_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("verihook_providers__nevis__access_key", "nevis-key")
    assert build_providers(Settings())["nevis"].is_enabled()


def test_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("VERIHOOK_MAX_BODY_BYTES", "0")
    with pytest.raises(ValidationError):
        Settings()


# --- TOML file -------------------------------------------------------------------------------

TOML = """
database_url = "sqlite:///from-toml.db"
max_body_bytes = 4096
queue_name = "from-toml"

[providers.contiguity]
webhook_secret = "whsec_from_toml"
api_token = "token_from_toml"

[providers.nevis]
access_key = "nevis_from_toml"
"""


def test_toml_file_named_by_verihook_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "verihook.toml"
    path.write_text(TOML)
    monkeypatch.setenv("VERIHOOK_CONFIG", str(path))
    settings = load_settings()
    assert settings.database_url == "sqlite:///from-toml.db"
    assert settings.max_body_bytes == 4096
    assert settings.provider("contiguity").webhook_secrets == [b"whsec_from_toml"]
    assert build_providers(settings)["nevis"].is_enabled()


def test_environment_overrides_toml_key_by_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "verihook.toml"
    path.write_text(TOML)
    monkeypatch.setenv("VERIHOOK_CONFIG", str(path))
    monkeypatch.setenv("VERIHOOK_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET", "whsec_from_env")
    settings = load_settings()
    assert settings.max_body_bytes == 2048
    assert settings.queue_name == "from-toml"
    contiguity = settings.provider("contiguity")
    assert contiguity.webhook_secrets == [b"whsec_from_env"]
    # the sibling key from the file survives the nested override
    assert contiguity.api_token and contiguity.api_token.get_secret_value() == "token_from_toml"
    assert settings.provider("nevis").access_key is not None
    # explicit arguments beat both
    assert load_settings(max_body_bytes=1000).max_body_bytes == 1000


def test_verihook_config_naming_a_missing_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("VERIHOOK_CONFIG", str(missing))
    with pytest.raises(ConfigurationError, match="VERIHOOK_CONFIG") as info:
        load_settings()
    assert str(missing) in str(info.value)


def test_verihook_config_naming_a_directory_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VERIHOOK_CONFIG", str(tmp_path))
    with pytest.raises(ConfigurationError):
        load_settings()


# --- production strictness -------------------------------------------------------------------


def test_production_refuses_a_missing_encryption_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIHOOK_ENV", "production")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert "production" in message and "VERIHOOK_ENCRYPTION_KEYS is not set" in message


@pytest.mark.parametrize("placeholder", ["changeme", "CHANGEME", " change-me ", "secret", "xxx"])
def test_production_refuses_a_placeholder_secret(
    monkeypatch: pytest.MonkeyPatch, placeholder: str
) -> None:
    monkeypatch.setenv("VERIHOOK_ENV", "production")
    monkeypatch.setenv("VERIHOOK_ENCRYPTION_KEYS", GOOD_KEYS)
    monkeypatch.setenv("VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET", placeholder)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert "VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET is a placeholder" in message
    assert placeholder.strip() not in message  # names the variable, never echoes the value


@pytest.mark.parametrize(
    "value", ["changeme,", "whsec_real_0123456789abcdef,changeme", " changeme , "]
)
def test_production_refuses_a_placeholder_in_a_rotation_list(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Each comma-separated entry is a live signing secret (ProviderSettings.webhook_secrets),
    so a placeholder entry must be refused like a placeholder value. Today only the whole string
    is compared, so "changeme," starts in production with "changeme" as the active secret."""
    monkeypatch.setenv("VERIHOOK_ENV", "production")
    monkeypatch.setenv("VERIHOOK_ENCRYPTION_KEYS", GOOD_KEYS)
    monkeypatch.setenv("VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET", value)
    assert b"changeme" in Settings().provider("contiguity").webhook_secrets
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        load_settings()


def test_production_refuses_short_api_tokens_and_a_missing_notify_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERIHOOK_ENV", "production")
    monkeypatch.setenv("VERIHOOK_ENCRYPTION_KEYS", GOOD_KEYS)
    monkeypatch.setenv("VERIHOOK_API_TOKENS", "backend:tiny-tok")
    monkeypatch.setenv("VERIHOOK_NOTIFY_URL", "https://backend.invalid/hook")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "VERIHOOK_API_TOKENS" in str(info.value)
    assert "VERIHOOK_NOTIFY_SECRET" in str(info.value)
    assert "tiny-tok" not in str(info.value)


def test_production_starts_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIHOOK_ENV", "production")
    monkeypatch.setenv("VERIHOOK_ENCRYPTION_KEYS", GOOD_KEYS)
    monkeypatch.setenv(
        "VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET",
        "whsec_9974ab26f9cfa06e,whsec_previous_4c1d",
    )
    monkeypatch.setenv("VERIHOOK_API_TOKENS", "operator:0123456789abcdef0123")
    assert load_settings().is_production


def test_development_tolerates_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIHOOK_PROVIDERS__CONTIGUITY__WEBHOOK_SECRET", "changeme")
    assert load_settings().provider("contiguity").webhook_secrets == [b"changeme"]


# --- keyring: development key, production refusal --------------------------------------------


def test_development_generates_a_key_under_var_dir_and_reuses_it(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    var_dir = tmp_path / "var"
    settings = Settings(var_dir=var_dir)
    with caplog.at_level(logging.WARNING):
        first = load_keyring(settings)
    key_file = var_dir / DEV_KEY_FILE
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert any("generated a development encryption key" in r.getMessage() for r in caplog.records)
    key_id, _, encoded = key_file.read_text().strip().partition(":")
    assert key_id and len(base64.b64decode(encoded)) == 32
    sealed = first.seal(b"kept across restarts", aad=b"row-1")
    caplog.clear()
    second = load_keyring(Settings(var_dir=var_dir))
    assert second.open(sealed, aad=b"row-1") == b"kept across restarts"
    assert not any("generated" in r.getMessage() for r in caplog.records)


def test_configured_keys_need_no_key_file(tmp_path: Path) -> None:
    keyring = load_keyring(Settings(var_dir=tmp_path, encryption_keys=GOOD_KEYS))
    assert keyring.current_key_id == "prod1"
    assert not (tmp_path / DEV_KEY_FILE).exists()


def test_production_keyring_refuses_a_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="VERIHOOK_ENCRYPTION_KEYS"):
        load_keyring(Settings(env="production", var_dir=tmp_path))
    assert not (tmp_path / DEV_KEY_FILE).exists()


# --- keyring: AES-GCM ------------------------------------------------------------------------


def test_seal_open_roundtrip_with_fresh_nonces() -> None:
    keyring = Keyring.parse(new_key_spec("a") + "," + new_key_spec("b"))
    one = keyring.seal(b"payload", aad=b"row")
    two = keyring.seal(b"payload", aad=b"row")
    assert one.key_id == two.key_id == "a"
    assert one.blob != two.blob and b"payload" not in one.blob
    assert keyring.open(one, aad=b"row") == keyring.open(two, aad=b"row") == b"payload"
    assert keyring.open(keyring.seal(b"", aad=b""), aad=b"") == b""


def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old_spec, new_spec = new_key_spec("old"), new_key_spec("new")
    sealed_by_old = Keyring.parse(old_spec).seal(b"history", aad=b"r")
    rotated = Keyring.parse(f"{new_spec},{old_spec}")
    assert rotated.open(sealed_by_old, aad=b"r") == b"history"
    assert rotated.seal(b"x", aad=b"r").key_id == "new"


def test_wrong_aad_is_a_specific_decryption_error() -> None:
    keyring = Keyring.parse(new_key_spec("k"))
    sealed = keyring.seal(b"payload", aad=b"inbound_event:idenfy:1")
    with pytest.raises(DecryptionError, match="'k' failed authentication"):
        keyring.open(sealed, aad=b"inbound_event:idenfy:2")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # tag
        lambda b: bytes([b[0] ^ 1]) + b[1:],  # nonce
        lambda b: b[:14] + bytes([b[14] ^ 0x80]) + b[15:],  # ciphertext
        lambda b: b + b"\x00",  # extended
        lambda b: b[:-1],  # cut short
        lambda b: b[:20],  # cut to nonce + a few bytes
        lambda b: b[:12],  # nonce only
    ],
)
def test_tampered_blob_is_a_specific_decryption_error(tamper) -> None:  # type: ignore[no-untyped-def]
    keyring = Keyring.parse(new_key_spec("k"))
    sealed = keyring.seal(b"payload with some length", aad=b"row")
    with pytest.raises(DecryptionError, match="failed authentication|truncated"):
        keyring.open(Sealed(sealed.key_id, tamper(sealed.blob)), aad=b"row")


@pytest.mark.parametrize("blob", [b"", b"\x00" * 5])
def test_blob_shorter_than_a_nonce_is_a_decryption_error(blob: bytes) -> None:
    """A truncated row must fail as DecryptionError (tampering), not as cryptography's
    ValueError("Nonce must be between 8 and 128 bytes") that leaks out of Keyring.open today."""
    keyring = Keyring.parse(new_key_spec("k"))
    with pytest.raises(DecryptionError):
        keyring.open(Sealed("k", blob), aad=b"row")


def test_unknown_key_id_is_a_specific_decryption_error() -> None:
    sealed = Keyring.parse(new_key_spec("gone")).seal(b"payload", aad=b"row")
    with pytest.raises(DecryptionError, match="no configured key with id 'gone'"):
        Keyring.parse(new_key_spec("other")).open(sealed, aad=b"row")


def test_same_key_id_other_material_is_a_decryption_error() -> None:
    sealed = Keyring.parse(new_key_spec("k")).seal(b"payload", aad=b"row")
    with pytest.raises(DecryptionError, match="failed authentication|truncated"):
        Keyring.parse(new_key_spec("k")).open(sealed, aad=b"row")


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("", "no encryption key"),
        (" , ", "no encryption key"),
        ("bm9pZA==", "without a key id"),
        (":" + base64.b64encode(b"k" * 32).decode(), "without a key id"),
        ("k1:not*base64", "not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "16, 24 or 32 bytes"),
    ],
)
def test_bad_key_specs_are_configuration_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment) as info:
        Keyring.parse(spec)
    material = spec.partition(":")[2]
    if len(material) > 4:
        assert material not in str(info.value)  # key material is never echoed


# --- verihook db upgrade ---------------------------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    answer = (
        result.exit_code,
        result.output + (repr(result.exception) if result.exception else ""),
    )
    del result  # the command's Services are never closed; let them go here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return answer


def test_db_upgrade_on_a_fresh_sqlite_file_works_twice(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "verihook.db"
    env = {
        "VERIHOOK_DATABASE_URL": f"sqlite:///{database}",
        "VERIHOOK_VAR_DIR": str(tmp_path / "var"),
        "VERIHOOK_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    for _ in range(2):
        code, output = run_cli(env, "db", "upgrade")
        assert code == 0, output
        assert "newest schema" in output
    engine = create_engine(f"sqlite:///{database}")
    try:
        tables = set(inspect(engine).get_table_names())
        assert {
            "inbound_events",
            "outbox",
            "verification_sessions",
            "observations",
            "user_records",
            "alembic_version",
        } <= tables
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [head_revision()]
    finally:
        engine.dispose()


def test_db_upgrade_in_production_without_a_key_fails_cleanly(tmp_path: Path) -> None:
    env = {
        "VERIHOOK_ENV": "production",
        "VERIHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "VERIHOOK_VAR_DIR": str(tmp_path / "var"),
    }
    code, output = run_cli(env, "db", "upgrade")
    assert code != 0
    assert "VERIHOOK_ENCRYPTION_KEYS" in output
    assert "Traceback" not in output
