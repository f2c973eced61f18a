"""The command line's tables on an 80-column terminal: they wrap and never cut (no "…"), every line fits,
and every order id and status word is printed whole."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console

from oms.cli.audit import Finding
from oms.cli.console import STATUSES, counted, print_breakers, print_items, print_order, print_orders, table

WIDTH = 80
IDS = [f"ord_01a218c9af3d0a31ffc59e{n:02x}" for n in range(len(STATUSES))]
REASONS = ["insufficient_fallback_stock", "out_of_stock_after_fallback", "payment_outcome_unknown", None]


def order(n: int, status: str) -> dict[str, Any]:
    return {
        "id": IDS[n], "status": status, "failure_reason": REASONS[n % 4], "pending_reason": None,
        "customer_id": "customer-with-a-rather-long-name", "total_amount": 123456789, "currency": "USD",
        "inventory_check": "fallback", "reservation": "deferred", "created_at": "2026-11-26T16:56:40.509480Z",
        "items": [{"sku": "A-VERY-LONG-SKU-NAME-0001", "name": "A product with a long descriptive name",
                   "quantity": 1000, "unit_price": 123456, "amount": 123456000}],
        "saga": [
            {"saga": "reconcile", "kind": "compensation", "name": "release_inventory", "outcome": outcome,
             "reason": "fallback:connection_refused", "attempt": 12, "duration_ms": 12345.678}
            for outcome in ("done", "skipped", "failed", "uncertain", "unknown")
        ],
    }  # fmt: skip


def rendered(draw: Any) -> str:
    console = Console(width=WIDTH, record=True, color_system=None)
    draw(console)
    return console.export_text()


def check(text: str, whole: list[str]) -> None:
    assert "…" not in text
    for line in text.splitlines():
        assert len(line.rstrip()) <= WIDTH, line
    words = set(re.findall(r"[\w:.-]+", text))
    for word in whole:
        assert word in words, f"{word} not whole in:\n{text}"


def test_the_orders_list_fits_80_columns() -> None:
    orders = [order(n, status) for n, status in enumerate(STATUSES)]
    text = rendered(lambda c: print_orders(c, {"items": orders, "next": None}))
    check(text, [*IDS, *STATUSES, "2026-11-26", "fallback"])


def test_one_order_fits_80_columns() -> None:
    for n, status in enumerate(STATUSES):
        text = rendered(lambda c, n=n, status=status: print_order(c, order(n, status), replayed=True))
        check(text, [IDS[n], status, "A-VERY-LONG-SKU-NAME-0001", "release_inventory", "done", "skipped", "failed",
                     "uncertain", "unknown"])  # fmt: skip


def test_breakers_items_and_findings_fit_80_columns() -> None:
    states = ["closed", "open", "half_open", "forced_open", "disabled"]
    figures = {"failure_rate": 100.0, "slow_call_rate": 100.0, "calls": 1000, "failed_calls": 1000,
               "not_permitted_calls": 123456789}  # fmt: skip
    breakers = {f"downstream-{state}": {"state": state, **figures} for state in states}
    check(rendered(lambda c: print_breakers(c, breakers)), states)

    item = {"sku": "A-VERY-LONG-SKU-NAME-0001", "name": "A product with a long descriptive name " * 2,
            "unit_price": 123456789, "currency": "USD", "available": 123456789, "reserved": 123456789}  # fmt: skip
    check(rendered(lambda c: print_items(c, {"items": [item], "next": "cursor"})), ["A-VERY-LONG-SKU-NAME-0001"])

    found = [Finding("charge_without_placed_order", IDS[0], "charged, order is PAYMENT_FAILED " * 3)]

    def draw(console: Console) -> None:
        listing = table("1 disagreement", "order", "finding", "detail", whole={"order": IDS[:1], "finding": [
            "charge_without_placed_order"]})  # fmt: skip
        for f in found:
            listing.add_row(f.order_id, f.kind, f.detail)
        console.print(listing)

    check(rendered(draw), [IDS[0], "charge_without_placed_order"])


def test_counts_are_singular_for_one() -> None:
    assert [counted(n, "item") for n in (0, 1, 2)] == ["0 items", "1 item", "2 items"]
