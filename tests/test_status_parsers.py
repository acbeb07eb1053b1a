"""Every provider's status-answer parser, fed any JSON a provider (or a proxy) might send back:
it returns observations or raises ParseError, nothing else (the poller quarantines on ParseError;
anything else would be a parser bug it has to contain)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.exceptions import ParseError
from receiver.providers import build_providers
from receiver.providers.base import Parsed
from receiver.settings import Settings
from tests.conftest import TEST_KEYS, provider_settings

pytestmark = pytest.mark.unit

PROVIDERS = build_providers(Settings(encryption_keys=TEST_KEYS, providers=provider_settings()))
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
known_keys = st.sampled_from(
    [
        "status",
        "state",
        "result",
        "decision",
        "id",
        "sessionId",
        "createdAt",
        "updated_at",
        "scanRef",
        "clientId",
        "autoDocument",
        "manualDocument",
        "verificationResult",
        "data",
    ]
)
shaped_like_answers = st.dictionaries(known_keys, json_values, max_size=8)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
@settings(max_examples=300, deadline=None)
@given(answer=json_values | shaped_like_answers)
def test_status_parser_returns_observations_or_parse_error(name: str, answer: object) -> None:
    try:
        parsed = PROVIDERS[name].parse_status("sess_1", answer, NOW)
    except ParseError:
        return
    assert isinstance(parsed, Parsed)
    assert all(obs.session_id == "sess_1" for obs in parsed.observations)
