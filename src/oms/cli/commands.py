"""The ``oms`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from rich.console import Console

from oms.config import Settings

DEMO_CUSTOMER = "cust-demo"
"""The customer ``oms order place`` orders for with an admin's token and no ``--customer``."""


def _settings(args: argparse.Namespace, console: Console) -> Settings | None:
    names = ("host", "port", "database_url", "inventory_url", "payment_url", "data_dir", "workers", "log_format")
    overrides: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            where = "_".join(str(p) for p in error["loc"])  # a nested setting's field: OMS_BREAKER_WAIT_IN_OPEN
            name = f"OMS_{where.upper()}" if where else "settings"
            console.print(f"[red]invalid {name}[/red]: {error['msg']}")
        return None


def _parse_item(text: str) -> dict[str, Any]:
    """SKU:QUANTITY; a SKU alone is one unit of it."""
    sku, colon, quantity = text.partition(":")
    if not sku or (colon and not quantity):
        raise argparse.ArgumentTypeError(f"{text!r}: write SKU or SKU:QUANTITY, e.g. WIDGET-1:2")
    try:
        return {"sku": sku, "quantity": int(quantity or "1")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write SKU or SKU:QUANTITY, e.g. WIDGET-1:2") from None


def _port(text: str) -> int:
    """An argparse type: 0 (any free ports), or a port with room for the two after it."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is a whole number") from None
    if not (port == 0 or 1 <= port <= 65533):
        raise argparse.ArgumentTypeError(
            f"{port}: write 1 to 65533 (the two services after it take the next two), or 0"
        )
    return port


def _counted(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number, at least ``least``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"{number} is less than {least}")
        return number

    return parse


def _share(text: str) -> float:
    """An argparse type: a share, 0 to 1."""
    try:
        share = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{share} is not between 0 and 1")
    return share


def _setting(text: str) -> tuple[str, str]:
    """An argparse type: NAME=VALUE."""
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE, e.g. OMS_LOG_LEVEL=debug")
    return name, value


def _new_file(text: str) -> Path:
    """An argparse type: a file to write, in a folder that exists (checked before the work, not after)."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path.parent} is not a folder")
    return path


PLACE_EXIT_CODES = """exit codes:
  0  the order is PLACED
  1  no order: the request was refused (4xx/5xx, shown) or OrderService could not be reached
  2  the command line is wrong
  3  the order ended failed: PAYMENT_FAILED, OUT_OF_STOCK, REJECTED, CANCELLED or COMPENSATION_FAILED
  4  the order is still PENDING (its saga waits on an outcome it cannot learn yet; see its pending reason)

The same codes for an answer replayed for --key (Idempotent-Replayed: true): the order's status as it is now."""

DATA_DIR_HELP = "the system's directory: pid files, SQLite databases, key (default $OMS_DATA_DIR, else ./.oms)"


