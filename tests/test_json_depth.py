"""The JSON depth bound: the quick count of opening brackets never changes the answer.

`too_deep(value, text)` skips walking a value whose text holds fewer opening brackets than the
bound (every webhook passes through it); the answer must be the walk's, for any value near the
bound and any spelling of it (brackets inside strings, UTF-16 bodies).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.inputs import MAX_JSON_DEPTH, too_deep

pytestmark = pytest.mark.unit

scalars = st.none() | st.booleans() | st.integers() | st.text(alphabet="{[ab]}", max_size=4)


def nested(depth: int, leaf: object) -> object:
    """`leaf` inside `depth` containers, alternating objects and lists."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


@given(
    depth=st.integers(min_value=MAX_JSON_DEPTH - 3, max_value=MAX_JSON_DEPTH + 2),
    leaf=scalars | st.just([]) | st.just({}),
    extra=st.lists(scalars, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_the_quick_count_agrees_with_the_walk(
    depth: int, leaf: object, extra: list[object]
) -> None:
    value = [nested(depth, leaf), *extra]
    text = json.dumps(value)
    walked = too_deep(value)
    assert too_deep(value, text) == walked
    assert too_deep(value, text.encode()) == walked
    assert too_deep(value, text.encode("utf-16")) == walked


def test_the_bound_itself() -> None:
    at_bound = nested(MAX_JSON_DEPTH, 1)
    assert too_deep(at_bound, json.dumps(at_bound))
    below = nested(MAX_JSON_DEPTH - 1, 1)
    assert not too_deep(below, json.dumps(below))
    empty_at_bound = nested(MAX_JSON_DEPTH - 1, [])  # 32 containers, the innermost empty
    assert not too_deep(empty_at_bound, json.dumps(empty_at_bound))
    assert too_deep(nested(MAX_JSON_DEPTH, []), json.dumps(nested(MAX_JSON_DEPTH, [])))
