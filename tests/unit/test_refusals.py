"""What the Gate tells a caller it refuses, and what refusing costs it: a refused token is remembered
(no second signature check), failed authentications are limited per client address (429), a 401
says ``invalid_token`` or that the token expired and nothing more, a body-less POST needs no
Content-Type, and request ids are the server's own."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import SERVICE_SUBJECT, Principal, Verifier, admin_token, customer_token, mint
from oms.edge.audit_trail import Trail
from oms.edge.gate import Gate
from oms.resilience.ratelimit import TokenBuckets

SEEN: list[dict[str, Any]] = []


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    SEEN.append(dict(scope["state"]))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.body)


def call(gate: Gate, method: str, path: str, headers: dict[str, str], address: str = "10.0.0.1") -> Answer:
    """One request through the Gate, from ``address``."""
    scope = {
        "type": "http", "method": method, "path": path, "query_string": b"", "client": (address, 40000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(gate(scope, receive, send))
    start = sent[0]
    return Answer(
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


class CountingVerifier(Verifier):
    """Counts the signature checks it makes."""

    checks = 0

    async def _verify(self, token: str) -> Principal:
        self.checks += 1
        return await super()._verify(token)


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    ensure_key(tmp_path / "key.json")
    return load_key(tmp_path / "key.json")


@pytest.fixture
def other_key(tmp_path: Path) -> SigningKey:
    ensure_key(tmp_path / "other.json")
    return load_key(tmp_path / "other.json")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_refused_token_is_not_checked_twice(key: SigningKey, other_key: SigningKey) -> None:
    verifier = CountingVerifier(key)
    gate = Gate(ok_app, verifier=verifier)
    forged = customer_token(other_key, "mallory")
    for _ in range(5):
        assert call(gate, "GET", "/orders", bearer(forged)).status == 401
    assert verifier.checks == 1


def test_refusals_remembered_are_bounded(key: SigningKey) -> None:
    verifier = CountingVerifier(key, cache_size=10)
    gate = Gate(ok_app, verifier=verifier)
    for n in range(50):
        assert call(gate, "GET", "/orders", bearer(f"forged-{n}")).status == 401
    assert len(verifier._refused) == 10


def test_a_401_says_invalid_token_whatever_was_wrong_and_expired_only_when_it_expired(
    key: SigningKey, other_key: SigningKey
) -> None:
    gate = Gate(ok_app, verifier=Verifier(key))
    now = int(time.time())
    wrong = [
        "not-a-token",
        customer_token(other_key, "mallory"),  # another key: an unknown kid
        jwt.encode(  # another key under ours: the signature does not verify
            {"iss": "oms", "sub": "mallory", "scope": "orders", "iat": now, "exp": now + 60},
            other_key.private,
            algorithm="EdDSA",
            headers={"kid": key.kid},
        ),
        jwt.encode(  # a genuine signature, an issuer not trusted
            {"iss": "elsewhere", "sub": "mallory", "scope": "orders", "iat": now, "exp": now + 60},
            key.private,
            algorithm="EdDSA",
            headers={"kid": key.kid},
        ),
    ]
    details = set()
    for token in wrong:
        answer = call(gate, "GET", "/orders", bearer(token))
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        details.add(answer.json()["detail"])
    assert details == {"The token is not valid (invalid_token)."}
    expired = mint(key, sub="alice", scope="orders", ttl=-120)
    answer = call(gate, "GET", "/orders", bearer(expired))
    assert answer.status == 401 and answer.json()["detail"] == "The token has expired."
    assert "expired" in answer.headers["www-authenticate"]


def test_failed_authentications_are_limited_per_address(key: SigningKey) -> None:
    verifier = CountingVerifier(key)
    clock = [0.0]
    gate = Gate(ok_app, verifier=verifier, failures=TokenBuckets(rate=1, burst=3), clock=lambda: clock[0])
    assert [call(gate, "GET", "/orders", {}, "10.0.0.1").status for _ in range(3)] == [401] * 3
    over = call(gate, "GET", "/orders", {}, "10.0.0.1")
    assert over.status == 429 and over.headers["retry-after"] == "1"
    # Past the limit, a new token from that address is not even checked.
    checks = verifier.checks
    assert call(gate, "GET", "/orders", bearer("forged-new"), "10.0.0.1").status == 429
    assert verifier.checks == checks
    # Another address is not concerned; a token verified before still works from the first.
    assert call(gate, "GET", "/orders", {}, "10.0.0.2").status == 401
    admin = admin_token(key)
    assert call(gate, "GET", "/orders", bearer(admin), "10.0.0.2").status == 200
    assert call(gate, "GET", "/orders", bearer(admin), "10.0.0.1").status == 200
    clock[0] += 1.0  # a token back in the bucket
    assert call(gate, "GET", "/orders", {}, "10.0.0.1").status == 401


def test_public_paths_are_served_whatever_the_failures(key: SigningKey) -> None:
    gate = Gate(ok_app, verifier=Verifier(key), public={"/health"}, failures=TokenBuckets(rate=1, burst=1))
    for _ in range(3):
        call(gate, "GET", "/orders", {})
    assert call(gate, "GET", "/health", bearer("forged")).status == 200


def test_a_post_without_a_body_needs_no_content_type(key: SigningKey) -> None:
    gate = Gate(ok_app, verifier=Verifier(key))
    admin = bearer(admin_token(key))
    assert call(gate, "POST", "/orders/o-1/cancel", admin).status == 200
    assert call(gate, "POST", "/orders/o-1/cancel", {**admin, "content-length": "0"}).status == 200
    # With a body, or a Content-Type that is not JSON, it is still 415.
    assert call(gate, "POST", "/orders", {**admin, "content-length": "2"}).status == 415
    assert call(gate, "POST", "/orders", {**admin, "transfer-encoding": "chunked"}).status == 415
    assert call(gate, "POST", "/orders/o-1/cancel", {**admin, "content-type": "text/plain"}).status == 415


def test_request_ids_are_random_and_the_callers_is_kept_beside(key: SigningKey) -> None:
    stream = io.BytesIO()
    gate = Gate(ok_app, verifier=Verifier(key), trail=Trail("test", stream))
    customer = bearer(customer_token(key, "alice"))
    SEEN.clear()
    ids = [call(gate, "POST", "/orders", {**customer, "x-request-id": "other-request"}).headers["x-request-id"]
           for _ in range(3)]  # fmt: skip
    assert len(set(ids)) == 3 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert "other-request" not in ids
    assert [s["request_id"] for s in SEEN] == ids and {s["client_request_id"] for s in SEEN} == {"other-request"}
    stream.seek(0)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["request_id"], x["client_request_id"]) for x in lines] == [(i, "other-request") for i in ids]
    # An id that is not 1 to 64 safe characters is not kept at all.
    SEEN.clear()
    call(gate, "POST", "/orders", {**customer, "x-request-id": "bad id!"})
    assert "client_request_id" not in SEEN[0]


def test_orderservices_own_calls_keep_its_request_id(key: SigningKey) -> None:
    gate = Gate(ok_app, verifier=Verifier(key))
    service = bearer(mint(key, sub=SERVICE_SUBJECT, scope="service", ttl=60))
    answer = call(gate, "POST", "/reservations", {**service, "x-request-id": "saga-req-1"})
    assert answer.headers["x-request-id"] == "saga-req-1"
