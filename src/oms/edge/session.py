"""The dashboard's session (OrderService's alone): a bearer token carried in a cookie instead of the
Authorization header, the log-in and the log-out, the cross-site checks for the calls it
authenticates, and the small HTML pages a browser gets where an API client gets problem+json.

Log-in (Jupyter's way): ``GET /?token=T`` is answered with the token set as an HttpOnly,
``SameSite=Strict`` cookie, and a redirect to ``/`` that drops it from the address bar
(:func:`log_in`). That holds for a link typed, pasted or opened from the terminal (``Sec-Fetch-Site:
none``), one from the dashboard itself, and a client that sends no ``Sec-Fetch-*`` (curl). A link
that another site started (``Sec-Fetch-Site`` other than ``none`` or ``same-origin``, or an
``Origin`` or ``Referer`` of another origin) would otherwise replace the browser's session with
whatever token that site chose (log-in CSRF): it gets :func:`confirm_page` instead, which names the
link's identity and logs in only once its button is pressed. The button posts a form to
:data:`LOG_IN_FORM` with a proof that only this browser can send: an HMAC of the token keyed by a
random nonce that the confirmation page set in a ``SameSite=Strict``, HttpOnly cookie, which a form
posted from another site does not carry (and whose ``Origin`` is refused besides).

The Gate takes the cookie's token as the caller's when a request has no Authorization header
(:func:`session_token`), and refuses a state-changing call made with it unless it comes from the
service's own pages (:func:`cross_site`): its ``X-CSRF-Token`` header must hold the token's CSRF
value (:func:`csrf_value`, which the page reads from a second, script-readable cookie), and its
``Origin``, when sent, must be the service's own. Bearer-token callers are not concerned. Cookies
are a host's, not a port's: InventoryService and PaymentService, on the same host, get the cookie
too, so only OrderService's Gate reads it (``Gate(sessions=True)``).

Log-out: a form on every page's header posts the session's CSRF value to :data:`LOG_OUT_FORM`,
which clears the cookies and sends the browser to ``/``, the page that says how to log in. The
token itself stays valid until it expires (a JWT is not revoked): log-out ends the browser's hold
on it.

A link to a page from another site: the browser leaves the Strict cookie out of that navigation, so
it comes with no credential at all. The Gate answers it (and only it: ``Sec-Fetch-Site: cross-site``,
a page, no token) with :data:`RELOAD`, a page that loads itself again at once; that load starts on
this site, so the cookie goes with it. A browser with no session then gets :data:`LOG_IN`, a 401
page that says how to log in, not a loop. A page that a session's caller may not see (403) or that
does not exist (404) is an HTML page too, for a browser's navigation (:func:`refusals_as_pages`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import Message, Receive, Scope, Send

from oms.auth.tokens import InvalidToken, Principal, Role, Verifier
from oms.edge.answers import send_problem
from oms.edge.body import read_body, too_large
from oms.edge.pages import (
    LOG_IN,
    LOG_IN_FORM,
    LOG_OUT_FORM,
    confirm_page,
    refusal_page,
    send_page,
)
from oms.edge.problems import PROBLEM, Problem

SESSION_COOKIE = "oms_session"
CSRF_COOKIE = "oms_csrf"
LOGIN_COOKIE = "oms_login"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/"
FORMS = frozenset({LOG_IN_FORM, LOG_OUT_FORM})
"""The two forms the Gate answers itself (POST, ``application/x-www-form-urlencoded``): a browser's
form cannot send the JSON Content-Type or the X-CSRF-Token header the other writes need."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USERS = frozenset({Role.ADMIN, Role.CUSTOMER})
"""The roles the dashboard serves: a link with another role's token logs nobody in."""
CONFIRM_SECONDS = 600
"""How long a confirmation page's button stays good (its nonce cookie's life)."""
FORM_LIMIT = 16 * 1024
"""Bytes a log-in or log-out form may hold: a token from an identity provider can be a few KiB."""
REFUSALS = frozenset({401, 403, 404})
"""The statuses a browser's navigation to a page gets as an HTML page (:func:`refusals_as_pages`)."""
_FORM = b"application/x-www-form-urlencoded"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    cookie = _header(scope, b"cookie")
    if cookie is None or name.encode() not in cookie:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie.decode("latin-1"))
    except CookieError:
        return None
    morsel = jar.get(name)
    value: str = morsel.value if morsel is not None else ""
    return value or None


