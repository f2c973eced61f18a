"""``oms up`` (the three services, until Ctrl-C or ``oms down``), ``oms down`` and ``oms status``: the
system whose pid files are in the data dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import admin_token
from oms.cli.console import light_table
from oms.cli.supervisor import SERVICES, ServiceFailed, Supervisor, free_ports, health
from oms.config import DEFAULT_PORTS
from oms.files import private_dir
from oms.pidfile import alive, claim_pid_file, pid_file, read_pid, release_pid_file
from oms.sync_http import http_json

DEMO_CATALOG: list[dict[str, Any]] = [
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


@dataclass(frozen=True)
class Seen:
    """One service of the system as ``oms up``, ``oms down`` and ``oms status`` find it: its pid file
    and what answers on its port."""

    name: str
    port: int
    pid: int | None
    """The pid in its pid file, if any."""
    pid_alive: bool
    answer: dict[str, Any] | None
    """What its port's /health answered (an admin is told the service and its pid); None: nothing listens."""

    @property
    def serving(self) -> bool:
        """Its port answers as this service of this system (which only an admin token of its key learns)."""
        return self.answer is not None and self.answer.get("service") == self.name

    @property
    def running(self) -> bool:
        return self.pid_alive or self.serving

    @property
    def stale(self) -> bool:
        """A pid file whose process is gone."""
        return self.pid is not None and not self.pid_alive

    @property
    def taken(self) -> bool:
        """Its port answers, but not as this service: another program, or another system's."""
        return self.answer is not None and not self.serving

    @property
    def live_pid(self) -> int | None:
        if self.pid_alive:
            return self.pid
        if self.serving and self.answer is not None:
            return int(self.answer.get("main_pid", self.answer.get("pid", 0))) or None
        return None


def look(data_dir: Path, host: str, token: str | None, ports: Mapping[str, int] = DEFAULT_PORTS) -> list[Seen]:
    """Each service of the system in ``data_dir``: order, inventory, payment (the order ``oms down`` stops them)."""
    address = "127.0.0.1" if host in ("0.0.0.0", "") else host  # where to knock, not where to listen
    seen = []
    for name in ("order", "inventory", "payment"):
        pid = read_pid(pid_file(data_dir, name))
        answer = health(f"http://{address}:{ports[name]}", token)
        seen.append(Seen(name, ports[name], pid, pid is not None and alive(pid), answer))
    return seen


def running_up(data_dir: Path) -> int | None:
    """The pid of the ``oms up`` running for ``data_dir``, if one is."""
    pid = read_pid(pid_file(data_dir, "up"))
    return pid if pid is not None and alive(pid) else None


PORTS_FILE = "ports.json"
"""In the data dir: the ports ``oms up`` started the services on, for ``oms status``, ``oms down`` and the
client commands to find them."""


def ports_from(order_port: int) -> dict[str, int]:
    """OrderService on ``order_port``, InventoryService and PaymentService on the next two; ``0``: any
    three free ports."""
    if order_port == 0:
        return dict(zip(("order", "inventory", "payment"), free_ports(3), strict=True))
    return {"order": order_port, "inventory": order_port + 1, "payment": order_port + 2}


def ports_of(data_dir: Path) -> dict[str, int]:
    """The ports ``oms up`` last used for ``data_dir``'s system; the default ones if it never ran there."""
    try:
        recorded = json.loads((data_dir / PORTS_FILE).read_text())
        return {name: int(recorded[name]) for name in DEFAULT_PORTS}
    except (OSError, ValueError, KeyError, TypeError):
        return dict(DEFAULT_PORTS)


def _record_ports(data_dir: Path, ports: Mapping[str, int]) -> None:
    path = data_dir / PORTS_FILE
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        json.dump(dict(ports), file)


def clean_stale(data_dir: Path, seen: list[Seen], console: Console) -> None:
    """Remove the pid files whose process is gone, saying so."""
    for service in seen:
        if service.stale and service.pid is not None:
            path = pid_file(data_dir, service.name)
            release_pid_file(path, service.pid)
            console.print(f"removed a stale pid file: {path} (pid {service.pid} is not running)")
    up_pid = read_pid(pid_file(data_dir, "up"))
    if up_pid is not None and not alive(up_pid):
        release_pid_file(pid_file(data_dir, "up"), up_pid)


