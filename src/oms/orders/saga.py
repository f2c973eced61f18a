"""The order saga, as the sequence diagram draws it, on the generic engine:

    check_inventory   live check, or the fallback catalog when InventoryService is out of reach
    reserve_inventory (skipped after a fallback check: the reservation is made later)
        undo: release_inventory
    process_payment   a timed-out charge is asked for, then voided, before anything is decided

The context (``OrderContext``) carries ``order_id``, ``lines`` [(sku, quantity)], ``payment_method``;
the steps add ``items`` (priced lines), ``total_amount``, ``currency``, ``inventory_check``,
``reservation`` and ``payment_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Required, TypedDict

from oms.errors import CallFailure
from oms.orders.ports import (
    CallError,
    CatalogPort,
    CheckAnswer,
    InventoryPort,
    Item,
    NoAnswer,
    PaymentPort,
    Refused,
    Unavailable,
)
from oms.saga.engine import Outcome, SagaDefinition, SagaEnd, SagaStatus, Step, StepResult


class OrderStatus(StrEnum):
    """An order's status, stored as its name."""

    PENDING = "PENDING"
    PLACED = "PLACED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


STATUSES = tuple(status.value for status in OrderStatus)
"""The statuses as plain strings, for the API and the dashboard (orjson takes only a str as a dict's key)."""


class OrderContext(TypedDict, total=False):
    """An order's saga context: what the order gives, then what its steps learn (their results'
    ``data``). Rebuilt from the order's row when a saga is driven on (``OrderRepository.load_saga``)."""

    saga: Required[str]
    """The saga of the order now running: ``order``, ``reconcile`` or ``cancel``."""
    order_id: Required[str]
    lines: Required[list[tuple[str, int]]]
    """(sku, quantity)."""
    payment_method: Required[str]
    trace_context: str
    """The traceparent of the request that placed the order, when tracing is on."""
    items: list[dict[str, Any]]
    """Priced lines: sku, name, quantity, unit_price, amount."""
    total_amount: int
    currency: str
    inventory_check: Literal["live", "fallback"]
    reservation: Literal["held", "deferred", "released", "none"]
    payment_id: str
    catalog_update: list[Item]
    """The stock and prices a step learnt, for the fallback catalog: taken out of the context by the
    saga's next write (``OrderLog``), and stored with its rows."""


CHECK = "check_inventory"
RESERVE = "reserve_inventory"
PAY = "process_payment"

ORDER = "order"
RECONCILE = "reconcile"
"""Makes the reservation an order placed on fallback data still lacks; refunds if stock is gone."""
CANCEL = "cancel"
"""Refunds a placed order and gives its stock back."""


def status_for(end: SagaEnd | None, saga: str = ORDER) -> OrderStatus:
    """The order's status once its saga ``saga`` has reached ``end`` (None: still running)."""
    if saga != ORDER:
        if end is None or end.status is SagaStatus.WAITING:
            return OrderStatus.PLACED
        if end.status is SagaStatus.COMPENSATION_FAILED:
            return OrderStatus.COMPENSATION_FAILED
        if saga == CANCEL:
            return OrderStatus.CANCELLED
        return OrderStatus.PLACED if end.status is SagaStatus.COMPLETED else OrderStatus.CANCELLED
    if end is None or end.status is SagaStatus.WAITING:
        return OrderStatus.PENDING
    if end.status is SagaStatus.COMPLETED:
        return OrderStatus.PLACED
    if end.status is SagaStatus.COMPENSATION_FAILED:
        return OrderStatus.COMPENSATION_FAILED
    if end.failed_step == PAY:
        return OrderStatus.PAYMENT_FAILED
    if end.reason == "out_of_stock":
        return OrderStatus.OUT_OF_STOCK
    return OrderStatus.REJECTED


