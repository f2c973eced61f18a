"""The Gate in front of every service, on a bare ASGI app; and the customers' token buckets."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from oms.auth.keys import ensure_key, load_key
from oms.auth.tokens import Verifier, admin_token, customer_token
from oms.edge.audit_trail import Trail
from oms.edge.gate import Gate
from oms.resilience.ratelimit import TokenBuckets


async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("secret internals: /etc/passwd")


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Verifier, str, str]:
    path = tmp_path / "key.json"
    ensure_key(path)
    key = load_key(path)
    return Verifier(key), admin_token(key), customer_token(key, "alice")


def test_an_unexpected_exception_is_a_problem_500_with_the_request_id_and_no_trace(
    tokens: tuple[Verifier, str, str],
) -> None:
    verifier, admin, _ = tokens
    stream = io.BytesIO()
    gate = Gate(failing_app, verifier=verifier, trail=Trail("test", stream))
    response = call(gate, "POST", "/things", headers={"authorization": f"Bearer {admin}",
                                                      "content-type": "application/json"})  # fmt: skip
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "secret" not in response.text and "Traceback" not in response.text
    line = orjson.loads(stream.getvalue())
    assert (line["status"], line["outcome"], line["sub"], line["request_id"]) == (
        500, "error", "admin", body["request_id"],
    )  # fmt: skip


def test_the_trail_has_a_line_per_change_and_none_per_read(tokens: tuple[Verifier, str, str]) -> None:
    verifier, _, customer = tokens
    stream = io.BytesIO()
    gate = Gate(ok_app, verifier=verifier, trail=Trail("test", stream))
    auth = {"authorization": f"Bearer {customer}", "content-type": "application/json"}
    assert call(gate, "GET", "/orders", headers=auth).status_code == 201
    assert call(gate, "POST", "/inventory/check", headers=auth).status_code == 201
    assert stream.getvalue() == b""
    assert call(gate, "POST", "/orders", headers=auth).status_code == 201
    assert call(gate, "PUT", "/items/X", headers={"content-type": "application/json"}).status_code == 401
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["action"], x["sub"], x["role"], x["status"]) for x in lines] == [
        ("POST /orders", "alice", "customer", 201),
        ("PUT /items/X", None, None, 401),
    ]


def test_token_buckets() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("b", 0.0) == 0.0  # a bucket of its own
    assert buckets.take("a", 0.5) == 0.0  # refilled by rate * elapsed
    assert buckets.take("a", 0.5) > 0
    assert [buckets.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # never more than the burst
    assert buckets.take("a", 100.0) > 0
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)


def test_token_buckets_forget_idle_subjects_when_full() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_subjects=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.take("c", 5.0)  # a and b have refilled: forgetting them changes nothing
    assert set(buckets._buckets) == {"c"}
    assert buckets.take("a", 5.0) == 0.0
