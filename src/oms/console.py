"""Commands for a person at a terminal: place and show orders, list them, see the breakers."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from oms.launcher import Answer, http_call, http_json

TOKEN: str | None = None
"""The bearer token every call of this command sends (set once by the command line)."""

STATUS_STYLE = {
    "PENDING": "yellow",
    "PLACED": "green",
    "PAYMENT_FAILED": "red",
    "OUT_OF_STOCK": "red",
    "REJECTED": "red",
    "CANCELLED": "magenta",
    "COMPENSATION_FAILED": "bold red",
}

STATUSES = tuple(STATUS_STYLE)
"""Every order status (``oms.orders.answers.OrderStatus``), as ``oms orders --status`` takes them."""

FAILED = frozenset({"PAYMENT_FAILED", "OUT_OF_STOCK", "REJECTED", "CANCELLED", "COMPENSATION_FAILED"})

EXIT_PLACED, EXIT_REFUSED, EXIT_FAILED, EXIT_PENDING = 0, 1, 3, 4
"""``oms order place``'s exit codes (2 is argparse's, for a wrong command line)."""


def place_exit_code(status: str) -> int:
    """How ``oms order place`` exits for an order of ``status``."""
    if status == "PLACED":
        return EXIT_PLACED
    if status == "PENDING":
        return EXIT_PENDING
    return EXIT_FAILED if status in FAILED else EXIT_REFUSED


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "-"
    return f"{amount / 100:,.2f} {currency or ''}".strip()


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def print_problem(console: Console, status: int, body: Any) -> None:
    if isinstance(body, dict):
        console.print(f"[red]{status} {body.get('title', 'Error')}[/red]: {body.get('detail', '')}")
    else:
        console.print(f"[red]{status}[/red] {body}")


def print_json(answer: Answer) -> None:
    """The service's JSON answer as it came (``--json``): the one thing on standard output."""
    sys.stdout.write(answer.raw.decode() + "\n")
    sys.stdout.flush()


def print_order(console: Console, order: dict[str, Any], replayed: bool = False) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("order", order["id"])
    if replayed:
        head.add_row("replayed", "[yellow]yes[/]: the order this Idempotency-Key made before, as it is now")
    head.add_row("status", status_text(order["status"]))
    if order.get("failure_reason"):
        head.add_row("reason", order["failure_reason"])
    if order.get("pending_reason"):
        head.add_row("waiting on", order["pending_reason"])
    head.add_row("customer", order["customer_id"])
    head.add_row("total", money(order["total_amount"], order["currency"]))
    head.add_row("inventory check", str(order["inventory_check"] or "-"))
    head.add_row("reservation", order["reservation"])
    head.add_row("created", order["created_at"])
    console.print(head)

    items = Table(title="items")
    for column in ("sku", "name", "quantity", "unit price", "amount"):
        items.add_column(column, justify="right" if column in ("quantity", "unit price", "amount") else "left")
    for item in order["items"]:
        items.add_row(
            item["sku"],
            item.get("name") or "-",
            str(item["quantity"]),
            money(item.get("unit_price"), order["currency"]),
            money(item.get("amount"), order["currency"]),
        )
    console.print(items)

    saga = Table(title="saga")
    for column in ("#", "saga", "kind", "name", "outcome", "reason", "ms"):
        saga.add_column(column)
    for index, entry in enumerate(order.get("saga", []), 1):
        outcome = entry["outcome"]
        style = {
            "done": "green",
            "skipped": "dim",
            "failed": "red",
            "uncertain": "yellow",
            "unknown": "yellow",
        }
        attempt = f" (try {entry['attempt']})" if entry["attempt"] > 1 else ""
        saga.add_row(
            str(index),
            entry.get("saga", "order"),
            entry["kind"],
            entry["name"] + attempt,
            f"[{style.get(outcome, 'white')}]{outcome}[/]",
            entry["reason"] or "",
            f"{entry['duration_ms']:.1f}",
        )
    console.print(saga)


def print_more(console: Console, page: dict[str, Any]) -> None:
    """After a page of a list: how to ask for the next one, if there is one."""
    if page.get("next"):
        console.print(f"[dim]more: the same command with --next {page['next']}[/dim]")


