"""Field types shared by the three APIs, so every service validates a SKU or a quantity alike."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from oms.currencies import ISO_4217

MAX_QUANTITY = 10_000
"""Largest quantity of one SKU in one order: more is a typo, not an order."""
MAX_LINES = 100
MAX_AMOUNT = 10**12
"""Largest price or amount in minor units (ten billion in a two-decimal currency)."""


# Characters no name, id or key may hold, whatever the service and the database: control characters
# (C0 with NUL, DEL, C1: PostgreSQL text cannot hold NUL, and none belongs in a name), bidirectional
# overrides, isolates and marks (they make a name display as another: "Trojan Source"), and
# zero-width characters (two ids that look the same and differ).
_CONTROL = "\x00-\x1f\x7f-\x9f"
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ZERO_WIDTH = "\u200b-\u200d\u2060\ufeff"
HIDDEN = re.compile(f"[{_CONTROL}{_BIDI}{_ZERO_WIDTH}]")


def _kind(char: str) -> str:
    if re.fullmatch(f"[{_CONTROL}]", char):
        return "a control character"
    if re.fullmatch(f"[{_BIDI}]", char):
        return "a bidirectional control character"
    return "a zero-width character"


def visible(text: str) -> str:
    """``text`` itself; ValueError naming the first character of HIDDEN in it, and where."""
    found = HIDDEN.search(text)
    if found is not None:
        char = found.group()
        raise ValueError(f"must not contain {_kind(char)} (U+{ord(char):04X} at position {found.start()})")
    return text


def _visible_input(value: object) -> object:
    # Before the string's own checks, so that a stripped C1 space (U+0085) is refused, not cut off.
    return visible(value) if isinstance(value, str) else value


Visible = BeforeValidator(_visible_input)
"""Refuses the characters of HIDDEN (in a name, id or key; on a path or query parameter too)."""


def header_text(value: str) -> str:
    """A header's value, checked by ``visible`` as the client wrote it. The server decodes header
    bytes as Latin-1: bytes that are UTF-8 are checked as UTF-8 (a zero-width no-break space, EF BB
    BF, is three visible Latin-1 characters; an "ā", C4 81, is no C1 control), others as Latin-1."""
    text = value
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = value.encode("latin-1").decode("utf-8")
    visible(text)
    return value


# The codes of ISO 4217 List One (oms.currencies) that are no money a price may be set in or a card
# charged in, each with what it is, for the 422 that refuses it. From List One as its maintenance
# agency, SIX, publishes it (https://www.six-group.com/en/products-services/financial-information/
# data-standards.html, list-one.xml): the codes whose minor unit it gives as "N.A." (no currency,
# testing, the precious metals, the bond markets units, XDR, XSU, XUA), and the funds codes and units
# of account indexed to prices or wages beside a country's currency (all but UYW marked IsFund there).
# The X codes that are money (XAF, XCD, XCG, XOF, XPF) are not here. Python's standard library has no
# currency list, and none of the project's dependencies says which codes are money: hence this table.
NOT_MONEY: dict[str, str] = {
    "XXX": "the code for no currency at all",
    "XTS": "a code reserved for testing",
    "XAU": "gold",
    "XAG": "silver",
    "XPT": "platinum",
    "XPD": "palladium",
    "XBA": "a bond markets unit (EURCO)",
    "XBB": "a bond markets unit (European Monetary Unit, E.M.U.-6)",
    "XBC": "a bond markets unit (European Unit of Account 9, E.U.A.-9)",
    "XBD": "a bond markets unit (European Unit of Account 17, E.U.A.-17)",
    "XDR": "the IMF's Special Drawing Right, a reserve asset",
    "XSU": "the SUCRE, a unit of account between central banks",
    "XUA": "the African Development Bank's unit of account",
    "BOV": "a funds code (Bolivia's Mvdol)",
    "CHE": "a funds code (WIR Euro)",
    "CHW": "a funds code (WIR Franc)",
    "CLF": "a unit of account (Chile's Unidad de Fomento)",
    "COU": "a unit of account (Colombia's Unidad de Valor Real)",
    "MXV": "a unit of account (Mexico's Unidad de Inversion)",
    "USN": "a funds code (US Dollar, next day)",
    "UYI": "a unit of account (Uruguay Peso en Unidades Indexadas)",
    "UYW": "a unit of account (Uruguay's Unidad Previsional)",
}


def _iso_4217(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"{code!r} is not an active ISO 4217 currency code (three capital letters, e.g. USD)")
    if code in NOT_MONEY:
        raise ValueError(
            f"{code} is an ISO 4217 code, but not money a price or a payment may be in: it is {NOT_MONEY[code]}"
        )
    return code


Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), Visible]
Currency = Annotated[str, AfterValidator(_iso_4217)]
"""An active ISO 4217 code that is money: none of ``NOT_MONEY``."""
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
Price = Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT)]
"""A unit price: nothing is given away (a free line would be charged 0, which no card takes)."""
ORDER_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN), Visible]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True), Visible]
"""A name or a payment method: 1 to 200 characters, none of HIDDEN, surrounding spaces stripped."""
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True), Visible]


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
