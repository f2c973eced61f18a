"""The three services on a PostgreSQL server of their own, which crashes and comes back: each
answers /ready 503 while it cannot use its database and 200 once it can again, /health 200 all along;
oms_database_up follows, oms_database_errors_total counts the faults; OrderService's routes answer
503 database-unavailable meanwhile, and the dashboard tells an admin (GET /databases, and a red
banner on the page in a real browser)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from chromium import ARGS, CHROMIUM
from playwright.sync_api import Page, expect, sync_playwright
from system import SERVICES, System
from test_dashboard_browser import shot

import pgfaults
import pgserver
from oms.cli.launcher import dashboard_link

pytestmark = pytest.mark.postgres

T = TypeVar("T")


def until(what: str, probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    """``probe()``'s first answer that is not None, asked again every 50 ms up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def metric(system: System, service: str, name: str) -> float:
    text = system.http.get(f"{system.url(service)}/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, (name, text[:2000])
    return float(found.group(1))


def faults(system: System, service: str) -> float:
    """The faults counted that a server gone shows as: unreachable, or timeout."""
    return sum(metric(system, service, f'oms_database_errors_total{{kind="{k}"}}') for k in ("unreachable", "timeout"))


@pytest.fixture
def own_server() -> Iterator[pgserver.PostgresServer]:
    """A PostgreSQL server for this test alone: it is crashed, which the session's must not be."""
    with pgfaults.own_server() as server:
        yield server


def test_ready_follows_the_database_down_and_back(own_server: pgserver.PostgresServer, tmp_path: Path) -> None:
    stamp = uuid.uuid4().hex[:6]
    urls = {name: own_server.create_database(f"down_{stamp}_{name}") for name in SERVICES}
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: scripts/test installs it (apt-get install -y chromium)")
    s = System(tmp_path, env={"OMS_DATABASE_TIMEOUT": "1.0"}, database_urls=urls).start_all()
    anonymous = httpx.Client(timeout=10)
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page: Page = chromium.new_page(viewport={"width": 1280, "height": 700})
        page.set_default_timeout(10_000)
        page.goto(dashboard_link(s.url("order"), s.key))
        expect(page.locator("#orders")).to_be_visible()
        expect(page.locator("#databases")).to_be_hidden()
        for name in SERVICES:
            assert anonymous.get(f"{s.url(name)}/ready").json() == {"status": "ready"}
            assert metric(s, name, "oms_database_up") == 1
        told = s.http.get(f"{s.url('order')}/ready").json()  # an admin is told more
        assert told["database"] == {"up": True, "kind": None, "since": None, "detail": None}
        before = {name: faults(s, name) for name in SERVICES}

        own_server.kill()

        def not_ready(name: str) -> Callable[[], httpx.Response | None]:
            def probe() -> httpx.Response | None:
                answer = anonymous.get(f"{s.url(name)}/ready")
                return answer if answer.status_code == 503 else None

            return probe

        for name in SERVICES:
            answer = until(f"{name} /ready 503", not_ready(name))
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["retry-after"] == "2"
            body: dict[str, Any] = answer.json()
            assert body["type"] == "/problems/database-unavailable"
            assert body["reason"] in ("database unreachable", "database timeout"), body
            assert "database" not in body  # to anyone: the reason alone
            assert anonymous.get(f"{s.url(name)}/health").status_code == 200  # the process is up
            assert metric(s, name, "oms_database_up") == 0
            assert faults(s, name) > before[name]
        listed = s.http.get(f"{s.url('order')}/orders")
        assert listed.status_code == 503 and listed.json()["type"] == "/problems/database-unavailable"
        databases = s.http.get(f"{s.url('order')}/databases").json()
        assert [databases[name]["up"] for name in SERVICES] == [False, False, False]
        assert databases["order"]["kind"] in ("unreachable", "timeout") and databases["order"]["since"]
        banner = page.locator("#databases p[data-service=order]")
        since = r"since \d\d:\d\d:\d\d UTC"
        expect(banner).to_have_text(
            re.compile(rf"^OrderService's database is (unreachable|not answering in time) {since}$")
        )
        expect(page.locator("#databases p.down")).to_have_count(3)
        shot(page, "database-down")

        # In a thread: the server's readiness probe runs an event loop, and Playwright's holds this one.
        with ThreadPoolExecutor(1) as aside:
            aside.submit(own_server.start_again).result()

        def ready(name: str) -> Callable[[], bool | None]:
            return lambda: True if anonymous.get(f"{s.url(name)}/ready").is_success else None

        for name in SERVICES:
            until(f"{name} /ready 200", ready(name))
            assert metric(s, name, "oms_database_up") == 1
        s.put_item("BACK-1", available=5)
        # OrderService's catalog sync met InventoryService's 503s meanwhile: its breaker may be open.
        until("inventory breaker closed", lambda: True if s.breakers()["inventory"]["state"] == "closed" else None)
        placed = s.place([("BACK-1", 1)])
        assert placed.status_code == 201 and placed.json()["status"] == "PLACED", placed.text
        databases = s.http.get(f"{s.url('order')}/databases").json()
        assert all(databases[name]["up"] for name in SERVICES), databases
        expect(page.locator("#databases")).to_be_hidden()
    finally:
        playwright.stop()
        anonymous.close()
        s.stop_all()
