"""The dashboard in a real browser: Playwright driving the machine's Chromium (/usr/bin/chromium;
scripts/test installs it with apt when it is missing) against the three services as real processes.

Logged in with the link exactly as ``oms up`` prints it, orders placed through the API appear on
the page live, one order's page draws its diagram as SVG with the specification's arrows, the
inventory breaker forced open from the page sends the next order down the fallback path, a customer
sees only its own orders (and an HTML page where it is refused one), the refusals, a log-in link
opened from another site (a real server on another address) asks before it replaces the session,
and the log-out. A screenshot of each page goes to
``.artifacts/screenshots/`` (gitignored)."""

from __future__ import annotations

import json
import queue
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from chromium import chromium
from playwright.sync_api import Browser, BrowserContext, Page, expect
from system import System

from oms.auth.tokens import customer_token
from oms.cli.launcher import dashboard_link
from otlp_receiver import Receiver as OtlpReceiver
from sequence import parse_svg, spec

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"
LIVE = 30_000
"""Milliseconds a live page is given to show a change. It reads every second, but what it shows may
first need a process to start (the relay, on an endpoint's first event) on a machine the suite's
workers share: a deadline, not a timing; a page that shows it sooner passes sooner."""


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Its own system on SQLite (the HTTP routes run on both databases in test_dashboard.py)."""
    system = System(tmp_path_factory.mktemp("dashboard"))
    try:
        system.start_all()
        system.put_item("WIDGET-1", available=1000, unit_price=1999)
        yield system
    finally:
        system.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def context(browser: Browser) -> BrowserContext:
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(10_000)
    return made


@pytest.fixture
def admin(browser: Browser, dash: System) -> Iterator[Page]:
    """A page logged in as `oms up` tells its user to: with the printed link."""
    ctx = context(browser)
    page = ctx.new_page()
    link = dashboard_link(dash.url("order"), dash.key)
    page.goto(link)
    assert page.url == dash.url("order") + "/"  # the token is gone from the address bar
    yield page
    ctx.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def place(s: System, customer: str = "cust-1", method: str = "pm_card_visa", sku: str = "WIDGET-1") -> dict[str, Any]:
    body = {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}], "payment_method": method}
    answer = s.http.post(f"{s.url('order')}/orders", json=body)
    assert answer.status_code == 201, answer.text
    order: dict[str, Any] = answer.json()
    return order


def test_the_printed_link_logs_in_and_orders_appear_live(admin: Page, dash: System) -> None:
    cookies = {c["name"]: c for c in admin.context.cookies()}
    assert cookies["oms_session"]["httpOnly"] and cookies["oms_session"]["sameSite"] == "Strict"
    assert admin.evaluate("document.cookie").startswith("oms_csrf=")  # the session's own is out of scripts' reach
    expect(admin.locator("#counts")).to_contain_text("orders")
    orders = [place(dash, customer=f"live-{i}") for i in range(3)]
    for order in orders:
        expect(admin.locator(f'tr[data-id="{order["id"]}"]')).to_be_visible(timeout=LIVE)
    # A status change shows without reloading too.
    dash.http.post(f"{dash.url('order')}/orders/{orders[0]['id']}/cancel")
    expect(admin.locator(f'tr[data-id="{orders[0]["id"]}"]')).to_have_attribute(
        "data-status", "CANCELLED", timeout=LIVE
    )
    declined = place(dash, customer="live-declined", method="pm_card_chargeDeclined")
    expect(admin.locator(f'tr[data-id="{declined["id"]}"]')).to_have_attribute("data-status", "PAYMENT_FAILED")
    expect(admin.locator("#chart svg rect").first).to_be_attached()
    expect(admin.locator("#chart polyline").first).to_be_attached(timeout=LIVE)
    shot(admin, "orders")
    # Filter by status, search by customer and by order id.
    admin.select_option("#status-filter", "CANCELLED")
    expect(admin.locator("#orders tr")).to_have_count(1, timeout=LIVE)
    expect(admin.locator("#orders tr").first).to_have_attribute("data-id", orders[0]["id"])
    admin.select_option("#status-filter", "")
    admin.fill("#search", "live-1")
    expect(admin.locator("#orders tr")).to_have_count(1, timeout=LIVE)
    expect(admin.locator("#orders tr").first).to_have_attribute("data-id", orders[1]["id"])
    admin.fill("#search", orders[2]["id"])
    expect(admin.locator("#orders tr").first).to_have_attribute("data-id", orders[2]["id"], timeout=LIVE)
    expect(admin.locator("#orders tr")).to_have_count(1)


def test_an_orders_page_draws_its_diagram_with_the_specs_arrows(admin: Page, dash: System) -> None:
    order = place(dash, customer="one-order")
    expect(admin.locator(f'tr[data-id="{order["id"]}"]')).to_be_visible(timeout=LIVE)
    admin.click(f'tr[data-id="{order["id"]}"] a')
    admin.wait_for_url(f"**/ui/orders/{order['id']}")
    expect(admin.locator("#diagram svg g.arrow").first).to_be_attached()
    drawn = parse_svg(admin.locator("#diagram svg").evaluate("svg => new XMLSerializer().serializeToString(svg)"))
    [section] = drawn.sections
    assert section.title == "Successful Order Flow"
    assert section.compared == spec()["Successful Order Flow"].compared
    expect(admin.locator("#steps tr")).to_have_count(3)
    expect(admin.locator("#facts")).to_contain_text("PLACED")
    expect(admin.locator("#retry")).to_have_count(0)  # nothing to retry
    shot(admin, "order")
    admin.click("#cancel")
    expect(admin.locator("#facts")).to_contain_text("CANCELLED", timeout=LIVE)
    expect(admin.locator("#diagram svg g.section")).to_have_count(2, timeout=LIVE)  # the cancel saga's section
    expect(admin.locator("#cancel")).to_have_count(0)


def test_forcing_the_inventory_breaker_open_from_the_page_sends_orders_to_the_fallback(
    admin: Page, dash: System
) -> None:
    admin.click("nav >> text=Breakers")
    admin.wait_for_url("**/ui/breakers")
    card = admin.locator('[data-breaker="inventory"]')
    expect(card).to_have_attribute("data-state", "closed")
    place(dash, customer="before-fallback")  # OrderService has seen WIDGET-1: the fallback has data on it
    try:
        card.locator('button[data-switch="forced_open"]').click()
        admin.click("#force-open-confirm")
        expect(card).to_have_attribute("data-state", "forced_open", timeout=LIVE)
        expect(admin.locator("#message")).to_contain_text("inventory: forced_open")
        assert dash.breakers()["inventory"]["state"] == "forced_open"
        order = place(dash, customer="fallback")
        assert (order["status"], order["inventory_check"]) == ("PLACED", "fallback")
        expect(card).to_contain_text(re.compile(r"refused calls[1-9]"), timeout=LIVE)
        shot(admin, "breakers")
        admin.goto(f"{dash.url('order')}/ui/orders/{order['id']}")
        expect(admin.locator("#diagram svg g.arrow").first).to_be_attached()
        svg = admin.locator("#diagram svg").evaluate("svg => new XMLSerializer().serializeToString(svg)")
        first = parse_svg(svg).sections[0]
        assert first.title == "Circuit Breaker Scenario"
        assert first.compared == spec()["Circuit Breaker Scenario"].compared
        expect(admin.locator("#facts")).to_contain_text("fallback")
        shot(admin, "order-fallback")
    finally:
        admin.goto(f"{dash.url('order')}/ui/breakers")
        admin.locator('[data-breaker="inventory"] button[data-switch="closed"]').click()
        expect(admin.locator('[data-breaker="inventory"]')).to_have_attribute("data-state", "closed", timeout=LIVE)
    assert dash.wait_reservation(order["id"])["reservation"] == "held"


def test_the_audit_page(admin: Page, dash: System) -> None:
    admin.goto(f"{dash.url('order')}/ui/audit")
    summary = admin.locator("#summary")
    expect(summary).to_have_attribute("data-clean", "true")
    expect(summary).to_contain_text("the three services agree")
    shot(admin, "audit")


def test_a_customer_sees_only_its_own_orders(browser: Browser, dash: System) -> None:
    own = place(dash, customer="carol")
    other = place(dash, customer="dave")
    ctx = context(browser)
    try:
        page = ctx.new_page()
        page.goto(f"{dash.url('order')}/?token={customer_token(dash.key, 'carol')}")
        expect(page.locator(f'tr[data-id="{own["id"]}"]')).to_be_visible(timeout=LIVE)
        expect(page.locator("#orders tr")).to_have_count(1)
        expect(page.locator("nav")).not_to_contain_text("Breakers")
        expect(page.locator("header .who")).to_contain_text("carol · customer")
        shot(page, "customer-orders")
        assert page.goto(f"{dash.url('order')}/ui/orders/{other['id']}").status == 404  # type: ignore[union-attr]
        assert page.goto(f"{dash.url('order')}/ui/breakers").status == 403  # type: ignore[union-attr]
        assert page.goto(f"{dash.url('order')}/ui/audit").status == 403  # type: ignore[union-attr]
    finally:
        ctx.close()


def test_the_refusals(browser: Browser, admin: Page, dash: System) -> None:
    ctx = context(browser)
    try:
        stranger = ctx.new_page()
        assert stranger.goto(dash.url("order") + "/").status == 401  # type: ignore[union-attr]
        assert stranger.goto(f"{dash.url('order')}/?token=forged{uuid.uuid4().hex}").status == 401  # type: ignore[union-attr]
    finally:
        ctx.close()
    # A script on the logged-in page that leaves out the CSRF header is refused, and nothing changes.
    status = admin.evaluate(
        """() => fetch("/breakers/inventory", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({state: "forced_open"})}).then(r => r.status)"""
    )
    assert status == 403
    assert dash.breakers()["inventory"]["state"] == "closed"


def test_a_link_from_another_site_opens_the_dashboard_of_a_logged_in_browser(admin: Page, dash: System) -> None:
    """The session's cookie is SameSite=Strict: the browser leaves it out of a navigation that
    another site started. The page answers that one navigation with a reload from its own site,
    which carries the cookie."""
    order = place(dash, customer="from-elsewhere")
    target = f"{dash.url('order')}/ui/orders/{order['id']}"
    elsewhere = "http://elsewhere.test/"  # another site; Playwright answers for it, no server needed
    admin.route(
        elsewhere, lambda route: route.fulfill(content_type="text/html", body=f'<a href="{target}">the order</a>')
    )
    admin.goto(elsewhere)
    with admin.expect_navigation(url=target):
        admin.click("a")
    expect(admin.locator("h1")).to_contain_text(order["id"])
    expect(admin.locator("#view")).to_contain_text("PLACED", timeout=LIVE)


class Elsewhere:
    """Another site, for real: an HTTP server on 127.0.0.2 (a site of its own, as an address is),
    on a port the system picks, serving the pages a test gives it."""

    def __init__(self) -> None:
        pages: dict[str, str] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.pages = pages
        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    site = Elsewhere()
    yield site
    site.close()


def session_of(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "oms_session")


def test_a_log_in_link_from_another_site_asks_before_it_replaces_the_session(
    admin: Page, dash: System, elsewhere: Elsewhere
) -> None:
    """Log-in CSRF: another site's link to the log-in with its own token would have swapped the
    admin's session for the attacker's, silently. It shows whom it logs in as, and waits for the button."""
    base = dash.url("order")
    victim = session_of(admin)
    theirs = customer_token(dash.key, "mallory")
    elsewhere.pages["/"] = f'<a id="link" href="{base}/?token={theirs}">a prize</a>'
    problems: list[str] = []
    admin.on("console", lambda message: problems.append(message.text) if "Security Policy" in message.text else None)
    admin.goto(elsewhere.url + "/")
    with admin.expect_navigation():
        admin.click("#link")
    assert session_of(admin) == victim
    assert admin.url == f"{base}/?token={theirs}"
    expect(admin.locator("h1")).to_have_text("Log in to the oms dashboard?")
    expect(admin.locator("#identity")).to_have_text("mallory (customer)")
    assert problems == []  # no Content-Security-Policy complaint: the page's one style is allowed
    shot(admin, "log-in-confirmation")
    # What the attacker can get for its own token: a proof, good with its own browser's nonce only.
    foreign = httpx.get(f"{base}/?token={theirs}", headers={"sec-fetch-site": "cross-site"})
    proof = re.search(r'name="proof" value="([0-9a-f]+)"', foreign.text)
    assert proof is not None
    elsewhere.pages["/"] += (
        f'<form method="post" action="{base}/ui/login"><input type="hidden" name="token" value="{theirs}">'
        f'<input type="hidden" name="proof" value="{proof.group(1)}"><button id="post">another prize</button></form>'
    )
    # The attacker's own form, posted from its site: refused, and the session is still the admin's.
    admin.goto(elsewhere.url + "/")
    with admin.expect_navigation(url=f"{base}/ui/login") as posted:
        admin.click("#post")
    assert posted.value is not None and posted.value.status == 403
    assert session_of(admin) == victim
    admin.goto(base + "/")
    expect(admin.locator("header .who")).to_have_text("admin · admin")
    # The link again, and this time the button: the session is the link's.
    admin.goto(elsewhere.url + "/")
    admin.click("#link")
    admin.click("#log-in")
    admin.wait_for_url(base + "/")
    expect(admin.locator("header .who")).to_have_text("mallory · customer")
    assert session_of(admin) == theirs


def test_log_out_from_the_header(admin: Page, dash: System) -> None:
    base = dash.url("order")
    admin.goto(f"{base}/ui/breakers")
    expect(admin.locator('[data-breaker="inventory"]')).to_be_visible()
    admin.click("header #log-out")
    admin.wait_for_url(base + "/")
    expect(admin.locator("body")).to_contain_text("Not logged in")
    assert {c["name"] for c in admin.context.cookies()} & {"oms_session", "oms_csrf"} == set()
    assert admin.goto(f"{base}/ui/breakers").status == 401  # type: ignore[union-attr]
    expect(admin.locator("body")).to_contain_text("oms token --admin")


def test_a_customer_refused_a_page_sees_a_page(browser: Browser, dash: System) -> None:
    ctx = context(browser)
    try:
        page = ctx.new_page()
        page.goto(f"{dash.url('order')}/?token={customer_token(dash.key, 'carol')}")
        answer = page.goto(f"{dash.url('order')}/ui/breakers")
        assert answer is not None and answer.status == 403
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        expect(page.locator("h1")).to_have_text("403 Forbidden")
        expect(page.locator("body")).to_contain_text("log in as an admin")
        shot(page, "customer-refused")
        page.click("#orders")
        page.wait_for_url(dash.url("order") + "/")
        expect(page.locator("header .who")).to_contain_text("carol · customer")
    finally:
        ctx.close()


class Receiver:
    """A webhook endpoint for real: an HTTP server on a port the system picks, answering every POST
    ``status`` (204) and keeping what it was sent."""

    def __init__(self, status: int = 204) -> None:
        received: queue.Queue[dict[str, Any]] = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.put({"headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def csp_complaints(page: Page) -> list[str]:
    """What the browser says the Content-Security-Policy stopped on ``page`` (from now on)."""
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text) if "Security Policy" in message.text else None)
    return complaints


def test_the_events_page_shows_a_new_orders_events_live(admin: Page, dash: System) -> None:
    complaints = csp_complaints(admin)
    admin.click("nav >> text=Events")
    admin.wait_for_url("**/ui/events")
    expect(admin.locator("#live")).to_have_text("● live")  # it has read the feed and waits on it
    admin.evaluate("window.notReloaded = true")
    order = place(dash, customer="events-live")
    mine = admin.locator(f'#events tr[data-order="{order["id"]}"]')
    expect(mine).to_have_count(2, timeout=LIVE)  # created, then placed
    expect(admin.locator("#events tr").first).to_have_attribute("data-type", "oms.order.placed")  # newest on top
    expect(admin.locator("#events tr").first).to_contain_text(order["id"])
    expect(mine.nth(1)).to_have_attribute("data-type", "oms.order.created")
    expect(mine.first).to_contain_text("PLACED")
    assert admin.evaluate("window.notReloaded") is True
    shot(admin, "events")
    # Filtered by type, and still live: the order cancelled shows.
    admin.select_option("#type-filter", "oms.order.cancelled")
    expect(admin.locator("#live")).to_have_text("● live")
    expect(admin.locator('#events tr[data-type]:not([data-type="oms.order.cancelled"])')).to_have_count(0)
    dash.http.post(f"{dash.url('order')}/orders/{order['id']}/cancel")
    expect(admin.locator("#events tr").first).to_have_attribute("data-order", order["id"], timeout=LIVE)
    # By order: its three events, newest first.
    admin.select_option("#type-filter", "")
    admin.fill("#order-filter", order["id"])
    expect(admin.locator("#events tr")).to_have_count(3, timeout=LIVE)
    expect(admin.locator("#events tr td.num")).to_have_text(["3", "2", "1"])
    admin.click('#events tr[data-type="oms.order.cancelled"] a')
    admin.wait_for_url(f"**/ui/orders/{order['id']}")
    assert admin.evaluate("window.notReloaded") is None  # the link opened the order's page
    assert complaints == []


def test_an_orders_page_lists_its_events_and_where_they_went(admin: Page, dash: System, receiver: Receiver) -> None:
    base = dash.url("order")
    made = dash.http.post(f"{base}/webhooks", json={"url": receiver.url, "events": ["*"]})
    assert made.status_code == 201, made.text
    try:
        order = place(dash, customer="events-order")
        admin.goto(f"{base}/ui/orders/{order['id']}")
        events = admin.locator("#order-events tr")
        expect(events).to_have_count(2)
        expect(events.nth(0)).to_have_attribute("data-type", "oms.order.created")
        expect(events.nth(1)).to_have_attribute("data-type", "oms.order.placed")
        # An admin's: where each went (the relay delivers to the receiver, which answers 204).
        delivered = admin.locator('#deliveries tr[data-outcome="delivered"]')
        expect(delivered).to_have_count(2, timeout=LIVE)
        expect(delivered.first).to_contain_text("oms.order.created")
        expect(delivered.first).to_contain_text(receiver.url)
        expect(delivered.first).to_contain_text("204")
        admin.click("#cancel")
        expect(events).to_have_count(3, timeout=LIVE)
        expect(events.nth(2)).to_contain_text("CANCELLED")
        expect(delivered).to_have_count(3, timeout=LIVE)
        shot(admin, "order-events")
    finally:
        assert dash.http.delete(f"{base}/webhooks/{made.json()['id']}").status_code == 204


def test_a_customer_has_its_own_events_and_no_webhooks(browser: Browser, dash: System) -> None:
    own = place(dash, customer="erin")
    other = place(dash, customer="frank")
    ctx = context(browser)
    try:
        page = ctx.new_page()
        page.goto(f"{dash.url('order')}/?token={customer_token(dash.key, 'erin')}")
        expect(page.locator("nav")).not_to_contain_text("Webhooks")
        page.click("nav >> text=Events")
        page.wait_for_url("**/ui/events")
        expect(page.locator(f'#events tr[data-order="{own["id"]}"]')).to_have_count(2)
        expect(page.locator("#events tr")).to_have_count(2)
        expect(page.locator(f'#events tr[data-order="{other["id"]}"]')).to_have_count(0)
        page.goto(f"{dash.url('order')}/ui/orders/{own['id']}")
        expect(page.locator("#order-events tr")).to_have_count(2)
        expect(page.locator("#deliveries")).to_have_count(0)
        answer = page.goto(f"{dash.url('order')}/ui/webhooks")
        assert answer is not None and answer.status == 403
        expect(page.locator("body")).to_contain_text("log in as an admin")
    finally:
        ctx.close()


def test_the_webhooks_page_shows_an_endpoint_and_acts_on_it(admin: Page, dash: System, receiver: Receiver) -> None:
    base = dash.url("order")
    place(dash, customer="webhooks-page")  # an event within the hour, for the replay
    made = dash.http.post(f"{base}/webhooks", json={"url": receiver.url, "events": ["*"], "description": "the page's"})
    assert made.status_code == 201, made.text
    webhook = made.json()
    complaints = csp_complaints(admin)
    try:
        admin.click("nav >> text=Webhooks")
        admin.wait_for_url("**/ui/webhooks")
        card = admin.locator(f'[data-webhook="{webhook["id"]}"]')
        expect(card).to_have_attribute("data-status", "enabled")
        expect(card.locator("h2")).to_contain_text(receiver.url)
        expect(card.locator(".last-success")).to_be_visible()
        expect(card.locator(".failing-since")).to_be_visible()
        expect(card.locator(".waiting")).to_have_text(re.compile(r"^\d+$"))
        expect(card.locator("h2 .status.failing")).to_have_count(0)
        # The test button: sent at once, signed, and recorded as a delivery.
        card.locator('button[data-action="test"]').click()
        expect(admin.locator("#message")).to_contain_text(f"test to {receiver.url}: 204")
        tested = card.locator('tr[data-outcome="test"]')
        expect(tested).to_have_count(1, timeout=LIVE)
        expect(tested).to_contain_text("oms.webhook.test")
        expect(tested).to_contain_text("204")
        sent = receiver.received.get(timeout=10)
        assert sent["body"]["type"] == "oms.webhook.test" and sent["body"]["data"] == {"webhook_id": webhook["id"]}
        assert sent["headers"]["webhook-signature"].startswith("v1,")
        # Disable, enable.
        card.locator('button[data-action="disable"]').click()
        expect(card).to_have_attribute("data-status", "disabled", timeout=LIVE)
        assert dash.http.get(f"{base}/webhooks/{webhook['id']}").json()["status"] == "disabled"
        card.locator('button[data-action="enable"]').click()
        expect(card).to_have_attribute("data-status", "enabled", timeout=LIVE)
        # Replay: it asks since when (an hour ago unless told).
        card.locator('button[data-action="replay"]').click()
        expect(admin.locator("#replay-dialog")).to_be_visible()
        expect(admin.locator("#replay-dialog h2")).to_contain_text(receiver.url)
        shot(admin, "webhooks-replay")
        admin.fill("#replay-since", "")
        admin.click("#replay-confirm")
        expect(admin.locator("#replay-dialog .problem")).to_have_text("Say since when: a date and a time.")
        later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # read as UTC
        admin.fill("#replay-since", later)
        admin.click("#replay-confirm")
        expect(admin.locator("#replay-dialog")).to_be_hidden()
        expect(admin.locator("#message")).to_have_text(f"replay: 0 events queued for {receiver.url}")
        card.locator('button[data-action="replay"]').click()
        admin.click("#replay-confirm")  # an hour back, as it offers
        expect(admin.locator("#message")).to_contain_text(re.compile(r"replay: [1-9]\d* events queued for "))
        shot(admin, "webhooks")
        assert complaints == []
    finally:
        assert dash.http.delete(f"{base}/webhooks/{webhook['id']}").status_code == 204


def test_the_webhooks_page_shows_an_endpoint_failing_and_one_disabled(admin: Page, dash: System) -> None:
    """Health as the relay leaves it: an endpoint answering 500 is failing since its first failure,
    its delivery waiting with its next try; one answering 410 Gone is disabled, and says why."""
    base = dash.url("order")
    failing, gone = Receiver(500), Receiver(410)
    made = [dash.http.post(f"{base}/webhooks", json={"url": r.url, "events": ["*"]}).json() for r in (failing, gone)]
    try:
        place(dash, customer="webhooks-health")
        admin.goto(f"{base}/ui/webhooks")
        sick = admin.locator(f'[data-webhook="{made[0]["id"]}"]')
        expect(sick.locator(".failing-since")).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"), timeout=LIVE
        )
        expect(sick.locator("h2 .status.failing")).to_be_visible()
        expect(sick.locator(".last-success")).to_have_text("never")
        expect(sick.locator(".waiting")).not_to_have_text("0", timeout=LIVE)
        retry = sick.locator('tr[data-outcome="retry"]').first
        expect(retry).to_contain_text("500", timeout=LIVE)
        expect(retry.locator("td").last).to_have_text(re.compile(r"^\d{4}-"))  # when it is tried again
        dead = admin.locator(f'[data-webhook="{made[1]["id"]}"]')
        expect(dead).to_have_attribute("data-status", "disabled", timeout=LIVE)
        expect(dead.locator(".reason")).to_contain_text("410")
        expect(dead.locator('tr[data-outcome="endpoint_gone"]')).to_contain_text("410")
        expect(dead.locator('button[data-action="enable"]')).to_be_enabled()
        shot(admin, "webhooks-health")
    finally:
        for webhook in made:
            dash.http.delete(f"{base}/webhooks/{webhook['id']}")
        failing.close()
        gone.close()


def test_every_page_has_the_favicon_from_the_service_itself(admin: Page, dash: System) -> None:
    """An SVG the static route serves, under the pages' own Content-Security-Policy (img-src 'self'),
    which the browser asks for as it opens each page: no other favicon, from this site or another."""
    base = dash.url("order")
    order = place(dash, customer="favicon")
    complaints = csp_complaints(admin)
    asked: list[str] = []
    admin.on("request", lambda request: asked.append(request.url) if "favicon" in request.url else None)
    for path in ["/", f"/ui/orders/{order['id']}", "/ui/events", "/ui/webhooks", "/ui/breakers", "/ui/audit"]:
        with admin.expect_request(base + "/ui/static/favicon.svg"):  # the browser's own, for the tab
            admin.goto(base + path)
        expect(admin.locator('head link[rel="icon"]')).to_have_attribute("href", "/ui/static/favicon.svg")
    icon = admin.request.get(base + "/ui/static/favicon.svg")
    assert icon.status == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert "default-src 'none'" in icon.headers["content-security-policy"]
    drawn = admin.evaluate(
        """async () => { const image = new Image(); image.src = "/ui/static/favicon.svg"; await image.decode();
                         return [image.naturalWidth, image.naturalHeight]; }"""
    )
    assert drawn == [32, 32]  # the browser draws it under the page's img-src
    assert set(asked) == {base + "/ui/static/favicon.svg"}, asked
    assert complaints == []


def test_force_open_asks_first(admin: Page, dash: System) -> None:
    """A breaker forced open refuses every call to its service: the button asks, and Cancel or
    Escape leave the breaker as it was."""
    admin.goto(f"{dash.url('order')}/ui/breakers")
    card = admin.locator('[data-breaker="payment"]')
    expect(card).to_have_attribute("data-state", "closed")
    dialog = admin.locator("#force-open-dialog")
    try:
        card.locator('button[data-switch="forced_open"]').click()
        expect(dialog).to_be_visible()
        expect(dialog.locator("h2")).to_have_text("Force the payment breaker open?")
        expect(dialog).to_contain_text("PaymentService is refused until the breaker is reset")
        expect(admin.locator("#force-open-cancel")).to_be_focused()  # Enter does not force it
        shot(admin, "breakers-force-open")
        admin.click("#force-open-cancel")
        expect(dialog).to_be_hidden()
        card.locator('button[data-switch="forced_open"]').click()
        expect(dialog).to_be_visible()
        admin.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        # The page has redrawn its cards meanwhile (every second); the breaker is still closed.
        admin.evaluate("document.querySelector('[data-breaker=payment]').dataset.mark = 'old'")
        expect(card).not_to_have_attribute("data-mark", "old", timeout=LIVE)
        expect(card).to_have_attribute("data-state", "closed")
        assert dash.breakers()["payment"]["state"] == "closed"
        card.locator('button[data-switch="forced_open"]').click()
        admin.click("#force-open-confirm")
        expect(dialog).to_be_hidden()
        expect(card).to_have_attribute("data-state", "forced_open", timeout=LIVE)
        expect(admin.locator("#message")).to_contain_text("payment: forced_open")
        assert dash.breakers()["payment"]["state"] == "forced_open"
    finally:
        dash.http.post(f"{dash.url('order')}/breakers/payment", json={"state": "closed"})
    assert dash.breakers()["payment"]["state"] == "closed"


def test_the_trace_id_is_a_link_to_the_tracing_ui_when_a_template_is_set(browser: Browser, tmp_path: Path) -> None:
    """With tracing on and ``OMS_TRACE_URL_TEMPLATE`` set, an admin's order page links its trace id
    to the trace, opened in a tab of its own (the dashboard's page stays where it was). A customer is
    not told the tracing UI's address: its page shows the id as text."""
    tracing = "http://tracing.test"  # a tracing UI on another site; Playwright answers for it
    spans = OtlpReceiver(keep=False).start()
    traced = System(tmp_path, {**spans.env(), "OMS_TRACE_URL_TEMPLATE": tracing + "/trace/{trace_id}"})
    ctx = context(browser)
    try:
        traced.start_all()
        traced.put_item("WIDGET-1", available=10)
        order = place(traced, customer="traced")
        assert order["trace_url"] == f"{tracing}/trace/{order['trace_id']}"
        ctx.route(tracing + "/**", lambda route: route.fulfill(content_type="text/html", body="<h1>the trace</h1>"))
        page = ctx.new_page()
        page.goto(dashboard_link(traced.url("order"), traced.key))
        page.goto(f"{traced.url('order')}/ui/orders/{order['id']}")
        link = page.locator(f'#facts a[href="{order["trace_url"]}"]')
        expect(link).to_have_text(order["trace_id"])
        shot(page, "order-trace-link")
        with page.expect_popup() as opened:
            link.click()
        trace = opened.value
        trace.wait_for_load_state()
        assert trace.url == order["trace_url"]
        expect(trace.locator("h1")).to_have_text("the trace")
        assert page.url == f"{traced.url('order')}/ui/orders/{order['id']}"
        # The customer's own page: the id, no link.
        page.goto(f"{traced.url('order')}/?token={customer_token(traced.key, 'traced')}")
        page.goto(f"{traced.url('order')}/ui/orders/{order['id']}")
        expect(page.locator("#facts #trace")).to_have_text(order["trace_id"])
        expect(page.locator("#facts a")).to_have_count(0)
    finally:
        ctx.close()
        traced.stop_all()
        spans.stop()


def test_the_orders_page_pages_past_the_newest_50(admin: Page, dash: System) -> None:
    """Older orders a page of 50 at a time, from the API's cursor: the older page stays as it was
    while a new order comes in (it shows on the newest page), and the pager goes back."""
    customer = f"pager-{uuid.uuid4().hex[:8]}"
    placed = [place(dash, customer=customer)["id"] for _ in range(53)]
    newest_first = placed[::-1]
    pager = admin.locator("#pager")
    rows = admin.locator("#orders tr")
    admin.fill("#search", customer)  # the test's own: 53, two pages
    expect(admin.locator("#position")).to_have_text("orders 1 to 50, newest first", timeout=LIVE)
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-id", newest_first[0])
    expect(rows.last).to_have_attribute("data-id", newest_first[49])
    expect(admin.locator("#newer")).to_be_disabled()
    admin.click("#older")
    expect(admin.locator("#position")).to_have_text("orders 51 to 53, newest first")
    assert [rows.nth(i).get_attribute("data-id") for i in range(3)] == newest_first[50:]
    expect(admin.locator("#older")).to_be_disabled()
    shot(admin, "orders-older")
    late = place(dash, customer=customer)
    admin.evaluate("document.querySelector('#orders tr').dataset.mark = 'old'")
    expect(rows.first).not_to_have_attribute("data-mark", "old", timeout=LIVE)  # drawn again since
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-id", newest_first[50])
    admin.click("#newer")
    expect(rows.first).to_have_attribute("data-id", late["id"], timeout=LIVE)
    expect(admin.locator("#position")).to_have_text("orders 1 to 50, newest first")
    expect(admin.locator("#older")).to_be_enabled()  # 54 now: four on the older page
    admin.click("#older")
    expect(rows).to_have_count(4)
    admin.fill("#search", "")  # a new search starts at the newest
    expect(admin.locator("#position")).to_have_text(re.compile(r"^orders 1 to 50, newest first$"))
    expect(admin.locator("#newer")).to_be_disabled()
    # One page only: no pager (drawn with the rows).
    single = place(dash, customer=f"{customer}-single")
    admin.fill("#search", f"{customer}-single")
    expect(rows.first).to_have_attribute("data-id", single["id"], timeout=LIVE)
    expect(pager).to_be_hidden()
