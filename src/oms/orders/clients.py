"""HTTP clients for InventoryService and PaymentService: one pooled aiohttp session per
downstream, explicit timeouts, a circuit breaker around every call, and stamina retries for
transient errors only (never past an open circuit)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
import orjson
import stamina

from oms.errors import OmsError
from oms.orders.ports import CheckAnswer, Item, Lines, NoAnswer, Payment, Refused, Unavailable
from oms.resilience.breaker import CallNotPermitted, CircuitBreaker
from oms.resilience.retry import RetryPolicy
from oms.telemetry.logs import context_var

if TYPE_CHECKING:
    from oms.telemetry.spans import Tracing

TRANSIENT_STATUSES = {502, 503, 504}
JSON_HEADERS = {"content-type": "application/json"}
_REQUEST_ID = context_var("request_id")  # the Gate's (unset outside a request and its sagas)


class ServerError(OmsError):
    """A 5xx answer: it counts as a failure for the breaker; the request may have been processed."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


def _transient(exc: Exception) -> bool:
    """Worth another try: the request was never processed, or the server said to come back."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return True
    return isinstance(exc, ServerError) and exc.status in TRANSIENT_STATUSES


class Downstream:
    """Calls to one service: ``request`` answers (status, body) or raises Unavailable / NoAnswer."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float,
        breaker: CircuitBreaker,
        retry: RetryPolicy = RetryPolicy(),
        connections: int = 100,
        token: Callable[[], str] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.breaker = breaker
        self.retry = retry
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._token = token
        """OrderService's own bearer token (reused until close to expiry)."""
        self._headers: dict[str, str] = dict(JSON_HEADERS)
        self._headers_token = ""
        self._tracing = tracing
        # Chosen once: with tracing off, a try costs not even a test of it.
        self._send_try = self._send if tracing is None else self._traced_send

    def _headers_now(self) -> dict[str, str]:
        """Content-Type and Authorization (one dict while the token stays the same), and the
        request id of the request being served (or of the saga's first request): the participant
        answers and logs under the same id, so one order's lines can be found in all three logs."""
        if self._token is not None:
            token = self._token()
            if token is not self._headers_token:
                self._headers = {**JSON_HEADERS, "authorization": f"Bearer {token}"}
                self._headers_token = token
        request_id = _REQUEST_ID.get()
        if request_id.__class__ is str:
            return {**self._headers, "x-request-id": request_id}
        return self._headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30)
            # No cookies between services, and one timeout for every call: both measured as CPU
            # spent on every request when left to their per-request defaults.
            self._session = aiohttp.ClientSession(
                base_url=self.base_url,
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self.timeout,
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        headers = self._headers_now() if headers is None else headers
        async with self.session.request(method, path, data=data, headers=headers) as response:
            raw = await response.read()
            if response.status >= 500:
                raise ServerError(response.status, raw)
            return response.status, (orjson.loads(raw) if raw else None)

    async def _traced_send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """A try that sends the current span's ``traceparent``; one that failed is noted on that span."""
        assert self._tracing is not None
        try:
            return await self._send(method, path, body, self._tracing.outgoing(self._headers_now()))
        except ServerError as exc:
            self._tracing.failed_try(self.name, path, f"http_{exc.status}")
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._tracing.failed_try(self.name, path, type(exc).__name__)
            raise

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        # Tries that left this process, for the saga log: the breaker runs send only for a try it
        # lets through, so a circuit open from the start reports 0.
        sent = 0

        def send() -> Awaitable[tuple[int, Any]]:
            nonlocal sent
            sent += 1
            return self._send_try(method, path, body)

        try:
            try:
                # The first try outside stamina: retry machinery costs tens of microseconds a call,
                # and most calls need none.
                return await self.breaker.call(send)
            except Exception as exc:
                if not _transient(exc) or self.retry.attempts <= 1:
                    raise
            await asyncio.sleep(self.retry.wait_initial * (1 + random.random()))
            async for attempt in stamina.retry_context(
                on=_transient,
                attempts=self.retry.attempts - 1,
                timeout=None,
                wait_initial=self.retry.wait_initial,
                wait_max=self.retry.wait_max,
            ):
                with attempt:
                    return await self.breaker.call(send)
        except CallNotPermitted as exc:
            raise Unavailable(self.name, "circuit_open", str(exc), sent=sent) from exc
        except aiohttp.ClientConnectorError as exc:
            raise Unavailable(self.name, "connection_refused", str(exc), sent=sent) from exc
        except TimeoutError as exc:
            raise NoAnswer(self.name, "timeout", f"no answer within {self.timeout.total}s", sent=sent) from exc
        except ServerError as exc:
            raise NoAnswer(self.name, f"http_{exc.status}", str(exc), sent=sent) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise NoAnswer(self.name, "connection_lost", str(exc), sent=sent) from exc
        raise AssertionError("unreachable: stamina either returns or raises")


def _refused(status: int, body: Any) -> Refused:
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("type", "")).rsplit("/", 1)[-1] or f"http_{status}"
    return Refused(status, code, str(problem.get("detail", "")), problem)