Lease = Literal["keep", "free", "retry"]
"""What a saga write does to the order's lease: ``keep`` it as it is; ``free`` it at once, so recovery
drives the saga now; ``retry``: let it lapse after the pause before an unanswered question is
asked again (the store's, doubling with each try)."""


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order's row after a saga write: what the saga decided and learnt. The store writes it as it is."""

    status: OrderStatus
    saga: str
    """The saga in charge of the order from now on (``reconcile`` once an order is placed on fallback data)."""
    saga_status: str
    """``running``, or how that saga stopped (a ``SagaStatus``'s value)."""
    failure_reason: str | None
    pending_reason: str | None
    lease: Lease
    items: list[dict[str, Any]] | None
    inventory_check: str | None
    reservation: str
    total_amount: int | None
    currency: str | None
    payment_id: str | None


def order_state(context: OrderContext, end: SagaEnd | None) -> OrderState:
    """The order's row once its saga (``context["saga"]``) has written a step and reached ``end``
    (None: it goes on). An order placed on fallback data is handed to the reconcile saga, waiting,
    with its lease free: recovery makes the reservation it still lacks."""
    saga = context.get("saga", ORDER)
    status = status_for(end, saga)
    saga_name, saga_status = saga, end.status.value if end is not None else "running"
    failure = pending = None
    lease: Lease = "keep"
    if end is not None:
        if end.status is SagaStatus.WAITING:
            pending, lease = end.reason, "retry"
        elif end.status is not SagaStatus.COMPLETED:
            failure = end.reason
        elif saga == ORDER and context.get("reservation") == "deferred":
            saga_name, saga_status, pending, lease = RECONCILE, "waiting", "reservation_deferred", "free"
    return OrderState(
        status, saga_name, saga_status, failure, pending, lease,
        context.get("items") or None, context.get("inventory_check"), context.get("reservation", "none"),
        context.get("total_amount"), context.get("currency"), context.get("payment_id"),
    )  # fmt: skip


def _priced(lines: list[tuple[str, int]], items: list[Item]) -> list[dict[str, Any]]:
    by_sku = {item.sku: item for item in items}
    priced = []
    for sku, quantity in lines:
        item = by_sku[sku]
        priced.append(
            {"sku": sku, "name": item.name, "quantity": quantity, "unit_price": item.unit_price,
             "amount": item.unit_price * quantity}
        )  # fmt: skip
    return priced


def _priced_data(lines: list[tuple[str, int]], items: list[Item], check: str) -> dict[str, Any] | None:
    currencies = {item.currency for item in items}
    if len(currencies) != 1:
        return None
    priced = _priced(lines, items)
    return {
        "items": priced,
        "total_amount": sum(p["amount"] for p in priced),
        "currency": currencies.pop(),
        "inventory_check": check,
    }


def _lines(ctx: OrderContext) -> list[tuple[str, int]]:
    return [(sku, quantity) for sku, quantity in ctx["lines"]]


def _call_detail(exc: CallFailure) -> dict[str, Any]:
    if isinstance(exc, Refused):
        return {"answer": exc.status, "problem": exc.code, "message": exc.detail}
    assert isinstance(exc, CallError)
    if exc.sent is None:
        return {"error": exc.reason, "message": exc.detail}
    return {"error": exc.reason, "message": exc.detail, "sent": exc.sent}  # tries that left OrderService


