"""What every list route shares (``GET /orders``, ``/items``, ``/reservations``, ``/payments``): the
``limit``, ``offset`` and ``next`` query parameters, the 422 of a cursor that names no row, and the
answer, ``{"items": [...], "next": cursor | null}`` with ``Link: <...&next=cursor>; rel="next"``
when there is a page after it. The paging itself is ``oms.edge.paging``'s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request

from oms.edge.answers import JSON, json
from oms.edge.paging import MAX_LIMIT, MAX_OFFSET, BadCursor, Keyset, Page
from oms.edge.problems import Problem

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Rows in the page, 1 to {MAX_LIMIT}.")]
Offset = Annotated[
    int,
    Query(ge=0, le=MAX_OFFSET, description=f"Rows to skip, 0 to {MAX_OFFSET:,}; the next cursor is cheaper."),
]
Next = Annotated[
    str | None,
    Query(alias="next", description="The 'next' of the page before, to read the page after it."),
]


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422, "Invalid request", f"{field}: {message}", type_="/problems/validation",
        errors=[{"field": field, "message": message}],
    )  # fmt: skip


def after(keyset: Keyset, cursor: str | None, offset: int) -> tuple[str, ...] | None:
    """The sort key the ``next`` cursor names (None without one); 422 when it names none."""
    if cursor is not None and offset:
        raise _invalid("offset", "give either next or offset, not both")
    try:
        return keyset.after(cursor)
    except BadCursor as exc:
        raise _invalid("next", str(exc)) from exc


def answer(request: Request, page: Page[Any], items: Sequence[Any] | None = None) -> JSON:
    """The page as the list routes answer it (``items``: the page's rows as shown, when not as stored).

    The Link keeps the request's own filters and limit, and drops its offset: the cursor says where."""
    headers = None
    if page.next is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("next", "offset")]
        query.append(("next", page.next))
        headers = {"Link": f'<{request.url.path}?{urlencode(query)}>; rel="next"'}
    shown = page.items if items is None else list(items)
    return json({"items": shown, "next": page.next}, headers=headers)
