"""The dashboard's HTML: one page shell per view, and the files its script and style come from,
all shipped inside the package (``oms/dashboard/static``: no CDN, no build step).

The pages hold no data: the script (``static/dashboard.js``) reads the JSON routes every second and
draws. No inline script or style, so the Content-Security-Policy allows only the service's own files.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files

from starlette.responses import Response

from oms.edge.pages import LOG_OUT_FORM

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Nothing to another site; this service's own Origin on the log-out form (no-referrer: "null").
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every page and file of the dashboard."""

SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
"""On a diagram drawn as SVG: opened on its own, it may not run or load anything."""

STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""The files at /ui/static/NAME. The favicon is one of them, named in each page's head: without
that link a browser asks for /favicon.ico, which is no page of the service; a data: URL would need
the Content-Security-Policy's img-src to allow data:."""

_TITLES = {
    "orders": "Orders",
    "order": "Order",
    "events": "Events",
    "breakers": "Circuit breakers",
    "audit": "Audit",
    "webhooks": "Webhooks",
}


@cache
def static_file(name: str) -> bytes:
    return files("oms.dashboard").joinpath("static", name).read_bytes()


def page(view: str, *, sub: str, role: str, csrf: str, **data: str) -> Response:
    """The shell of one view (``orders``, ``order``, ``events``, ``breakers``, ``audit``,
    ``webhooks``); ``data`` becomes the body's ``data-*`` attributes, which the script reads (an
    order's id). ``csrf``: the session's CSRF value, which the header's log-out form posts (a plain
    form: it works without the script)."""
    admin = role == "admin"
    links = [("/", "Orders", "orders"), ("/ui/events", "Events", "events")]
    if admin:
        links += [
            ("/ui/webhooks", "Webhooks", "webhooks"),
            ("/ui/breakers", "Breakers", "breakers"),
            ("/ui/audit", "Audit", "audit"),
        ]
    nav = "".join(
        f'<a href="{href}"{" class=current" if name == view or (view == "order" and name == "orders") else ""}>'
        f"{label}</a>"
        for href, label, name in links
    )
    attributes = "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in {"page": view, "role": role, **data}.items())
    title = _TITLES[view] + (f" {data['order']}" if "order" in data else "")
    html = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · oms</title>
<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/static/dashboard.css">
<script src="/ui/static/dashboard.js" defer></script>
</head>
<body{attributes}>
<header><span class="brand">oms</span><nav>{nav}</nav><span class="who">{escape(sub)} · {escape(role)}</span>
<form class="log-out" method="post" action="{LOG_OUT_FORM}"><input type="hidden" name="csrf" value="{escape(csrf)}">\
<button type="submit" id="log-out">Log out</button></form></header>
<main><h1>{escape(title)}</h1><p id="message" role="status"></p><div id="view"></div></main>
</body>
</html>
"""
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)


def asset(name: str) -> Response | None:
    """A file of the dashboard, or None for a name it does not have."""
    media_type = STATIC.get(name)
    if media_type is None:
        return None
    return Response(static_file(name), media_type=media_type, headers=HEADERS)
