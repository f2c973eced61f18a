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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich import box
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
    """The service's ASGI app: its routes behind the Gate (which makes a server span per request
    when tracing is on)."""
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


def pid_file(data_dir: Path, name: str) -> Path:
    """Where a process of the system writes its pid: ``<data_dir>/<name>.pid`` (name: a service, or ``up``)."""
    return data_dir / f"{name}.pid"


def read_pid(path: Path) -> int | None:
    """The pid in a pid file; None when there is no file or it holds no number."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc: kill(pid, 0) is all there is


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def claim_pid_file(path: Path, pid: int) -> bool:
    """Write ``pid`` to ``path`` unless it holds another live process's pid (a replica's, say). True when written."""
    held = read_pid(path)
    if held is not None and held != pid and alive(held):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")
    return True


def release_pid_file(path: Path, pid: int) -> None:
    """Remove ``path`` if it still holds ``pid``."""
    if read_pid(path) == pid:
        path.unlink(missing_ok=True)


def serve(service: str, settings: Settings) -> None:
    """Run ``service`` until it is stopped; its pid is in ``<data_dir>/<service>.pid`` meanwhile."""
    pid = os.getpid()
    path = pid_file(settings.data_dir, service)
    # SIGTERM is a clean stop, even before uvicorn takes the signal over (and uvicorn raises it again
    # once it has shut down): exit 0 through the ``finally`` below, instead of dying of it.
    signal.signal(signal.SIGTERM, _stopped)
    claimed = claim_pid_file(path, pid)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the same clean stop
            _serve(service, settings)
    finally:
        if claimed:
            release_pid_file(path, pid)


def _serve(service: str, settings: Settings) -> None:
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
        os.environ.update(settings.environment())
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


@dataclass(frozen=True)
class Answer:
    """A service's answer: its status, its body (decoded JSON, or the text of a text answer), the body's
    bytes as sent, and its headers (names in lower case)."""

    status: int
    body: Any
    raw: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def http_call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = None
) -> Answer:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            names = {name.lower(): value for name, value in response.headers.items()}
            if response.headers.get_content_maintype() == "text":  # a diagram: the text itself
                text = raw.decode(response.headers.get_content_charset() or "utf-8")
                return Answer(response.status, text, raw, names)
            return Answer(response.status, orjson.loads(raw) if raw else None, raw, names)
    except urllib.error.HTTPError as error:
        raw = error.read()
        names = {name.lower(): value for name, value in error.headers.items()}
        try:
            return Answer(error.code, orjson.loads(raw), raw, names)
        except orjson.JSONDecodeError:
            return Answer(error.code, {"detail": raw.decode(errors="replace")}, raw, names)


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = None
) -> tuple[int, Any]:
    answer = http_call(method, url, body, headers, token)
    return answer.status, answer.body


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


def light_table(title: str) -> Table:
    """A table as the command line draws them (``oms.console.table``): light lines, no frame."""
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


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


def health(url: str, token: str | None) -> dict[str, Any] | None:
    """What ``url``/health answers; ``{}`` when something listens there but does not answer it; None
    when nothing listens."""
    request = urllib.request.Request(url + "/health", headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            body = orjson.loads(response.read())
            return body if isinstance(body, dict) else {}
    except urllib.error.HTTPError:
        return {}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None if isinstance(reason, ConnectionRefusedError) else {}
    except orjson.JSONDecodeError:
        return {}


def look(data_dir: Path, host: str, token: str | None, ports: Mapping[str, int] = DEFAULT_PORTS) -> list[Seen]:
    """Each service of the system in ``data_dir``: order, inventory, payment (the order ``oms down`` stops them)."""
    address = "127.0.0.1" if host in ("0.0.0.0", "") else host  # where to knock, not where to listen
    seen = []
    for name in ("order", "inventory", "payment"):
        pid = read_pid(pid_file(data_dir, name))
        answer = health(f"http://{address}:{ports[name]}", token)
        seen.append(Seen(name, ports[name], pid, pid is not None and alive(pid), answer))
    return seen


def supervisor(data_dir: Path) -> int | None:
    """The pid of the ``oms up`` running for ``data_dir``, if one is."""
    pid = read_pid(pid_file(data_dir, "up"))
    return pid if pid is not None and alive(pid) else None


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
    up_pid = supervisor(data_dir)
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
            "(it does not answer /health as this system's service)"
        )
    console.print("Nothing was started. See it with: oms status · stop it with: oms down")
    return True


def up(data_dir: Path, host: str, console: Console, key_file: Path | None = None, log_format: str | None = None) -> int:
    urls = {name: f"http://{host}:{DEFAULT_PORTS[name]}" for name in SERVICES}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    key_file = (key_file or data_dir / "auth-key.json").resolve()
    # Looked at before anything is written: without a key yet, no service can answer as this system's.
    seen = look(data_dir, host, admin_token(load_key(key_file)) if key_file.exists() else None)
    if _already_running(data_dir, seen, console):
        return 1
    clean_stale(data_dir, seen, console)
    data_dir.mkdir(parents=True, exist_ok=True)
    if ensure_key(key_file):
        console.print(f"Created the system's signing key: {key_file}")
    token = admin_token(load_key(key_file))
    # Explicit handlers: a shell may start us with SIGINT ignored, and a supervisor (or oms down) sends SIGTERM.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    own = pid_file(data_dir, "up")
    claim_pid_file(own, os.getpid())
    env = {**os.environ, "OMS_DATA_DIR": str(data_dir.resolve()), "OMS_AUTH_KEY_FILE": str(key_file)}
    env.setdefault("OMS_INVENTORY_URL", urls["inventory"])
    env.setdefault("OMS_PAYMENT_URL", urls["payment"])
    try:
        for name in SERVICES:
            command = [sys.executable, "-m", "oms", "serve", name, "--host", host]
            if log_format is not None:
                command += ["--log-format", log_format]
            processes[name] = subprocess.Popen(command, env=env)  # it writes its own pid file
            if not wait_healthy(urls[name], processes[name], service=name, token=token):
                console.print(f"[red]{name} service did not start (is port {DEFAULT_PORTS[name]} in use?)[/red]")
                return 1
            # Seeded before OrderService starts, so its first catalog sync already has fallback data.
            if name == "inventory" and seed_demo_catalog(urls["inventory"], token):
                console.print("Seeded the demo catalog: " + ", ".join(str(i["sku"]) for i in DEMO_CATALOG))
        table = light_table("oms is up")
        for column in ("service", "url", "pid", "database"):
            table.add_column(column, overflow="fold", min_width=len("inventory") if column == "service" else None)
        for name in ("order", "inventory", "payment"):
            table.add_row(name, urls[name], str(processes[name].pid), str((data_dir / f"{name}.db").resolve()))
        console.print(table)
        console.print(f"Signing key: {key_file} (every oms command mints its admin token from it)")
        # Printed whole, never wrapped: the terminal's link must hold all of the token.
        print(f"dashboard: {dashboard_link(urls['order'], load_key(key_file))}", flush=True)
        console.print(f"(an admin token, valid {DASHBOARD_TTL // 3600} h: keep the link to yourself)", style="dim")
        console.print("Try: oms order place --item WIDGET-1:2    ·    Ctrl-C (or oms down) stops all three.")
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
        for name, process in processes.items():  # a service killed (not stopped cleanly) left its file
            release_pid_file(pid_file(data_dir, name), process.pid)
        release_pid_file(own, os.getpid())


def down(data_dir: Path, console: Console, token: str | None, host: str = "127.0.0.1", timeout: float = 30.0) -> int:
    """Stop the system running from ``data_dir``: SIGTERM to ``oms up`` (which stops its services), then to
    any service still running from a pid file (one started with ``oms serve``); SIGKILL after ``timeout``."""
    seen = look(data_dir, host, token)
    clean_stale(data_dir, seen, console)
    targets = [(name, pid) for name, pid in [("oms up", supervisor(data_dir))] if pid is not None]
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


def database_label(url: str) -> str:
    """A database URL as ``oms status`` shows it: a SQLite file's path, any other URL without its password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")  # sqlite:////abs/path: /abs/path
    scheme, sep, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if sep and at and ":" in credentials:
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{place}"
    return url


def status(data_dir: Path, console: Console, token: str | None, databases: Mapping[str, str], host: str) -> int:
    """``oms status``: each service up or down, its pid, port and database. 0 when all three are up."""
    seen = look(data_dir, host, token)
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
        table.add_row(service.name, state, str(pid) if pid else "-", str(service.port), databases[service.name])
    console.print(table)
    up_pid = supervisor(data_dir)
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
