"""The README says who may sign in to the console: the roles the console lets in (issue 20)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.console.security import CONSOLE_ROLES

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parent.parent / "README.md"
ROLES = ("backend", "operator", "auditor")


def test_the_readme_names_the_roles_that_may_sign_in_to_the_console() -> None:
    text = " ".join(README.read_text().split())
    sentence = re.search(r"`/console` \(server-rendered[^)]*\): sign in with an? ([^;(]+)", text)
    assert sentence is not None, "the Web console section lost its sign-in sentence"
    assert {role for role in ROLES if role in sentence[1]} == CONSOLE_ROLES
    refused = sorted(set(ROLES) - CONSOLE_ROLES)
    assert re.search(rf"a {' or '.join(refused)} token is refused, 403", text)
