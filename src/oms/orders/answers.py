"""The bodies OrderService answers, as pydantic models for its OpenAPI document.

They document and never check: the routes send the dicts they build as they are (``oms.edge.answers.JSON``),
and the hot route, POST /orders, is answered ahead of FastAPI (``oms.edge.app.Front``).

Each set of values is a StrEnum, so the document has one named schema for it, shared by every body
and parameter that holds it (a generated client has one type). The domain's own enums are used where
their names suit a client (``OrderStatus``); the others here hold the same values, which
``tests/unit/test_openapi.py`` checks against the domain's.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from oms.edge.openapi import DatabaseState, errors, link, ok
from oms.orders.saga import OrderStatus as OrderStatus  # the list route's ?status= too


class SagaStatus(StrEnum):
    """The order's current saga: `running`, or how it stopped (`waiting`: to be driven on later)."""

    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class SagaName(StrEnum):
    """Which of an order's sagas: `order`, then `reconcile` (placed on fallback data) or `cancel`."""

    ORDER = "order"
    RECONCILE = "reconcile"
    CANCEL = "cancel"


class StepKind(StrEnum):
    STEP = "step"
    COMPENSATION = "compensation"


class StepOutcome(StrEnum):
    """`uncertain`: it may have acted (then compensated); `unknown`: not known yet, asked again later."""

    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    UNKNOWN = "unknown"


class InventoryCheck(StrEnum):
    """How the order's stock was checked: `live` at InventoryService, or on the `fallback` catalog."""

    LIVE = "live"
    FALLBACK = "fallback"


class OrderReservation(StrEnum):
    """The order's stock: `none` held, `held` at InventoryService, `deferred` (placed on fallback data,
    the reservation to come), `released`."""

    NONE = "none"
    HELD = "held"
    DEFERRED = "deferred"
    RELEASED = "released"


class FailureReason(StrEnum):
    """Why the order's saga failed: the failed step's reason, or the compensation's that gave up."""

    INVENTORY_REFUSED = "inventory_refused"
    UNKNOWN_SKU = "unknown_sku"
    MIXED_CURRENCIES = "mixed_currencies"
    OUT_OF_STOCK = "out_of_stock"
    NO_FALLBACK_DATA = "no_fallback_data"
    INSUFFICIENT_FALLBACK_STOCK = "insufficient_fallback_stock"
    INVENTORY_UNAVAILABLE = "inventory_unavailable"
    INVENTORY_NO_ANSWER = "inventory_no_answer"
    RESERVATION_REFUSED = "reservation_refused"
    OUT_OF_STOCK_AFTER_FALLBACK = "out_of_stock_after_fallback"
    PAYMENT_UNAVAILABLE = "payment_unavailable"
    PAYMENT_REFUSED = "payment_refused"
    PAYMENT_TIMEOUT = "payment_timeout"
    PAYMENT_REFUNDED = "payment_refunded"
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_PAYMENT_METHOD = "invalid_payment_method"
    RELEASE_FAILED = "release_failed"
    REFUND_FAILED = "refund_failed"


ErrorReason = Annotated[
    str,
    Field(
        pattern=r"^error:",
        description="`error:` and an exception's type: a compensation failed with a bug until it gave up.",
    ),
]


class BreakerState(StrEnum):
    """`forced_open` and `disabled` are an operator's switches (POST /breakers/{name}); no timed
    transition leaves them."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class WindowType(StrEnum):
    """`count`: the last N calls; `time`: the last N seconds."""

    COUNT = "count"
    TIME = "time"


class OrderLine(BaseModel):
    sku: str
    name: str | None = Field(description="Null until the order is priced (the stock check).")
    quantity: int
    unit_price: int | None = Field(description="Minor units; null until the order is priced.")
    amount: int | None = Field(description="quantity * unit_price; null until the order is priced.")


class SagaEntry(BaseModel):
    saga: SagaName
    kind: StepKind
    name: str = Field(examples=["check_inventory", "reserve_inventory", "process_payment", "release_inventory"])
    outcome: StepOutcome
    reason: str | None
    attempt: int
    started_at: datetime
    ended_at: datetime
    duration_ms: float
    detail: dict[str, Any] = Field(description="What was asked and what was answered.")


class Order(BaseModel):
    id: str
    status: OrderStatus
    saga_status: SagaStatus
    customer_id: str
    payment_method: str
    items: list[OrderLine]
    total_amount: int | None = Field(description="Minor units of `currency`; null until the order is priced.")
    currency: str | None
    inventory_check: InventoryCheck | None
    reservation: OrderReservation
    payment_id: str | None
    failure_reason: FailureReason | ErrorReason | None = Field(
        description="Null unless the order failed (or its compensation did)."
    )
    pending_reason: str | None = Field(examples=["payment_outcome_unknown", "reservation_deferred"])
    created_at: datetime
    updated_at: datetime
    trace_id: str | None = Field(
        description="The order's OpenTelemetry trace id (32 hex digits): the request that placed it, its saga "
        "steps and their calls to the other services. Null when tracing was off.",
        examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )
    trace_url: str | None = Field(
        None, description="The trace in a tracing UI: present only when `trace_url_template` is set."
    )
    saga: list[SagaEntry] | None = Field(
        None, description="Every step and compensation, in order (not in lists of orders)."
    )


class EventType(StrEnum):
    """An event's type: the order was created (stored ``PENDING``), or its status changed to another."""

    CREATED = "oms.order.created"
    PLACED = "oms.order.placed"
    PAYMENT_FAILED = "oms.order.payment_failed"
    OUT_OF_STOCK = "oms.order.out_of_stock"
    REJECTED = "oms.order.rejected"
    CANCELLED = "oms.order.cancelled"
    COMPENSATION_FAILED = "oms.order.compensation_failed"