def order_saga(inventory: InventoryPort, payments: PaymentPort, catalog: CatalogPort) -> SagaDefinition[OrderContext]:
    async def check_inventory(ctx: OrderContext) -> StepResult:
        lines = _lines(ctx)
        request = {"items": [{"sku": s, "quantity": q} for s, q in lines]}
        try:
            answer = await inventory.check(lines)
        except CallError as exc:
            return await _fallback(ctx, lines, exc.reason, {"request": request, "live": _call_detail(exc)})
        except Refused as exc:
            return StepResult.failed("inventory_refused", detail={"request": request, **_call_detail(exc)})
        return await _judge(ctx, lines, request, answer)

    async def _judge(
        ctx: OrderContext, lines: list[tuple[str, int]], request: dict[str, Any], answer: CheckAnswer
    ) -> StepResult:
        detail: dict[str, Any] = {
            "request": request,
            "answer": [{"sku": i.sku, "available": i.available, "unit_price": i.unit_price} for i in answer.items],
        }
        if answer.unknown:
            return StepResult.failed("unknown_sku", detail={**detail, "unknown": answer.unknown})
        data = _priced_data(lines, answer.items, "live")
        if data is None:
            return StepResult.failed("mixed_currencies", detail=detail)
        data["catalog_update"] = answer.items
        wanted = dict(lines)
        # Units owed to orders already paid on fallback data come first: a new order cannot take them.
        owed = await catalog.held(list(wanted))
        if owed:
            detail["owed_to_fallback_orders"] = owed
        if any(item.available - owed.get(item.sku, 0) < wanted[item.sku] for item in answer.items):
            return StepResult.failed("out_of_stock", data=data, detail=detail)
        return StepResult.done(data=data, detail=detail, repeatable=True)

    async def recheck_inventory(ctx: OrderContext) -> StepResult:
        # Recovery with no row of this check: the reservation and the charge may have happened
        # (their rows are written with the payment's). Only a live answer will do, and a refusal
        # stands only if the order holds no reservation: one that holds stock has got past this
        # check already, and may have paid. Out of reach: wait and ask again, never fall back.
        lines = _lines(ctx)
        request = {"items": [{"sku": s, "quantity": q} for s, q in lines]}
        try:
            result = await _judge(ctx, lines, request, await inventory.check(lines))
        except CallError as exc:
            return StepResult.unknown("inventory_unavailable", detail={"request": request, **_call_detail(exc)})
        except Refused as exc:
            result = StepResult.failed("inventory_refused", detail={"request": request, **_call_detail(exc)})
        if result.outcome is not Outcome.FAILED:
            await catalog.unhold(ctx["order_id"])  # a fallback hold an earlier run may have left
            return result
        try:
            held = await inventory.reservation(ctx["order_id"])
        except CallFailure as exc:
            return StepResult.unknown("inventory_unavailable", detail={**result.detail, "asked": _call_detail(exc)})
        if held != "RESERVED":
            return result
        if "items" not in result.data:
            return StepResult.unknown("unpriced_reservation", detail={**result.detail, "reservation": held})
        await catalog.unhold(ctx["order_id"])
        detail = {**result.detail, "refused": result.reason, "reservation": held}
        return StepResult.done(data=result.data, detail=detail, repeatable=True)

    async def _fallback(
        ctx: OrderContext, lines: list[tuple[str, int]], live_error: str, detail: dict[str, Any]
    ) -> StepResult:
        answer = await catalog.hold(ctx["order_id"], lines)
        detail["fallback"] = {
            "items": [{"sku": i.sku, "available": i.available, "unit_price": i.unit_price} for i in answer.items],
            "missing": answer.missing,
            "short": answer.short,
        }
        if answer.missing:
            return StepResult.failed("no_fallback_data", data={"inventory_check": "fallback"}, detail=detail)
        data = _priced_data(lines, answer.items, "fallback")
        if data is None:
            await catalog.unhold(ctx["order_id"])
            return StepResult.failed("mixed_currencies", data={"inventory_check": "fallback"}, detail=detail)
        if answer.short:
            return StepResult.failed("insufficient_fallback_stock", data=data, detail=detail)
        data["reservation"] = "deferred"
        return StepResult.done(data=data, detail=detail, reason=f"fallback:{live_error}")

    async def release_fallback_hold(ctx: OrderContext) -> StepResult:
        if ctx.get("inventory_check") != "fallback":
            return StepResult.skipped("live_check")
        await catalog.unhold(ctx["order_id"])
        return StepResult.done(data={"reservation": "none"})

    async def reserve_inventory(ctx: OrderContext) -> StepResult:
        if ctx.get("inventory_check") == "fallback":
            return StepResult.skipped("reservation_deferred", detail={"reservation": "deferred"})
        request = {"order_id": ctx["order_id"], "items": [{"sku": s, "quantity": q} for s, q in _lines(ctx)]}
        try:
            stock = await inventory.reserve(ctx["order_id"], _lines(ctx))
        except Unavailable as exc:
            return StepResult.failed("inventory_unavailable", detail={"request": request, **_call_detail(exc)})
        except NoAnswer as exc:
            return StepResult.uncertain("inventory_no_answer", detail={"request": request, **_call_detail(exc)})
        except Refused as exc:
            reason = {"out-of-stock": "out_of_stock", "unknown-sku": "unknown_sku"}.get(exc.code, "reservation_refused")
            return StepResult.failed(reason, detail={"request": request, **_call_detail(exc)})
        # The stock left after this reservation is the freshest fallback data there is. Reserving
        # again for this order answers the same reservation, so the row can wait for the payment's.
        return StepResult.done(
            data={"reservation": "held", "catalog_update": stock}, detail={"request": request}, repeatable=True
        )

    async def release_inventory(ctx: OrderContext) -> StepResult:
        try:
            await inventory.release(ctx["order_id"])
        except CallFailure as exc:
            return StepResult.failed("release_failed", detail=_call_detail(exc))
        return StepResult.done(data={"reservation": "released"}, detail={"order_id": ctx["order_id"]})

    async def process_payment(ctx: OrderContext) -> StepResult:
        order_id = ctx["order_id"]
        request = {"order_id": order_id, "amount": ctx["total_amount"], "currency": ctx["currency"],
                   "payment_method": ctx["payment_method"]}  # fmt: skip
        try:
            payment = await payments.charge(order_id, ctx["total_amount"], ctx["currency"], ctx["payment_method"])
        except Unavailable as exc:
            return StepResult.failed("payment_unavailable", detail={"request": request, **_call_detail(exc)})
        except Refused as exc:
            return StepResult.failed("payment_refused", detail={"request": request, **_call_detail(exc)})
        except NoAnswer as exc:
            return await _settle_unknown_charge(order_id, {"request": request, **_call_detail(exc)})
        return _payment_result(payment.status, payment.id, payment.decline_code, {"request": request})

    async def _settle_unknown_charge(order_id: str, detail: dict[str, Any]) -> StepResult:
        # The charge may have landed: ask for it, and if there is none, void the order at
        # PaymentService so none can land later. Only then is the outcome known.
        try:
            payment = await payments.find(order_id)
            detail["asked"] = payment.status if payment else "no payment"
            if payment is None:
                payment = await payments.void(order_id)
                detail["voided"] = payment is None
        except CallFailure as exc:
            detail["settle"] = _call_detail(exc)
            return StepResult.unknown("payment_outcome_unknown", detail=detail)
        if payment is None:
            return StepResult.failed("payment_timeout", detail=detail)
        return _payment_result(payment.status, payment.id, payment.decline_code, detail)

    async def recover_payment(ctx: OrderContext) -> StepResult:
        # After a crash or an unknown outcome: ask first; with no charge on record, charging again
        # is safe, since PaymentService keeps at most one charge per order (a delayed first request
        # that lands later finds this one).
        order_id = ctx["order_id"]
        try:
            payment = await payments.find(order_id)
        except CallFailure as exc:
            return StepResult.unknown("payment_outcome_unknown", detail={"asked": _call_detail(exc)})
        if payment is not None:
            found = _payment_result(payment.status, payment.id, payment.decline_code, {"asked": payment.status})
            # What was charged is what the order cost (prices may have changed since).
            data = {**found.data, "total_amount": payment.amount, "currency": payment.currency}
            return StepResult(found.outcome, found.reason, data, found.detail)
        result = await process_payment(ctx)
        return StepResult(result.outcome, result.reason, result.data, {"asked": "no payment", **result.detail})

    async def refund_payment(ctx: OrderContext) -> StepResult:
        try:
            await payments.refund(ctx["order_id"])
        except CallFailure as exc:
            return StepResult.failed("refund_failed", detail=_call_detail(exc))
        return StepResult.done(detail={"order_id": ctx["order_id"]})

    return SagaDefinition(
        ORDER,
        (
            Step(CHECK, check_inventory, release_fallback_hold, "release_fallback_hold", recover=recheck_inventory),
            Step(RESERVE, reserve_inventory, release_inventory, "release_inventory"),
            Step(PAY, process_payment, refund_payment, "refund_payment", recover=recover_payment),
        ),
    )


