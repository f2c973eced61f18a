"""The bodies OrderService answers, as pydantic models for its OpenAPI document.

They document and never check: the routes send the dicts they build as they are (``oms.edge.answers.JSON``),
and the hot route, POST /orders, is answered ahead of FastAPI (``oms.edge.app.Front``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from oms.openapi import DatabaseState, errors, link, ok

OrderStatus = Literal[
    "PENDING", "PLACED", "PAYMENT_FAILED", "OUT_OF_STOCK", "REJECTED", "CANCELLED", "COMPENSATION_FAILED"
]


class OrderLine(BaseModel):
    sku: str
    name: str | None = Field(description="Null until the order is priced (the stock check).")
    quantity: int
    unit_price: int | None = Field(description="Minor units; null until the order is priced.")
    amount: int | None = Field(description="quantity * unit_price; null until the order is priced.")


class SagaEntry(BaseModel):
    saga: Literal["order", "reconcile", "cancel"]
    kind: Literal["step", "compensation"]
    name: str = Field(examples=["check_inventory", "reserve_inventory", "process_payment", "release_inventory"])
    outcome: Literal["done", "skipped", "failed", "uncertain", "unknown"]
    reason: str | None
    attempt: int
    started_at: datetime
    ended_at: datetime
    duration_ms: float
    detail: dict[str, Any] = Field(description="What was asked and what was answered.")


class Order(BaseModel):
    id: str
    status: OrderStatus
    saga_status: Literal["running", "waiting", "completed", "compensated", "compensation_failed"]
    customer_id: str
    payment_method: str
    items: list[OrderLine]
    total_amount: int | None = Field(description="Minor units of `currency`; null until the order is priced.")
    currency: str | None
    inventory_check: Literal["live", "fallback"] | None
    reservation: Literal["none", "held", "deferred", "released"]
    payment_id: str | None
    failure_reason: str | None = Field(examples=["card_declined", "out_of_stock", "no_fallback_data"])
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


class Breaker(BaseModel):
    state: Literal["closed", "open", "half_open", "forced_open", "disabled"] = Field(
        description="`forced_open` and `disabled` are an operator's switches (POST /breakers/{name}); no timed "
        "transition leaves them."
    )
    failure_rate: float | None = Field(description="Percent of the window's calls; null below the minimum calls.")
    slow_call_rate: float | None = Field(description="Percent of the window's calls; null below the minimum calls.")
    calls: int
    failed_calls: int
    slow_calls: int
    not_permitted_calls: int
    state_since: datetime
    seconds_in_state: float
    window_type: Literal["count", "time"] = Field(description="`count`: the last N calls; `time`: the last N seconds.")
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