# -- which requests -------------------------------------------------------------------------------


def _navigation(scope: Scope) -> bool:
    """A browser's navigation of a window (``Sec-Fetch-Mode: navigate``, to a document): a person
    reads the answer."""
    dest = _header(scope, b"sec-fetch-dest")
    return _header(scope, b"sec-fetch-mode") == b"navigate" and dest in (None, b"document")


def page_navigation(scope: Scope) -> bytes | None:
    """For a browser's navigation to one of the dashboard's pages, the site it started from
    (``Sec-Fetch-Site``: ``cross-site``, ``same-origin``, ``none`` for a typed address); None for
    any other request (a script's call, a file, an API client, which sends no ``Sec-Fetch-*``)."""
    path: str = scope["path"]
    if (
        scope["method"] != "GET"
        or not (path == LOGIN_PATH or path.startswith("/ui/"))
        or path.startswith("/ui/static/")
        or not _navigation(scope)
    ):
        return None
    return _header(scope, b"sec-fetch-site") or b"none"


def _own(scope: Scope) -> tuple[bytes, bytes]:
    host = (_header(scope, b"host") or b"").lower()
    return b"http://" + host, b"https://" + host


def foreign(scope: Scope) -> str | None:
    """Why a request is taken as started by another site (its ``Sec-Fetch-Site``, else its
    ``Origin`` or ``Referer``), or None: typed, from this service's own pages, or from a client
    that sends none of them."""
    site = _header(scope, b"sec-fetch-site")
    if site is not None and site not in (b"none", b"same-origin"):
        return f"Sec-Fetch-Site: {site.decode('latin-1')}"
    own = _own(scope)
    origin = _header(scope, b"origin")
    if origin is not None and origin.lower() not in own:
        return f"Origin {origin.decode('latin-1')!r}"
    referer = _header(scope, b"referer")
    if referer is not None:
        parts = urlsplit(referer.decode("latin-1"))
        if f"{parts.scheme}://{parts.netloc}".lower().encode() not in own:
            return "a Referer of another origin"
    return None


def link_token(scope: Scope) -> str | None:
    """The token of a log-in link (``GET /?token=T``), or None."""
    if scope["path"] != LOGIN_PATH or scope["method"] != "GET" or b"token=" not in scope.get("query_string", b""):
        return None
    query: bytes = scope["query_string"]
    found = parse_qs(query.decode("latin-1")).get("token")
    return found[-1] if found and found[-1] else None


def session_token(scope: Scope) -> str | None:
    """The token a request without an Authorization header comes with: its log-in link's
    (``GET /?token=``), else its session cookie's; None without either."""
    return link_token(scope) or _cookie(scope, SESSION_COOKIE)


# -- the cookies and the CSRF values --------------------------------------------------------------


def csrf_value(token: str) -> str:
    """The CSRF value of a session: derived from its token, so any replica checks it without shared
    state, and only a page that was given the session's cookies knows it."""
    return hmac.new(b"oms-dashboard-csrf", token.encode(), hashlib.sha256).hexdigest()


def session_csrf(scope: Scope) -> str:
    """The CSRF value of the session a request came with ("" for a bearer token's): a page puts it in
    its log-out form."""
    token = scope.get("state", {}).get("session")
    return csrf_value(token) if token else ""


def login_proof(nonce: str, token: str) -> str:
    """What a confirmation page's form sends back: the token, keyed by the nonce that only this
    browser's Strict cookie holds."""
    return hmac.new(nonce.encode(), token.encode(), hashlib.sha256).hexdigest()


def cross_site(scope: Scope, token: str) -> str | None:
    """Why a call authenticated by the session ``token`` is refused as cross-site, or None when it
    may go on: a GET, HEAD or OPTIONS always may; any other needs the session's X-CSRF-Token and, when
    the browser sends an Origin, this service's own."""
    if scope["method"] in SAFE_METHODS:
        return None
    origin = _header(scope, b"origin")
    host = _header(scope, b"host") or b""
    if origin is not None and origin not in (b"http://" + host, b"https://" + host):
        return f"Origin {origin.decode('latin-1')!r} is not this service's; the call is refused."
    sent = _header(scope, CSRF_HEADER.lower().encode())
    if sent is None or not hmac.compare_digest(sent, csrf_value(token).encode()):
        return f"A call made with the dashboard's session cookie needs its {CSRF_HEADER} header."
    return None


