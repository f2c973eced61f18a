"""The dashboard's session: a bearer token carried in a cookie instead of the Authorization header,
and the cross-site checks for the calls it authenticates.

Log-in (Jupyter's way): ``GET /?token=T`` is answered with the token set as an HttpOnly,
``SameSite=Strict`` cookie, and a redirect to ``/`` that drops it from the address bar. The Gate
takes the cookie's token as the caller's when a request has no Authorization header
(:func:`session_token`), and refuses a state-changing call made with it unless it comes from the
service's own pages (:func:`cross_site`): its ``X-CSRF-Token`` header must hold the token's CSRF
value (:func:`csrf_value`, which the page reads from a second, script-readable cookie), and its
``Origin``, when sent, must be the service's own. Bearer-token callers are not concerned.

A link to a page from another site: the browser leaves the Strict cookie out of that navigation, so
it comes with no credential at all. The Gate answers it (and only it: ``Sec-Fetch-Site: cross-site``,
a page, no token) with :data:`RELOAD`, a page that loads itself again at once; that load starts on
this site, so the cookie goes with it. A browser with no session then gets :data:`LOG_IN`, a 401
page that says how to log in, not a loop.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from starlette.types import Scope

SESSION_COOKIE = "oms_session"
CSRF_COOKIE = "oms_csrf"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


RELOAD = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0">'
    b"<title>oms</title></head><body><p>Opening the dashboard...</p></body></html>"
)
PAGE_HEADERS = [  # of RELOAD and LOG_IN: nothing in them may load or run
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'"),
    (b"www-authenticate", b'Bearer error="invalid_token"'),
]


LOG_IN = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>oms: log in</title></head><body>'
    b"<h1>oms dashboard</h1><p>Not logged in, or the session has expired. Open the log-in link that "
    b"<code>oms up</code> printed, or make one with an admin token: "
    b"<code>http://HOST:PORT/?token=$(oms token --admin)</code>.</p></body></html>"
)
"""What a browser's own navigation to a page without a session gets (401): how to log in, where an
API client gets problem+json."""


def page_navigation(scope: Scope) -> bytes | None:
    """For a browser's navigation to one of the dashboard's pages, the site it started from
    (``Sec-Fetch-Site``: ``cross-site``, ``same-origin``, ``none`` for a typed address); None for
    any other request (a script's call, a file, an API client, which sends no ``Sec-Fetch-*``)."""
    path: str = scope["path"]
    if (
        scope["method"] != "GET"
        or not (path == LOGIN_PATH or path.startswith("/ui/"))
        or path.startswith("/ui/static/")
        or _header(scope, b"sec-fetch-mode") != b"navigate"
    ):
        return None
    return _header(scope, b"sec-fetch-site") or b"none"


def session_token(scope: Scope) -> str | None:
    """The token a request without an Authorization header comes with: its log-in link's
    (``GET /?token=``), else its session cookie's; None without either."""
    if scope["path"] == LOGIN_PATH and scope["method"] == "GET" and b"token=" in scope.get("query_string", b""):
        query: bytes = scope["query_string"]
        found = parse_qs(query.decode("latin-1")).get("token")
        if found and found[-1]:
            return found[-1]
    cookie = _header(scope, b"cookie")
    if cookie is None or SESSION_COOKIE.encode() not in cookie:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie.decode("latin-1"))
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    value: str = morsel.value if morsel is not None else ""
    return value or None


def csrf_value(token: str) -> str:
    """The CSRF value of a session: derived from its token, so any replica checks it without shared
    state, and only a page that was given the session's cookies knows it."""
    return hmac.new(b"oms-dashboard-csrf", token.encode(), hashlib.sha256).hexdigest()


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


def cookies(token: str, max_age: int, *, secure: bool) -> list[str]:
    """The Set-Cookie values that open a session with ``token`` for ``max_age`` seconds: the token
    (HttpOnly: no script reads it) and its CSRF value (read by the page's script, sent back as a header)."""
    flags = f"Path=/; Max-Age={max_age}; SameSite=Strict" + ("; Secure" if secure else "")
    return [f"{SESSION_COOKIE}={token}; HttpOnly; {flags}", f"{CSRF_COOKIE}={csrf_value(token)}; {flags}"]
