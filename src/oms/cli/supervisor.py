"""One process supervisor for the three services, shared by ``oms up``, ``oms bench --spawn`` and the
end-to-end tests: it starts each service as ``python -m oms serve`` with the system's environment,
waits until the service answers ``/health`` as itself, kills one on demand (SIGKILL, as in a crash),
and stops them all cleanly (SIGTERM, OrderService first; SIGKILL for what did not stop in time).

Each service writes and removes its own pid file (``<data_dir>/<service>.pid``, ``oms.serve``); the
supervisor only removes the file of one it had to kill."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

import httpx

from oms.auth.keys import SigningKey, ensure_key, load_key
from oms.auth.tokens import admin_token
from oms.errors import OmsError
from oms.files import append_private
from oms.pidfile import pid_file, release_pid_file
from oms.sync_http import http_call

SERVICES = ("inventory", "payment", "order")
"""The order they start in: OrderService last, once the services it calls answer."""


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


def health(url: str, token: str | None, timeout: float = 2.0) -> dict[str, Any] | None:
    """What ``url``/health answers; ``{}`` when something listens there but does not answer it; None
    when nothing listens. Only an admin ``token`` is told which service answers, and its pid."""
    try:
        # A connection of its own (closed after): a kept one could be to a process since killed, and
        # its broken connection would read as "something listens there".
        answer = http_call("GET", url + "/health", None, {"connection": "close"}, token, timeout)
    except ConnectionError as exc:
        return None if isinstance(exc.__cause__, httpx.ConnectError) else {}
    return answer.body if answer.status == 200 and isinstance(answer.body, dict) else {}


class ServiceFailed(OmsError, RuntimeError):
    """A service that exited, or did not answer ``/health`` as itself, before its deadline."""

    def __init__(self, name: str, returncode: int | None, log: Path | None) -> None:
        self.name = name
        self.returncode = returncode
        self.log = log
        said = f"exited ({returncode})" if returncode is not None else "did not become healthy"
        tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        super().__init__(f"{name} {said}" + (f": see {log}\n{tail}" if log is not None else ""))


class Supervisor:
    """The services of one system (``data_dir``, its key file), each a process of its own.

    ``ports``: each service's port (default: free ones); ``host``: the address they listen on (default:
    theirs, ``$OMS_HOST`` else 127.0.0.1); ``database_urls``: each service's database (default: SQLite in
    ``data_dir``); ``env``: settings for every service, over the environment and over the system's own
    (data dir, key file, OrderService's URLs for the other two); ``args``: more ``oms serve`` options;
    ``log_files``: each service's output to ``<data_dir>/<name>.log`` (else this process's own)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        key_file: Path | None = None,
        ports: Mapping[str, int] | None = None,
        host: str | None = None,
        database_urls: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        log_files: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.key_file = (key_file or data_dir / "auth-key.json").resolve()
        ensure_key(self.key_file)
        self.key: SigningKey = load_key(self.key_file)
        self.token = admin_token(self.key, ttl=24 * 3600)
        """An admin token: only an admin is told which service answers /health, and its pid."""
        self.ports = dict(ports) if ports is not None else dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        self.host = host
        self.database_urls = dict(database_urls) if database_urls is not None else None
        self.args = list(args)
        self.kinds: dict[str, str] = {}
        """Which service each replica runs (a name not in it runs the service of that name)."""
        self.log_files = log_files
        self.logs = {name: data_dir / f"{name}.log" for name in self.ports} if log_files else {}
        self.env = {
            **os.environ,
            "OMS_DATA_DIR": str(data_dir.resolve()),
            "OMS_AUTH_KEY_FILE": str(self.key_file),
            "OMS_INVENTORY_URL": self.url("inventory"),
            "OMS_PAYMENT_URL": self.url("payment"),
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        return f"http://{self.host or '127.0.0.1'}:{self.ports[name]}"

    @property
    def urls(self) -> dict[str, str]:
        return {name: self.url(name) for name in self.ports}

    def command(self, name: str) -> list[str]:
        kind = self.kinds.get(name, name)
        command = [sys.executable, "-m", "oms", "serve", kind, "--port", str(self.ports[name])]
        if self.host is not None:
            command += ["--host", self.host]
        if self.database_urls is not None:
            command += ["--database-url", self.database_urls[name]]
        return command + self.args

    def start(self, name: str, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """Start ``name`` (again, after a kill) and wait until it answers /health as itself: raises
        :class:`ServiceFailed` when it exits first or does not within ``timeout`` seconds."""
        process = self.launch(name)
        self.healthy(name, timeout)
        return process

    def launch(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``name``'s process, not waiting for it to answer (``healthy`` does)."""
        log = self.logs.get(name)
        output: IO[bytes] | None = append_private(log) if log is not None else None
        try:
            # A process group of its own: Ctrl-C in the terminal reaches the supervisor alone, which
            # stops the services in their order (stop()), not all at once.
            process = subprocess.Popen(
                self.command(name), env=self.env, stdout=output, stderr=subprocess.STDOUT if output else None,
                process_group=0,
            )  # fmt: skip
        finally:
            if output is not None:
                output.close()  # the service has its own
        self.processes[name] = process
        return process

    def healthy(self, name: str, timeout: float = 30.0) -> None:
        """Wait until ``name``, launched, answers /health; ``ServiceFailed`` (and the process gone) if not."""
        process = self.processes[name]
        try:
            self.wait_healthy(name, timeout)
        except ServiceFailed:
            # Not left behind holding its port: whoever started it learns it failed, nothing more.
            self.processes.pop(name, None)
            if process.poll() is None:
                process.kill()
                process.wait()
            raise

    def wait_healthy(self, name: str, timeout: float = 30.0) -> None:
        """Until ``name``'s port answers /health as its service, from its process (not another program,
        nor a process of another system, that happens to listen there)."""
        process, kind, url = self.processes[name], self.kinds.get(name, name), self.url(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceFailed(name, process.returncode, self.logs.get(name))
            body = health(url, self.token, timeout=1)
            if body and body.get("service") == kind and body.get("main_pid", body.get("pid")) == process.pid:
                return
            time.sleep(0.05)
        raise ServiceFailed(name, None, self.logs.get(name))

    def start_all(self) -> Self:
        """Start the three services: InventoryService and PaymentService side by side (each takes a
        second or so, most of it importing, which two cores do at once), then OrderService, whose
        start reads the catalog from InventoryService. On a failure, stop those that started and raise."""
        try:
            first, last = SERVICES[:-1], SERVICES[-1]
            for name in first:
                self.launch(name)
            for name in first:
                self.healthy(name)
            self.start(last)
        except BaseException:
            self.stop()
            raise
        return self

    def add_replica(self, name: str, service: str) -> subprocess.Popen[bytes]:
        """Start another process of ``service``, called ``name``, on a port of its own and the same database."""
        taken = set(self.ports.values())
        self.ports[name] = next(port for port in free_ports(len(taken) + 1) if port not in taken)
        self.kinds[name] = service
        if self.database_urls is not None:
            self.database_urls[name] = self.database_urls[service]
        if self.log_files:
            self.logs[name] = self.data_dir / f"{name}.log"
        return self.start(name)

    def exited(self) -> dict[str, int]:
        """The exit code of each service that has exited (killed by a signal: minus its number)."""
        return {name: code for name, process in self.processes.items() if (code := process.poll()) is not None}

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown handlers, as in a crash (its pid file stays, stale)."""
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def pause(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop OrderService's processes first and wait for them (their last sagas still call the
        other two), then the rest: SIGTERM (a paused one continued), SIGKILL for any still running
        after ``timeout`` seconds, and its pid file removed."""
        running = list(self.processes.items())
        callers = [(name, process) for name, process in running if self.kinds.get(name, name) == "order"]
        for wave in (callers, [item for item in running if item not in callers]):
            for _, process in wave:
                if process.poll() is None:
                    process.send_signal(signal.SIGCONT)
                    process.terminate()
            deadline = time.monotonic() + timeout
            for name, process in wave:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.0, deadline - time.monotonic()))
                if process.poll() is None:
                    process.kill()
                    process.wait()
                release_pid_file(pid_file(self.data_dir, self.kinds.get(name, name)), process.pid)
        self.processes.clear()
