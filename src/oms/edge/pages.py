"""The small HTML pages the edge answers a browser with where an API client gets problem+json: how
to log in, a refused page, the confirmation of a log-in link from another site (``oms.edge.session``).
Nothing in them may run or load, and no other site may frame them."""

from __future__ import annotations

import base64
import hashlib
from html import escape

from starlette.types import Send

from oms.auth.tokens import Principal

LOG_IN_FORM = "/ui/login"
LOG_OUT_FORM = "/ui/logout"

_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:46em;margin:40px auto;padding:0 16px;color:#1d2330}"
    "code{background:#eef0f4;padding:1px 4px;border-radius:3px;word-break:break-all}"
    "button{font:inherit;padding:6px 14px;margin:8px 12px 8px 0}form{display:inline}"
)
PAGE_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The pages of this module: their one style (by its hash), no script, forms only to this service,
framed by no one."""
PAGE_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make a form's Origin "null"
]
_CHALLENGE = (b"www-authenticate", b'Bearer error="invalid_token"')


def _html(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · oms</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    ).encode()


async def send_page(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """An HTML page of this module (a 401 with the Bearer challenge, as the problem+json would have)."""
    extra = [_CHALLENGE] if status == 401 else []
    answer = [*PAGE_HEADERS, *extra, *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": answer})
    await send({"type": "http.response.body", "body": body})


HOW_TO_LOG_IN = (
    "Open the log-in link that <code>oms up</code> printed, or make one with an admin token: "
    "<code>http://HOST:PORT/?token=$(oms token --admin)</code> (a customer's: "
    "<code>oms token --customer ID</code>)."
)
RELOAD = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0">'
    b"<title>oms</title></head><body><p>Opening the dashboard...</p></body></html>"
)
LOG_IN = _html(
    "log in",
    f"<h1>oms dashboard</h1><p>Not logged in: logged out, or the session has expired.</p><p>{HOW_TO_LOG_IN}</p>",
)
"""What a browser's own navigation to a page without a session gets (401): how to log in, where an
API client gets problem+json."""


def _log_out_form(csrf: str) -> str:
    return (
        f'<form method="post" action="{LOG_OUT_FORM}"><input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<button type="submit" id="log-out">Log out</button></form>'
    )


_ADVICE = {
    401: f"<p>{HOW_TO_LOG_IN}</p>",
    403: "<p>This page is for admins. To see it, log in as an admin: open an admin's log-in link "
    "(<code>http://HOST:PORT/?token=$(oms token --admin)</code>) in this browser.</p>",
    404: "<p>There is no such page, or what it shows is not yours to see.</p>",
}


def refusal_page(status: int, title: str, detail: str, csrf: str = "", advice: str | None = None) -> bytes:
    """A page refused to a browser: its status, why, and what to do (``advice``, by default the
    status's: log in as an admin...; back to the orders; log out)."""
    advice = _ADVICE.get(status, "") if advice is None else advice
    return _html(
        f"{status} {title}",
        f"<h1>{status} {escape(title)}</h1><p>{escape(detail)}</p>{advice}"
        f'<p><a href="/" id="orders">Back to the orders</a></p>' + (_log_out_form(csrf) if csrf else ""),
    )


def confirm_page(caller: Principal, token: str, proof: str) -> bytes:
    """The page a log-in link from another site gets: whom it logs in as, and a button to do it."""
    who = f"<b>{escape(caller.sub)}</b> ({escape(caller.role.value)})"
    return _html(
        "log in?",
        "<h1>Log in to the oms dashboard?</h1>"
        f'<p>A page on another site sent this browser a log-in link. It logs in as <span id="identity">{who}'
        "</span>.</p><p>Log in only if you meant to open it: a link someone else made logs you in as them, "
        "and what you then do on the dashboard is done as them. Nothing changes until you press the button: "
        "a session this browser has stays as it is.</p>"
        f'<form method="post" action="{LOG_IN_FORM}"><input type="hidden" name="token" value="{escape(token)}">'
        f'<input type="hidden" name="proof" value="{escape(proof)}">'
        f'<button type="submit" id="log-in">Log in as {escape(caller.sub)} ({escape(caller.role.value)})</button>'
        '</form><p><a href="/">Back to the dashboard without logging in</a></p>',
    )
