"""``/docs`` in a real browser (Playwright driving /usr/bin/chromium, as ``test_dashboard_browser.py``):
Swagger UI renders every tag and operation under the page's Content-Security-Policy without one
violation or console error, loads only files of ``/docs/assets``, and "Try it out" works with a token
given to "Authorize": a POST without a body (cancel) included. Another site cannot frame the page.

SQLite only: the page and its calls are the same on either database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from chromium import chromium
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect
from system import System
from test_dashboard_browser import context, shot

from oms.edge.openapi import ASSET_FILES, ASSETS

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

WATCH = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.violations.push(e.violatedDirective + " " + e.blockedURI + " " + e.sourceFile + ":" + e.lineNumber);
});
"""
"""Before any script of the page: every Content-Security-Policy violation, kept for the test."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


class Watched:
    """A page, with what it logged and fetched."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.answers: list[tuple[int, str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("response", self._response)
        page.add_init_script(WATCH)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def _response(self, response: Response) -> None:
        self.answers.append((response.status, response.url))

    def violations(self) -> list[Any]:
        found: list[Any] = self.page.evaluate("window.violations")
        return found


@pytest.fixture
def docs(browser: Browser, shared_system: System) -> Iterator[Watched]:
    ctx = context(browser)
    watched = Watched(ctx.new_page())
    yield watched
    ctx.close()


def test_swagger_ui_works_under_its_content_security_policy(docs: Watched, shared_system: System) -> None:
    s, page = shared_system, docs.page
    shared_system.put_item("DOCS-1", available=10, unit_price=500)
    order = s.place([("DOCS-1", 1)]).json()
    assert order["status"] == "PLACED", order

    answer = page.goto(f"{s.url('order')}/docs")
    assert answer is not None and answer.status == 200
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "unsafe" not in csp
    assert (answer.headers["x-frame-options"], answer.headers["x-content-type-options"]) == ("DENY", "nosniff")
    tags = page.locator(".opblock-tag-section h3")
    expect(tags).to_have_count(5)
    shown = [t.get_attribute("data-tag") for t in tags.all()]
    assert shown == ["orders", "breakers", "operations", "events", "webhooks"]
    expect(page.locator(".opblock")).to_have_count(25)

    # "Authorize" takes a token; then "Try it out" on the cancel.
    page.locator(".auth-wrapper .authorize").click()
    page.locator(".modal-ux input").fill(s.token)
    page.locator(".modal-ux .auth-btn-wrapper .authorize").click()
    page.locator(".modal-ux .btn-done").click()
    cancel = page.locator("#operations-orders-cancel_order")  # the tag and the operation's id
    cancel.locator(".opblock-summary").click()
    cancel.locator(".try-out__btn").click()
    cancel.locator('input[placeholder="order_id"]').fill(order["id"])
    cancel.locator(".execute").click()
    expect(cancel.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    assert s.order(order["id"])["status"] == "CANCELLED"
    shot(page, "docs")

    assert docs.violations() == []
    assert docs.console == []
    loaded = [(status, urlsplit(url).path) for status, url in docs.answers]
    files = {path.removeprefix(ASSETS + "/") for _, path in loaded if path.startswith(ASSETS + "/")}
    assert files == set(ASSET_FILES)
    assert {path for _, path in loaded} == {"/docs", *(f"{ASSETS}/{name}" for name in ASSET_FILES), "/openapi.json",
                                            f"/orders/{order['id']}/cancel"}  # fmt: skip
    assert all(status < 400 for status, _ in loaded), loaded


def test_another_site_cannot_frame_the_docs(browser: Browser, shared_system: System) -> None:
    ctx = context(browser)
    try:
        watched = Watched(ctx.new_page())
        docs = f"{shared_system.url('order')}/docs"
        watched.page.set_content(f'<iframe src="{docs}" width="800" height="600"></iframe>')  # waits for its load
        expect(watched.page.frame_locator("iframe").locator("#swagger-ui")).to_have_count(0)
        assert any("frame-ancestors 'none'" in line for line in watched.console), watched.console
    finally:
        ctx.close()
