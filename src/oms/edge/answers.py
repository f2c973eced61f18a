"""The edge's answers: fast JSON, problem+json (``oms.edge.problems``), and the one place where an error
becomes an answer: a request's validation errors, a domain error, a ``Problem``, the database
unavailable (503), and anything else (500, with the request id its trace is logged under). The hot
routes, FastAPI's handlers and the Gate all answer through :func:`problem_of`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from oms.edge.problems import Problem, problem_for, problem_for_fault, problem_response
from oms.errors import DomainError


class JSON(JSONResponse):
    """A JSON answer, made with orjson. A JSONResponse to FastAPI, so the OpenAPI document takes a
    route's body from its ``responses`` models, not for a string."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSON:
    return JSON(content, status_code=status, headers=headers)


async def send_response(send: Send, response: Response) -> None:
    """What Response.__call__ sends, without its background-task and scope bookkeeping."""
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def send_problem(send: Send, problem: Problem, path: str) -> None:
    await send_response(send, problem_response(problem, path))


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) if parts else "body"


MISSING_BODY = Problem(400, "Missing body", "The request needs a JSON body.", type_="/problems/malformed-json")


def validation_problem(exc: RequestValidationError | ValidationError) -> Problem:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return Problem(400, "Malformed JSON", "The request body is not valid JSON.", type_="/problems/malformed-json")
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return MISSING_BODY
    items = [{"field": _where(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errors]
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items)
    return Problem(422, "Invalid request", detail, type_="/problems/validation", errors=items)


def internal_error(request_id: str) -> Problem:
    """The 500 answer: the trace is in the log under ``request_id``, never in the answer."""
    detail = f"The service failed to handle this request; it is logged under request id {request_id}."
    return Problem(500, "Internal error", detail, type_="/problems/internal", request_id=request_id)


_TITLES = {404: "Not found", 405: "Method not allowed"}


def problem_of(exc: BaseException, request_id: str = "") -> Problem:
    """The answer to ``exc``, whatever raised it: the one mapping of the edge."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, DomainError):
        return problem_for(exc)
    if isinstance(exc, RequestValidationError | ValidationError):
        return validation_problem(exc)
    if isinstance(exc, StarletteHTTPException):
        return Problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail))
    return problem_for_fault(exc, request_id) or internal_error(request_id)


def install_error_handlers(app: FastAPI) -> None:
    """FastAPI's handlers, each answering through :func:`problem_of`. An exception that is neither a
    problem nor the database's is answered 500 here, then raised on to the Gate, which logs it."""

    async def on_error(request: Request, exc: Exception) -> Response:
        rid = request.scope.get("state", {}).get("request_id", "")
        return problem_response(problem_of(exc, rid), request.url.path)

    for kind in (Exception, Problem, DomainError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, on_error)