def _item(raw: dict[str, Any]) -> Item:
    return Item(raw["sku"], raw["name"], raw["unit_price"], raw["currency"], raw["available"])


def _lines(lines: Lines) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in lines]


class InventoryClient:
    """``InventoryPort`` over HTTP."""

    def __init__(self, downstream: Downstream) -> None:
        self.http = downstream

    async def check(self, lines: Lines) -> CheckAnswer:
        status, body = await self.http.request("POST", "/inventory/check", {"items": _lines(lines)})
        if status != 200:
            raise _refused(status, body)
        return CheckAnswer([_item(i) for i in body["items"]], list(body.get("unknown", [])))

    async def reserve(self, order_id: str, lines: Lines) -> list[Item]:
        status, body = await self.http.request("POST", "/reservations", {"order_id": order_id, "items": _lines(lines)})
        if status not in (200, 201):
            raise _refused(status, body)
        return [_item(i) for i in body.get("stock", [])]

    async def release(self, order_id: str) -> None:
        status, body = await self.http.request("POST", f"/reservations/{order_id}/release")
        if status != 200:
            raise _refused(status, body)

    async def _found(self, path: str) -> Any:
        """The body of GET ``path``, or None when there is nothing there (404)."""
        status, body = await self.http.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise _refused(status, body)
        return body

    async def reservation(self, order_id: str) -> str | None:
        body = await self._found(f"/reservations/{order_id}")
        return None if body is None else str(body["status"])

    async def get_item(self, sku: str) -> Item | None:
        body = await self._found(f"/items/{sku}")
        return None if body is None else _item(body)

    async def list_items(self, cursor: str | None = None, *, limit: int = 1000) -> tuple[list[Item], str | None]:
        query = urlencode({"limit": limit, **({"next": cursor} if cursor else {})})
        status, body = await self.http.request("GET", f"/items?{query}")
        if status != 200:
            raise _refused(status, body)
        return [_item(i) for i in body["items"]], body["next"]


def _payment(raw: dict[str, Any]) -> Payment:
    return Payment(raw["id"], raw["status"], raw.get("decline_code"), raw["amount"], raw["currency"])


class PaymentClient:
    """``PaymentPort`` over HTTP."""

    def __init__(self, downstream: Downstream) -> None:
        self.http = downstream

    async def charge(self, order_id: str, amount: int, currency: str, payment_method: str) -> Payment:
        body = {
            "order_id": order_id,
            "amount": amount,
            "currency": currency,
            "payment_method": payment_method,
        }
        status, answer = await self.http.request("POST", "/payments", body)
        if status not in (200, 201):
            raise _refused(status, answer)
        return _payment(answer)

    async def find(self, order_id: str) -> Payment | None:
        status, answer = await self.http.request("GET", f"/payments?{urlencode({'order_id': order_id})}")
        if status != 200:
            raise _refused(status, answer)
        found: Sequence[dict[str, Any]] = answer["items"]  # one payment an order at most
        return _payment(found[0]) if found else None

    async def void(self, order_id: str) -> Payment | None:
        status, answer = await self.http.request("POST", "/payments/void", {"order_id": order_id})
        if status != 200:
            raise _refused(status, answer)
        return _payment(answer["payment"]) if answer["payment"] else None

    async def refund(self, order_id: str) -> Payment:
        status, answer = await self.http.request("POST", "/payments/refund", {"order_id": order_id})
        if status != 200:
            raise _refused(status, answer)
        return _payment(answer)