def parser() -> argparse.ArgumentParser:
    from oms.cli.console import STATUSES

    top = argparse.ArgumentParser(prog="oms", description="Order management on the saga pattern.")
    commands = top.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="start the three services on SQLite (Ctrl-C or oms down stops them; exit 1 if already running)"
    )
    up.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    up.add_argument("--host", default="127.0.0.1", help="address the services listen on (default %(default)s)")
    up.add_argument("--port", dest="order_port", type=_port, default=None,
                    help="OrderService's port; InventoryService and PaymentService take the next two; "
                    "0: any free ports (default 8000)")  # fmt: skip
    up.add_argument("--log-format", choices=("json", "text"), help="the services' log lines (default text)")
    down = commands.add_parser("down", help="stop the system oms up started (and services oms serve started)")
    down.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    down.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait before killing what did not stop (default %(default)s)",
    )
    state = commands.add_parser("status", help="each service: up or down, pid, port, database (exit 1 unless all up)")
    state.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    state.add_argument("--host", default="127.0.0.1", help="address the services listen on (default %(default)s)")

    serve = commands.add_parser("serve", help="run one service in this process (its pid in DATA_DIR/SERVICE.pid)")
    serve.add_argument("service", choices=("order", "inventory", "payment"), help="which service: %(choices)s")
    serve.add_argument("--host", help="address to listen on (default $OMS_HOST, else 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port (default $OMS_PORT, else 8000 order, 8001 inventory, 8002 payment)"
    )
    serve.add_argument(
        "--database-url", help="sqlite:///PATH or postgresql+asyncpg://... (default SQLite DATA_DIR/SERVICE.db)"
    )
    serve.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    serve.add_argument("--workers", type=int, help="processes sharing the port and the database (default 1)")
    serve.add_argument("--log-format", choices=("json", "text"), help="text (default) or one JSON object per line")
    serve.add_argument(
        "--inventory-url", help="order only: InventoryService's base URL (default http://127.0.0.1:8001)"
    )
    serve.add_argument("--payment-url", help="order only: PaymentService's base URL (default http://127.0.0.1:8002)")

    def with_token(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--token", default=None, help="bearer token to call with (default: $OMS_TOKEN, else an "
                       "admin token minted from the key file)")  # fmt: skip
        p.add_argument("--key-file", type=Path, default=None, help="the system's key (default ./.oms/auth-key.json)")
        return p

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", default=None, help="OrderService's base URL (default http://127.0.0.1:8000)")
        return with_token(p)

    def with_json(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print the service's JSON answer as it is, and nothing "
                       "else on standard output (errors go to standard error)")  # fmt: skip
        return p

    auth = commands.add_parser("auth", help="the system's signing key")
    auth_commands = auth.add_subparsers(dest="auth_command", required=True)
    init = auth_commands.add_parser("init", help="create the key file when missing (and print its path)")
    init.add_argument("--key-file", type=Path, default=None, help="default ./.oms/auth-key.json ($OMS_AUTH_KEY_FILE)")
    token = commands.add_parser("token", help="print a signed bearer token")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true", help="a token that may do everything")
    who.add_argument("--customer", metavar="ID", help="a customer's token: its own orders, and the catalog")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default %(default)s)")
    token.add_argument("--key-file", type=Path, default=None, help="default ./.oms/auth-key.json ($OMS_AUTH_KEY_FILE)")

    order = commands.add_parser("order", help="place or show one order")
    order_commands = order.add_subparsers(dest="order_command", required=True)
    place = with_json(with_url(order_commands.add_parser(
        "place", help="place an order and show how its saga went (exit 0 PLACED, 3 failed, 4 PENDING, 1 refused)",
        description="Place an order and show how its saga went.", epilog=PLACE_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )))  # fmt: skip
    place.add_argument("--item", action="append", type=_parse_item, required=True, metavar="SKU[:QUANTITY]",
                       help="a SKU and how many (a SKU alone: 1), e.g. WIDGET-1:2; repeatable")  # fmt: skip
    place.add_argument("--customer", default=None, help="the customer's id (default: a customer token's own "
                       f"customer, else {DEMO_CUSTOMER})")  # fmt: skip
    place.add_argument("--payment-method", default="pm_card_visa",
                       help="default %(default)s; declined: pm_card_chargeDeclined, "
                       "pm_card_chargeDeclinedInsufficientFunds")  # fmt: skip
    place.add_argument(
        "--key", help="Idempotency-Key: the same key and order again answers the first order (default: none)"
    )
    show = with_json(with_url(order_commands.add_parser("show", help="show an order and its saga log")))
    show.add_argument("order_id", help="the order's id, ord_... (oms orders lists them)")
    retry = with_url(order_commands.add_parser("retry", help="try a COMPENSATION_FAILED order's compensations again"))
    retry.add_argument("order_id", help="the order's id, ord_... (oms orders lists them)")
    cancel = with_url(order_commands.add_parser("cancel", help="cancel a PLACED order: refund it, release its stock"))
    cancel.add_argument("order_id", help="the order's id, ord_... (oms orders lists them)")
    diagram = with_url(
        order_commands.add_parser("diagram", help="print an order's sagas as a sequence diagram (sequencediagram.org)")
    )
    diagram.add_argument("order_id", help="the order's id, ord_... (oms orders lists them)")
    diagram.add_argument("--mermaid", action="store_true", help="as a Mermaid sequenceDiagram instead")

    orders = with_json(with_url(commands.add_parser("orders", help="list orders, newest first")))
    orders.add_argument("--status", type=str.upper, choices=STATUSES, metavar="STATUS",
                        help="only orders of this status (any case): " + ", ".join(STATUSES)
                        + " (default: all)")  # fmt: skip
    orders.add_argument("--limit", type=int, default=20, help="orders in the page, 1 to 1000 (default %(default)s)")
    orders.add_argument("--next", dest="cursor", help="the cursor a page before gave, to show the page after it")

    events = with_json(with_url(commands.add_parser(
        "events", help="show every change of an order's status, oldest first (--follow: and wait for more)"
    )))  # fmt: skip
    events.add_argument("--follow", action="store_true", help="once read, wait for new events until interrupted")
    events.add_argument("--type", dest="event_type", metavar="TYPE",
                        help="only events of this type, e.g. oms.order.placed (default: all)")  # fmt: skip
    events.add_argument("--order", dest="order_id", metavar="ID", help="only this order's events (default: all)")
    from oms.cli.webhooks import add_parser as add_webhooks_parser

    add_webhooks_parser(commands, with_url, with_json)

    breakers = with_json(
        with_url(commands.add_parser("breakers", help="show OrderService's circuit breakers, or switch one"))
    )
    breaker_commands = breakers.add_subparsers(dest="breakers_command")
    switch = with_url(
        breaker_commands.add_parser(
            "set", help="force a breaker open, disable it, or reset it to closed (on the OrderService at --url)"
        )
    )
    switch.add_argument("name", help="the downstream: inventory or payment")
    switch.add_argument("state", choices=("forced_open", "disabled", "closed"), help="the switch: %(choices)s")
    audit = with_json(
        with_url(commands.add_parser("audit", help="report where the three services disagree (exit 1 if any)"))
    )
    audit.add_argument("--inventory-url", help="InventoryService (default: where oms up started it, else "
                       "http://127.0.0.1:8001)")  # fmt: skip
    audit.add_argument("--payment-url", help="PaymentService (default: where oms up started it, else "
                       "http://127.0.0.1:8002)")  # fmt: skip
    audit.add_argument("--stuck-after", type=float, default=60.0,
                       help="seconds before a PENDING saga counts as stuck (default %(default)s)")  # fmt: skip
    bench = with_token(
        commands.add_parser("bench", help="drive the system with orders and report throughput and latency")
    )
    bench.add_argument("--spawn", action="store_true", help="start a system of its own in a temporary directory")
    bench.add_argument(
        "--url", default="http://127.0.0.1:8000", help="OrderService, without --spawn (default %(default)s)"
    )
    bench.add_argument(
        "--inventory-url", default="http://127.0.0.1:8001", help="InventoryService (default %(default)s)"
    )
    bench.add_argument("--payment-url", default="http://127.0.0.1:8002", help="PaymentService (default %(default)s)")
    bench.add_argument("-n", "--orders", type=_counted(1), default=2000, help="orders to send (default %(default)s)")
    bench.add_argument(
        "-c", "--concurrency", type=_counted(1), default=50, help="orders in flight at once (default %(default)s)"
    )
    bench.add_argument("--decline-rate", type=_share, default=0.0,
                       help="share of orders with a declined card (default %(default)s)")  # fmt: skip
    bench.add_argument("--out-of-stock-rate", type=_share, default=0.0,
                       help="share of orders for a sold-out SKU (default %(default)s)")  # fmt: skip
    bench.add_argument("--async", dest="respond_async", action="store_true", help="Prefer: respond-async")
    bench.add_argument(
        "--warmup", type=_counted(0), default=200, help="orders sent first and not counted (default %(default)s)"
    )
    bench.add_argument(
        "--inventory-down", action="store_true", help="with --spawn: kill InventoryService after the warm-up"
    )
    bench.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", type=_setting,
                       help="a setting for the spawned services, repeatable (default: none)")  # fmt: skip
    bench.add_argument("--clients-per-address", type=_counted(1), default=200,
                       help="on a loopback target, clients past this many connect from 127.0.1.1, 127.0.1.2, "
                       "...: a service takes max_connections_per_address from one (default %(default)s)")  # fmt: skip
    bench.add_argument("--flood", type=_counted(0), default=0, metavar="N",
                       help="measure the orders again while N slow connections from 127.0.0.2 (each sending the "
                       "start of a request, never the rest) are kept open to --flood-service (default %(default)s: "
                       "no such run)")  # fmt: skip
    bench.add_argument("--flood-service", choices=("order", "inventory", "payment"), default="order",
                       help="the service --flood aims at (default %(default)s)")  # fmt: skip
    bench.add_argument("--webhook", action="store_true",
                       help="run a webhook receiver, register it for every event before the measured run, and "
                       "report the delay from each status change to its delivery (default: off)")  # fmt: skip
    bench.add_argument("--nats", action="store_true",
                       help="with --spawn: run a nats-server for the system (OMS_NATS_URL) and report how many "
                       "events reached the stream (default: off)")  # fmt: skip
    bench.add_argument("--json", type=_new_file, help="write the figures to this file (default: none)")
    trace = with_url(commands.add_parser("trace", help="show an order's trace as a tree, from the services' "
                                         "logs (OTEL_TRACES_EXPORTER=console oms up)"))  # fmt: skip
    trace.add_argument("order_id", help="the order's id, ord_... (oms orders lists them)")
    trace.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    logs = commands.add_parser("logs", help="show what the services oms up started wrote to their logs")
    logs.add_argument(
        "service", nargs="?", choices=("order", "inventory", "payment"), help="one service (default: all three)"
    )
    logs.add_argument("--follow", "-f", action="store_true", help="and go on showing what they write (Ctrl-C stops)")
    logs.add_argument(
        "--lines", "-n", type=_counted(0), default=20, help="lines from the end of each log (default %(default)s)"
    )
    logs.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    seed = commands.add_parser("seed", help="put the demo catalog into InventoryService's database (SKUs it lacks)")
    seed.add_argument(
        "--database-url", help="sqlite:///PATH or postgresql+asyncpg://... (default SQLite DATA_DIR/inventory.db)"
    )
    seed.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    items = with_json(with_token(commands.add_parser("items", help="show InventoryService's stock")))
    items.add_argument("--url", default=None, help="InventoryService's base URL (default http://127.0.0.1:8001)")
    items.add_argument("--limit", type=int, default=100, help="items in the page, 1 to 1000 (default %(default)s)")
    items.add_argument("--next", dest="cursor", help="the cursor a page before gave, to show the page after it")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # With --json, standard output carries the service's JSON answer only: everything else goes to stderr.
    console = Console(stderr=getattr(args, "json", None) is True)
    if args.command in ("down", "status"):
        return _system_command(args, console)
    if args.command == "serve":
        settings = _settings(args, console)
        if settings is None:
            return 2
        import asyncio

        from oms.cli.database import Unreachable, reach
        from oms.serve import serve

        try:
            asyncio.run(reach(settings.database_url_for(args.service)))
        except Unreachable as exc:
            console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
            return 2

        serve(args.service, settings)
        return 0
    if args.command == "up":
        settings = _settings(args, console)
        if settings is None:
            return 2
        from oms.cli.launcher import up

        return up(
            args.data_dir or settings.data_dir,
            args.host,
            console,
            settings.auth_key_file,
            settings.log_format,
            port=args.order_port,
        )
    if args.command in ("auth", "token"):
        return _auth_command(args, console)
    if args.command == "logs":
        from oms.cli.logs import logs as show_logs

        settings = _settings(args, console)
        if settings is None:
            return 2
        return show_logs(console, settings.data_dir, args.service, lines=args.lines, follow=args.follow)
    if args.command == "seed":
        settings = _settings(args, console)
        if settings is None:
            return 2
        from oms.cli.seed import run

        return run(console, settings.database_url_for("inventory"))
    if args.command == "bench":
        from oms.cli.bench import Plan, bench

        plan = Plan(
            orders=args.orders,
            concurrency=args.concurrency,
            decline_rate=args.decline_rate,
            out_of_stock_rate=args.out_of_stock_rate,
            respond_async=args.respond_async,
            warmup=args.warmup,
            clients_per_address=args.clients_per_address,
            flood=args.flood,
            flood_service=args.flood_service,
            webhook=args.webhook,
            nats=args.nats,
        )
        if args.nats and not args.spawn:
            console.print("[red]--nats needs --spawn[/red]: it runs a nats-server for the system it starts")
            return 2
        urls = None
        if not args.spawn:
            urls = {"order": args.url, "inventory": args.inventory_url, "payment": args.payment_url}
        env = dict(args.env)
        token = None if args.spawn else caller_token(args)
        from oms.cli.broker import BrokerError

        try:
            bench(
                console, plan, urls=urls, spawn_env=env, json_path=args.json, inventory_down=args.inventory_down,
                token=token,
            )  # fmt: skip
        except BrokerError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
        return 0
    return _client_command(args, console)


