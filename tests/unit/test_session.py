"""The dashboard's session in the Gate (oms.edge.session): the log-in link's token and the session
cookie taken as the caller's token when there is no Authorization header, and cross-site calls
refused; a log-in link from another site confirmed first; the log-out; the participants' Gate,
which takes bearer tokens only; a refused page as HTML for a browser; no page framed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from oms.auth.keys import ensure_key, load_key
from oms.auth.tokens import SERVICE_SUBJECT, Verifier, admin_token, customer_token, mint
from oms.edge.answers import send_problem
from oms.edge.gate import Gate
from oms.edge.pages import LOG_IN, RELOAD
from oms.edge.problems import Problem
from oms.edge.session import (
    CSRF_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    cookies,
    csrf_value,
    login_proof,
    session_token,
)


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
    return Gate(whoami, verifier=Verifier(key), public={"/health", "/ready"}, sessions=True), key


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
    assert call(app, "GET", "/", params={"token": token}).status_code == 303
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


NAVIGATION = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-site": "none"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def framed_by_no_one(answer: httpx.Response) -> None:
    """An HTML answer that no other site may frame, and in which nothing may run."""
    assert answer.headers["content-type"] == "text/html; charset=utf-8", answer.headers
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy and "script-src" not in policy
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"


def set_cookies(answer: httpx.Response) -> dict[str, str]:
    return {value.split("=", 1)[0]: value for value in answer.headers.get_list("set-cookie")}


def test_a_gate_without_sessions_takes_bearer_tokens_only(tmp_path: Path) -> None:
    """InventoryService and PaymentService: the browser sends them OrderService's cookie (a cookie is
    a host's, not a port's), and they must not take it."""
    path = tmp_path / "key.json"
    ensure_key(path)
    key = load_key(path)
    app = Gate(whoami, verifier=Verifier(key), public={"/health"})
    token = admin_token(key)
    for headers in (session(token), {**session(token), **NAVIGATION}):
        answer = call(app, "GET", "/payments", headers=headers)
        assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json"
    assert call(app, "GET", "/", params={"token": token}).status_code == 401
    assert call(app, "GET", "/ui/breakers", headers=NAVIGATION).headers["content-type"] == "application/problem+json"
    assert call(app, "POST", "/ui/logout", headers={**session(token), **FORM}, content=b"").status_code == 401
    assert call(app, "GET", "/health", headers=session(token)).text == "anonymous"
    assert call(app, "GET", "/payments", headers={"authorization": f"Bearer {token}"}).text == "admin:admin"


@pytest.mark.parametrize(
    "started",
    [
        {**NAVIGATION, "sec-fetch-site": "cross-site"},
        {**NAVIGATION, "sec-fetch-site": "same-site"},  # another port of the same host
        {"origin": "http://evil.example"},
        {"referer": "http://evil.example/page"},
        {"referer": "http://gate:8002/"},
    ],
)
def test_a_log_in_link_from_another_site_asks_first(gate: tuple[Gate, Any], started: dict[str, str]) -> None:
    app, key = gate
    link = customer_token(key, "mallory<b>")
    answer = call(app, "GET", "/", params={"token": link}, headers={**session(admin_token(key)), **started})
    assert answer.status_code == 200, answer.text
    framed_by_no_one(answer)
    assert 'id="identity"><b>mallory&lt;b&gt;</b> (customer)' in answer.text
    assert "<script" not in answer.text and 'action="/ui/login"' in answer.text
    made = set_cookies(answer)
    assert set(made) == {LOGIN_COOKIE}  # the session (the admin's) is left as it is
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/ui/login", "Max-Age=600"):
        assert attribute in made[LOGIN_COOKIE]


@pytest.mark.parametrize(
    "started",
    [
        {},
        {**NAVIGATION, "sec-fetch-site": "none"},
        {**NAVIGATION, "sec-fetch-site": "same-origin"},
        {"referer": "http://gate/ui/audit", "origin": "http://gate"},
    ],
)
def test_a_log_in_link_typed_or_from_this_site_logs_in_at_once(gate: tuple[Gate, Any], started: dict[str, str]) -> None:
    app, key = gate
    link = customer_token(key, "carol")
    answer = call(app, "GET", "/", params={"token": link}, headers=started)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    made = set_cookies(answer)
    assert made[SESSION_COOKIE].startswith(f"{SESSION_COOKIE}={link}; HttpOnly;")
    assert made[CSRF_COOKIE].startswith(f"{CSRF_COOKIE}={csrf_value(link)};")


def test_a_link_with_a_token_that_is_not_a_users_opens_no_session(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    service = mint(key, sub=SERVICE_SUBJECT, scope="service", ttl=60)
    answer = call(app, "GET", "/", params={"token": service})
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    page = call(app, "GET", "/", params={"token": service}, headers=NAVIGATION)
    assert page.status_code == 403 and "for admins and customers" in page.text
    framed_by_no_one(page)


def confirmation(app: Any, key: Any, sub: str = "mallory") -> tuple[str, str, str]:
    """The token, the proof and the nonce cookie of a confirmation page opened from another site."""
    token = customer_token(key, sub)
    answer = call(app, "GET", "/", params={"token": token}, headers={**NAVIGATION, "sec-fetch-site": "cross-site"})
    proof = re.search(r'name="proof" value="([0-9a-f]+)"', answer.text)
    assert proof is not None and f'name="token" value="{token}"' in answer.text
    nonce = set_cookies(answer)[LOGIN_COOKIE].split(";")[0].split("=", 1)[1]
    assert login_proof(nonce, token) == proof.group(1)
    return token, proof.group(1), nonce


def test_the_confirmation_button_logs_in_and_nothing_else_does(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    token, proof, nonce = confirmation(app, key)
    button = {**NAVIGATION, "sec-fetch-site": "same-origin", "origin": "http://gate", **FORM}
    victim = f"{SESSION_COOKIE}={admin_token(key)}; {LOGIN_COOKIE}={nonce}"
    form = {"token": token, "proof": proof}

    def post(headers: dict[str, str], data: dict[str, str] = form) -> httpx.Response:
        return call(app, "POST", "/ui/login", headers=headers, data=data)

    # Another site's form: refused on its Origin or Sec-Fetch-Site, or, from a browser that sends
    # neither, as it cannot have the nonce of this browser's cookie.
    for refused in (
        post({**button, "cookie": victim, "sec-fetch-site": "cross-site"}),
        post({**button, "cookie": victim, "origin": "http://evil.example"}),
        post({**FORM, "cookie": f"{SESSION_COOKIE}={admin_token(key)}"}),
        post({**button, "cookie": f"{LOGIN_COOKIE}=guessed"}),
        post({**button, "cookie": victim}, {"token": token}),
        post({**button, "cookie": victim}, {"token": customer_token(key, "eve"), "proof": proof}),
    ):
        assert refused.status_code == 403 and "set-cookie" not in refused.headers, refused.text
    page = post({**button, "cookie": victim, "sec-fetch-site": "cross-site"})
    framed_by_no_one(page)
    problem = post({**FORM, "cookie": victim, "origin": "http://evil.example"})
    assert problem.headers["content-type"] == "application/problem+json"  # not a browser's navigation
    assert post({**button, "cookie": victim, "content-type": "application/json"}).status_code == 415
    # The button: the session opened, the nonce spent.
    answer = post({**button, "cookie": victim})
    assert (answer.status_code, answer.headers["location"]) == (303, "/"), answer.text
    made = set_cookies(answer)
    assert made[SESSION_COOKIE].startswith(f"{SESSION_COOKIE}={token};") and "Max-Age=0" in made[LOGIN_COOKIE]
    forged = post(
        {**button, "cookie": f"{LOGIN_COOKIE}={nonce}"}, {"token": "forged", "proof": login_proof(nonce, "forged")}
    )
    assert forged.status_code == 401 and "Not logged in" in forged.text


def test_log_out_clears_the_cookies_with_the_sessions_csrf_value(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    token = admin_token(key)
    own = {**NAVIGATION, "sec-fetch-site": "same-origin", "origin": "http://gate", **FORM, **session(token)}
    for refused in (
        call(app, "POST", "/ui/logout", headers=own, data={"csrf": "wrong"}),
        call(app, "POST", "/ui/logout", headers=own),
        call(
            app, "POST", "/ui/logout", headers={**own, "sec-fetch-site": "cross-site"}, data={"csrf": csrf_value(token)}
        ),
    ):
        assert refused.status_code == 403 and "set-cookie" not in refused.headers, refused.text
    answer = call(app, "POST", "/ui/logout", headers=own, data={"csrf": csrf_value(token)})
    assert (answer.status_code, answer.headers["location"]) == (303, "/"), answer.text
    made = set_cookies(answer)
    assert made[SESSION_COOKIE].startswith(f"{SESSION_COOKIE}=; HttpOnly;") and "Max-Age=0" in made[SESSION_COOKIE]
    assert made[CSRF_COOKIE].startswith(f"{CSRF_COOKIE}=;") and "Max-Age=0" in made[CSRF_COOKIE]
    # An expired session is ended all the same; with none, there is nothing to end.
    expired = mint(key, sub="admin", scope="admin", ttl=-300)
    assert (
        call(
            app, "POST", "/ui/logout", headers={**own, **session(expired)}, data={"csrf": csrf_value(expired)}
        ).status_code
        == 303
    )
    assert call(app, "POST", "/ui/logout", headers=FORM).status_code == 303


async def pages(scope: Scope, receive: Receive, send: Send) -> None:
    """A page for admins that refuses everyone else (403), and no other page (404)."""
    caller = scope["state"]["principal"]
    if scope["path"] == "/ui/breakers" and caller.role.value == "admin":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>breakers</p>"})
    elif scope["path"] in ("/ui/breakers", "/breakers"):
        await send_problem(send, Problem(403, "Forbidden", "A customer <token> may not do this."), scope["path"])
    else:
        await send_problem(send, Problem(404, "Unknown order", "No order has id ord_x."), scope["path"])


def test_a_page_refused_to_a_browser_is_an_html_page(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    ensure_key(path)
    key = load_key(path)
    app = Gate(pages, verifier=Verifier(key), sessions=True)
    token = customer_token(key, "carol")
    page = call(app, "GET", "/ui/breakers", headers={**session(token), **NAVIGATION})
    assert page.status_code == 403
    framed_by_no_one(page)
    assert "<h1>403 Forbidden</h1>" in page.text and "A customer &lt;token&gt; may not do this." in page.text
    assert "log in as an admin" in page.text and '<a href="/" id="orders">' in page.text
    assert f'name="csrf" value="{csrf_value(token)}"' in page.text  # a log-out, to log in as someone else
    missing = call(app, "GET", "/ui/orders/ord_x", headers={**session(token), **NAVIGATION})
    assert missing.status_code == 404 and "No order has id ord_x." in missing.text
    framed_by_no_one(missing)
    # An API client, a script's call, a frame, a route that is not a page: problem+json as before.
    for path_, headers in (
        ("/ui/breakers", session(token)),
        ("/ui/breakers", {**session(token), **NAVIGATION, "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"}),
        ("/ui/breakers", {**session(token), **NAVIGATION, "sec-fetch-dest": "iframe"}),
        ("/breakers", {**session(token), **NAVIGATION}),
        ("/ui/breakers", {"authorization": f"Bearer {token}", **NAVIGATION}),
    ):
        answer = call(app, "GET", path_, headers=headers)
        assert (answer.status_code, answer.headers["content-type"]) == (403, "application/problem+json"), path_
    # What is not refused goes out as it was.
    admin = call(app, "GET", "/ui/breakers", headers={**session(admin_token(key)), **NAVIGATION})
    assert (admin.status_code, admin.text) == (200, "<p>breakers</p>")


def test_no_page_of_the_gate_may_be_framed(gate: tuple[Gate, Any]) -> None:
    app, key = gate
    for site, body in (("cross-site", RELOAD), ("none", LOG_IN)):
        answer = call(app, "GET", "/ui/audit", headers={**NAVIGATION, "sec-fetch-site": site})
        assert (answer.status_code, answer.content) == (401, body)
        framed_by_no_one(answer)
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    expired = call(app, "GET", "/", headers={**session(mint(key, sub="a", scope="admin", ttl=-300)), **NAVIGATION})
    assert expired.content == LOG_IN
    framed_by_no_one(expired)
