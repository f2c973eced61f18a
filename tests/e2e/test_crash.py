"""Orders in flight while each service in turn dies by SIGKILL and comes back; clients retry with
their Idempotency-Keys. Afterwards the three databases agree: every order is terminal, nothing is
oversold, no stock is held by a failed order, and each placed order has exactly one charge."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
from system import InFlight, System

STOCK = {"CRASH-A": 40, "CRASH-B": 25}
ORDERS = 80
"""Orders placed at least: more while the chaos goes on (a slow machine restarts services slowly)."""
TERMINAL_WAIT = 60.0


def client(
    s: System, index: int, results: dict[str, dict[str, Any]], stop_at: float, flight: InFlight, front: str = "order"
) -> None:
    """One customer: posts its order until it gets an answer, then waits for the final state."""
    key = uuid.uuid4().hex
    sku = "CRASH-A" if index % 2 else "CRASH-B"
    method = "pm_card_chargeDeclined" if index % 5 == 0 else "pm_card_visa"
    body = {"customer_id": f"c{index}", "items": [{"sku": sku, "quantity": 1 + index % 3}], "payment_method": method}
    order_id = None
    while order_id is None and time.monotonic() < stop_at:
        try:
            with flight:
                response = s.http.post(
                    f"{s.url(front)}/orders", json=body, headers={"Idempotency-Key": key}, timeout=10
                )
            if response.status_code in (200, 201, 202):
                order_id = response.json()["id"]
        except httpx.HTTPError:
            pass
        if order_id is None:
            time.sleep(0.2)  # the service is down: come back with the same key
    assert order_id is not None, f"client {index} never got an answer"
    # Retrying with the key once more answers the same order: never a second saga.
    while time.monotonic() < stop_at:
        try:
            again = s.http.post(f"{s.url(front)}/orders", json=body, headers={"Idempotency-Key": key}, timeout=10)
            if again.status_code == 200:
                assert again.json()["id"] == order_id
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    results[order_id] = {"sku": sku, "quantity": body["items"][0]["quantity"]}  # type: ignore[index]


def chaos(s: System, victims: tuple[str, ...], flight: InFlight) -> list[tuple[str, int]]:
    """Each victim killed in turn once an order is under way, and started again: each one's name and
    the orders that were under way when it died."""
    killed = []
    for name in victims:
        time.sleep(0.7)
        under_way = flight.wait()
        s.kill(name)
        killed.append((name, under_way))
        time.sleep(0.4)
        s.start(name)
    return killed


def test_every_service_killed_in_turn_leaves_the_three_databases_agreeing(system: System) -> None:
    run_crash(system, fronts=("order",), victims=("inventory", "payment", "order") * 2)


def run_crash(s: System, *, fronts: tuple[str, ...], victims: tuple[str, ...]) -> None:
    """Clients spread over the OrderService processes ``fronts``; ``victims`` die in turn."""
    for sku, stock in STOCK.items():
        s.put_item(sku, available=stock)
    s.place([("CRASH-A", 1)])  # OrderService learns the catalog, for fallback while inventory is down
    s.place([("CRASH-B", 1)])
    results: dict[str, dict[str, Any]] = {}
    stop_at = time.monotonic() + 120
    flight = InFlight()
    killed: list[tuple[str, int]] = []
    chaos_thread = threading.Thread(target=lambda: killed.extend(chaos(s, victims, flight)))
    chaos_thread.start()
    clients: list[threading.Thread] = []
    # Eight more a second, spread over the whole chaos, until it is over and ORDERS have started.
    while len(clients) < ORDERS or chaos_thread.is_alive():
        for _ in range(8):
            i = len(clients)
            clients.append(
                threading.Thread(target=client, args=(s, i, results, stop_at, flight, fronts[i % len(fronts)]))
            )
            clients[-1].start()
        time.sleep(1.0)
    chaos_thread.join()
    for thread in clients:
        thread.join()
    assert [name for name, _ in killed] == list(victims)
    assert all(under_way > 0 for _, under_way in killed), killed  # every kill broke an order under way
    assert len(results) == len(clients)

    deadline = time.monotonic() + TERMINAL_WAIT
    while True:
        orders = s.http.get(f"{s.url('order')}/orders", params={"limit": 1000}).json()["items"]
        # Settled: no saga of the order still running or waiting. A reconcile that found the stock
        # gone is mid-compensation while its order still reads PLACED (refunded, the hold released).
        unsettled = [
            o
            for o in orders
            if o["status"] == "PENDING" or o["reservation"] == "deferred" or o["saga_status"] in ("running", "waiting")
        ]
        if not unsettled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert unsettled == [], [
        (o["id"], o["status"], o["saga_status"], o["reservation"], o["pending_reason"]) for o in unsettled
    ]
    assert len(orders) == len(clients) + 2

    s.assert_agreement(orders, STOCK)
