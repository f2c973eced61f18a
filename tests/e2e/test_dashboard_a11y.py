"""The dashboard for everyone: axe-core (Deque's engine, 4.12.1 as ``axe-playwright-python`` ships
it) run inside Debian's Chromium finds no WCAG 2.1 A or AA violation on any page, each page holding
what draws its every kind of element: orders of several statuses (their badges) and a second page
of them, an order's page with its diagram and events, the events feed, a webhook endpoint
delivering and one failing with the replay dialog open, the breakers (one forced open, and the
dialog that asks first) and the audit; and the edge's own pages (log in, refused, not found, the
question a log-in link from another site gets). A page is checked once its script has drawn it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from chromium import chromium
from playwright.sync_api import Browser, Page, Response, expect
from system import System
from test_dashboard_browser import LIVE, Receiver, context, place

from oms.auth.tokens import customer_token
from oms.cli.launcher import dashboard_link

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
"""WCAG 2.0 and 2.1, levels A and AA: the rules axe runs (and no best practice beyond them)."""


def violations(page: Page) -> list[dict[str, Any]]:
    """What axe finds on ``page`` as it is now."""
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]})
    assert len(results.response["passes"]) >= 5, results.response["passes"]  # it ran: html-has-lang, document-title...
    found: list[dict[str, Any]] = results.response["violations"]
    return found


def status(answer: Response | None) -> int | None:
    return answer.status if answer is not None else None


def readable(found: dict[str, list[dict[str, Any]]]) -> str:
    """Each page's violations: the rule, its impact and help, and each element with axe's own words."""
    lines = []
    for where, page_violations in found.items():
        for violation in page_violations:
            lines.append(f"{where}: {violation['id']} ({violation['impact']}): {violation['help']}")
            for node in violation["nodes"]:
                lines.append(f"    {', '.join(map(str, node['target']))}: {node['html']}")
                lines.append(f"        {node['failureSummary']}".replace("\n", "\n        "))
    return "\n".join(lines)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def admin(browser: Browser, shared_system: System) -> Iterator[Page]:
    ctx = context(browser)
    page = ctx.new_page()
    page.goto(dashboard_link(shared_system.url("order"), shared_system.key))
    yield page
    ctx.close()


def test_no_page_of_the_dashboard_has_a_wcag_21_aa_violation(
    browser: Browser, admin: Page, shared_system: System
) -> None:
    s = shared_system
    base = s.url("order")
    s.put_item("A11Y-1", available=1000, unit_price=1999)
    s.put_item("A11Y-SCARCE", available=0, unit_price=500)
    delivering, failing = Receiver(204), Receiver(500)
    made = [s.http.post(f"{base}/webhooks", json={"url": r.url, "events": ["*"]}) for r in (delivering, failing)]
    hooks = [answer.json() for answer in made]
    try:
        placed = place(s, sku="A11Y-1")
        place(s, sku="A11Y-1", method="pm_card_chargeDeclined")
        out_of_stock = s.place([("A11Y-SCARCE", 1)])
        assert out_of_stock.status_code == 201, out_of_stock.text
        cancelled = place(s, sku="A11Y-1")
        assert s.http.post(f"{base}/orders/{cancelled['id']}/cancel").status_code < 300
        rows = "#order-events tr"
        pages: list[tuple[str, str, Callable[[Page], None]]] = [
            ("/", "orders", lambda p: expect(p.locator('#counts [data-status="CANCELLED"]')).to_be_visible()),
            (f"/ui/orders/{cancelled['id']}", "order", lambda p: expect(p.locator(rows)).to_have_count(3)),
            (f"/ui/orders/{placed['id']}", "order", lambda p: expect(p.locator("#diagram svg")).to_be_attached()),
            ("/ui/events", "events", lambda p: expect(p.locator("#live")).to_have_text("● live")),
            ("/ui/webhooks", "webhooks", webhooks_drawn),
            ("/ui/breakers", "breakers", lambda p: expect(p.locator("[data-breaker]").first).to_be_visible()),
            ("/ui/audit", "audit", lambda p: expect(p.locator("#summary .status")).to_be_visible()),
        ]
        found = {}
        for path, name, drawn in pages:
            admin.goto(base + path)
            drawn(admin)
            found[f"{name} ({path})"] = violations(admin)
        # The breakers' red state and the dialog that asks first; the webhooks' replay dialog.
        admin.goto(f"{base}/ui/breakers")
        card = admin.locator('[data-breaker="payment"]')
        card.locator('button[data-switch="forced_open"]').click()
        expect(admin.locator("#force-open-dialog")).to_be_visible()
        found["breakers, the force-open dialog open"] = violations(admin)
        admin.click("#force-open-confirm")
        expect(card).to_have_attribute("data-state", "forced_open", timeout=LIVE)
        found["breakers, payment forced open"] = violations(admin)
        card.locator('button[data-switch="closed"]').click()
        expect(card).to_have_attribute("data-state", "closed", timeout=LIVE)
        admin.goto(f"{base}/ui/webhooks")
        webhooks_drawn(admin)
        admin.locator('button[data-action="replay"]').first.click()
        expect(admin.locator("#replay-dialog")).to_be_visible()
        found["webhooks, the replay dialog open"] = violations(admin)
        # The orders page with its pager: one customer's 51 orders, the older page.
        for _ in range(51):
            place(s, customer="a11y-pager", sku="A11Y-1")
        admin.goto(base + "/")
        admin.fill("#search", "a11y-pager")
        expect(admin.locator("#older")).to_be_enabled(timeout=LIVE)
        admin.click("#older")
        expect(admin.locator("#orders tr")).to_have_count(1)
        found["orders, the second page"] = violations(admin)
        found |= edge_pages(browser, s)
        found = {where: v for where, v in found.items() if v}
        assert not found, "axe-core finds WCAG 2.1 AA violations:\n" + readable(found)
    finally:
        for hook in hooks:
            s.http.delete(f"{base}/webhooks/{hook['id']}")
        delivering.close()
        failing.close()


def webhooks_drawn(page: Page) -> None:
    """Both endpoints drawn, one with its deliveries done and one failing."""
    expect(page.locator('tr[data-outcome="delivered"]').first).to_be_visible(timeout=LIVE)
    expect(page.locator("h2 .status.failing")).to_be_visible(timeout=LIVE)


def edge_pages(browser: Browser, s: System) -> dict[str, list[dict[str, Any]]]:
    """What axe finds on the edge's own pages, in a context of their own (no session): how to log in (401), a
    customer refused an admin's page (403), no such order (404), and the question a log-in link
    from another site gets."""
    base = s.url("order")
    carol = customer_token(s.key, "carol")
    found = {}
    ctx = context(browser)
    try:
        page = ctx.new_page()
        assert status(page.goto(base + "/")) == 401
        found["log in (401)"] = violations(page)
        page.goto(f"{base}/?token={carol}")
        assert status(page.goto(f"{base}/ui/breakers")) == 403
        found["an admin's page refused (403)"] = violations(page)
        assert status(page.goto(f"{base}/ui/orders/ord_{'0' * 24}")) == 404
        found["no such order (404)"] = violations(page)
        elsewhere = "http://elsewhere.test/"  # another site; Playwright answers for it
        link = f"{base}/?token={customer_token(s.key, 'dave')}"
        answer = f'<!DOCTYPE html><a href="{link}">go</a>'
        page.route(elsewhere, lambda route: route.fulfill(content_type="text/html", body=answer))
        page.goto(elsewhere)
        page.click("a")
        expect(page.locator("#log-in")).to_be_visible()
        found["a log-in link from another site"] = violations(page)
    finally:
        ctx.close()
    return found