class EventOrder(BaseModel):
    """The order as it was once its status changed: as ``GET /orders/{id}`` shows it (to a
    customer, as a customer is shown it), without its payment method and its saga log."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: OrderStatus
    saga_status: SagaStatus
    customer_id: str
    items: list[OrderLine]
    total_amount: int | None
    currency: str | None
    created_at: datetime
    updated_at: datetime


class Event(BaseModel):
    """A change of an order's status, as a CloudEvent 1.0 (JSON structured mode)."""

    specversion: str = Field(examples=["1.0"])
    id: str = Field(description="`evt_...`, unique: a consumer that has seen it has seen the event.")
    source: str = Field(examples=["oms/order-service"])
    type: EventType
    subject: str = Field(description="The order's id.")
    time: datetime = Field(description="When the status changed (UTC, RFC 3339).")
    datacontenttype: str = Field(examples=["application/json"])
    sequence: int = Field(ge=1, description="1, 2, 3, ... among the order's events: `created` is 1.")
    data: EventOrder


class Breaker(BaseModel):
    state: BreakerState
    failure_rate: float | None = Field(description="Percent of the window's calls; null below the minimum calls.")
    slow_call_rate: float | None = Field(description="Percent of the window's calls; null below the minimum calls.")
    calls: int
    failed_calls: int
    slow_calls: int
    not_permitted_calls: int
    state_since: datetime
    seconds_in_state: float
    window_type: WindowType
    window_size: int = Field(description="N.")
    minimum_calls: int = Field(description="Calls in the window before a rate counts.")


class Breakers(BaseModel):
    inventory: Breaker
    payment: Breaker


class Databases(BaseModel):
    order: DatabaseState
    inventory: DatabaseState
    payment: DatabaseState


class Bucket(BaseModel):
    start: datetime
    orders: int = Field(description="Orders created in the bucket.")
    orders_per_second: float
    p50_ms: float | None = Field(description="Median order saga duration of the bucket's orders; null for none.")
    p99_ms: float | None


class OrderStats(BaseModel):
    since: datetime
    bucket_seconds: int
    counts: dict[str, int] = Field(description="Every order (a customer's own) by status.")
    total: int
    buckets: list[Bucket] = Field(description="Oldest first, the last one under way.")


class AuditFinding(BaseModel):
    kind: str = Field(examples=["charge_without_order", "stock_held_by_failed_order", "saga_stuck"])
    order_id: str
    detail: str


class AuditReport(BaseModel):
    at: datetime
    clean: bool
    orders: int
    payments: int
    reservations: int
    items: int
    findings: list[AuditFinding]


_ORDER_ID = "$response.body#/id"
_LINKS = {
    "get": link("GET", "/orders/{order_id}", "The order, as it goes on.", parameters={"order_id": _ORDER_ID}),
    "cancel": link("POST", "/orders/{order_id}/cancel", "Cancel it once PLACED.", parameters={"order_id": _ORDER_ID}),
    "retry": link("POST", "/orders/{order_id}/retry", "Drive its saga on now.", parameters={"order_id": _ORDER_ID}),
}
_LOCATION = {"Location": "The order's URL: `/orders/{id}`."}
_REPLAYED = {"Idempotent-Replayed": "`true`: the order this Idempotency-Key made before, and no second saga."}

PLACE_ORDER: dict[int | str, dict[str, Any]] = {
    201: ok(Order, "The saga ended (or `order_wait` passed): the new order, whatever its status.", _LOCATION, _LINKS),
    200: ok(
        Order,
        "The same Idempotency-Key and body as before: that order, as it stands now.",
        _LOCATION | _REPLAYED,
        _LINKS,
    ),
    202: ok(
        Order,
        "With `Prefer: respond-async`: the order is stored `PENDING` and its saga runs on durably.",
        _LOCATION | _REPLAYED | {"Preference-Applied": "`respond-async`."},
        _LINKS,
    ),
    **errors(
        e403="The token's role may not place orders, or a customer's token names another customer_id.",
        e422="A field is wrong, an unknown SKU (`skus`), a bad Idempotency-Key, or the key used with another body.",
        e503="OrderService drives as many sagas as it may at once.",
    ),
}
"""POST /orders' answers."""

PLACE_ORDER_HEADERS: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Retries with the same key and body get the one order made (200), never a second saga; "
            "the key belongs to its customer and is forgotten after 24 h.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "description": "`respond-async`: answer 202 as soon as the order is stored, the saga running on.",
            "schema": {"type": "string", "examples": ["respond-async"]},
        },
    ]
}
"""POST /orders' request headers (``openapi_extra``)."""