def _flags(max_age: int, secure: bool, path: str = "/") -> str:
    return f"Path={path}; Max-Age={max_age}; SameSite=Strict" + ("; Secure" if secure else "")


def cookies(token: str, max_age: int, *, secure: bool) -> list[str]:
    """The Set-Cookie values that open a session with ``token`` for ``max_age`` seconds: the token
    (HttpOnly: no script reads it) and its CSRF value (read by the page's script, sent back as a header)."""
    flags = _flags(max_age, secure)
    return [f"{SESSION_COOKIE}={token}; HttpOnly; {flags}", f"{CSRF_COOKIE}={csrf_value(token)}; {flags}"]


def cleared(*, secure: bool) -> list[str]:
    """The Set-Cookie values that end a session (and a pending confirmation)."""
    return [
        f"{SESSION_COOKIE}=; HttpOnly; {_flags(0, secure)}",
        f"{CSRF_COOKIE}=; {_flags(0, secure)}",
        f"{LOGIN_COOKIE}=; HttpOnly; {_flags(0, secure, LOG_IN_FORM)}",
    ]


def _set(values: list[str]) -> list[tuple[bytes, bytes]]:
    return [(b"set-cookie", value.encode("latin-1")) for value in values]


# -- the log-in, the log-out ----------------------------------------------------------------------


async def _refuse(scope: Scope, send: Send, problem: Problem, page: bytes | None = None) -> None:
    """A refusal of the log-in or log-out: an HTML page for a browser's navigation (``page``, or one
    made from the problem, whose detail says what to do), problem+json for anything else."""
    if _navigation(scope):
        page = page or refusal_page(problem.status, problem.title, problem.detail, advice="")
        await send_page(send, problem.status, page)
    else:
        await send_problem(send, problem, scope["path"])


