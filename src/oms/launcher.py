"""Running the services: ``oms serve`` (one service in this process) and ``oms up`` (all three)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import admin_token
from oms.config import DEFAULT_PORTS, Settings

SERVICES = ("inventory", "payment", "order")

DEMO_CATALOG = [
    {"sku": "WIDGET-1", "name": "Widget", "unit_price": 1999, "currency": "USD", "available": 100},
    {"sku": "GADGET-1", "name": "Gadget", "unit_price": 4999, "currency": "USD", "available": 25},
    {"sku": "GIZMO-1", "name": "Gizmo", "unit_price": 999, "currency": "USD", "available": 10},
    {
        "sku": "LAST-ONE",
        "name": "The last one in stock",
        "unit_price": 2500,
        "currency": "USD",
        "available": 1,
    },
]


def create_app(service: str, settings: Settings) -> Any:
    """The service's ASGI app; with tracing on (``oms.tracing``), a server span around each request."""
    from oms.tracing import setup

    app = _service_app(service, settings)
    tracing = setup(service)
    return app if tracing is None else tracing.middleware(app)


def _service_app(service: str, settings: Settings) -> Any:
    if service == "order":
        from oms.orders.api import create_app as order_app

        return order_app(settings)
    if service == "inventory":
        from oms.inventory.api import create_app as inventory_app

        return inventory_app(settings)
    from oms.payments.api import create_app as payment_app

    return payment_app(settings)


def app_from_environment() -> Any:
    """For ``--workers``: each worker process builds its app from the OMS_* environment."""
    from oms.logs import configure
    from oms.server import set_limits

    settings = Settings.model_validate({})
    configure(settings.log_level, settings.log_format, os.environ["OMS_SERVICE"])
    set_limits(settings)
    return create_app(os.environ["OMS_SERVICE"], settings)


def serve(service: str, settings: Settings) -> None:
    import uvicorn

    from oms.logs import configure
    from oms.server import BoundedHttpToolsProtocol, set_limits

    configure(settings.log_level, settings.log_format, service)
    set_limits(settings)  # before the app: each connection reads them when it opens
    app: Any
    if settings.workers == 1:
        app = create_app(service, settings)
    else:
        # Workers are new processes: they read the settings (flags included) from the environment.
        for name, value in settings.model_dump(exclude_none=True).items():
            os.environ[f"OMS_{name.upper()}"] = str(value)
        os.environ["OMS_SERVICE"] = service
        os.environ["OMS_MAIN_PID"] = str(os.getpid())
        app = "oms.launcher:app_from_environment"
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port_for(service),
        loop="uvloop",
        http=BoundedHttpToolsProtocol,  # httptools, with a header-size limit and a per-request deadline
        log_level=settings.log_level,
        log_config=None,  # its loggers reach the root logger, whose handler oms.logs set up: one format
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes] | None,
    timeout: float = 30.0,
    service: str | None = None,
    token: str | None = None,
) -> bool:
    """True once ``url`` answers /health, as ``service`` when given (which needs an admin ``token``:
    only an admin is told which service answers): another process that happens to listen on that port
    (the new one could not bind it) is not mistaken for it."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url + "/health", headers={"authorization": f"Bearer {token}"} if token else {})
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    body = orjson.loads(response.read())
                    if service is None or body.get("service") == service:
                        return True
        except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
            pass
        time.sleep(0.1)
    return False


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (all held open together while chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            if response.headers.get_content_maintype() == "text":  # a diagram: the text itself
                return response.status, raw.decode(response.headers.get_content_charset() or "utf-8")
            return response.status, (orjson.loads(raw) if raw else None)
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error.code, {"detail": raw.decode(errors="replace")}


def seed_demo_catalog(inventory_url: str, token: str) -> bool:
    """Put the demo catalog into an empty InventoryService. True when it did."""
    status, items = http_json("GET", inventory_url + "/items?limit=1", token=token)
    if status != 200 or (items["items"] if isinstance(items, dict) else items):
        return False
    for item in DEMO_CATALOG:
        body = {k: v for k, v in item.items() if k != "sku"}
        http_json("PUT", f"{inventory_url}/items/{item['sku']}", body, token=token)
    return True


DASHBOARD_TTL = 24 * 3600
"""Seconds the dashboard's log-in link (an admin token) stays valid: a working day and then some."""


def dashboard_link(order_url: str, key: SigningKey, ttl: int = DASHBOARD_TTL) -> str:
    """The dashboard's log-in link, as ``oms up`` prints it: OrderService's ``/`` with an admin
    token, which the page trades for a session cookie (and drops from the address bar)."""
    return f"{order_url}/?token={admin_token(key, ttl)}"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def up(data_dir: Path, host: str, console: Console, key_file: Path | None = None, log_format: str | None = None) -> int:
    # Explicit handlers: a shell may start us with SIGINT ignored, and a supervisor sends SIGTERM.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    data_dir.mkdir(parents=True, exist_ok=True)
    urls = {name: f"http://{host}:{DEFAULT_PORTS[name]}" for name in SERVICES}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    key_file = (key_file or data_dir / "auth-key.json").resolve()
    if ensure_key(key_file):
        console.print(f"Created the system's signing key: {key_file}")
    token = admin_token(load_key(key_file))
    env = {**os.environ, "OMS_DATA_DIR": str(data_dir.resolve()), "OMS_AUTH_KEY_FILE": str(key_file)}
    env.setdefault("OMS_INVENTORY_URL", urls["inventory"])
    env.setdefault("OMS_PAYMENT_URL", urls["payment"])
    try:
        for name in SERVICES:
            command = [sys.executable, "-m", "oms", "serve", name, "--host", host]
            if log_format is not None:
                command += ["--log-format", log_format]
            processes[name] = subprocess.Popen(command, env=env)
            if not wait_healthy(urls[name], processes[name], service=name, token=token):
                console.print(f"[red]{name} service did not start (is port {DEFAULT_PORTS[name]} in use?)[/red]")
                return 1
            (data_dir / f"{name}.pid").write_text(f"{processes[name].pid}\n")
            # Seeded before OrderService starts, so its first catalog sync already has fallback data.
            if name == "inventory" and seed_demo_catalog(urls["inventory"], token):
                console.print("Seeded the demo catalog: " + ", ".join(str(i["sku"]) for i in DEMO_CATALOG))
        table = Table(title="oms is up")
        for column in ("service", "url", "pid", "database"):
            table.add_column(column)
        for name in ("order", "inventory", "payment"):
            table.add_row(name, urls[name], str(processes[name].pid), str((data_dir / f"{name}.db").resolve()))
        console.print(table)
        console.print(f"Signing key: {key_file} (every oms command mints its admin token from it)")
        # Printed whole, never wrapped: the terminal's link must hold all of the token.
        print(f"dashboard: {dashboard_link(urls['order'], load_key(key_file))}", flush=True)
        console.print(f"(an admin token, valid {DASHBOARD_TTL // 3600} h: keep the link to yourself)", style="dim")
        console.print("Try: oms order place --item WIDGET-1:2    ·    Ctrl-C stops all three.")
        # A service that dies (or is killed to try the circuit breaker) leaves the others running.
        reported: set[str] = set()
        while len(reported) < len(processes):
            for name, process in processes.items():
                if name not in reported and process.poll() is not None:
                    reported.add(name)
                    console.print(
                        f"[yellow]{name} service exited ({process.returncode}); the others keep running. "
                        f"Start it again with: oms serve {name} --data-dir {data_dir}[/yellow]"
                    )
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        console.print("Stopping…")
        return 0
    finally:
        stop(list(processes.values()))


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()