def _already_running(data_dir: Path, seen: list[Seen], console: Console) -> bool:
    """Say so and answer True when any of the system is running, or another program holds one of its ports."""
    running = [s for s in seen if s.running]
    taken = [s for s in seen if s.taken and not s.running]
    up_pid = running_up(data_dir)
    if not running and not taken and up_pid is None:
        return False
    if running or up_pid is not None:
        console.print(f"[red]oms is already running[/red] (data dir {data_dir.resolve()}):")
        if up_pid is not None:
            console.print(f"  oms up     pid {up_pid}")
        for service in running:
            pid = service.live_pid
            answers = "answering" if service.serving else "not answering on its port"
            console.print(f"  {service.name:<10} pid {pid if pid else '?'}  port {service.port}  {answers}")
    for service in taken:
        console.print(
            f"[red]port {service.port} ({service.name}) is in use by another program[/red] "
            "(or by another oms system: it does not answer /health as this system's service)"
        )
    if running or up_pid is not None:
        console.print("Nothing was started. See it with: oms status · stop it with: oms down")
    else:  # not this data dir's: oms down here would find nothing to stop
        console.print(
            "Nothing was started. Stop what holds the port where it runs (another oms system: oms down "
            "--data-dir ITS_DIR), then oms up again."
        )
    return True


def up(
    data_dir: Path,
    host: str,
    console: Console,
    key_file: Path | None = None,
    log_format: str | None = None,
    port: int | None = None,
) -> int:
    """``port``: OrderService's (the two others on the next two; 0: any free ones); ``None``: the
    ports of the system running from ``data_dir`` if one is (to say so), else 8000 to 8002."""
    key_file = (key_file or data_dir / "auth-key.json").resolve()
    if port is not None:
        ports = ports_from(port)
    else:
        ports = ports_of(data_dir) if running_up(data_dir) is not None else dict(DEFAULT_PORTS)
    # Looked at before anything is written: without a key yet, no service can answer as this system's.
    seen = look(data_dir, host, admin_token(load_key(key_file)) if key_file.exists() else None, ports)
    if _already_running(data_dir, seen, console):
        return 1
    clean_stale(data_dir, seen, console)
    private_dir(data_dir)
    if ensure_key(key_file):
        console.print(f"Created the system's signing key: {key_file}")
    # OrderService calls the two others where they listen, unless the environment says otherwise.
    wiring = {name: os.environ[name] for name in ("OMS_INVENTORY_URL", "OMS_PAYMENT_URL") if name in os.environ}
    services = Supervisor(
        data_dir, env=wiring, key_file=key_file, ports=ports, host=host,
        args=["--log-format", log_format] if log_format is not None else [], log_files=True,
    )  # fmt: skip
    # Explicit handlers: a shell may start us with SIGINT ignored, and a supervisor (or oms down) sends SIGTERM.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    own = pid_file(data_dir, "up")
    claim_pid_file(own, os.getpid())
    _record_ports(data_dir, ports)
    try:
        for name in SERVICES:
            try:
                services.start(name)  # it writes its own pid file
            except ServiceFailed:
                console.print(f"[red]{name} service did not start (is port {ports[name]} in use?)[/red]")
                return 1
            # Seeded before OrderService starts, so its first catalog sync already has fallback data.
            if name == "inventory" and seed_demo_catalog(services.url("inventory"), services.token):
                console.print("Seeded the demo catalog: " + ", ".join(str(i["sku"]) for i in DEMO_CATALOG))
        table = light_table("oms is up")
        for column in ("service", "url", "pid", "database"):
            table.add_column(column, overflow="fold", min_width=len("inventory") if column == "service" else None)
        for name in ("order", "inventory", "payment"):
            pid = services.processes[name].pid
            table.add_row(name, services.url(name), str(pid), str((data_dir / f"{name}.db").resolve()))
        console.print(table)
        console.print(f"Signing key: {key_file} (every oms command mints its admin token from it)")
        # Printed whole, never wrapped: the terminal's link must hold all of the token.
        print(f"dashboard: {dashboard_link(services.url('order'), services.key)}", flush=True)
        console.print(f"(an admin token, valid {DASHBOARD_TTL // 3600} h: keep the link to yourself)", style="dim")
        console.print(f"Logs: {data_dir.resolve()}/SERVICE.log (see them with: oms logs [SERVICE] [--follow])")
        console.print("Try: oms order place --item WIDGET-1:2    ·    Ctrl-C (or oms down) stops all three.")
        # A service that dies (or is killed to try the circuit breaker) leaves the others running.
        reported: set[str] = set()
        while len(reported) < len(services.processes):
            for name, code in services.exited().items():
                if name not in reported:
                    reported.add(name)
                    console.print(
                        f"[yellow]{name} service exited ({code}); the others keep running. "
                        f"Start it again with: oms serve {name} --data-dir {data_dir}[/yellow]"
                    )
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        console.print("Stopping…")
        return 0
    finally:
        services.stop()  # a service killed (not stopped cleanly) has its file removed
        release_pid_file(own, os.getpid())


