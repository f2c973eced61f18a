"""The one body reader of the edge: the request's whole body, within the size limit whether or not
Content-Length is sent. The hot routes read with it, and :class:`BodyLimit` reads with it ahead of
FastAPI's routes, then hands the body on in one message."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms.edge.answers import send_problem
from oms.edge.problems import Problem


def too_large(limit: int) -> Problem:
    return Problem(413, "Body too large", f"The request body is over {limit} bytes.", type_="/problems/too-large")


def _declared_over(scope: Scope, limit: int) -> bool:
    """Content-Length says the body is over ``limit`` bytes."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return bool(value.isdigit() and int(value) > limit)
    return False


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is over ``limit`` bytes (declared or sent)."""
    if _declared_over(scope, limit):
        return None
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; what came is answered, and the answer goes nowhere
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class BodyLimit:
    """Ahead of FastAPI: a body over ``limit`` bytes is refused with 413 before any route runs."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        body = await read_body(scope, receive, self.limit)
        if body is None:
            await send_problem(send, too_large(self.limit), scope["path"])
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # after the body: the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
