"""PaymentService's HTTP API: charges keyed by order id, refunds and voids."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import Field

from oms.auth.tokens import Role
from oms.config import Settings
from oms.edge.access import audit, only
from oms.edge.answers import JSON, json
from oms.edge.app import database_of, database_service, gated
from oms.edge.listing import Limit, Next, Offset, after, answer
from oms.edge.openapi import Tag, errors, link, listed, ok
from oms.fields import MAX_AMOUNT, ORDER_ID_PATTERN, Currency, OrderId, Strict, Text, Visible
from oms.payments import problems as _problems  # noqa: F401  (registers how this service's errors are answered)
from oms.payments import store
from oms.payments.answers import Payment, Voided


class ChargeIn(Strict):
    order_id: OrderId
    amount: Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)]
    currency: Currency
    payment_method: Text


class OrderRef(Strict):
    order_id: OrderId


PAYMENT_LINKS = {
    "refund": link("POST", "/payments/refund", "Refund it.", body={"order_id": "$response.body#/order_id"}),
    "void": link("POST", "/payments/void", "Void the order's payment.", body={"order_id": "$response.body#/order_id"}),
}

PARTICIPANT = (Role.SERVICE, Role.ADMIN)
"""Who may call PaymentService at all: OrderService's own token, and admins."""


def create_app(settings: Settings) -> Any:
    app, front = database_service("oms PaymentService", "payment", settings)
    database = database_of

    async def charge(request: Request, body: ChargeIn) -> JSON:
        audit(request, "charge", body.order_id)
        payment, created = await store.charge(
            database(request),
            order_id=body.order_id,
            amount=body.amount,
            currency=body.currency,
            payment_method=body.payment_method,
        )
        return json(payment, 201 if created else 200)

    # The call OrderService makes on every order: a lean route (see oms.edge.app.Front).
    front.post(
        "/payments",
        ChargeIn,
        charge,
        roles=PARTICIPANT,
        tags=[Tag.PAYMENTS],
        responses={
            201: ok(Payment, "The charge, made now: `SUCCEEDED` or `DECLINED`.", links=PAYMENT_LINKS),
            200: ok(Payment, "The order was charged before: that charge, unchanged.", links=PAYMENT_LINKS),
            **errors(e409="The order was voided, or charged another amount."),
        },
    )

    @app.get(
        "/payments",
        dependencies=[only(*PARTICIPANT)],
        tags=[Tag.PAYMENTS],
        responses={200: listed(Payment, "Payments, newest first (an order's, with `order_id`); never a voided one.")},
    )
    async def list_payments(
        request: Request,
        order_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN), Visible] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Next = None,
    ) -> JSON:
        page = await store.listing(
            database(request),
            order_id=order_id,
            limit=limit,
            offset=offset,
            after=after(store.PAYMENTS, cursor, offset),
        )
        return answer(request, page)

    @app.post(
        "/payments/void",
        dependencies=[only(*PARTICIPANT)],
        tags=[Tag.PAYMENTS],
        responses={200: ok(Voided, "The order's payment if it has one; otherwise none will ever be made.")},
    )
    async def void(body: OrderRef, request: Request) -> JSON:
        audit(request, "void", body.order_id)
        payment = await store.void(database(request), body.order_id)
        return json({"order_id": body.order_id, "voided": payment is None, "payment": payment})

    @app.post(
        "/payments/refund",
        dependencies=[only(*PARTICIPANT)],
        tags=[Tag.PAYMENTS],
        responses={
            200: ok(Payment, "The payment, `REFUNDED` (now or before)."),
            **errors(e404="The order has no payment.", e409="The order's payment did not succeed."),
        },
    )
    async def refund(body: OrderRef, request: Request) -> JSON:
        audit(request, "refund", body.order_id)
        payment, _ = await store.refund(database(request), body.order_id)
        return json(payment)

    return gated(front, settings, "payment")
