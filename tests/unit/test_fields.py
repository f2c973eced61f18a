"""The field rules every service shares: no hidden characters, ISO 4217 currencies."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from oms.currencies import ISO_4217
from oms.fields import HIDDEN, NOT_MONEY, Currency, CustomerId, OrderId, Price, Sku, Text, header_text, visible

FORBIDDEN = (
    [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
    + ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
)  # fmt: skip


class Fields(BaseModel):
    text: Text = "x"
    customer: CustomerId = "x"
    order_id: OrderId = "x"
    sku: Sku = "X"
    currency: Currency = "USD"
    price: Price = 1


@pytest.mark.parametrize("char", FORBIDDEN, ids=[f"U+{ord(c):04X}" for c in FORBIDDEN])
@pytest.mark.parametrize("field", ["text", "customer", "order_id", "sku"])
def test_every_hidden_character_is_refused_in_every_text_field(field: str, char: str) -> None:
    assert HIDDEN.search(char)
    with pytest.raises(ValidationError, match=f"U\\+{ord(char):04X}"):
        Fields.model_validate({field: f"A{char}"})


def test_visible_text_passes_and_spaces_around_it_are_stripped() -> None:
    fields = Fields.model_validate({"text": "  Café ✓ Widget  ", "customer": " cust-ā "})
    assert (fields.text, fields.customer) == ("Café ✓ Widget", "cust-ā")
    assert visible("עברית and English") == "עברית and English"  # right-to-left text itself is fine


def test_a_header_is_read_as_utf8_when_it_is() -> None:
    for ok in ("key-1", "clé-ā-ж".encode().decode("latin-1"), "caf\xe9"):  # the last: Latin-1 bytes, not UTF-8
        assert header_text(ok) == ok
    for bad in ("k\x85", "k\ufeff".encode().decode("latin-1"), "k\u202e".encode().decode("latin-1"), "k\t1"):
        with pytest.raises(ValueError, match="must not contain"):
            header_text(bad)


@pytest.mark.parametrize("code", ["ABC", "usd", "US", "USDX", "", "HRK", "XYZ"])
def test_a_currency_is_an_active_iso_4217_code(code: str) -> None:
    with pytest.raises(ValidationError, match="ISO 4217"):
        Fields.model_validate({"currency": code})


def test_the_currency_list_has_the_codes_it_should() -> None:
    assert {"USD", "EUR", "JPY", "GBP", "CHF", "XCG", "ZWG", "SLE", "VED"} <= ISO_4217
    assert not {"HRK", "SLL", "ZWL", "VEF", "MRO", "STD", "BYR", "DEM"} & ISO_4217
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_4217)


NOT_MONEY_CODES = ["XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA",
                   "BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW"]  # fmt: skip


@pytest.mark.parametrize("code", NOT_MONEY_CODES)
def test_a_code_of_iso_4217_that_is_not_money_is_refused_saying_what_it_is(code: str) -> None:
    assert code in ISO_4217  # the standard's own code: refused for what it names, not as a typo
    with pytest.raises(ValidationError) as refused:
        Fields.model_validate({"currency": code})
    [error] = refused.value.errors()
    assert error["loc"] == ("currency",)
    assert f"{code} is an ISO 4217 code, but not money a price or a payment may be in: it is " in error["msg"]


def test_what_the_refusal_says_of_each_code() -> None:
    assert set(NOT_MONEY) == set(NOT_MONEY_CODES)
    with pytest.raises(ValidationError, match="it is the code for no currency at all"):
        Fields.model_validate({"currency": "XXX"})
    with pytest.raises(ValidationError, match="it is gold"):
        Fields.model_validate({"currency": "XAU"})
    with pytest.raises(ValidationError, match="a code reserved for testing"):
        Fields.model_validate({"currency": "XTS"})


@pytest.mark.parametrize("code", ["XAF", "XOF", "XPF", "XCD", "XCG", "CHF", "CLP", "MXN", "UYU", "BOB", "COP"])
def test_the_money_beside_those_codes_is_taken(code: str) -> None:
    assert Fields.model_validate({"currency": code}).currency == code


@pytest.mark.parametrize("price", [0, -1, 10**12 + 1, 1.0, "5"])
def test_a_price_is_a_whole_positive_amount(price: object) -> None:
    with pytest.raises(ValidationError, match="price"):
        Fields.model_validate({"price": price})
