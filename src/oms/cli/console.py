"""Commands for a person at a terminal: place and show orders, list them, see the breakers."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from oms.sync_http import Answer, http_call, http_json

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


def counted(number: int, noun: str) -> str:
    """``1 order``, ``2 orders``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def light_table(title: str) -> Table:
    """A table as the command line draws them (:func:`table`): light lines, no frame."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def table(title: str, *columns: str, right: tuple[str, ...] = (), whole: dict[str, list[str]] | None = None) -> Table:
    """A table that fits the terminal: cells wrap (folding a word longer than its column) and are never
    cut, between light lines. ``whole``: columns whose words (an order id, a status) must stay whole: each
    is as wide as its longest one, and the other columns give way."""
    made = light_table(title)
    for column in columns:
        words = (whole or {}).get(column)
        width = max([len(column), *map(len, words)]) if words else None
        made.add_column(column, overflow="fold", width=width, justify="right" if column in right else "left")
    return made


def when(stamp: str | None) -> str:
    """An ISO-8601 UTC time as a list shows it: its date and, below, the time to the second."""
    if not stamp:
        return "-"
    day, _, time = stamp.partition("T")
    return f"{day}\n{time[:8]}" if time else day


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

    columns = ("sku", "name", "quantity", "unit price", "amount")
    skus = [str(item["sku"]) for item in order["items"]]
    items = table("items", *columns, right=columns[2:], whole={"sku": skus})
    for item in order["items"]:
        items.add_row(
            item["sku"],
            item.get("name") or "-",
            str(item["quantity"]),
            money(item.get("unit_price"), order["currency"]),
            money(item.get("amount"), order["currency"]),
        )
    console.print(items)

    entries: list[dict[str, Any]] = order.get("saga", [])
    outcomes = [str(entry["outcome"]) for entry in entries]
    whole = {"name": [str(entry["name"]) for entry in entries], "outcome": outcomes}
    saga = table("saga", "#", "saga", "kind", "name", "outcome", "reason", "ms", right=("ms",), whole=whole)
    style = {"done": "green", "skipped": "dim", "failed": "red", "uncertain": "yellow", "unknown": "yellow"}
    for index, entry in enumerate(entries, 1):
        outcome = entry["outcome"]
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
    """A page of GET /orders ({"items", "next"}): under each status, its reason and a fallback check."""
    orders: list[dict[str, Any]] = page["items"]
    title = f"{len(orders)} order{'' if len(orders) == 1 else 's'}, newest first"
    notes = {str(o["id"]): _notes(o) for o in orders}
    whole = {
        "id": [str(o["id"]) for o in orders],
        "status": [str(o["status"]) for o in orders],
        "created": [when(o["created_at"]).split("\n")[0] for o in orders],
    }
    listed = table(title, "id", "status", "customer", "total", "created", whole=whole)
    # The status column takes what the others leave, up to its longest note, so reasons fold less.
    status = listed.columns[1]
    others = [listed.columns[0], listed.columns[4]]
    customer = max([len("customer"), *(len(str(o["customer_id"])) for o in orders)])
    total = max([len("total"), *(len(money(o["total_amount"], o["currency"])) for o in orders)])
    room = console.width - 2 * 4 - sum(c.width or 0 for c in others) - customer - total
    longest = max([0, *(len(line) for lines in notes.values() for line in lines)])
    status.width = max(status.width or 0, min(longest, room))
    for order in orders:
        lines = [status_text(order["status"]), *(f"[dim]{line}[/dim]" for line in notes[str(order["id"])])]
        listed.add_row(
            order["id"],
            "\n".join(lines),
            order["customer_id"],
            money(order["total_amount"], order["currency"]),
            when(order["created_at"]),
        )
    console.print(listed)
    print_more(console, page)


def _notes(order: dict[str, Any]) -> list[str]:
    """What the orders list says below an order's status: its reason, and whether stock was checked on fallback."""
    notes = [str(order["failure_reason"] or order["pending_reason"] or "")]
    if order.get("inventory_check") == "fallback":
        notes.append("fallback check")
    return [note for note in notes if note]


def print_breakers(console: Console, breakers: dict[str, dict[str, Any]]) -> None:
    states = [str(figures["state"]) for figures in breakers.values()]
    columns = ("downstream", "state", "failure rate", "slow-call rate", "calls", "failed", "refused")
    whole = {"downstream": list(breakers), "state": states}
    shown = table("circuit breakers", *columns, right=columns[2:], whole=whole)

    def rate(value: Any) -> str:
        return "-" if value is None else f"{value:.0f}%"

    for name, figures in breakers.items():
        state = figures["state"]
        style = {"closed": "green", "open": "red", "half_open": "yellow", "forced_open": "bold red"}.get(state, "white")
        shown.add_row(
            name,
            f"[{style}]{state}[/]",
            rate(figures.get("failure_rate")),
            rate(figures.get("slow_call_rate")),
            str(figures.get("calls")),
            str(figures.get("failed_calls")),
            str(figures.get("not_permitted_calls")),
        )
    console.print(shown)


def print_items(console: Console, page: dict[str, Any]) -> None:
    """A page of GET /items ({"items", "next"})."""
    columns = ("sku", "name", "unit price", "available", "reserved")
    stock = table("inventory", *columns, right=columns[2:], whole={"sku": [str(i["sku"]) for i in page["items"]]})
    for item in page["items"]:
        stock.add_row(
            item["sku"], item["name"], money(item["unit_price"], item["currency"]),
            str(item["available"]), str(item["reserved"]),
        )  # fmt: skip
    console.print(stock)
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
    from oms.cli.audit import collect, findings, now_utc

    def get(url: str) -> Any:
        try:
            status, body = http_json("GET", url, token=TOKEN)
        except OSError as exc:  # nothing answers there: say where
            raise OSError(f"GET {url}: {getattr(exc, 'reason', exc)}") from exc
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
        f"{counted(len(snapshot.orders), 'order')}, {counted(len(snapshot.payments), 'payment')}, "
        f"{counted(len(snapshot.reservations), 'reservation')} held, {counted(len(snapshot.items), 'item')}"
    )
    if not found:
        console.print(f"[green]clean[/green]: the three services agree ({summary}).")
        return 0
    whole = {"order": [f.order_id for f in found], "finding": [f.kind for f in found]}
    listing = table(f"{len(found)} disagreements ({summary})", "order", "finding", "detail", whole=whole)
    for finding in found:
        listing.add_row(finding.order_id, f"[red]{finding.kind}[/red]", finding.detail)
    console.print(listing)
    return 1