def print_orders(console: Console, page: dict[str, Any]) -> None:
    """A page of GET /orders ({"items", "next"})."""
    orders: list[dict[str, Any]] = page["items"]
    table = Table(title=f"{len(orders)} order{'' if len(orders) == 1 else 's'}, newest first")
    table.add_column("id", no_wrap=True, min_width=28)
    for column in ("status", "reason", "customer", "total", "check", "created"):
        table.add_column(column)
    for order in orders:
        table.add_row(
            order["id"],
            status_text(order["status"]),
            order["failure_reason"] or order["pending_reason"] or "",
            order["customer_id"],
            money(order["total_amount"], order["currency"]),
            order["inventory_check"] or "-",
            order["created_at"],
        )
    console.print(table)
    print_more(console, page)


def print_breakers(console: Console, breakers: dict[str, dict[str, Any]]) -> None:
    table = Table(title="circuit breakers")
    for column in ("downstream", "state", "failure rate", "slow-call rate", "calls", "failed", "refused"):
        table.add_column(column)

    def rate(value: Any) -> str:
        return "-" if value is None else f"{value:.0f}%"

    for name, figures in breakers.items():
        state = figures["state"]
        style = {"closed": "green", "open": "red", "half_open": "yellow", "forced_open": "bold red"}.get(state, "white")
        table.add_row(
            name,
            f"[{style}]{state}[/]",
            rate(figures.get("failure_rate")),
            rate(figures.get("slow_call_rate")),
            str(figures.get("calls")),
            str(figures.get("failed_calls")),
            str(figures.get("not_permitted_calls")),
        )
    console.print(table)


def print_items(console: Console, page: dict[str, Any]) -> None:
    """A page of GET /items ({"items", "next"})."""
    table = Table(title="inventory")
    for column in ("sku", "name", "unit price", "available", "reserved"):
        table.add_column(column)
    for item in page["items"]:
        table.add_row(
            item["sku"], item["name"], money(item["unit_price"], item["currency"]),
            str(item["available"]), str(item["reserved"]),
        )  # fmt: skip
    console.print(table)
    print_more(console, page)


def fetch(
    console: Console, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> Answer | None:
    """An HTTP call for a command: the answer (body and headers), or None after printing the problem."""
    try:
        answer = http_call(method, url, body, headers, token=TOKEN)
    except OSError as exc:
        console.print(f"[red]cannot reach {url}: {exc}[/red] (is `oms up` running?)")
        return None
    if answer.status >= 400:
        print_problem(console, answer.status, answer.body)
        if answer.status == 401 and TOKEN is None:
            console.print("No token: pass --token, set OMS_TOKEN, or run this where the key file is (oms auth init).")
        return None
    return answer


def call(console: Console, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """An HTTP call for a command: the body, or None after printing the problem."""
    answer = fetch(console, method, url, body, headers)
    return None if answer is None else answer.body


def audit(
    console: Console, order_url: str, inventory_url: str, payment_url: str, stuck_after: float, as_json: bool = False
) -> int:
    """``oms audit``: 0 clean, 1 when the services disagree, 2 when one cannot be read. ``as_json``: the
    report as ``GET /audit`` answers it, on standard output."""
    from oms.audit import collect, findings, now_utc

    def get(url: str) -> Any:
        status, body = http_json("GET", url, token=TOKEN)
        if status != 200:
            raise OSError(f"GET {url} answered {status}: {body}")
        return body

    try:
        snapshot = collect(get, order_url, inventory_url, payment_url)
    except OSError as exc:
        console.print(f"[red]audit could not read the services: {exc}[/red]")
        return 2
    now = now_utc()
    found = findings(snapshot, now=now, stuck_after=stuck_after)
    if as_json:
        report = {
            "at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "clean": not found,
            "orders": len(snapshot.orders),
            "payments": len(snapshot.payments),
            "reservations": len(snapshot.reservations),
            "items": len(snapshot.items),
            "findings": [{"kind": f.kind, "order_id": f.order_id, "detail": f.detail} for f in found],
        }
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return 1 if found else 0
    summary = (
        f"{len(snapshot.orders)} orders, {len(snapshot.payments)} payments, "
        f"{len(snapshot.reservations)} reservations held, {len(snapshot.items)} items"
    )
    if not found:
        console.print(f"[green]clean[/green]: the three services agree ({summary}).")
        return 0
    table = Table(title=f"{len(found)} disagreements ({summary})")
    for column in ("order", "finding", "detail"):
        table.add_column(column)
    for finding in found:
        table.add_row(finding.order_id, f"[red]{finding.kind}[/red]", finding.detail)
    console.print(table)
    return 1
