"""Error answers: RFC 9457 problem+json (``Problem``), and the mapping from the domain's errors to
theirs (``problem_for``). The domain only raises (``oms.errors``); each service's API layer says how
its own errors are answered (``answer_to``, in ``oms.orders.problems``, ``oms.inventory.problems``,
``oms.payments.problems``), so this module knows none of the services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.responses import Response

from oms.db import Unavailable
from oms.errors import DomainError, OmsError, UnknownSkus

PROBLEM = "application/problem+json"


class Problem(OmsError):
    """An error answer: raised in an ``api.py``, turned into problem+json by the app's handler."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers
        self.extra = extra


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance:
        body["instance"] = instance
    body.update(problem.extra)
    return Response(orjson.dumps(body), status_code=problem.status, media_type=PROBLEM, headers=problem.headers)


DATABASE_RETRY_AFTER = "2"
"""Seconds a client is told to wait after a 503 for a database that is unavailable: a restarted or
promoted server takes a second or two to answer again."""


def problem_for_fault(exc: BaseException, request_id: str) -> Problem | None:
    """The answer to a fault that is not the service's own, when ``exc`` is one: the database
    unavailable (503 with ``Retry-After``). None for any other exception, which is a 500."""
    if isinstance(exc, Unavailable):
        return Problem(
            503, "Database unavailable",
            f"The service cannot use its database just now ({exc.kind}). Retry after the time given: a "
            "request retried with the same Idempotency-Key answers the one order, whether or not this "
            "one made it; a GET changes nothing.",
            type_="/problems/database-unavailable", headers={"Retry-After": DATABASE_RETRY_AFTER},
            reason=exc.kind, request_id=request_id,
        )  # fmt: skip
    return None


E = TypeVar("E", bound=DomainError)
_ANSWERS: dict[type[DomainError], Callable[[Any], Problem]] = {}


def answer_to(error: type[E]) -> Callable[[Callable[[E], Problem]], Callable[[E], Problem]]:
    """Register how ``error`` (and its subclasses without an answer of their own) is answered."""

    def register(answer: Callable[[E], Problem]) -> Callable[[E], Problem]:
        _ANSWERS[error] = answer
        return answer

    return register


def answer_simply(error: type[E], status: int, title: str, type_: str, detail: Callable[[E], str]) -> None:
    """Register the usual answer to ``error``: its status, title, type and a detail made from it."""
    answer_to(error)(lambda e: Problem(status, title, detail(e), type_=type_))


def problem_for(error: DomainError) -> Problem:
    """The answer to a domain error, as the service that raised it registered it."""
    for kind in type(error).__mro__:
        answer = _ANSWERS.get(kind)
        if answer is not None:
            return answer(error)
    raise error  # a domain error without an answer is a bug: the Gate answers 500 and logs it


@answer_to(UnknownSkus)
def _unknown_skus(error: UnknownSkus) -> Problem:
    return Problem(422, "Unknown SKU", f"No item has SKU {error}.", type_="/problems/unknown-sku", skus=error.skus)
