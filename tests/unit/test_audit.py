"""The audit's checks, on snapshots of what the three services answered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from oms.cli.audit import Snapshot, findings

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
RECENT = "2026-01-01T11:59:50.000000Z"
OLD = "2026-01-01T11:00:00.000000Z"


def order(order_id: str, status: str, updated_at: str = RECENT, reservation: str = "held") -> dict[str, Any]:
    return {"id": order_id, "status": status, "updated_at": updated_at, "reservation": reservation}


def payment(order_id: str, status: str = "SUCCEEDED") -> dict[str, Any]:
    return {"order_id": order_id, "status": status}


def held(order_id: str, sku: str = "A", quantity: int = 1) -> dict[str, Any]:
    return {"order_id": order_id, "status": "RESERVED", "items": [{"sku": sku, "quantity": quantity}]}


def kinds(snapshot: Snapshot) -> list[tuple[str, str]]:
    return [(f.kind, f.order_id) for f in findings(snapshot, now=NOW, stuck_after=60)]


def test_a_consistent_system_is_clean() -> None:
    snapshot = Snapshot(
        orders=[order("o1", "PLACED"), order("o2", "PAYMENT_FAILED"), order("o3", "PENDING")],
        payments=[payment("o1"), payment("o2", "DECLINED")],
        reservations=[held("o1", quantity=2)],
        items=[{"sku": "A", "reserved": 2}],
    )
    assert kinds(snapshot) == []


def test_each_disagreement_is_named() -> None:
    snapshot = Snapshot(
        orders=[
            order("charged-failed", "PAYMENT_FAILED"),
            order("held-failed", "OUT_OF_STOCK"),
            order("placed-uncharged", "PLACED"),
            order("placed-no-stock", "PLACED"),
            order("stuck", "PENDING", OLD),
            order("deferred-long", "PLACED", OLD, reservation="deferred"),
            order("gave-up", "COMPENSATION_FAILED"),
        ],
        payments=[payment("charged-failed"), payment("ghost"), payment("placed-no-stock"), payment("deferred-long")],
        reservations=[held("held-failed"), held("placed-uncharged")],
        items=[{"sku": "A", "reserved": 5}],
    )
    assert kinds(snapshot) == [
        ("reserved_count_mismatch", "-"),
        ("charge_without_placed_order", "charged-failed"),
        ("placed_without_stock", "deferred-long"),
        ("compensation_failed", "gave-up"),
        ("charge_without_order", "ghost"),
        ("stock_held_by_failed_order", "held-failed"),
        ("placed_without_stock", "placed-no-stock"),
        ("placed_without_charge", "placed-uncharged"),
        ("saga_stuck", "stuck"),
    ]


def test_a_refunded_cancelled_order_is_clean_and_a_double_charge_is_not() -> None:
    snapshot = Snapshot(
        orders=[order("c", "CANCELLED"), order("p", "PLACED")],
        payments=[payment("c", "REFUNDED"), payment("p"), payment("p")],
        reservations=[held("p")],
        items=[{"sku": "A", "reserved": 1}],
    )
    assert kinds(snapshot) == [("placed_without_charge", "p")]


def test_collect_follows_each_list_page_by_page() -> None:
    """The audit reads every page of every list through its ``next`` cursor."""
    from urllib.parse import parse_qs, urlsplit

    from oms.cli.audit import PAGE, collect

    rows = {
        "/orders": [order(f"o{i}", "PLACED") for i in range(PAGE + 3)],
        "/payments": [payment(f"o{i}") for i in range(PAGE + 3)],
        "/reservations": [held(f"o{i}") for i in range(PAGE + 3)],
        "/items": [{"sku": "A", "reserved": PAGE + 3}],
    }
    asked: list[str] = []

    def get(url: str) -> dict[str, Any]:
        asked.append(url)
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert query["limit"] == [str(PAGE)]
        start = int(query.get("next", ["0"])[0])
        found = rows[parts.path][start : start + PAGE]
        more = start + PAGE < len(rows[parts.path])
        return {"items": found, "next": str(start + PAGE) if more else None}

    snapshot = collect(get, "http://o", "http://i", "http://p")
    assert [o["id"] for o in snapshot.orders] == [o["id"] for o in rows["/orders"]]
    assert len(snapshot.payments) == len(snapshot.reservations) == PAGE + 3
    assert snapshot.items == rows["/items"]
    assert "http://i/reservations?status=RESERVED&limit=1000&next=1000" in asked
    assert kinds(snapshot) == []
