"""``oms events``: the events feed (``GET /events``) at a terminal, oldest first; ``--follow`` goes
on waiting for new ones (a long poll at a time) until interrupted.

A line per event: its time, type, order and number among the order's events, the order's status
and, when it failed, why. ``--json``: one CloudEvent per line as the service sent it (JSON Lines),
for ``jq`` and the like, and nothing else on standard output."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlencode

import orjson
from rich.console import Console
from rich.markup import escape

from oms.cli.console import STATUS_STYLE, fetch

PAGE = 200
"""Events asked for a page."""
WAIT = 30
"""Seconds a request of ``--follow`` waits for a new event (the feed's longest)."""


def events(console: Console, base: str, *, follow: bool, type_: str | None, order_id: str | None, as_json: bool) -> int:
    """Print the feed from its start: 0 once read (``--follow``: once interrupted), 1 on a failed call."""
    wanted: dict[str, Any] = {"limit": PAGE, "type": type_, "subject": order_id}
    cursor: str | None = None
    try:
        while True:
            query = {name: value for name, value in wanted.items() if value is not None}
            if cursor is not None:
                query["next"] = cursor
            if follow:
                query["wait"] = WAIT
            answer = fetch(console, "GET", f"{base}/events?{urlencode(query)}")
            if answer is None:
                return 1
            page = answer.body
            for event in page["items"]:
                show(console, event, as_json)
            cursor = page["next"] or cursor
            if not page["items"] and not follow:
                return 0
    except KeyboardInterrupt:
        return 0


def show(console: Console, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        sys.stdout.flush()
        return
    order = event.get("data") or {}
    status = str(order.get("status", ""))
    reason = order.get("failure_reason") or order.get("pending_reason")
    style = STATUS_STYLE.get(status, "")
    console.print(
        f"{str(event['time'])[:19].replace('T', ' ')}  {event['type']:<32} {event['subject']}  #{event['sequence']:<3} "
        f"[{style}]{status}[/{style}]" + (f"  [dim]{escape(str(reason))}[/dim]" if reason else ""),
        highlight=False,
    )
