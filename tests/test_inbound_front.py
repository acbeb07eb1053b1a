"""The webhook URLs have one server, the inbound front (receiver/webhooks.py): Flask holds their
rules without a view and answers their other methods."""

from __future__ import annotations

import logging

from tests.support.signing import contiguity_event, contiguity_header

URL = "/webhooks/contiguity"


def test_flask_holds_the_webhook_rules_without_a_view(client) -> None:  # type: ignore[no-untyped-def]
    app = client.application
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert "webhooks.webhook" in endpoints
    assert "webhooks.webhook" not in app.view_functions


def test_a_post_in_any_case_is_served_by_the_front(client) -> None:  # type: ignore[no-untyped-def]
    body = contiguity_event("verified")
    headers = {"Content-Type": "application/json", "Contiguity-Signature": contiguity_header(body)}
    answer = client.open(URL, method="post", data=body, headers=headers)
    assert answer.status_code == 200, answer.get_data()
    assert answer.get_json()["status"] == "accepted"
    assert answer.headers["X-Request-ID"]


def test_other_methods_are_flasks_405_logged_without_the_path(client, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="verihook.access")
    answer = client.get(f"{URL}/secret-token", headers={"X-Request-ID": "req-405"})
    assert answer.status_code == 405
    assert answer.get_json() == {"error": "method not allowed"}
    assert answer.headers["X-Request-ID"] == "req-405"
    assert "GET /webhooks/<unmatched> 405" in caplog.text  # no rule matched the method
    assert "secret-token" not in caplog.text
    options = client.options(URL)
    assert options.status_code == 200
    assert "POST" in options.headers["Allow"]


def test_control_characters_are_refused_alike_by_the_front_and_flask(client) -> None:  # type: ignore[no-untyped-def]
    front = client.post(f"{URL}?a=%01", data=b"{}", headers={"Content-Type": "application/json"})
    flask = client.get("/healthz?a=%01")
    for answer in (front, flask):
        assert answer.status_code == 400
        assert answer.get_data() == b'{"error":"control characters in the URL"}\n'
        assert answer.headers["Content-Type"] == "application/json"
