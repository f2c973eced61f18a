"""The bodies InventoryService answers, as pydantic models for its OpenAPI document (they document
and never check: see ``oms.orders.answers``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from oms.inventory.store import ReservationStatus as ReservationStatus  # the list route's ?status= too


class Item(BaseModel):
    sku: str
    name: str
    unit_price: int = Field(description="Minor units of `currency`.")
    currency: str
    available: int = Field(description="Units that may still be reserved.")
    reserved: int = Field(description="Units held by reservations.")


class CheckedItem(Item):
    requested: int
    sufficient: bool


class Check(BaseModel):
    available: bool = Field(description="Every line could be reserved now.")
    items: list[CheckedItem]
    unknown: list[str] = Field(description="SKUs no item has.")


class HeldLine(BaseModel):
    sku: str
    quantity: int


class Reservation(BaseModel):
    order_id: str
    status: ReservationStatus
    items: list[HeldLine] = Field(description="Empty for a release that came before its reservation.")
    created_at: datetime
    updated_at: datetime


class Reserved(Reservation):
    stock: list[Item] = Field(description="The reserved items' stock after the reservation.")
