"""The dashboard's session in the Gate (oms.session): the log-in link's token and the session cookie
taken as the caller's token when there is no Authorization header, and cross-site calls refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from oms.auth.keys import ensure_key, load_key
from oms.auth.tokens import Verifier, admin_token, customer_token, mint
from oms.edge.gate import Gate
from oms.edge.session import CSRF_COOKIE, SESSION_COOKIE, cookies, csrf_value, session_token


async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
    caller = scope["state"].get("principal")
    body = f"{caller.sub}:{caller.role.value}" if caller else "anonymous"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def gate(tmp_path: Path) -> tuple[Gate, Any]:
    path = tmp_path / "key.json"
    ensure_key(path)
    key = load_key(path)
    return Gate(whoami, verifier=Verifier(key), public={"/health", "/ready"}), key


def session(token: str) -> dict[str, str]:
    return {"cookie": f"theme=dark; {SESSION_COOKIE}={token}; {CSRF_COOKIE}={csrf_value(token)}"}


def test_the_session_cookie_is_the_callers_token_without_an_authorization_header(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    answer = call(app, "GET", "/orders", headers=session(customer_token(key, "alice")))
    assert (answer.status_code, answer.text) == (200, "alice:customer")
    # An Authorization header wins: the cookie is not even read.
    answer = call(app, "GET", "/orders", headers={**session("garbage"), "authorization": f"Bearer {admin_token(key)}"})
    assert (answer.status_code, answer.text) == (200, "admin:admin")


@pytest.mark.parametrize("cookie", ["", f"{SESSION_COOKIE}=", f"{SESSION_COOKIE}=not-a-jwt", "other=1", '"; ;'])
def test_no_valid_session_is_401(gate: tuple[Gate, Any], cookie: str) -> None:
    app, _ = gate
    answer = call(app, "GET", "/orders", headers={"cookie": cookie} if cookie else {})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


def test_an_expired_session_is_401(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    answer = call(app, "GET", "/orders", headers=session(mint(key, sub="admin", scope="admin", ttl=-300)))
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_the_log_in_link_is_read_on_get_slash_only(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    token = admin_token(key)
    assert call(app, "GET", "/", params={"token": token}).text == "admin:admin"
    assert call(app, "GET", "/", params={"token": "forged"}).status_code == 401
    assert call(app, "GET", "/orders", params={"token": token}).status_code == 401
    assert call(app, "GET", "/breakers", params={"token": token}).status_code == 401


def test_a_write_with_the_session_needs_its_csrf_header(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    token = admin_token(key)
    json = {"content-type": "application/json"}
    refused = call(app, "POST", "/breakers/inventory", headers={**session(token), **json}, content=b"{}")
    assert refused.status_code == 403 and refused.json()["type"] == "/problems/cross-site"
    wrong = {**session(token), **json, "x-csrf-token": csrf_value(admin_token(key, ttl=7))}
    assert call(app, "POST", "/breakers/inventory", headers=wrong, content=b"{}").status_code == 403
    right = {**session(token), **json, "x-csrf-token": csrf_value(token)}
    assert call(app, "POST", "/breakers/inventory", headers=right, content=b"{}").text == "admin:admin"
    # The browser's Origin, when sent, must be the service's own.
    assert call(app, "POST", "/x", headers={**right, "origin": "http://gate"}, content=b"{}").status_code == 200
    evil = call(app, "POST", "/x", headers={**right, "origin": "http://evil.example"}, content=b"{}")
    assert evil.status_code == 403 and "evil.example" in evil.json()["detail"]
    # A bearer-token caller is not concerned.
    bearer = {"authorization": f"Bearer {token}", **json, "origin": "http://evil.example"}
    assert call(app, "POST", "/x", headers=bearer, content=b"{}").status_code == 200


def test_a_public_path_with_a_bad_session_is_still_served(gate: tuple[Gate, Any]) -> None:
    app, _ = gate
    assert call(app, "GET", "/health", headers=session("forged")).text == "anonymous"


def test_the_cookies_are_httponly_strict_and_expire_with_the_token() -> None:
    session_cookie, csrf_cookie = cookies("T", 60, secure=False)
    assert session_cookie == f"{SESSION_COOKIE}=T; HttpOnly; Path=/; Max-Age=60; SameSite=Strict"
    assert csrf_cookie == f"{CSRF_COOKIE}={csrf_value('T')}; Path=/; Max-Age=60; SameSite=Strict"
    assert cookies("T", 60, secure=True)[0].endswith("; Secure")


def test_session_token_reads_only_its_own_cookie() -> None:
    def scope(cookie: bytes, path: str = "/orders", query: bytes = b"") -> dict[str, Any]:
        return {"path": path, "method": "GET", "query_string": query, "headers": [(b"cookie", cookie)]}

    assert session_token(scope(b"a=1; oms_session=abc.def.ghi")) == "abc.def.ghi"
    assert session_token(scope(b"not_oms_session=abc")) is None
    assert session_token(scope(b"a=1", "/", b"token=xyz")) == "xyz"
    assert session_token(scope(b"oms_session=abc", "/", b"token=")) == "abc"
