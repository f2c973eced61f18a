"""The bodies PaymentService answers, as pydantic models for its OpenAPI document (they document
and never check: see ``oms.orders.answers``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Payment(BaseModel):
    id: str
    order_id: str
    amount: int = Field(description="Minor units of `currency`.")
    currency: str
    status: Literal["SUCCEEDED", "DECLINED", "REFUNDED"]
    decline_code: str | None = Field(examples=["card_declined", "insufficient_funds", "invalid_payment_method"])
    created_at: datetime


class Voided(BaseModel):
    order_id: str
    voided: bool = Field(description="True when the order had no payment: none will ever be made now.")
    payment: Payment | None = Field(description="The order's payment, when it had one (then it stands).")
