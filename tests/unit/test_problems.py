"""The mapping from domain errors to problem+json, each service registering its own: each error's
status, type, title, detail and extra members, as the API modules answered them before the mapping,
and none left without one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request

from oms.auth.keys import ensure_key, load_key
from oms.auth.tokens import Role, Verifier, admin_token
from oms.edge.answers import JSON, install_error_handlers
from oms.edge.app import Front
from oms.edge.gate import Gate
from oms.edge.problems import problem_for, problem_response
from oms.errors import DomainError, UnknownSkus
from oms.fields import MAX_AMOUNT, Lines
from oms.inventory import problems as _inventory_problems  # noqa: F401  (each registers its answers)
from oms.inventory.errors import AlreadyReleased, OutOfStock, ReservationMismatch, Shortage
from oms.orders import problems as _orders_problems  # noqa: F401
from oms.orders.errors import Busy, KeyReused, NotCancellable, NothingToRetry, Overloaded, TooLarge
from oms.payments import problems as _payments_problems  # noqa: F401
from oms.payments.errors import ChargeMismatch, NoPayment, NotRefundable, OrderVoided

CASES: list[tuple[DomainError, int, str, str, str, dict[str, Any]]] = [
    (UnknownSkus(["A", "B"]), 422, "/problems/unknown-sku", "Unknown SKU", "No item has SKU A, B.",
     {"skus": ["A", "B"]}),
    (TooLarge(MAX_AMOUNT + 1), 422, "/problems/amount-too-large", "Order too large",
     f"The order's total, {MAX_AMOUNT + 1} minor units at the last known prices, is over the most a payment may "
     f"be ({MAX_AMOUNT}); it could never be charged.", {"total_amount": MAX_AMOUNT + 1, "max_amount": MAX_AMOUNT}),
    (Overloaded(1000), 503, "/problems/overloaded", "Busy",
     "OrderService is driving as many sagas as it may at once; retry shortly.", {}),
    (KeyReused("k"), 422, "/problems/idempotency-key-reused", "Idempotency key reused",
     "This Idempotency-Key was used with a different request body.", {}),
    (NotCancellable("ord_1", "PENDING"), 409, "/problems/not-cancellable", "Not cancellable",
     "Order ord_1 is PENDING; only a PLACED order can be cancelled.", {}),
    (Busy("ord_1"), 409, "/problems/order-busy", "Order busy",
     "Another saga of order ord_1 is under way; try again shortly.", {}),
    (NothingToRetry("ord_1", "PLACED"), 409, "/problems/nothing-to-retry", "Nothing to retry",
     "Order ord_1 is PLACED and its sagas are over.", {}),
    (OutOfStock([Shortage("A", 2, 1), Shortage("B", 1, 0)]), 409, "/problems/out-of-stock", "Out of stock",
     "Not enough stock for A, B.",
     {"shortages": [{"sku": "A", "requested": 2, "available": 1}, {"sku": "B", "requested": 1, "available": 0}]}),
    (AlreadyReleased("ord_1"), 409, "/problems/reservation-released", "Reservation released",
     "The reservation of order ord_1 was released; it cannot be made again.", {}),
    (ReservationMismatch("ord_1"), 409, "/problems/reservation-mismatch", "Reservation differs",
     "Order ord_1 already holds a reservation of other items.", {}),
    (OrderVoided("ord_1"), 409, "/problems/order-voided", "Order voided",
     "Order ord_1 was voided; it is never charged.", {}),
    (ChargeMismatch("ord_1"), 409, "/problems/charge-mismatch", "Charge differs",
     "Order ord_1 was already charged another amount.", {}),
    (NoPayment("ord_1"), 404, "about:blank", "No payment", "Order ord_1 has no payment.", {}),
    (NotRefundable("ord_1"), 409, "/problems/not-refundable", "Not refundable",
     "The payment of order ord_1 did not succeed.", {}),
]  # fmt: skip


@pytest.mark.parametrize(("error", "status", "type_", "title", "detail", "extra"), CASES)
def test_each_domain_error_has_its_answer(
    error: DomainError, status: int, type_: str, title: str, detail: str, extra: dict[str, Any]
) -> None:
    response = problem_response(problem_for(error), "/somewhere")
    assert response.status_code == status
    assert response.media_type == "application/problem+json"
    body = orjson.loads(response.body)
    assert body == {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "/somewhere",
        **extra,
    }


def test_overloaded_says_when_to_retry() -> None:
    assert problem_for(Overloaded(1000)).headers == {"Retry-After": "1"}
    assert all(problem_for(case[0]).headers is None for case in CASES if not isinstance(case[0], Overloaded))


def _leaves(cls: type[DomainError]) -> set[type[DomainError]]:
    subclasses = cls.__subclasses__()
    if not subclasses:
        return {cls}
    return set().union(*(_leaves(sub) for sub in subclasses))


def test_every_domain_error_is_mapped() -> None:
    assert _leaves(DomainError) == {type(case[0]) for case in CASES}


def test_both_kinds_of_route_answer_a_domain_error_through_the_mapping(tmp_path: Path) -> None:
    """A FastAPI route (the app's handler) and a lean route (``Front``) alike."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/orders/{order_id}/cancel")
    async def cancel(order_id: str) -> JSON:
        raise NotCancellable(order_id, "PENDING")

    async def reserve(request: Request, body: Lines) -> JSON:
        raise OutOfStock([Shortage("A", 2, 1)])

    front = Front(app, 65536)
    front.post("/reservations", Lines, reserve, roles=(Role.ADMIN,))
    key = tmp_path / "key.json"
    ensure_key(key)
    gate = Gate(front, verifier=Verifier(load_key(key)))
    token = {"authorization": f"Bearer {admin_token(load_key(key))}"}

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=gate, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
            return [
                await client.post("/orders/ord_1/cancel", headers=token, json={}),
                await client.post("/reservations", headers=token, json={"items": [{"sku": "A", "quantity": 2}]}),
            ]

    cancelled, reserved = asyncio.run(go())
    assert (cancelled.status_code, cancelled.headers["content-type"]) == (409, "application/problem+json")
    assert cancelled.json() == {
        "type": "/problems/not-cancellable", "title": "Not cancellable", "status": 409,
        "detail": "Order ord_1 is PENDING; only a PLACED order can be cancelled.", "instance": "/orders/ord_1/cancel",
    }  # fmt: skip
    assert (reserved.status_code, reserved.headers["content-type"]) == (409, "application/problem+json")
    assert reserved.json() == {
        "type": "/problems/out-of-stock", "title": "Out of stock", "status": 409, "detail": "Not enough stock for A.",
        "instance": "/reservations", "shortages": [{"sku": "A", "requested": 2, "available": 1}],
    }  # fmt: skip


def test_the_mapping_knows_no_service() -> None:
    import ast

    import oms.edge.problems

    tree = ast.parse(Path(oms.edge.problems.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    services = {"oms.orders", "oms.inventory", "oms.payments"}
    assert not {m for m in imported if any(m == s or m.startswith(s + ".") for s in services)}
