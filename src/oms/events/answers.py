"""The bodies the ``/webhooks`` routes answer, as pydantic models for OrderService's OpenAPI document.

Like ``oms.orders.answers``, they document and never check: the routes send the dicts
``oms.events.store`` builds. ``WebhookStatus`` and ``AttemptOutcome`` hold the values the store and the
relay write (``tests/unit/test_openapi.py`` checks them against ``oms.events.store``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from oms.orders.answers import EventType


class WebhookStatus(StrEnum):
    """`enabled`: events go to it; `disabled`: by an admin, or by the relay (410 Gone, or every
    delivery failing for `webhook.give_up_after`), `disabled_reason` says which."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class AttemptOutcome(StrEnum):
    """What came of one try: `delivered` (a 2xx in time), `retry` (failed, tried again at `next_try_at`),
    `given_up` (failed for `webhook.give_up_after`), `endpoint_gone` (410: the endpoint disabled), `test`
    (`POST /webhooks/{id}/test`, whatever its answer)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GIVEN_UP = "given_up"
    ENDPOINT_GONE = "endpoint_gone"
    TEST = "test"


class Webhook(BaseModel):
    """An endpoint events are POSTed to, signed with its secret (never shown here)."""

    id: str = Field(examples=["we_019a6b1c2d3e4f5a6b7c8d9e"])
    url: str = Field(examples=["https://shop.example/hooks/oms"])
    events: list[EventType | Literal["*"]] = Field(description='The types sent to it, or `["*"]`: every type.')
    description: str
    status: WebhookStatus
    disabled_reason: str | None = Field(description="Why it is disabled; null while enabled.")
    created_at: datetime
    updated_at: datetime
    last_success_at: datetime | None = Field(description="The last delivery it took (2xx); null: none yet.")
    failing_since: datetime | None = Field(
        description="The first failed try since its last success; null: its last try succeeded (or none failed)."
    )
    waiting: int = Field(description="Deliveries waiting for a later try (failed, held behind an order's, replays).")


class NewWebhook(Webhook):
    """The endpoint with its signing secret: shown in this answer only (and at the next rotation)."""

    secret: str = Field(
        description="`whsec_` and the base64 of 32 random bytes: verify each delivery with it (Standard Webhooks).",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookAttempt(BaseModel):
    """One try of one delivery, newest first in an endpoint's list."""

    id: int
    event_id: str
    event_type: str = Field(description="The event's type; `oms.webhook.test` for a test.")
    order_id: str | None = Field(description="Null for a test.")
    sequence: int | None = Field(description="The event's number among its order's; null for a test.")
    try_: int = Field(alias="try", description="1 for the first try, 2 for the first retry, ...")
    status_code: int | None = Field(description="The receiver's answer; null when none came (`error` says why).")
    error: str | None = Field(description="Why no answer came: a timeout, a refused or dropped connection.")
    duration_ms: float
    outcome: AttemptOutcome
    next_try_at: datetime | None = Field(description="When it goes again (`retry`); else null.")
    at: datetime


class OrderAttempt(WebhookAttempt):
    """A try of one of an order's events, with the endpoint it went to."""

    endpoint_id: str
    url: str | None = Field(description="The endpoint's URL now.")


class OrderAttempts(BaseModel):
    items: list[OrderAttempt] = Field(description="Oldest first, across every endpoint.")


class Queued(BaseModel):
    queued: int = Field(description="Deliveries queued: the matching events since `since`, sent again.")
