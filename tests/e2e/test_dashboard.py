"""The dashboard's routes over HTTP against the three services as real processes (SQLite and
PostgreSQL): the log-in link traded for a session cookie (one from another site confirmed first),
the log-out, the cookie refused by InventoryService and PaymentService, cross-site calls refused,
every HTML answer framed by no one, each role kept to its own (a refused page as an HTML page), the
breakers' switches (`POST /breakers/{name}`, `oms breakers set`), the chart's figures, the SVG
diagram and the audit. The browser's side is test_dashboard_browser.py."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from system import System

from oms.auth.tokens import SERVICE_SUBJECT, customer_token, mint
from oms.cli.launcher import dashboard_link
from oms.edge.session import csrf_value
from sequence import parse_svg, spec

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}
NAVIGATION = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-site": "none"}
"""What a browser sends with a navigation (an address typed; ``sec-fetch-site`` says where else)."""
FROM_ELSEWHERE = {**NAVIGATION, "sec-fetch-site": "cross-site"}


def sku() -> str:
    return "DASH-" + uuid.uuid4().hex[:8].upper()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def log_in(s: System, link: str) -> httpx.Client:
    """A client with no Authorization header that opened ``link``: it holds the session's cookies."""
    browser = httpx.Client(timeout=10)
    answer = browser.get(link, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/"
    return browser


def with_csrf(browser: httpx.Client) -> dict[str, str]:
    return {**JSON, "x-csrf-token": str(browser.cookies["oms_csrf"])}


def test_the_log_in_link_is_traded_for_a_session_cookie(shared_system: System) -> None:
    s = shared_system
    link = dashboard_link(s.url("order"), s.key)
    assert re.fullmatch(re.escape(s.url("order")) + r"/\?token=[\w-]+\.[\w-]+\.[\w-]+", link)
    answer = httpx.get(link, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    session, csrf = answer.headers.get_list("set-cookie")
    assert session.startswith("oms_session=") and csrf.startswith("oms_csrf=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in session
    assert "HttpOnly" not in csrf and "SameSite=Strict" in csrf
    max_age = int(re.search(r"Max-Age=(\d+)", session).group(1))  # type: ignore[union-attr]
    assert 86_000 < max_age <= 86_400  # the link's token lives 24 h, and the cookie no longer

    browser = log_in(s, link)
    page = browser.get(f"{s.url('order')}/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'data-page="orders"' in page.text and "token=" not in page.text
    script = browser.get(f"{s.url('order')}/ui/static/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert browser.get(f"{s.url('order')}/ui/static/dashboard.css").status_code == 200
    problem(browser.get(f"{s.url('order')}/ui/static/secrets.txt"), 404)
    problem(browser.get(f"{s.url('order')}/ui/static/..%2fapi.py"), 404)


def test_without_a_valid_session_every_page_is_401(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    for path in ("/", "/ui/breakers", "/ui/audit", "/ui/orders/ord_x", "/ui/static/dashboard.js", "/stats/orders"):
        problem(httpx.get(base + path), 401)
        problem(httpx.get(base + path, headers={"cookie": "oms_session=forged"}), 401)
    problem(httpx.get(f"{base}/?token=forged", follow_redirects=False), 401)
    expired = dashboard_link(base, s.key, ttl=-300)
    assert "expired" in problem(httpx.get(expired, follow_redirects=False), 401)["detail"]


def test_a_page_opened_without_a_session_says_how_to_log_in_and_from_another_site_reloads_once(
    shared_system: System,
) -> None:
    """A browser leaves the SameSite=Strict cookie out of a navigation another site started: such a
    navigation to a page is answered with a page that loads itself again (from this site, so with
    the cookie). Nothing else is: not the reload itself (no loop), not a script's call, not a file.
    A navigation from this site (or a typed address) with no session is told how to log in."""
    base = shared_system.url("order")
    navigation = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    for path in ("/", "/ui/breakers", "/ui/orders/ord_x"):
        answer = httpx.get(base + path, headers=navigation)
        assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/html"), answer.text
        assert '<meta http-equiv="refresh" content="0">' in answer.text and "ord_" not in answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-security-policy"].startswith("default-src 'none';")
        for site in ("same-origin", "none"):  # the reload itself, an address typed: how to log in, no loop
            log_in = httpx.get(base + path, headers={**navigation, "sec-fetch-site": site})
            assert log_in.status_code == 401 and "refresh" not in log_in.text
            assert "oms token --admin" in log_in.text and "script-src" not in log_in.headers["content-security-policy"]
        problem(httpx.get(base + path, headers={**navigation, "sec-fetch-mode": "cors"}), 401)
        problem(httpx.get(base + path), 401)  # an API client: problem+json
    for path in ("/ui/static/dashboard.js", "/stats/orders", "/orders"):
        problem(httpx.get(base + path, headers=navigation), 401)
    # An expired session, or a forged link, opened in a browser: how to log in again.
    expired = httpx.get(
        dashboard_link(base, shared_system.key, ttl=-300), headers={**navigation, "sec-fetch-site": "none"}
    )
    assert expired.status_code == 401 and "oms token --admin" in expired.text


def test_a_call_that_changes_something_needs_the_sessions_csrf_header(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    browser = log_in(s, dashboard_link(base, s.key))
    item = sku()
    s.put_item(item, available=10)
    order = {"customer_id": "cust-csrf", "items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
    # Reading needs no CSRF value; a cross-site page could send these but never read the answer.
    assert browser.get(f"{base}/orders").status_code == 200
    refused = problem(browser.post(f"{base}/orders", json=order, headers=JSON), 403)
    assert refused["type"] == "/problems/cross-site" and "X-CSRF-Token" in refused["detail"]
    problem(browser.post(f"{base}/breakers/payment", json={"state": "closed"}, headers=JSON), 403)
    wrong = {**JSON, "x-csrf-token": csrf_value("another session")}
    problem(browser.post(f"{base}/breakers/payment", json={"state": "closed"}, headers=wrong), 403)
    evil = {**with_csrf(browser), "origin": "https://evil.example"}
    problem(browser.post(f"{base}/orders", json=order, headers=evil), 403)
    assert s.http.get(f"{base}/orders", params={"customer_id": "cust-csrf"}).json()["items"] == []
    # From the page itself: its own origin and the session's value.
    own = {**with_csrf(browser), "origin": base}
    placed = browser.post(f"{base}/orders", json=order, headers=own)
    assert placed.status_code == 201 and placed.json()["status"] == "PLACED"
    # A bearer token's caller is not concerned by any of it.
    assert s.http.post(f"{base}/orders", json=order, headers={"origin": "https://evil.example"}).status_code == 201


def test_a_customer_logs_in_the_same_way_and_sees_only_its_own(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    mine = s.customer("dash-alice").post(f"{base}/orders", json={"items": [{"sku": item, "quantity": 1}],
                                                                 "payment_method": "pm_card_visa"}).json()  # fmt: skip
    theirs = s.place([(item, 1)]).json()
    browser = log_in(s, f"{base}/?token={customer_token(s.key, 'dash-alice')}")
    page = browser.get(f"{base}/")
    assert page.status_code == 200 and 'data-role="customer"' in page.text and "/ui/breakers" not in page.text
    assert [o["id"] for o in browser.get(f"{base}/orders").json()["items"]] == [mine["id"]]
    stats = browser.get(f"{base}/stats/orders").json()
    assert (stats["total"], stats["counts"]["PLACED"]) == (1, 1)
    assert browser.get(f"{base}/ui/orders/{mine['id']}").status_code == 200
    problem(browser.get(f"{base}/ui/orders/{theirs['id']}"), 404)
    problem(browser.get(f"{base}/orders", params={"customer_id": "cust-1"}), 403)
    for path in ("/ui/breakers", "/ui/audit", "/breakers", "/audit"):
        problem(browser.get(base + path), 403)
    problem(browser.post(f"{base}/breakers/inventory", json={"state": "forced_open"}, headers=with_csrf(browser)), 403)
    assert s.breakers()["inventory"]["state"] == "closed"


def test_admins_filter_orders_by_customer(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    body = {"customer_id": "dash-bob", "items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
    ids = [s.http.post(f"{base}/orders", json=body).json()["id"] for _ in range(2)]
    listed = s.http.get(f"{base}/orders", params={"customer_id": "dash-bob"}).json()["items"]
    assert [o["id"] for o in listed] == ids[::-1]
    problem(s.http.get(f"{base}/orders", params={"customer_id": "bob\u202e"}), 422)
    problem(s.http.get(f"{base}/orders", params={"customer_id": "x" * 129}), 422)


def test_the_breakers_switches(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    item = sku()
    s.put_item(item, available=10, unit_price=700)
    assert s.place([(item, 1)]).json()["inventory_check"] == "live"  # OrderService now knows the item
    problem(s.http.post(f"{base}/breakers/nope", json={"state": "closed"}), 404)
    problem(s.http.post(f"{base}/breakers/inventory", json={"state": "open"}), 422)
    problem(s.http.post(f"{base}/breakers/inventory", json={"state": "closed", "extra": 1}), 422)
    problem(s.http.post(f"{base}/breakers/inventory", json={}), 422)
    try:
        forced = s.http.post(f"{base}/breakers/inventory", json={"state": "forced_open"})
        assert forced.status_code == 200 and forced.json()["state"] == "forced_open"
        order = s.place([(item, 1)]).json()
        assert (order["status"], order["inventory_check"], order["reservation"]) == ("PLACED", "fallback", "deferred")
        assert order["saga"][0]["reason"] == "fallback:circuit_open"
        figures = s.breakers()["inventory"]
        assert figures["state"] == "forced_open" and figures["not_permitted_calls"] >= 1
        assert (figures["window_type"], figures["window_size"]) == ("count", 10)
        disabled = s.http.post(f"{base}/breakers/inventory", json={"state": "disabled"}).json()
        assert (disabled["state"], disabled["calls"]) == ("disabled", 0)
        assert s.place([(item, 1)]).json()["inventory_check"] == "live"
        assert s.breakers()["inventory"]["calls"] == 0  # let through, not counted
    finally:
        closed = s.http.post(f"{base}/breakers/inventory", json={"state": "closed"})
    assert closed.json()["state"] == "closed" and closed.json()["calls"] == 0
    metrics = s.http.get(f"{base}/metrics").text
    for old, new in (("closed", "forced_open"), ("forced_open", "disabled"), ("disabled", "closed")):
        assert f'oms_breaker_transitions_total{{downstream="inventory",from_state="{old}",to_state="{new}"}}' in metrics
    # The reservation the forced-open breaker deferred is made once it is closed again.
    assert s.wait_reservation(order["id"])["reservation"] == "held"


def test_oms_breakers_set(shared_system: System) -> None:
    s = shared_system
    command = [sys.executable, "-m", "oms", "breakers", "set", "payment", "disabled", "--url", s.url("order"),
               "--key-file", str(s.key_file)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "disabled" in done.stdout
        assert s.breakers()["payment"]["state"] == "disabled"
        command[6] = "sideways"
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2 and "invalid choice" in refused.stderr
    finally:
        command[6] = "closed"
        assert subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).returncode == 0
    assert s.breakers()["payment"]["state"] == "closed"


def test_the_charts_figures_come_from_the_database(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    before = s.http.get(f"{base}/stats/orders").json()
    for _ in range(3):
        assert s.place([(item, 1)]).json()["status"] == "PLACED"
    figures = s.http.get(f"{base}/stats/orders", params={"minutes": 5}).json()
    assert figures["bucket_seconds"] == 10 and len(figures["buckets"]) == 30
    assert figures["counts"]["PLACED"] == before["counts"]["PLACED"] + 3
    assert figures["total"] == sum(figures["counts"].values())
    recent = figures["buckets"][-3:]
    assert sum(b["orders"] for b in recent) >= 3
    assert any(b["p50_ms"] is not None and 0 < b["p50_ms"] <= b["p99_ms"] < 15_000 for b in recent)
    for minutes in (0, 61, "x"):
        problem(s.http.get(f"{base}/stats/orders", params={"minutes": minutes}), 422)


def test_the_diagram_drawn_as_svg(shared_system: System) -> None:
    s = shared_system
    item = sku()
    s.put_item(item, available=10)
    order = s.place([(item, 2)]).json()
    answer = s.http.get(f"{s.url('order')}/orders/{order['id']}/diagram", params={"format": "svg"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    [section] = parse_svg(answer.text).sections
    assert section.compared == spec()["Successful Order Flow"].compared
    problem(s.http.get(f"{s.url('order')}/orders/{order['id']}/diagram", params={"format": "png"}), 422)


def test_the_audit_as_a_route(shared_system: System) -> None:
    s = shared_system
    deadline = time.monotonic() + 30
    while True:  # earlier tests' sagas (a reconcile) may still be settling
        report = s.http.get(f"{s.url('order')}/audit")
        assert report.status_code == 200, report.text
        if report.json()["clean"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    body = report.json()
    assert body["clean"] is True, body["findings"]
    assert body["orders"] >= 1 and body["items"] >= 1 and body["findings"] == []
    problem(s.http.get(f"{s.url('order')}/audit", params={"stuck_after": -1}), 422)
    problem(s.customer("dash-eve").get(f"{s.url('order')}/audit"), 403)


@pytest.mark.parametrize("path", ["/ui/breakers", "/ui/audit"])
def test_admin_pages_refuse_customers(shared_system: System, path: str) -> None:
    problem(s_customer(shared_system).get(shared_system.url("order") + path), 403)


def s_customer(s: System) -> httpx.Client:
    client: httpx.Client = s.customer("dash-mallory")
    return client


def test_each_services_database_as_a_route_for_admins_only(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    databases = s.http.get(f"{base}/databases")
    assert databases.status_code == 200, databases.text
    up = {"up": True, "kind": None, "since": None, "detail": None}
    assert databases.json() == {"order": up, "inventory": up, "payment": up}
    problem(s_customer(s).get(f"{base}/databases"), 403)
    problem(httpx.get(f"{base}/databases"), 401)
    # A customer's session (the banner is an admin's), and OrderService's own token.
    browser = log_in(s, f"{base}/?token={customer_token(s.key, 'dash-mallory')}")
    problem(browser.get(f"{base}/databases"), 403)
    service = mint(s.key, sub=SERVICE_SUBJECT, scope="service", ttl=60)
    problem(httpx.get(f"{base}/databases", headers={"authorization": f"Bearer {service}"}), 403)
    # /ready tells anyone ready, and an admin its database too.
    assert httpx.get(f"{base}/ready").json() == {"status": "ready"}
    assert s.http.get(f"{base}/ready").json() == {"status": "ready", "service": "order", "database": up}


def test_the_session_cookie_is_order_services_alone(shared_system: System) -> None:
    """A cookie is a host's, not a port's: the browser sends OrderService's to InventoryService and
    PaymentService too, which take bearer tokens only."""
    s = shared_system
    browser = log_in(s, dashboard_link(s.url("order"), s.key))
    token = str(browser.cookies["oms_session"])
    assert browser.get(f"{s.url('order')}/orders").status_code == 200
    cookie = {"cookie": f"oms_session={token}; oms_csrf={csrf_value(token)}"}
    for url in (f"{s.url('inventory')}/items", f"{s.url('inventory')}/reservations", f"{s.url('payment')}/payments"):
        problem(httpx.get(url, headers=cookie), 401)
        problem(httpx.get(url, headers={**cookie, **NAVIGATION}), 401)
    written = {**cookie, **JSON, "x-csrf-token": csrf_value(token), "origin": s.url("inventory")}
    body = {"name": "X", "unit_price": 1, "currency": "USD", "available": 1}
    problem(httpx.put(f"{s.url('inventory')}/items/{sku()}", json=body, headers=written), 401)
    assert httpx.get(f"{s.url('payment')}/payments", headers={"authorization": f"Bearer {token}"}).status_code == 200


def confirmation_form(page: httpx.Response) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="(token|proof)" value="([^"]*)">', page.text))
    assert set(fields) == {"token", "proof"}, page.text
    return fields


def test_a_log_in_link_from_another_site_asks_before_it_replaces_the_session(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    browser = log_in(s, dashboard_link(base, s.key))  # the victim, logged in as an admin
    admin = str(browser.cookies["oms_session"])
    theirs = customer_token(s.key, "dash-mallory")
    for started in (
        FROM_ELSEWHERE,
        {"referer": "https://chat.example/room/1"},
        {**NAVIGATION, "sec-fetch-site": "same-site"},
    ):
        page = browser.get(f"{base}/?token={theirs}", headers=started, follow_redirects=False)
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8", page.text
        assert "<b>dash-mallory</b> (customer)" in page.text and "<script" not in page.text
        assert "oms_session" not in page.headers.get("set-cookie", "")
        assert browser.cookies.get("oms_session", path="/") == admin
        assert 'data-role="admin"' in browser.get(f"{base}/").text
    # Another site's form, with a proof it got for its own browser: refused, the session unchanged.
    foreign = httpx.get(f"{base}/?token={theirs}", headers=FROM_ELSEWHERE)
    forged = browser.post(
        f"{base}/ui/login", data=confirmation_form(foreign), headers={"origin": "https://chat.example"}
    )
    assert forged.status_code == 403 and "oms_session" not in forged.headers.get("set-cookie", "")
    assert browser.post(f"{base}/ui/login", data=confirmation_form(foreign)).status_code == 403  # no Origin: its nonce
    assert 'data-role="admin"' in browser.get(f"{base}/").text
    # The button on the page this browser was shown: now the session is the link's.
    own = {"origin": base, "sec-fetch-site": "same-origin"}
    answer = browser.post(f"{base}/ui/login", data=confirmation_form(page), headers=own, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/"), answer.text
    assert browser.cookies.get("oms_session", path="/") == theirs
    assert 'data-role="customer"' in browser.get(f"{base}/").text
    # A link typed (or from curl) still logs in at once.
    assert log_in(s, f"{base}/?token={theirs}").cookies["oms_session"] == theirs


def test_log_out_ends_the_session(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    browser = log_in(s, dashboard_link(base, s.key))
    page = browser.get(f"{base}/ui/breakers")
    csrf = re.search(r'action="/ui/logout"><input type="hidden" name="csrf" value="([0-9a-f]+)">', page.text)
    assert csrf is not None and csrf.group(1) == browser.cookies["oms_csrf"]
    problem(browser.post(f"{base}/ui/logout", data={"csrf": "0" * 64}), 403)
    problem(
        browser.post(f"{base}/ui/logout", data={"csrf": csrf.group(1)}, headers={"origin": "https://evil.example"}), 403
    )
    assert browser.get(f"{base}/orders").status_code == 200
    answer = browser.post(f"{base}/ui/logout", data={"csrf": csrf.group(1)}, headers={"origin": base})
    assert (answer.status_code, answer.headers["location"]) == (303, "/"), answer.text
    assert "oms_session" not in browser.cookies and "oms_csrf" not in browser.cookies
    landing = browser.get(f"{base}/", headers=NAVIGATION)
    assert landing.status_code == 401 and "Not logged in" in landing.text
    problem(browser.get(f"{base}/orders"), 401)


def test_every_html_answer_may_be_framed_by_no_one(shared_system: System) -> None:
    """Clickjacking: no page of the dashboard's (nor the log-in's, nor a refusal's) shows in another
    site's frame."""
    s = shared_system
    base = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    order = s.place([(item, 1)]).json()
    admin = log_in(s, dashboard_link(base, s.key))
    customer = log_in(s, f"{base}/?token={customer_token(s.key, 'dash-trudy')}")
    theirs = customer_token(s.key, "dash-mallory")
    answers = {
        "orders": admin.get(f"{base}/", headers=NAVIGATION),
        "order": admin.get(f"{base}/ui/orders/{order['id']}", headers=NAVIGATION),
        "breakers": admin.get(f"{base}/ui/breakers", headers=NAVIGATION),
        "audit": admin.get(f"{base}/ui/audit", headers=NAVIGATION),
        "log in": httpx.get(f"{base}/", headers=NAVIGATION),
        "reload": httpx.get(f"{base}/ui/audit", headers=FROM_ELSEWHERE),
        "expired": httpx.get(dashboard_link(base, s.key, ttl=-300), headers=NAVIGATION),
        "confirmation": admin.get(f"{base}/?token={theirs}", headers=FROM_ELSEWHERE),
        "not confirmed": admin.post(f"{base}/ui/login", data={"token": theirs}, headers=FROM_ELSEWHERE),
        "not an admin": customer.get(f"{base}/ui/breakers", headers=NAVIGATION),
        "not theirs": customer.get(f"{base}/ui/orders/{order['id']}", headers=NAVIGATION),
        "no such page": customer.get(f"{base}/ui/nothing", headers=NAVIGATION),
    }
    for name, answer in answers.items():
        assert answer.headers["content-type"] == "text/html; charset=utf-8", (name, answer.text)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy, (name, policy)
        assert answer.headers["x-frame-options"] == "DENY", name
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "orders": 200, "order": 200, "breakers": 200, "audit": 200, "log in": 401, "reload": 401, "expired": 401,
        "confirmation": 200, "not confirmed": 403, "not an admin": 403, "not theirs": 404, "no such page": 404,
    }  # fmt: skip


def test_a_customer_who_opens_an_admin_page_is_told_so_in_html(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    browser = log_in(s, f"{base}/?token={customer_token(s.key, 'dash-trudy')}")
    page = browser.get(f"{base}/ui/breakers", headers=NAVIGATION)
    assert page.status_code == 403 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>403 Forbidden</h1>" in page.text and "log in as an admin" in page.text
    assert '<a href="/" id="orders">Back to the orders</a>' in page.text and 'action="/ui/logout"' in page.text
    # The same call from a script, or an API client: problem+json.
    problem(browser.get(f"{base}/ui/breakers"), 403)
    problem(browser.get(f"{base}/ui/breakers", headers={**NAVIGATION, "sec-fetch-mode": "cors"}), 403)


def test_the_events_page_starts_the_feed_just_before_the_newest_events(shared_system: System) -> None:
    """``/ui/events/start`` gives the cursor after which ``GET /events`` reads the newest ``count``
    events of the filters the page has, a customer's own only: the page shows the newest without
    reading the whole feed."""
    s = shared_system
    base = s.url("order")
    item = sku()
    s.put_item(item, available=10)
    customer = s.customer("dash-events")
    ids = []
    for _ in range(3):
        answer = customer.post(f"{base}/orders", json={"items": [{"sku": item, "quantity": 1}],
                                                       "payment_method": "pm_card_visa"})  # fmt: skip
        assert answer.status_code == 201, answer.text
        ids.append(s.wait_terminal(answer.json()["id"])["id"])
    s.place([(item, 1)])  # another customer's

    def newest(client: httpx.Client, count: int, **filters: str) -> list[str]:
        start = client.get(f"{base}/ui/events/start", params={"count": count, **filters})
        assert start.status_code == 200, start.text
        cursor = start.json()["next"]
        page = client.get(f"{base}/events", params={"limit": 1000, **filters, **({"next": cursor} if cursor else {})})
        return [e["id"] for e in page.json()["items"]]

    def every_one(client: httpx.Client, **filters: str) -> list[str]:
        return [e["id"] for e in client.get(f"{base}/events", params={"limit": 1000, **filters}).json()["items"]]

    # Polled: on PostgreSQL, an event shows once every older transaction has ended.
    deadline = time.monotonic() + 30
    while len(own := every_one(customer)) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(own) == 6  # created and placed, three times
    assert newest(customer, 3) == own[-3:]
    assert newest(customer, 6) == own and newest(customer, 100) == own  # no more than count: from the start
    placed = every_one(customer, type="oms.order.placed")
    assert newest(customer, 2, type="oms.order.placed") == placed[-2:] and len(placed) == 3
    assert newest(customer, 1, subject=ids[0]) == every_one(customer, subject=ids[0])[-1:]
    everyone = every_one(s.http)
    assert newest(s.http, 4) == everyone[-4:] and not set(everyone[-2:]) & set(own)  # the admin's: every order's
    problem(customer.get(f"{base}/ui/events/start", params={"subject": "ord x"}), 422)
    problem(customer.get(f"{base}/ui/events/start", params={"type": "oms.order.shipped"}), 422)
    problem(customer.get(f"{base}/ui/events/start", params={"count": 0}), 422)
    problem(httpx.get(f"{base}/ui/events/start"), 401)


def test_the_events_and_webhooks_pages(shared_system: System) -> None:
    s = shared_system
    base = s.url("order")
    admin = log_in(s, dashboard_link(base, s.key))
    customer = log_in(s, f"{base}/?token={customer_token(s.key, 'dash-trudy')}")
    for path in ("/", "/ui/events", "/ui/webhooks"):
        page = admin.get(base + path, headers=NAVIGATION)
        assert page.status_code == 200, (path, page.text)
        assert '<a href="/ui/events"' in page.text and '<a href="/ui/webhooks"' in page.text
    assert 'data-page="events"' in admin.get(f"{base}/ui/events").text
    assert 'data-page="webhooks"' in admin.get(f"{base}/ui/webhooks").text
    page = customer.get(f"{base}/ui/events", headers=NAVIGATION)
    assert page.status_code == 200 and '<a href="/ui/events"' in page.text and "/ui/webhooks" not in page.text
    refused = customer.get(f"{base}/ui/webhooks", headers=NAVIGATION)
    assert refused.status_code == 403 and refused.headers["content-type"] == "text/html; charset=utf-8"
    assert "log in as an admin" in refused.text
    problem(customer.get(f"{base}/ui/webhooks"), 403)