def _system_command(args: argparse.Namespace, console: Console) -> int:
    """``oms down`` and ``oms status``: the system whose pid files are in the data dir."""
    from oms.auth.keys import KeyFileError, load_key
    from oms.auth.tokens import admin_token
    from oms.cli.launcher import down, status
    from oms.cli.supervisor import SERVICES
    from oms.db import database_label

    settings = _settings(args, console)
    if settings is None:
        return 2
    try:
        token: str | None = admin_token(load_key(settings.key_file()), ttl=300)
    except KeyFileError:
        token = None
    if args.command == "down":
        return down(settings.data_dir, console, token, timeout=args.timeout)
    databases = {name: database_label(settings.database_url_for(name)) for name in SERVICES}
    return status(settings.data_dir, console, token, databases, settings.host)


def _local_url(service: str) -> str:
    """Where ``oms up`` started ``service`` from the data dir ($OMS_DATA_DIR, else ./.oms): a client
    command's default URL."""
    from oms.cli.launcher import ports_of

    return f"http://127.0.0.1:{ports_of(Settings.model_validate({}).data_dir)[service]}"


def _key_file(args: argparse.Namespace) -> Path:
    given: Path | None = getattr(args, "key_file", None)
    return given if given is not None else Settings.model_validate({}).key_file()


