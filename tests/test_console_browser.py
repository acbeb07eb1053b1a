"""The console end to end in a real headless chromium, against the app on a live socket.

An operator signs in, opens Needs attention and finds the failed event (produced for real: applied
with a keyring that lacks its key), filters the events by two states and searches them, dry-runs
a bulk replay, opens the failed event, dry-runs its replay, confirms it and sees it applied, opens
the session's page and reconciles it now, then the user's timeline, the audit view, and Verify.
A screenshot of every step goes to test-artifacts/console/. The page must never trip the
Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler import jobs
from reconciler.drain import drain_ready_events
from tests.support import signing
from tests.support.browser import artifacts_dir, chromium
from tests.support.flow import API_TOKENS, send_contiguity
from tests.support.live_server import live_server
from tests.test_console import OPERATOR_TOKEN, console_app, fail_event

pytestmark = pytest.mark.timeout(120)
USER = "user-browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module (both backends)."""
    with chromium() as launched:
        yield launched


def test_operator_replays_a_failed_event_in_a_real_browser(
    browser, make_services, redis_server, backend
):  # type: ignore[no-untyped-def]
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    app = console_app(services)
    client = app.test_client()
    for index in range(3):
        send_contiguity(client, signing.contiguity_event("processing", f"vs_ok{index}"))
    drain_ready_events(services)
    body = signing.contiguity_event(
        "verified", "vs_browser", user_ref=USER, timestamp=1_700_000_500
    )
    event_id = fail_event(make_services, client, body)

    shots = artifacts_dir("console")
    problems: list[str] = []

    with live_server(app) as server:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on(
                "console",
                lambda message: (
                    problems.append(message.text) if message.type in ("error", "warning") else None
                ),
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            step = iter(range(1, 100))

            def shot(name: str) -> None:
                page.screenshot(
                    path=str(shots / f"{backend}-{next(step):02d}-{name}.png"), full_page=True
                )

            page.goto(f"{server.url}/console/")
            page.wait_for_url("**/console/sign-in?**")
            shot("sign-in")
            page.fill("#token", OPERATOR_TOKEN)
            page.click("form button.primary")
            page.wait_for_url(f"{server.url}/console/")
            assert page.inner_text("#tile-failed .value") == "1"
            assert "env-operator-1" in page.inner_text("header")
            shot("overview")

            page.click("nav >> text=Needs attention")
            page.wait_for_url("**/console/attention")
            assert page.inner_text("#total-failed .value") == "1"
            attention = page.locator("#attention tbody tr")
            assert attention.count() == 1 and "DecryptionError" in attention.first.inner_text()
            shot("attention")

            page.click("nav >> text=Events")
            page.check("#state-filter input[value=failed]")
            page.check("#state-filter input[value=quarantined]")
            page.click("#event-filters button[type=submit]")
            page.wait_for_url("**state=failed&state=quarantined**")
            rows = page.locator("#events tbody tr")
            assert rows.count() == 1
            assert "failed" in rows.first.inner_text()
            shot("events-failed")
            page.click("#bulk-dry-run")
            page.wait_for_selector("#bulk-effect")
            assert "1 event match" in page.inner_text("#bulk-effect")
            assert page.locator("#bulk-confirm").is_visible()
            shot("bulk-dry-run")

            page.goto(f"{server.url}/console/events")
            page.fill("#search", "vs_browser")
            page.click("#event-filters button[type=submit]")
            page.wait_for_url("**search=vs_browser**")
            assert page.locator("#events tbody tr").count() == 1

            page.click(f'#events a[href="/console/events/{event_id}"]')
            page.wait_for_url(f"**/console/events/{event_id}")
            assert "DecryptionError" in page.inner_text("#errors")
            assert page.locator("#replay").count() == 0  # no one-click real replay
            shot("failed-event")

            page.click("#dry-run")
            page.wait_for_selector("#replay-result")
            assert "Nothing was changed" in page.inner_text("main")
            assert "failed → applied" in page.inner_text("#replay-result")
            shot("dry-run")
            page.click("#confirm-replay")
            page.wait_for_selector("h1:has-text('Replayed event')")
            result = page.inner_text("#replay-result")
            assert "failed → applied" in result, result
            assert "1 applied" in result
            shot("replayed")

            page.click('#sessions-changed a:text-is("vs_browser")')
            page.wait_for_url("**/console/sessions/contiguity/vs_browser")
            assert "verified" in page.inner_text("#session-facts")
            assert page.locator("#history tbody tr").count() == 1
            shot("session")
            user_link = page.locator(f'#session-facts a:text-is("{USER}")').get_attribute("href")

            page.goto(f"{server.url}/console/sessions/contiguity/vs_ok0")  # still in flight
            page.click("#reconcile-now")  # the provider is unreachable here: a check is recorded
            page.wait_for_selector("#reconciled")
            assert "provider_unavailable" in page.inner_text("#reconciled")
            assert "provider unavailable" in page.inner_text("#polls")
            shot("session-reconciled")

            page.goto(f"{server.url}{user_link}")
            page.wait_for_url("**/console/timeline?user_ref=user-browser")
            assert "verified" in page.inner_text("#user")
            assert page.locator("#user-audit tbody tr").count() >= 2
            shot("timeline")

            page.click("nav >> text=Audit")
            page.wait_for_url("**/console/audit")
            assert page.locator("#audit tbody tr").count() >= 3
            shot("audit")
            page.click("#verify")
            page.wait_for_selector("#verify-result")
            assert "Chain ok" in page.inner_text("#verify-result")
            shot("audit-verified")

            page.goto(f"{server.url}/console/events/{event_id}")
            assert "applied" in page.inner_text("#metadata")
        finally:
            context.close()
    assert not problems, problems  # e.g. a Content-Security-Policy violation