def _unauthenticated(why: str) -> Problem:
    return Problem(401, "Unauthenticated", why, type_="/problems/unauthenticated",
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip


async def _trade(scope: Scope, send: Send, token: str, caller: Principal, *, extra: tuple[str, ...] = ()) -> None:
    """The session opened: its cookies, and a redirect to ``/``."""
    max_age = int(caller.expires - time.time())
    if max_age <= 0:
        await _refuse(scope, send, _unauthenticated("The token has expired."), LOG_IN)
        return
    values = [*cookies(token, max_age, secure=scope["scheme"] == "https"), *extra]
    headers = [(b"location", b"/"), (b"cache-control", b"no-store"), *_set(values)]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _not_a_user(caller: Principal) -> Problem:
    return Problem(
        403, "Forbidden",
        f"A {caller.role.value} token opens no session on the dashboard, which is for admins and customers.",
        type_="/problems/forbidden",
    )  # fmt: skip


async def log_in(scope: Scope, send: Send, token: str, caller: Principal) -> None:
    """The answer to a log-in link (``GET /?token=T``, ``caller`` its token's, verified): the session
    opened, unless another site started the request: then the confirmation page."""
    if caller.role not in USERS:
        await _refuse(scope, send, _not_a_user(caller))
        return
    if foreign(scope) is None:
        await _trade(scope, send, token, caller)
        return
    if caller.expires <= time.time():
        await _refuse(scope, send, _unauthenticated("The token has expired."), LOG_IN)
        return
    nonce = secrets.token_urlsafe(24)
    secure = scope["scheme"] == "https"
    nonce_cookie = f"{LOGIN_COOKIE}={nonce}; HttpOnly; {_flags(CONFIRM_SECONDS, secure, LOG_IN_FORM)}"
    await send_page(send, 200, confirm_page(caller, token, login_proof(nonce, token)), _set([nonce_cookie]))


async def _form_fields(scope: Scope, receive: Receive, send: Send) -> dict[str, str] | None:
    """A posted form's fields (the last of each name), or None when answered already: refused as
    sent from another site (403), not a form (415), too large (413)."""
    why = foreign(scope)
    if why is not None:
        problem = Problem(
            403, "Cross-site request refused", f"This form is posted from the dashboard's own pages only ({why}).",
            type_="/problems/cross-site",
        )  # fmt: skip
        await _refuse(scope, send, problem)
        return None
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != _FORM:
        problem = Problem(
            415, "Unsupported media type", f"{scope['path']} takes a form: Content-Type: {_FORM.decode()}.",
            type_="/problems/unsupported-media-type", headers={"Accept": _FORM.decode()},
        )  # fmt: skip
        await send_problem(send, problem, scope["path"])
        return None
    body = await read_body(scope, receive, FORM_LIMIT)
    if body is None:
        await send_problem(send, too_large(FORM_LIMIT), scope["path"])
        return None
    return {name: values[-1] for name, values in parse_qs(body.decode("latin-1")).items()}


async def answer_form(scope: Scope, receive: Receive, send: Send, verifier: Verifier) -> None:
    """``POST /ui/login`` (a confirmation page's button) or ``POST /ui/logout`` (a page's header)."""
    fields = await _form_fields(scope, receive, send)
    if fields is None:
        return
    state = scope.setdefault("state", {})
    if scope["path"] == LOG_OUT_FORM:
        await _log_out(scope, send, fields, verifier, state)
        return
    state["audit"] = ("log_in", None)
    token, nonce = fields.get("token", ""), _cookie(scope, LOGIN_COOKIE)
    if not token or not nonce or not hmac.compare_digest(fields.get("proof", ""), login_proof(nonce, token)):
        problem = Problem(
            403, "Log-in not confirmed",
            "This log-in form was not opened in this browser, or is over 10 minutes old: open the log-in link again.",
            type_="/problems/cross-site",
        )  # fmt: skip
        await _refuse(scope, send, problem)
        return
    try:
        caller = await verifier.verify(token)
    except InvalidToken as exc:
        await _refuse(scope, send, _unauthenticated(str(exc)), LOG_IN)
        return
    state["principal"] = caller
    if caller.role not in USERS:
        await _refuse(scope, send, _not_a_user(caller))
        return
    done = f"{LOGIN_COOKIE}=; HttpOnly; {_flags(0, scope['scheme'] == 'https', LOG_IN_FORM)}"
    await _trade(scope, send, token, caller, extra=(done,))


async def _log_out(scope: Scope, send: Send, fields: dict[str, str], verifier: Verifier, state: dict[str, Any]) -> None:
    """The session's cookies cleared, and the browser sent to ``/`` (which says how to log in). With
    a session, the form must carry its CSRF value, as the dashboard's other writes their header."""
    state["audit"] = ("log_out", None)
    token = _cookie(scope, SESSION_COOKIE)
    if token is not None:
        if not hmac.compare_digest(fields.get("csrf", "").encode(), csrf_value(token).encode()):
            problem = Problem(403, "Cross-site request refused",
                              "A log-out needs the session's CSRF value, which the dashboard's pages send.",
                              type_="/problems/cross-site")  # fmt: skip
            await _refuse(scope, send, problem)
            return
        with contextlib.suppress(InvalidToken):  # an expired session is ended all the same
            state["principal"] = await verifier.verify(token)
    headers = [(b"location", b"/"), (b"cache-control", b"no-store"), *_set(cleared(secure=scope["scheme"] == "https"))]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


# -- a page refused: HTML for a person ------------------------------------------------------------


def refusals_as_pages(send: Send, token: str) -> Send:
    """``send`` for a browser's navigation to a page with the session ``token``: a problem+json
    refusal (401, 403, 404) goes out as :func:`refusal_page` (the same status), anything else as sent."""
    held: list[Message] = []
    chunks: list[bytes] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", ()))
            if message["status"] in REFUSALS and headers.get(b"content-type", b"").startswith(PROBLEM.encode()):
                held.append(message)
                return
        elif held and message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status: int = held[0]["status"]
            try:
                problem = orjson.loads(b"".join(chunks))
            except orjson.JSONDecodeError:
                problem = {}
            title = str(problem.get("title", "Refused")) if isinstance(problem, dict) else "Refused"
            detail = str(problem.get("detail", "")) if isinstance(problem, dict) else ""
            await send_page(send, status, refusal_page(status, title, detail, csrf_value(token)))
            return
        await send(message)

    return sending