def _auth_command(args: argparse.Namespace, console: Console) -> int:
    from oms.auth.keys import KeyFileError, ensure_key, load_key
    from oms.auth.tokens import admin_token, customer_token

    path = _key_file(args)
    if args.command == "auth":
        created = ensure_key(path)
        print(path.resolve())
        if created:
            console.print("created (mode 0600); give this file to every service of the system", style="dim")
        else:
            console.print("already there: kept as it is (tokens it signed stay valid)", style="dim")
        return 0
    try:
        key = load_key(path)
    except KeyFileError as exc:
        console.print(f"[red]{exc}[/red] (create one with: oms auth init)")
        return 2
    print(admin_token(key, args.ttl) if args.admin else customer_token(key, args.customer, args.ttl))
    return 0


def caller_token(args: argparse.Namespace) -> str | None:
    """--token, else $OMS_TOKEN, else an admin token minted from the key file, if there is one."""
    if getattr(args, "token", None):
        return str(args.token)
    if os.environ.get("OMS_TOKEN"):
        return os.environ["OMS_TOKEN"]
    from oms.auth.keys import KeyFileError, load_key
    from oms.auth.tokens import admin_token

    try:
        return admin_token(load_key(_key_file(args)), ttl=300)
    except KeyFileError:
        return None


