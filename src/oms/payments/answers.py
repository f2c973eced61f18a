"""The bodies PaymentService answers, as pydantic models for its OpenAPI document (they document
and never check: see ``oms.orders.answers``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class PaymentStatus(StrEnum):
    """A payment's status (a voided order has no payment: PaymentService's VOIDED rows are not shown)."""

    SUCCEEDED = "SUCCEEDED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


class Payment(BaseModel):
    id: str
    order_id: str
    amount: int = Field(description="Minor units of `currency`.")
    currency: str
    status: PaymentStatus
    decline_code: str | None = Field(examples=["card_declined", "insufficient_funds", "invalid_payment_method"])
    created_at: datetime


class Voided(BaseModel):
    order_id: str
    voided: bool = Field(description="True when the order had no payment: none will ever be made now.")
    payment: Payment | None = Field(description="The order's payment, when it had one (then it stands).")
