"""``oms audit``: read all three services and report, order by order, where they disagree.

The checks are a pure function of what the services answered (``findings``), so they are tested
without a network; ``collect`` reads the services page by page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PAGE = 1000
IN_FLIGHT = {"PENDING"}


@dataclass(frozen=True)
class Finding:
    kind: str
    order_id: str
    detail: str


@dataclass
class Snapshot:
    orders: list[dict[str, Any]]
    payments: list[dict[str, Any]]
    reservations: list[dict[str, Any]]
    items: list[dict[str, Any]]


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def findings(snapshot: Snapshot, *, now: datetime, stuck_after: float) -> list[Finding]:
    """Every disagreement between the three services, sorted by order id."""
    orders = {o["id"]: o for o in snapshot.orders}
    charged: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payment in snapshot.payments:
        charged[payment["order_id"]].append(payment)
    held = {r["order_id"]: r for r in snapshot.reservations if r["status"] == "RESERVED"}
    limit = timedelta(seconds=stuck_after)
    found: list[Finding] = []

    def stuck(order: dict[str, Any]) -> bool:
        return now - _parse(order["updated_at"]) > limit

    for order_id, payments in charged.items():
        order = orders.get(order_id)
        succeeded = [p for p in payments if p["status"] == "SUCCEEDED"]
        if not succeeded:
            continue
        if order is None:
            found.append(Finding("charge_without_order", order_id, f"{len(succeeded)} charge(s), no such order"))
        elif order["status"] not in ("PLACED", *IN_FLIGHT):
            found.append(Finding("charge_without_placed_order", order_id, f"charged, order is {order['status']}"))

    for order_id, reservation in held.items():
        order = orders.get(order_id)
        status = order["status"] if order else "missing"
        if status not in ("PLACED", *IN_FLIGHT):
            units = sum(line["quantity"] for line in reservation["items"])
            found.append(Finding("stock_held_by_failed_order", order_id, f"{units} unit(s) held, order is {status}"))

    for order_id, order in orders.items():
        status = order["status"]
        if status == "PLACED":
            succeeded = [p for p in charged.get(order_id, []) if p["status"] == "SUCCEEDED"]
            if len(succeeded) != 1:
                found.append(Finding("placed_without_charge", order_id, f"{len(succeeded)} successful charges"))
            if order_id not in held:
                if order.get("reservation") != "deferred":
                    found.append(Finding("placed_without_stock", order_id, "no reservation held"))
                elif stuck(order):
                    found.append(Finding("placed_without_stock", order_id, "reservation deferred too long"))
        elif status in IN_FLIGHT and stuck(order):
            found.append(Finding("saga_stuck", order_id, f"PENDING since {order['updated_at']}"))
        elif status == "COMPENSATION_FAILED":
            found.append(Finding("compensation_failed", order_id, f"gave up: {order.get('failure_reason')}"))

    reserved_by_sku: dict[str, int] = defaultdict(int)
    for reservation in held.values():
        for line in reservation["items"]:
            reserved_by_sku[line["sku"]] += line["quantity"]
    for item in snapshot.items:
        holding = reserved_by_sku.get(item["sku"], 0)
        if item["reserved"] != holding:
            detail = f"{item['sku']}: reserved {item['reserved']}, reservations hold {holding}"
            found.append(Finding("reserved_count_mismatch", "-", detail))
    return sorted(found, key=lambda f: (f.order_id, f.kind))


def pages(get: Callable[[str], Any], url: str) -> Iterable[dict[str, Any]]:
    """Every row of a list, following its ``next`` cursors: rows written meanwhile neither repeat
    a row nor push one out of reach, as an offset would."""
    joiner = "&" if "?" in url else "?"
    cursor: str | None = None
    while True:
        page = get(f"{url}{joiner}limit={PAGE}" + (f"&next={cursor}" if cursor else ""))
        yield from page["items"]
        cursor = page["next"]
        if cursor is None:
            return


def collect(get: Callable[[str], Any], order_url: str, inventory_url: str, payment_url: str) -> Snapshot:
    """Read the three services. ``get(url)`` answers the decoded JSON body (or raises)."""
    return Snapshot(
        orders=list(pages(get, order_url + "/orders")),
        payments=list(pages(get, payment_url + "/payments")),
        reservations=list(pages(get, inventory_url + "/reservations?status=RESERVED")),
        items=list(pages(get, inventory_url + "/items")),
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
