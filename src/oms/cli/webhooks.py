"""``oms webhooks``: the ``/webhooks`` routes at a terminal (an admin's token: the key file's, by
default). ``add`` prints the new endpoint's secret, which is shown this once (and at a rotation, through
the API); the other commands never print one. ``--json``: the service's answer as it came, alone on
standard output.

Each command exits 0 when the call succeeded, 1 when it failed (the problem printed); ``test`` exits 1
too when the receiver did not take the test event (no 2xx)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from oms.cli.console import fetch, print_json, print_more, table, when


def add_parser(commands: Any, with_url: Any, with_json: Any) -> None:
    """``oms webhooks ...`` on the command line's parser (``commands``: its subparsers)."""
    webhooks = commands.add_parser("webhooks", help="manage the endpoints events are POSTed to (admins)")
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True)
    add = with_json(with_url(actions.add_parser("add", help="register an endpoint (prints its secret, once)")))
    add.add_argument("endpoint_url", metavar="URL", help="where events are POSTed: an http(s) URL")
    add.add_argument("--event", dest="events", action="append", metavar="TYPE",
                     help="a type to send, e.g. oms.order.placed; again for more (default: every type)")  # fmt: skip
    add.add_argument("--description", help="what the endpoint is for (default: none)")
    listed = with_json(with_url(actions.add_parser("list", help="list the endpoints")))
    listed.add_argument("--limit", type=int, default=50, help="endpoints in the page, 1 to 1000 (default %(default)s)")
    listed.add_argument("--next", dest="cursor", help="the cursor a page before gave, to show the page after it")
    for name, text in (
        ("show", "show one endpoint"),
        ("enable", "enable an endpoint: events from now on go to it"),
        ("disable", "disable an endpoint: nothing goes to it until it is enabled"),
        ("remove", "delete an endpoint, with its waiting deliveries and its record of tries"),
        ("test", "send it a signed test event now, and show how it answered"),
    ):
        one = with_json(with_url(actions.add_parser(name, help=text)))
        one.add_argument("webhook_id", metavar="ID", help="the endpoint's id (we_...)")
    replay = with_json(with_url(actions.add_parser("replay", help="send an endpoint's events since a time again")))
    replay.add_argument("webhook_id", metavar="ID", help="the endpoint's id (we_...)")
    replay.add_argument("--since", required=True, metavar="WHEN",
                        help="an RFC 3339 date-time with its offset, e.g. 2026-12-06T07:00:00Z")  # fmt: skip
    deliveries = with_json(with_url(actions.add_parser("deliveries", help="an endpoint's tries, newest first")))
    deliveries.add_argument("webhook_id", metavar="ID", help="the endpoint's id (we_...)")
    deliveries.add_argument("--limit", type=int, default=50, help="tries in the page, 1 to 1000 (default %(default)s)")
    deliveries.add_argument("--next", dest="cursor", help="the cursor a page before gave, to show the page after it")


