"""Keyset paging, shared by every list of the three services.

A page ends with a cursor naming the last row's sort key, and the next page is read from the rows
after that key: unlike an offset, a row inserted (or deleted) between two pages neither repeats a
row nor skips one, and a page costs the same however deep it is.

The cursor is opaque to clients: URL-safe base64 (unpadded) of a small JSON object, the list's name
and the sort key, e.g. ``{"l": "orders", "k": ["2026-01-01T12:00:00.000000Z", "ord_0193..."]}``.
A cursor that does not decode to a key of the list it is given to is ``BadCursor``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from oms.errors import OmsError

MAX_LIMIT = 1000
"""Most rows a page holds."""
MAX_OFFSET = 1_000_000
"""Deepest offset still taken: past it, a cursor is the way (an offset that deep reads every row before it)."""
MAX_CURSOR = 400
"""Longest cursor accepted (the ones given out are about 100 characters)."""

# Every sort key of every list is made of these: ISO-8601 times, order, payment and item ids, SKUs.
_KEY_VALUE = re.compile(r"^[A-Za-z0-9._:+-]{1,64}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")

T = TypeVar("T")


class BadCursor(OmsError, ValueError):
    """The ``next`` given is not a cursor of this list."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None
    """The cursor of the page after this one; None on the last page."""


@dataclass(frozen=True)
class Keyset:
    """A list's sort key: its name (so one list's cursor is refused by another) and its columns."""

    name: str
    columns: tuple[str, ...]

    def cursor(self, key: Sequence[str]) -> str:
        raw = orjson.dumps({"l": self.name, "k": list(key)})
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def after(self, cursor: str | None) -> tuple[str, ...] | None:
        """The sort key ``cursor`` names (None without one); BadCursor when it names none."""
        if cursor is None:
            return None
        if not 0 < len(cursor) <= MAX_CURSOR or not _BASE64URL.match(cursor):
            raise BadCursor(f"not a cursor of {self.name}: give back the 'next' of the previous page unchanged")
        try:
            decoded: Any = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise BadCursor(f"not a cursor of {self.name}: it does not decode") from exc
        if not isinstance(decoded, dict) or decoded.get("l") != self.name:
            raise BadCursor(f"not a cursor of {self.name}: it belongs to another list, or to none")
        key = decoded.get("k")
        if (
            not isinstance(key, list)
            or len(key) != len(self.columns)
            or not all(isinstance(v, str) and _KEY_VALUE.match(v) for v in key)
        ):
            raise BadCursor(f"not a cursor of {self.name}: its key is not ({', '.join(self.columns)})")
        return tuple(key)

    def page(self, rows: Sequence[T], limit: int, key: Callable[[T], Sequence[str]]) -> Page[T]:
        """The page of ``rows``, read with ``limit + 1`` so that the row past the page tells there is one."""
        if len(rows) <= limit:
            return Page(list(rows), None)
        kept = list(rows[:limit])
        return Page(kept, self.cursor(key(kept[-1])))
