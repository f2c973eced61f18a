"""A webhook receiver for the end-to-end tests: a real aiohttp server on 127.0.0.1 (a port the system
picks), on a thread of its own, verifying each delivery with the Standard Webhooks library.
``Receiver.failing``: the share of tries answered 500 (a quarter, for the crash test), and one in ten
of the rest dropped without an answer; 0: every try answered 200."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook

__all__ = ["Receiver", "receiver"]


@dataclass
class Receiver:
    failing: bool = False
    secret: str = ""
    url: str = ""
    tries: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verdict(self, event_id: str, attempt: int) -> str:
        if not self.failing:
            return "200"
        roll = hashlib.sha256(f"{event_id}/{attempt}".encode()).digest()[0]
        return "500" if roll < 64 else "drop" if roll < 90 else "200"

    def delivered(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {t["event"]["id"]: t["event"] for t in self.tries if t["status"] == 200}


@contextmanager
def receiver(*, failing: bool = False) -> Iterator[Receiver]:
    state = Receiver(failing)
    ready = threading.Event()
    stop: list[Callable[[], object]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            Webhook(state.secret).verify(body, dict(request.headers))
            valid = True
        except Exception:
            valid = False
        event = orjson.loads(body)
        with state.lock:
            attempt = sum(1 for t in state.tries if t["event"]["id"] == event["id"]) + 1
            verdict = state.verdict(event["id"], attempt)
            state.tries.append({"event": event, "valid": valid, "status": 0 if verdict == "drop" else int(verdict)})
        if verdict == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)  # never reaches the client: the connection is gone
        return web.Response(status=int(verdict))

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        stop.append(lambda: loop.call_soon_threadsafe(loop.stop))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state
    finally:
        stop[0]()
        thread.join(10)
