"""Field types shared by the three APIs, so every service validates a SKU or a quantity alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_QUANTITY = 10_000
"""Largest quantity of one SKU in one order: more is a typo, not an order."""
MAX_LINES = 100
MAX_AMOUNT = 10**12
"""Largest price or amount in minor units (ten billion in a two-decimal currency)."""

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
"""No control characters (PostgreSQL text cannot hold NUL; none belongs in a name or an id)."""
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=PRINTABLE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Line(Strict):
    sku: Sku
    quantity: Quantity


class Lines(Strict):
    items: list[Line] = Field(min_length=1, max_length=MAX_LINES)

    @field_validator("items")
    @classmethod
    def _unique_skus(cls, items: list[Line]) -> list[Line]:
        seen: set[str] = set()
        for line in items:
            if line.sku in seen:
                raise ValueError(f"SKU {line.sku} appears twice; give it once with the total quantity")
            seen.add(line.sku)
        return items


def utc_now() -> str:
    """Now, as the ISO-8601 UTC text every table stores (it sorts as it reads)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utc_after(seconds: float) -> str:
    """``utc_now()`` moved by ``seconds``, for leases and deadlines."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
