"""Cursors: what a page gives out, the next page takes back, and nothing else."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.edge.paging import MAX_CURSOR, BadCursor, Keyset

ORDERS = Keyset("orders", ("created_at", "id"))
ITEMS = Keyset("items", ("sku",))

key_values = st.from_regex(r"[A-Za-z0-9._:+-]{1,64}", fullmatch=True)


@given(st.tuples(key_values, key_values))
def test_a_cursor_names_the_key_it_was_made_of(key: tuple[str, str]) -> None:
    cursor = ORDERS.cursor(key)
    assert len(cursor) <= MAX_CURSOR
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe as is
    assert ORDERS.after(cursor) == key


def test_no_cursor_is_the_first_page() -> None:
    assert ORDERS.after(None) is None


def _encoded(payload: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "A" * (MAX_CURSOR + 1),
        "////",
        base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="),
        _encoded([1]),
        _encoded({"l": "items", "k": ["2026-01-01T00:00:00.000000Z", "ord_1"]}),
        _encoded({"l": "orders", "k": ["2026-01-01T00:00:00.000000Z"]}),
        _encoded({"l": "orders", "k": ["2026-01-01T00:00:00.000000Z", 7]}),
        _encoded({"l": "orders", "k": ["2026-01-01T00:00:00.000000Z", "ord\x001"]}),
        _encoded({"l": "orders", "k": ["2026-01-01T00:00:00.000000Z", "ord\u202e1"]}),
        _encoded({"l": "orders", "k": ["", "ord_1"]}),
        _encoded({"l": "orders"}),
    ],
)
def test_anything_else_is_a_bad_cursor(cursor: str) -> None:
    with pytest.raises(BadCursor, match="not a cursor of orders"):
        ORDERS.after(cursor)


def test_a_page_is_cut_at_its_limit_and_names_its_last_row() -> None:
    rows = [{"sku": f"S-{i}"} for i in range(5)]
    last = ITEMS.page(rows, 5, key=lambda r: (r["sku"],))
    assert (last.items, last.next) == (rows, None)
    first = ITEMS.page(rows, 4, key=lambda r: (r["sku"],))
    assert first.items == rows[:4]
    assert first.next is not None and ITEMS.after(first.next) == ("S-3",)