def down(data_dir: Path, console: Console, token: str | None, host: str = "127.0.0.1", timeout: float = 30.0) -> int:
    """Stop the system running from ``data_dir``: SIGTERM to ``oms up`` (which stops its services), then to
    any service still running from a pid file (one started with ``oms serve``); SIGKILL after ``timeout``."""
    seen = look(data_dir, host, token, ports_of(data_dir))
    clean_stale(data_dir, seen, console)
    targets = [(name, pid) for name, pid in [("oms up", running_up(data_dir))] if pid is not None]
    targets += [(s.name, s.pid) for s in seen if s.pid_alive and s.pid is not None]
    if not targets:
        serving = [s for s in seen if s.serving]
        console.print(f"oms is not running: no live pid in {data_dir.resolve()}/*.pid")
        for service in serving:
            console.print(f"[yellow]{service.name} answers on port {service.port}, started without a pid file "
                          f"here[/yellow] (pid {service.live_pid}): stop it where it runs")  # fmt: skip
        return 0
    deadline = time.monotonic() + timeout
    for name, pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if name == "oms up":  # it stops its services in their order; give it the time to
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    for name, pid in targets:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            console.print(f"[yellow]killed {name} (pid {pid}): it did not stop within {timeout:.0f} s[/yellow]")
        else:
            console.print(f"stopped {name} (pid {pid})")
        if name != "oms up":
            release_pid_file(pid_file(data_dir, name), pid)
    return 0


def status(data_dir: Path, console: Console, token: str | None, databases: Mapping[str, str], host: str) -> int:
    """``oms status``: each service up or down, its pid, port and database. 0 when all three are up."""
    seen = look(data_dir, host, token, ports_of(data_dir))
    table = light_table(f"oms in {data_dir.resolve()}")
    for column in ("service", "state", "pid", "port", "database"):
        table.add_column(column, overflow="fold", min_width=len("inventory") if column == "service" else None)
    for service in seen:
        if service.serving:
            state = "[green]up[/green]"
        elif service.pid_alive:
            state = "[yellow]not answering[/yellow]"
        elif service.taken:
            state = "[red]port taken[/red]"
        elif service.stale:
            state = "[red]down[/red] [yellow](stale pid file)[/yellow]"
        else:
            state = "[red]down[/red]"
        pid = service.live_pid or service.pid
        # The database it runs on, as it says; the one it would run on, by this command's settings, when down.
        database = (service.answer or {}).get("database") if service.serving else None
        table.add_row(
            service.name, state, str(pid) if pid else "-", str(service.port), database or databases[service.name]
        )
    console.print(table)
    up_pid = running_up(data_dir)
    if up_pid is not None:
        console.print(f"started by oms up (pid {up_pid}); stop it with: oms down")
    for service in seen:
        if service.stale:
            console.print(
                f"[yellow]stale pid file[/yellow]: {pid_file(data_dir, service.name)} holds pid {service.pid}, "
                "which is not running (oms up and oms down remove it)"
            )
    if token is None:
        console.print("[yellow]no key file: a service answering cannot tell which it is[/yellow]")
    return 0 if all(s.serving for s in seen) else 1