def order_sagas(
    inventory: InventoryPort, payments: PaymentPort, catalog: CatalogPort
) -> dict[str, SagaDefinition[OrderContext]]:
    """The order saga and the two that may follow it: reconcile (after fallback) and cancel."""
    order = order_saga(inventory, payments, catalog)

    async def reserve_deferred(ctx: OrderContext) -> StepResult:
        request = {"order_id": ctx["order_id"], "items": [{"sku": s, "quantity": q} for s, q in _lines(ctx)]}
        try:
            stock = await inventory.reserve(ctx["order_id"], _lines(ctx))
        except CallError as exc:
            # Still out of reach: recovery asks again later (a repeated reservation is harmless).
            return StepResult.unknown("inventory_unavailable", detail={"request": request, **_call_detail(exc)})
        except Refused as exc:
            reason = "out_of_stock_after_fallback" if exc.code == "out-of-stock" else "reservation_refused"
            return StepResult.failed(reason, detail={"request": request, **_call_detail(exc)})
        await catalog.unhold(ctx["order_id"])
        return StepResult.done(data={"reservation": "held", "catalog_update": stock}, detail={"request": request})

    reconcile = SagaDefinition(
        RECONCILE,
        (Step("reserve_deferred", reserve_deferred, order.step(RESERVE).compensation, "release_inventory"),),
        given=(order.step(PAY), order.step(CHECK)),
    )

    async def refund(ctx: OrderContext) -> StepResult:
        try:
            payment = await payments.refund(ctx["order_id"])
        except CallError as exc:
            return StepResult.unknown("payment_unavailable", detail=_call_detail(exc))
        except Refused as exc:
            return StepResult.skipped("nothing_to_refund", detail=_call_detail(exc))
        return StepResult.done(detail={"payment_id": payment.id, "status": payment.status})

    async def release_stock(ctx: OrderContext) -> StepResult:
        if ctx.get("reservation") not in ("held", "deferred"):
            return StepResult.skipped("nothing_held")
        try:
            # For a deferred reservation this leaves a tombstone, so none can be made later.
            await inventory.release(ctx["order_id"])
        except CallFailure as exc:
            return StepResult.unknown("inventory_unavailable", detail=_call_detail(exc))
        await catalog.unhold(ctx["order_id"])
        return StepResult.done(data={"reservation": "released"})

    cancel = SagaDefinition(CANCEL, (Step("refund_payment", refund), Step("release_stock", release_stock)))
    return {ORDER: order, RECONCILE: reconcile, CANCEL: cancel}


def _payment_result(status: str, payment_id: str, decline_code: str | None, detail: dict[str, Any]) -> StepResult:
    detail = {**detail, "payment_id": payment_id, "status": status}
    if status == "SUCCEEDED":
        return StepResult.done(data={"payment_id": payment_id}, detail=detail)
    if status == "DECLINED":
        return StepResult.failed(decline_code or "card_declined", data={"payment_id": payment_id}, detail=detail)
    return StepResult.failed("payment_refunded", detail=detail)
