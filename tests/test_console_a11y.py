"""Every console page in the real browser (issue 20 item 5): axe-core finds nothing at 1366 and
390 px wide, no page scrolls sideways at 1366, 800 or 390 px (tables scroll inside their own
labelled regions, long ids wrap), the keyboard focus ring has at least 3:1 contrast, a skip link
leads to the content, and a table's sticky header never hides the row the keyboard reached.

The data has the worst cases for width: a 102-character session id, a 105-character user ref, a
tall decrypted body with a 300-character word. Screenshots of every page at 1366 and 390 px go to
test-artifacts/console-a11y/, with report.json (what was measured on each page).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler import jobs
from reconciler.drain import drain_ready_events
from tests.support import signing
from tests.support.a11y import axe_violations, focus_ring_contrast, sideways_overflow
from tests.support.browser import artifacts_dir, chromium
from tests.support.flow import API_TOKENS, send_contiguity, send_idenfy
from tests.support.live_server import live_server
from tests.test_console import OPERATOR_TOKEN, console_app, fail_event

pytestmark = pytest.mark.timeout(180)
WIDTHS = (1366, 800, 390)
AXE_WIDTHS = (1366, 390)
LONG_SESSION = "vs_" + "0123456789abcdef" * 6 + "end"
LONG_USER = "user-" + "x" * 100


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def seed(make_services, services, client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Enough data for every page to show its tables, with the longest ids and values."""
    for index in range(40):
        body = signing.contiguity_event("processing", f"vs_a11y{index}", user_ref="user-a11y")
        send_contiguity(client, body)
    send_contiguity(
        client, signing.contiguity_event("processing", LONG_SESSION, user_ref=LONG_USER)
    )
    send_contiguity(client, signing.contiguity_event("redacted"))  # quarantined
    send_idenfy(client, signing.idenfy_result("APPROVED", "scan-a11y"), "auto-finished")
    metadata = {f"field_{index:02d}": "value " * 8 for index in range(60)}
    metadata["signature"] = "f" * 300  # one long word
    body = signing.contiguity_event("processing", "vs_big", metadata=metadata)
    big = send_contiguity(client, body).get_json()["event_id"]
    send_contiguity(client, body)  # delivered twice
    drain_ready_events(services)
    body = signing.contiguity_event(
        "verified", LONG_SESSION, user_ref=LONG_USER, timestamp=1_700_000_900
    )
    return {"failed": fail_event(make_services, client, body), "big": big}


