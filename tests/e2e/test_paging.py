"""Every list pages with ``limit`` and an opaque ``next`` cursor (keyset paging): each row once,
whatever is written between two pages; bad paging parameters are a 422 problem+json."""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from system import System
from test_bad_input import assert_problem

from oms import db as storage

ITEMS = 2_500

# (service, path, the field that names a row): the four lists.
LISTS = [
    ("order", "/orders", "id"),
    ("inventory", "/items", "sku"),
    ("inventory", "/reservations", "order_id"),
    ("payment", "/payments", "id"),
]
LIST_IDS = [path for _, path, _ in LISTS]


def read_all(
    client: httpx.Client, url: str, params: dict[str, Any] | None = None, between: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Every row of a list, page by page, following ``next``; ``between`` runs after the first page."""
    rows: list[dict[str, Any]] = []
    query = dict(params or {})
    while True:
        response = client.get(url, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next"}
        rows += page["items"]
        if page["next"] is None:
            assert "link" not in response.headers
            return rows
        # The Link header names the same next page, with the request's own filters and limit.
        link = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers["link"])
        assert link is not None, response.headers["link"]
        linked = httpx.URL(link.group(1))
        assert linked.path == httpx.URL(url).path
        expected = {k: str(v) for k, v in query.items() if k not in ("next", "offset")}
        assert dict(linked.params) == {**expected, "next": page["next"]}
        query.pop("offset", None)
        query["next"] = page["next"]
        if between is not None:
            between()
            between = None


def catalog_of_order_service(s: System) -> set[str]:
    """The SKUs OrderService keeps as fallback data (its catalog table)."""

    async def read() -> set[str]:
        db = await storage.connect(s.database_urls["order"], pool_size=1)
        try:
            return {row["sku"] for row in await db.fetch_all("SELECT sku FROM catalog")}
        finally:
            await db.close()

    return asyncio.run(read())


def put_page_items(s: System) -> list[str]:
    skus = [f"PAGE-{i:05d}" for i in range(ITEMS)]
    known = {row["sku"] for row in read_all(s.http, f"{s.url('inventory')}/items", {"limit": 1000})}
    for sku in skus:
        if sku not in known:
            s.put_item(sku, available=1)
    return skus


def test_2500_items_in_pages_of_1000_each_exactly_once(shared_system: System) -> None:
    s = shared_system
    skus = put_page_items(s)
    sizes: list[int] = []
    url = f"{s.url('inventory')}/items"
    query: dict[str, Any] = {"limit": 1000}
    rows: list[dict[str, Any]] = []
    while True:
        page = s.http.get(url, params=query).json()
        sizes.append(len(page["items"]))
        rows += page["items"]
        if page["next"] is None:
            break
        query["next"] = page["next"]
    assert sizes[:2] == [1000, 1000] and len(sizes) == 3
    assert [row["sku"] for row in rows if row["sku"].startswith("PAGE-")] == skus  # each once, by SKU
    assert len(rows) == len({row["sku"] for row in rows})
    assert rows == read_all(s.http, url, {"limit": 1000})


def test_the_catalog_sync_reads_every_page(shared_system: System) -> None:
    """OrderService keeps every item InventoryService lists, not just the first page: with
    InventoryService gone, an order for the last of 2,500 SKUs is placed on fallback data."""
    s = shared_system
    last = put_page_items(s)[-1]
    deadline = time.monotonic() + 30
    while last not in catalog_of_order_service(s):  # synced every second (OMS_CATALOG_SYNC_INTERVAL)
        assert time.monotonic() < deadline, "OrderService never synced the last page"
        time.sleep(0.2)
    s.kill("inventory")
    try:
        order = s.place([(last, 1)]).json()
    finally:
        s.start("inventory")
    assert (order["status"], order["inventory_check"]) == ("PLACED", "fallback"), order
    assert s.wait_reservation(order["id"])["reservation"] == "held"


def _adder(s: System, path: str) -> Callable[[], None]:
    """Adds rows to the list at ``path``: two items, one sorting first and one last; else two orders
    (each with its reservation and its payment)."""
    if path == "/items":

        def add_items() -> None:
            tag = uuid.uuid4().hex[:6]
            s.put_item(f"0-INS-{tag}", available=1)
            s.put_item(f"Z-INS-{tag}", available=1)

        return add_items
    item = f"INS-{uuid.uuid4().hex[:8]}"
    s.put_item(item, available=1000)

    def add_orders() -> None:
        for _ in range(2):
            assert s.place([(item, 1)]).json()["status"] == "PLACED"

    return add_orders


@pytest.mark.parametrize(("service", "path", "field"), LISTS, ids=LIST_IDS)
def test_rows_written_between_pages_neither_repeat_nor_skip_one(
    shared_system: System, service: str, path: str, field: str
) -> None:
    s = shared_system
    add = _adder(s, path)
    for _ in range(6):
        add()  # at least 12 rows in every list
    url = f"{s.url(service)}{path}"
    before = [row[field] for row in read_all(s.http, url, {"limit": 1000})]
    during = [row[field] for row in read_all(s.http, url, {"limit": 5}, between=add)]
    assert len(during) == len(set(during)), "a row came twice"
    assert set(before) <= set(during), "a row was skipped"
    assert set(during) <= {row[field] for row in read_all(s.http, url, {"limit": 1000})}


@pytest.mark.parametrize(("service", "path", "field"), LISTS, ids=LIST_IDS)
def test_filters_offsets_and_cursors_go_together(shared_system: System, service: str, path: str, field: str) -> None:
    s = shared_system
    add = _adder(s, path)
    for _ in range(3):
        add()
    filters = {"/orders": {"status": "PLACED"}, "/reservations": {"status": "RESERVED"}}.get(path, {})
    url = f"{s.url(service)}{path}"
    whole = [row[field] for row in read_all(s.http, url, {**filters, "limit": 1000})]
    assert len(whole) > 3
    assert [row[field] for row in read_all(s.http, url, {**filters, "limit": 2})] == whole
    # An offset is still taken, and its page carries a cursor to go on from.
    page = s.http.get(url, params={**filters, "limit": 2, "offset": 1}).json()
    assert [row[field] for row in page["items"]] == whole[1:3]
    rest = read_all(s.http, url, {**filters, "limit": 1000, "next": page["next"]})
    assert [row[field] for row in rest] == whole[3:]


def test_the_payments_of_one_order(shared_system: System) -> None:
    s = shared_system
    item = f"ONE-{uuid.uuid4().hex[:8]}"
    s.put_item(item, available=5)
    order = s.place([(item, 1)]).json()
    page = s.http.get(f"{s.url('payment')}/payments", params={"order_id": order["id"]}).json()
    assert [p["order_id"] for p in page["items"]] == [order["id"]] and page["next"] is None


def _cursor(payload: Any) -> str:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bad_cursors(name: str) -> dict[str, str]:
    width = 1 if name == "items" else 2
    other = "items" if name != "items" else "orders"
    return {
        "garbage": "not a cursor!",
        "not base64": "%%%%",
        "not JSON": _cursor(b"\xff\xfe{"),
        "JSON, not an object": _cursor([1, 2]),
        "no list name": _cursor({"k": ["a"] * width}),
        "another list's": _cursor({"l": other, "k": ["a"] * (3 - width)}),
        "key of the wrong length": _cursor({"l": name, "k": ["a"] * (width + 1)}),
        "key not strings": _cursor({"l": name, "k": [1] * width}),
        "NUL in the key": _cursor({"l": name, "k": ["a\x00"] * width}),
        "bidi override in the key": _cursor({"l": name, "k": ["a\u202e"] * width}),
        "too long": _cursor({"l": name, "k": ["a" * 600] * width}),
        "empty": "",
    }


@pytest.mark.parametrize("what", list(bad_cursors("items")))
@pytest.mark.parametrize(("service", "path", "field"), LISTS, ids=LIST_IDS)
def test_a_cursor_that_does_not_decode_is_422(
    shared_system: System, service: str, path: str, field: str, what: str
) -> None:
    s = shared_system
    bad = bad_cursors(path.strip("/"))[what]
    problem = assert_problem(s.http.get(f"{s.url(service)}{path}", params={"next": bad}), 422, "next")
    assert problem["errors"][0]["field"] == "next"


@pytest.mark.parametrize(("service", "path", "field"), LISTS, ids=LIST_IDS)
def test_next_and_offset_together_are_422(shared_system: System, service: str, path: str, field: str) -> None:
    s = shared_system
    good = _cursor({"l": path.strip("/"), "k": ["a"] * (1 if path == "/items" else 2)})
    assert s.http.get(f"{s.url(service)}{path}", params={"next": good}).status_code == 200
    problem = assert_problem(s.http.get(f"{s.url(service)}{path}", params={"next": good, "offset": 5}), 422, "offset")
    assert problem["errors"][0]["field"] == "offset"


@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", 0), ("limit", 1001), ("limit", -1), ("offset", -1), ("offset", 1_000_001), ("offset", 2**63)],
)
@pytest.mark.parametrize(("service", "path", "field"), LISTS, ids=LIST_IDS)
def test_out_of_range_limit_and_offset_are_422(
    shared_system: System, service: str, path: str, field: str, param: str, value: int
) -> None:
    s = shared_system
    problem = assert_problem(s.http.get(f"{s.url(service)}{path}", params={param: value}), 422, param)
    assert [e["field"] for e in problem["errors"]] == [f"query.{param}"]


def test_a_customer_pages_through_its_own_orders_only(shared_system: System) -> None:
    s = shared_system
    item = f"CUST-{uuid.uuid4().hex[:8]}"
    s.put_item(item, available=100)
    body = {"items": [{"sku": item, "quantity": 1}], "payment_method": "pm_card_visa"}
    mine: dict[str, list[str]] = {"alice": [], "bob": []}
    for customer, count in (("alice", 5), ("bob", 3), ("alice", 2)):
        client = s.customer(customer)
        for _ in range(count):
            answer = client.post(f"{s.url('order')}/orders", json=body)
            assert answer.status_code == 201, answer.text
            mine[customer].append(answer.json()["id"])
    for customer, ids in mine.items():
        rows = read_all(s.customer(customer), f"{s.url('order')}/orders", {"limit": 2})
        assert [row["id"] for row in rows] == ids[::-1]  # its own, every one, newest first
    # A cursor taken from an admin's list still shows a customer its own orders only.
    admin = s.http.get(f"{s.url('order')}/orders", params={"limit": 1}).json()
    rows = read_all(s.customer("bob"), f"{s.url('order')}/orders", {"limit": 2, "next": admin["next"]})
    assert {row["customer_id"] for row in rows} <= {"bob"}