def _client_command(args: argparse.Namespace, console: Console) -> int:
    from oms.cli import console as views

    views.TOKEN = caller_token(args)
    as_json: bool = getattr(args, "json", False) is True

    if args.command == "items":
        query = urlencode({"limit": args.limit, **({"next": args.cursor} if args.cursor else {})})
        answer = views.fetch(console, "GET", (args.url or _local_url("inventory")).rstrip("/") + "/items?" + query)
        if answer is not None:
            if as_json:
                views.print_json(answer)
            else:
                views.print_items(console, answer.body)
        return 0 if answer is not None else 1
    base = (args.url or _local_url("order")).rstrip("/")
    if args.command == "audit":
        urls = (base, (args.inventory_url or _local_url("inventory")).rstrip("/"),
                (args.payment_url or _local_url("payment")).rstrip("/"))  # fmt: skip
        return views.audit(console, *urls, args.stuck_after, as_json=as_json)
    if args.command == "webhooks":
        from oms.cli.webhooks import webhooks

        return webhooks(console, base, args, as_json=as_json)
    if args.command == "events":
        from oms.cli.events import events

        return events(console, base, follow=args.follow, type_=args.event_type, order_id=args.order_id, as_json=as_json)
    if args.command == "trace":
        from oms.cli.trace import show

        settings = _settings(args, console)
        answer = views.fetch(console, "GET", f"{base}/orders/{args.order_id}")
        if answer is None or settings is None:
            return 1
        return show(console, answer.body, settings.data_dir)
    if args.command == "orders":
        wanted = {"limit": args.limit, "status": args.status, "next": args.cursor}
        query = urlencode({name: value for name, value in wanted.items() if value is not None})
        answer = views.fetch(console, "GET", base + "/orders?" + query)
        if answer is not None:
            if as_json:
                views.print_json(answer)
            else:
                views.print_orders(console, answer.body)
    elif args.command == "breakers" and args.breakers_command == "set":
        answer = views.fetch(console, "POST", f"{base}/breakers/{args.name}", {"state": args.state})
        if answer is not None:
            views.print_breakers(console, {args.name: answer.body})
    elif args.command == "breakers":
        answer = views.fetch(console, "GET", base + "/breakers")
        if answer is not None:
            if as_json:
                views.print_json(answer)
            else:
                views.print_breakers(console, answer.body)
    elif args.order_command == "diagram":
        query = "?format=mermaid" if args.mermaid else ""
        answer = views.fetch(console, "GET", f"{base}/orders/{args.order_id}/diagram{query}")
        if answer is not None:
            sys.stdout.write(str(answer.body))  # as it is: no markup, no wrapping
    elif args.order_command in ("show", "retry", "cancel"):
        method, path = ("GET", "") if args.order_command == "show" else ("POST", f"/{args.order_command}")
        answer = views.fetch(console, method, f"{base}/orders/{args.order_id}{path}")
        if answer is not None:
            if as_json:
                views.print_json(answer)
            else:
                views.print_order(console, answer.body)
    else:
        return _place(args, console, base, as_json)
    return 0 if answer is not None else 1


def _place(args: argparse.Namespace, console: Console, base: str, as_json: bool) -> int:
    """``oms order place``: the exit code says how the order ended (PLACE_EXIT_CODES)."""
    from oms.auth.tokens import customer_of
    from oms.cli import console as views

    customer = args.customer or customer_of(views.TOKEN) or DEMO_CUSTOMER
    body = {"customer_id": customer, "items": args.item, "payment_method": args.payment_method}
    headers = {"Idempotency-Key": args.key} if args.key else None
    answer = views.fetch(console, "POST", base + "/orders", body, headers)
    if answer is None:
        return 1
    replayed = answer.headers.get("idempotent-replayed", "").lower() == "true"
    if as_json:
        views.print_json(answer)
        if replayed:
            console.print("replayed: the order this Idempotency-Key made before (Idempotent-Replayed: true)")
    else:
        views.print_order(console, answer.body, replayed=replayed)
    return views.place_exit_code(str(answer.body.get("status")))


if __name__ == "__main__":
    sys.exit(main())