def test_every_console_page_is_accessible_and_fits_narrow_screens(
    browser, make_services, redis_server, backend
):  # type: ignore[no-untyped-def]
    if backend != "sqlite":
        pytest.skip("layout and accessibility do not depend on the database: one backend")
    services = make_services(api_tokens=API_TOKENS)
    services.redis.flushdb()
    jobs.use_services(services)
    app = console_app(services)
    ids = seed(make_services, services, app.test_client())
    shots = artifacts_dir("console-a11y")
    report: dict[str, dict[str, Any]] = {}

    with live_server(app) as server:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)

        def check(name: str) -> None:
            found: dict[str, Any] = {}
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                found[f"overflow@{width}"] = sideways_overflow(page)
                if width in AXE_WIDTHS:
                    found[f"axe@{width}"] = axe_violations(page)
                    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
            page.set_viewport_size({"width": 1366, "height": 900})
            report[name] = found

        def visit(name: str, url: str) -> None:
            page.goto(server.url + url)
            check(name)

        try:
            visit("sign-in", "/console/sign-in")
            page.fill("#token", OPERATOR_TOKEN)
            page.click("form button.primary")
            page.wait_for_url(f"{server.url}/console/")
            check("overview")
            for name, url in {
                "attention": "/console/attention",
                "events": "/console/events",
                "events-two-states": "/console/events?state=failed&state=quarantined",
                "events-search": f"/console/events?search={LONG_SESSION}",
                "event-failed": f"/console/events/{ids['failed']}",
                "event-raw": f"/console/events/{ids['big']}?raw=1",
                "session": f"/console/sessions/contiguity/{LONG_SESSION}",
                "timeline": f"/console/timeline?user_ref={LONG_USER}",
                "audit": "/console/audit",
                "not-found": "/console/events/424242",
            }.items():
                visit(name, url)
            page.goto(f"{server.url}/console/events/{ids['failed']}")
            page.click("#dry-run")
            page.wait_for_selector("#confirm-replay")
            check("event-dry-run")
            page.goto(f"{server.url}/console/events?state=failed")
            page.click("#bulk-dry-run")
            page.wait_for_selector("#bulk-confirm")
            check("bulk-dry-run")
            page.click("#bulk-confirm")  # no worker runs here: the run stays pending
            page.wait_for_selector("#run")
            check("bulk-replay-run")
            page.goto(f"{server.url}/console/audit")
            page.click("#verify")
            page.wait_for_selector("#verify-result")
            check("audit-verified")

            keyboard = keyboard_checks(page, server.url)
        finally:
            context.close()
    (shots / "report.json").write_text(json.dumps({**report, "keyboard": keyboard}, indent=2))

    problems = {
        f"{name} {measure}": value
        for name, found in report.items()
        for measure, value in found.items()
        if value
    }
    assert not problems, json.dumps(problems, indent=2)
    for where, ratio in keyboard["focus_ring_contrast"].items():
        assert ratio >= 3, (where, ratio)
    assert keyboard["skip_link"] == {"first_tab": "Skip to content", "after_enter": "main"}
    assert keyboard["row_clear_of_sticky_header"], keyboard


def keyboard_checks(page: Any, base: str) -> dict[str, Any]:
    """The focus ring's contrast, the skip link, and a focused row clear of the sticky header."""
    page.set_viewport_size({"width": 1366, "height": 600})
    page.goto(f"{base}/console/events")
    contrast = {
        "link in a table": focus_ring_contrast(page, "#events tbody a"),
        "button": focus_ring_contrast(page, "#event-filters button"),
        "input": focus_ring_contrast(page, "#search"),
        "checkbox": focus_ring_contrast(page, "#state-filter input"),
        "scroll region": focus_ring_contrast(page, ".table-scroll"),
        "header link (dark)": focus_ring_contrast(page, "header nav a"),
    }

    page.goto(f"{base}/console/events")
    page.keyboard.press("Tab")
    first = page.evaluate("() => document.activeElement.textContent.trim()")
    page.keyboard.press("Enter")
    after = page.evaluate("() => document.activeElement.tagName.toLowerCase()")

    # Scroll the events table so that row 20 sits just below the sticky header (row 19 is then
    # behind it), focus row 20's first link and go back one with Shift+Tab: the browser must
    # scroll row 19 into view below the header, not leave it behind it.
    page.evaluate(
        "() => { const r = document.querySelector('.table-scroll');"
        " const row = r.querySelectorAll('tbody tr')[20];"
        " const head = r.querySelector('thead').getBoundingClientRect().height;"
        " r.scrollTop += row.getBoundingClientRect().top - r.getBoundingClientRect().top - head;"
        " row.querySelector('a').focus({preventScroll: true}); }"
    )
    page.keyboard.press("Shift+Tab")
    geometry = page.evaluate(
        "() => { const a = document.activeElement; const row = a.closest('tr');"
        " const head = row.closest('table').querySelector('thead th').getBoundingClientRect();"
        " return {row: row.getBoundingClientRect().top, head: head.bottom,"
        " index: row.sectionRowIndex, text: a.textContent}; }"
    )
    clear = geometry["index"] == 19 and geometry["row"] >= geometry["head"] - 0.5
    return {
        "focus_ring_contrast": contrast,
        "skip_link": {"first_tab": first, "after_enter": after},
        "row_clear_of_sticky_header": clear,
        "geometry": geometry,
    }