def webhooks(console: Console, base: str, args: argparse.Namespace, *, as_json: bool) -> int:
    """Run ``oms webhooks <command>`` against the OrderService at ``base``."""
    command = args.webhooks_command
    one = f"{base}/webhooks/{getattr(args, 'webhook_id', '')}"
    if command == "add":
        body = {"url": args.endpoint_url, "events": args.events or ["*"], "description": args.description or ""}
        answer = fetch(console, "POST", f"{base}/webhooks", body)
    elif command == "list":
        query = {"limit": args.limit, **({"next": args.cursor} if args.cursor else {})}
        answer = fetch(console, "GET", f"{base}/webhooks?{urlencode(query)}")
    elif command == "show":
        answer = fetch(console, "GET", one)
    elif command in ("enable", "disable"):
        answer = fetch(console, "PATCH", one, {"status": f"{command}d"})
    elif command == "remove":
        answer = fetch(console, "DELETE", one)
    elif command == "replay":
        answer = fetch(console, "POST", f"{one}/replay", {"since": args.since})
    elif command == "test":
        answer = fetch(console, "POST", f"{one}/test")
    else:
        query = {"limit": args.limit, **({"next": args.cursor} if args.cursor else {})}
        answer = fetch(console, "GET", f"{one}/deliveries?{urlencode(query)}")
    if answer is None:
        return 1
    if as_json:
        if answer.raw:
            print_json(answer)
    elif command == "remove":
        console.print(f"removed {args.webhook_id}")
    elif command == "replay":
        console.print(f"queued {answer.body['queued']} deliveries to {args.webhook_id}")
    elif command == "list":
        print_endpoints(console, answer.body)
    elif command in ("test", "deliveries"):
        tries = [answer.body] if command == "test" else answer.body["items"]
        print_attempts(
            console, tries, "test" if command == "test" else f"deliveries to {args.webhook_id}, newest first"
        )
        if command == "deliveries":
            print_more(console, answer.body)
    else:
        print_endpoint(console, answer.body)
    if command == "test":
        status = answer.body.get("status_code")
        return 0 if isinstance(status, int) and 200 <= status < 300 else 1
    return 0


def print_endpoint(console: Console, endpoint: dict[str, Any]) -> None:
    """One endpoint; with its secret when the answer has one (``add``), said to be shown once."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    status = endpoint["status"]
    shown = f"[green]{status}[/]" if status == "enabled" else f"[red]{status}[/]"
    if endpoint.get("disabled_reason"):
        shown += f" [dim]({escape(endpoint['disabled_reason'])})[/dim]"
    rows = [
        ("id", endpoint["id"]),
        ("url", escape(endpoint["url"])),
        ("events", ", ".join(endpoint["events"])),
        ("status", shown),
        ("description", escape(endpoint["description"]) or "-"),
        ("waiting", str(endpoint["waiting"])),
        ("last success", endpoint["last_success_at"] or "-"),
        ("failing since", endpoint["failing_since"] or "-"),
        ("created", endpoint["created_at"]),
    ]
    for name, value in rows:
        grid.add_row(name, value)
    console.print(grid)
    if "secret" in endpoint:
        console.print(f"[bold]secret[/bold]  {endpoint['secret']}")
        console.print("[dim]shown this once: keep it where your receiver verifies deliveries with it[/dim]")


def print_endpoints(console: Console, page: dict[str, Any]) -> None:
    endpoints: list[dict[str, Any]] = page["items"]
    whole = {"id": [str(e["id"]) for e in endpoints], "status": [str(e["status"]) for e in endpoints]}
    shown = table(f"{len(endpoints)} webhook endpoints", "id", "status", "url", "events", "waiting",
                  right=("waiting",), whole=whole)  # fmt: skip
    for endpoint in endpoints:
        style = "green" if endpoint["status"] == "enabled" else "red"
        shown.add_row(
            endpoint["id"], f"[{style}]{endpoint['status']}[/]", escape(endpoint["url"]),
            ", ".join(endpoint["events"]), str(endpoint["waiting"]),
        )  # fmt: skip
    console.print(shown)
    print_more(console, page)


def print_attempts(console: Console, attempts: list[dict[str, Any]], title: str) -> None:
    shown = table(title, "at", "event", "order", "try", "answer", "ms", "outcome", right=("try", "ms"))
    for attempt in attempts:
        answer = str(attempt["status_code"]) if attempt["status_code"] is not None else escape(attempt["error"] or "-")
        order = f"{attempt['order_id']} #{attempt['sequence']}" if attempt["order_id"] else "-"
        outcome = attempt["outcome"] + (f"\nnext {when(attempt['next_try_at'])}" if attempt["next_try_at"] else "")
        shown.add_row(
            when(attempt["at"]), attempt["event_type"], order, str(attempt["try"]), answer,
            f"{attempt['duration_ms']:.0f}", outcome,
        )  # fmt: skip
    console.print(shown)
