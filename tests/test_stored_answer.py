"""The inbound front answers a stored delivery without a werkzeug Response: the same bytes."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from receiver.ingest import IngestResult, Outcome
from receiver.webhooks import StoredAnswer, Taken, webhook_answer

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_front_answers_a_stored_delivery_as_the_flask_route_does(outcome: Outcome) -> None:
    result = IngestResult(outcome=outcome, event_id=2**63 - 1, parsed=None)
    fast, usual = StoredAnswer(result), webhook_answer(Taken(None, result))
    fast.headers["X-Request-ID"] = usual.headers["X-Request-ID"] = "req-1"
    seen = [Client(app).post("/") for app in (fast, usual)]
    assert seen[0].status == seen[1].status
    assert list(seen[0].headers.items()) == list(seen[1].headers.items())
    assert seen[0].get_data() == seen[1].get_data()
