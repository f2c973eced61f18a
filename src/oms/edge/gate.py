"""The one request pipeline of every service: each request, to a hot route or to FastAPI's, passes
here first.

In order: a request id of the server's own (random: ids tell nothing of the request volume; the
caller's ``X-Request-Id``, 1 to 64 safe characters, is kept beside it as ``client_request_id``, and
adopted as the request id only from OrderService's own token, so one id follows an order across the
three services); the caller's bearer token (401 without a valid one, on every route but the public
ones), or, on OrderService only and only when no Authorization header came, the dashboard's
session (``oms.edge.session``: its cookie, 403 for a cross-site write); the Content-Type of a
POST or PUT that has a body (415 unless JSON; a body-less one needs none); the customer's rate
limit (429); then the app. An
exception nothing else answered becomes a problem+json 500 carrying the request id, and its trace
goes to the log under that id, never to the caller.

Refusals are cheap: a refused token is remembered (``Verifier.refused``), and requests that fail
authentication are limited per client address (``failures``: 429 with Retry-After, answered before
any signature is checked once the address is over its limit).

What a caller may do once known is each route's declaration (``oms.edge.access``), checked in the
API layer.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms.auth.tokens import InvalidToken, Principal, Role, Verifier
from oms.edge.answers import problem_of, send_problem
from oms.edge.audit_trail import Trail
from oms.edge.pages import LOG_IN, RELOAD, send_page
from oms.edge.problems import Problem
from oms.edge.session import (
    FORMS,
    answer_form,
    cross_site,
    link_token,
    log_in,
    page_navigation,
    refusals_as_pages,
    session_token,
)
from oms.resilience.ratelimit import TokenBuckets
from oms.telemetry.http_metrics import HttpMetrics
from oms.telemetry.logs import context_var

log = structlog.get_logger("oms.gate")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
_JSON = re.compile(rb"^application/([a-z0-9.+-]+\+)?json\s*(;.*)?$", re.IGNORECASE)
CHALLENGE = 'Bearer error="invalid_token"'
EXPIRED_CHALLENGE = 'Bearer error="invalid_token", error_description="The token has expired"'


_REQUEST_ID_VAR = context_var("request_id")
_CLIENT_REQUEST_ID_VAR = context_var("client_request_id")


def new_request_id() -> str:
    """A request id: 16 random hex digits (one ``getrandom`` call, about a microsecond)."""
    return os.urandom(8).hex()


class RequestSpans(Protocol):
    """A server span per request, when tracing is on (:class:`oms.telemetry.spans.Tracing`): ``begin`` answers
    None for a path that gets none."""

    def begin(self, method: str, path: str, traceparent: bytes | None) -> Any: ...

    def finish(self, span: Any, status: int, request_id: str, error: BaseException | None = None) -> None: ...


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        buckets: TokenBuckets | None = None,
        failures: TokenBuckets | None = None,
        public: Collection[str] = (),
        public_prefixes: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        trail: Trail | None = None,
        meter: HttpMetrics | None = None,
        spans: RequestSpans | None = None,
        sessions: bool = False,
    ) -> None:
        """``sessions``: whether the dashboard's session (``oms.edge.session``) is this service's:
        its cookie, log-in link and forms read, its pages answered. OrderService's alone: a cookie is
        sent to every port of its host, and another service must not take it as a credential."""
        self.app = app
        self.sessions = sessions
        self.spans = spans
        self.trail = trail
        self.meter = meter
        self.verifier = verifier
        self.buckets = buckets
        self.failures = failures
        self.public = frozenset(public)
        self.public_prefixes = public_prefixes
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        given = b""
        authorization = b""
        content_type = b""
        has_body = False
        traceparent = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"x-request-id" and _REQUEST_ID.match(value):
                given = value
            elif name == b"traceparent":
                traceparent = value
        state = scope.setdefault("state", {})
        state["request_id"] = new_request_id()
        # On every log line written while this request is served (and by the sagas it starts: a
        # task copies its creator's context). Reset at the end, for callers that reuse one task.
        bound = _REQUEST_ID_VAR.set(state["request_id"])
        bound_client = None
        if given:
            state["client_request_id"] = given.decode()
            bound_client = _CLIENT_REQUEST_ID_VAR.set(state["client_request_id"])
        path: str = scope["path"]
        span = self.spans.begin(scope["method"], path, traceparent) if self.spans is not None else None
        failure: Exception | None = None
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", state["request_id"].encode())]
            await send(message)

        try:
            await self._pass(scope, receive, send_with_id, state, authorization, content_type, has_body)
        except Exception as exc:
            failure = exc
            problem = problem_of(exc, state["request_id"])
            if problem.status == 500:
                log.exception("request failed", request_id=state["request_id"], method=scope["method"], path=path)
            else:
                log.warning(f"request failed: {problem.title.lower()}", request_id=state["request_id"],
                            method=scope["method"], path=path, error=str(exc))  # fmt: skip
            if not status:
                await send_problem(send_with_id, problem, path)
        finally:
            if self.trail is not None and self.trail.wants(scope["method"], path):
                caller = state.get("principal")
                action, target = state.get("audit", (f"{scope['method']} {path}", None))
                self.trail.write(
                    request_id=state["request_id"], sub=caller.sub if caller else None,
                    role=caller.role.value if caller else None, action=action, target=target, status=status or 500,
                    client_request_id=state.get("client_request_id"),
                )  # fmt: skip
            if self.meter is not None:
                self.meter.observe(scope, status or 500, time.perf_counter() - began)
            if span is not None and self.spans is not None:
                self.spans.finish(span, status, state["request_id"], failure)
            _REQUEST_ID_VAR.reset(bound)
            if bound_client is not None:
                _CLIENT_REQUEST_ID_VAR.reset(bound_client)

    async def _pass(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        state: dict[str, Any],
        authorization: bytes,
        content_type: bytes,
        has_body: bool,
    ) -> None:
        path: str = scope["path"]
        caller: Principal | None = None
        if authorization[:7].lower() == b"bearer ":
            token = authorization[7:].strip().decode("latin-1")
            caller = self.verifier.cached(token)
            if caller is None:
                refusal = self.verifier.refused(token)
                if refusal is None and not self._public(path) and await self._over_limit(scope, send, path):
                    return  # its address failed too often: no signature checked
                if refusal is None:
                    try:
                        caller = await self.verifier.verify(token)
                    except InvalidToken as exc:
                        # Not exc itself: kept past this block, its traceback would hold this frame
                        # in a cycle for the garbage collector (measured: 15 µs a refusal).
                        refusal = InvalidToken(str(exc), expired=exc.expired)
                if refusal is not None and not self._public(path):
                    await self._unauthenticated(scope, send, path, refusal.public, expired=refusal.expired)
                    return
        elif self.sessions and not authorization and path in FORMS and scope["method"] == "POST":
            await answer_form(scope, receive, send, self.verifier)  # a log-in confirmed, a log-out
            return
        elif self.sessions and not authorization and (session := session_token(scope)) is not None:
            caller, answered = await self._session(scope, send, path, session)
            if answered:
                return  # refused, or the log-in link answered
            if page_navigation(scope) is not None:
                send = self._page(send, session)
        elif self.sessions and not authorization and (site := page_navigation(scope)) is not None:
            # A browser's navigation to a page, with no session: the one another site started
            # comes again from this site (with the cookie); otherwise, how to log in.
            await send_page(send, 401, RELOAD if site == b"cross-site" else LOG_IN)
            return
        elif not self._public(path):
            why = "This route needs an Authorization: Bearer token." if not authorization else (
                "The Authorization header must be: Bearer <token>."
            )  # fmt: skip
            await self._unauthenticated(scope, send, path, why)
            return
        state["principal"] = caller
        if caller is not None and caller.role is Role.SERVICE and "client_request_id" in state:
            # OrderService's own call, under the id of the request or saga it serves: one id across
            # the services' logs and audit trails.
            state["request_id"] = state.pop("client_request_id")
            _REQUEST_ID_VAR.set(state["request_id"])

        method: str = scope["method"]
        if method in ("POST", "PUT", "PATCH") and (has_body or content_type) and not _JSON.match(content_type):
            problem = Problem(
                415, "Unsupported media type",
                f"A {method} request must be sent with Content-Type: application/json"
                + (f" (this one was {content_type.decode('latin-1')!r})." if content_type else "."),
                type_="/problems/unsupported-media-type", headers={"Accept": "application/json"},
            )  # fmt: skip
            await send_problem(send, problem, path)
            return

        if self.buckets is not None and caller is not None and caller.role is Role.CUSTOMER:
            wait = self.buckets.take(caller.sub, self.clock())
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                problem = Problem(
                    429, "Too many requests", f"This customer's request rate is over its limit; retry in {seconds} s.",
                    type_="/problems/rate-limited", headers={"Retry-After": str(seconds)},
                )  # fmt: skip
                await send_problem(send, problem, path)
                return

        await self.app(scope, receive, send)

    async def _session(self, scope: Scope, send: Send, path: str, token: str) -> tuple[Principal | None, bool]:
        """The caller of a request that came with the dashboard's session (``oms.edge.session``)
        instead of an Authorization header, and whether it was answered already: refused (401, 403),
        or a log-in link (the session opened, or first confirmed when another site sent it)."""
        try:
            caller = await self.verifier.verify(token)
        except InvalidToken as exc:
            if self._public(path):
                return None, False
            if page_navigation(scope) is not None:
                await send_page(send, 401, LOG_IN)  # a session expired, or a link's token: a person reads it
            else:
                await self._unauthenticated(scope, send, path, exc.public, expired=exc.expired)
            return None, True
        if token == link_token(scope):
            await log_in(scope, send, token, caller)
            return caller, True
        why = cross_site(scope, token)
        if why is not None:
            problem = Problem(403, "Cross-site request refused", why, type_="/problems/cross-site")
            await send_problem(send, problem, path)
            return None, True
        scope["state"]["session"] = token  # its CSRF value goes in the page's log-out form
        return caller, False

    @staticmethod
    def _page(send: Send, session: str) -> Send:
        """``send`` for a browser's navigation to a page with a session: a refusal (401, 403, 404)
        goes out as an HTML page saying what to do, where an API client gets problem+json."""
        return refusals_as_pages(send, session)

    def _public(self, path: str) -> bool:
        return path in self.public or (bool(self.public_prefixes) and path.startswith(self.public_prefixes))

    async def _over_limit(self, scope: Scope, send: Send, path: str) -> bool:
        """Whether the client's address is over its limit of failed authentications, and was told so
        (429); a request that is not is let through to be checked."""
        if self.failures is None:
            return False
        wait = self.failures.wait(_address(scope), self.clock())
        if wait <= 0:
            return False
        await self._too_many_failures(send, path, wait)
        return True

    async def _too_many_failures(self, send: Send, path: str, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        detail = f"Too many requests from this address failed authentication; retry in {seconds} s."
        problem = Problem(
            429, "Too many requests", detail, type_="/problems/rate-limited", headers={"Retry-After": str(seconds)}
        )
        await send_problem(send, problem, path)

    async def _unauthenticated(self, scope: Scope, send: Send, path: str, why: str, *, expired: bool = False) -> None:
        """401, counted against the client address's limit of failed authentications (429 past it)."""
        if self.failures is not None:
            wait = self.failures.take(_address(scope), self.clock())
            if wait > 0:
                await self._too_many_failures(send, path, wait)
                return
        challenge = EXPIRED_CHALLENGE if expired else CHALLENGE
        problem = Problem(
            401, "Unauthenticated", why, type_="/problems/unauthenticated", headers={"WWW-Authenticate": challenge}
        )
        await send_problem(send, problem, path)


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""
