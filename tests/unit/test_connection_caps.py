"""The per-address connection count of ``oms.edge.protocol``: the count itself, and that the protocol
gives back what it took on every way a connection ends (closed by the client, reset, closed by the
server after its head was late, refused past the cap), so that an address can never be locked out by
connections long gone. The protocol runs on a real asyncio server on 127.0.0.1 with real sockets;
the clients connect from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to the loopback interface)."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from oms.config import Settings
from oms.edge import protocol
from oms.edge.protocol import BoundedHttpToolsProtocol, Limits, OpenConnections

FLOOD = "127.0.0.2"
DEADLINE = 10.0  # seconds to wait for a condition (the server noticing a close) before failing


# -- the count ---------------------------------------------------------------------------------------


def test_an_address_holds_up_to_the_cap_and_no_more() -> None:
    counts = OpenConnections()
    assert [counts.take("10.0.0.1", 3) for _ in range(4)] == [True, True, True, False]
    assert counts.held("10.0.0.1") == 3  # the refused one was not counted
    assert counts.take("10.0.0.2", 3)  # another address has its own count
    counts.give("10.0.0.1")
    assert counts.take("10.0.0.1", 3)  # a slot given back is taken again
    assert not counts.take("10.0.0.1", 3)


def test_an_address_with_nothing_open_is_forgotten() -> None:
    counts = OpenConnections()
    for address in ("10.0.0.1", "10.0.0.2", "::1"):
        counts.take(address, 5)
        counts.take(address, 5)
    assert counts.addresses() == 3
    for address in ("10.0.0.1", "10.0.0.2", "::1"):
        counts.give(address)
        counts.give(address)
    assert counts.addresses() == 0
    assert counts.held("10.0.0.1") == 0


# -- the protocol gives back what it took ------------------------------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request 200, once its body is in."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _serve() -> tuple[asyncio.Server, int]:
    config = Config(app=_app, lifespan="off", log_config=None, access_log=False)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: BoundedHttpToolsProtocol(config, state, {}, loop), "127.0.0.1", 0, backlog=1024
    )
    port: int = server.sockets[0].getsockname()[1]
    return server, port


async def _until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _connect(port: int, source: str = FLOOD) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    return await asyncio.wait_for(reader.readuntil(b"ok"), DEADLINE)


Check = Callable[[OpenConnections], Coroutine[Any, Any, None]]


def _run(test: Check, monkeypatch: pytest.MonkeyPatch, **limits: Any) -> None:
    counts = OpenConnections()
    monkeypatch.setattr(protocol, "open_connections", counts)
    monkeypatch.setattr(protocol, "_limits", dataclasses.replace(Limits.of(Settings.model_construct()), **limits))
    asyncio.run(test(counts))


def test_past_the_cap_a_connection_is_answered_503_and_closed_before_it_sends_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def test(counts: OpenConnections) -> None:
        server, port = await _serve()
        try:
            held = [await _connect(port) for _ in range(3)]
            for reader, writer in held:
                assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
            assert counts.held(FLOOD) == 3

            reader, writer = await _connect(port)
            answer = await asyncio.wait_for(reader.read(), DEADLINE)  # to the end of the stream
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 1" in head and b"connection: close" in head
            problem = orjson.loads(body)
            assert problem["type"] == "/problems/too-many-connections" and problem["status"] == 503
            writer.close()
            assert counts.held(FLOOD) == 3  # the refused one took nothing

            other = await _connect(port, "127.0.0.1")  # another address is served meanwhile
            assert (await _get(*other)).startswith(b"HTTP/1.1 200")
            other[1].close()

            for _, held_writer in held:
                held_writer.close()
            await _until(lambda: counts.addresses() == 0)
        finally:
            server.close()

    _run(test, monkeypatch, max_connections_per_address=3)


def test_a_reset_and_a_close_by_the_server_give_the_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test(counts: OpenConnections) -> None:
        server, port = await _serve()
        try:
            # Reset by the client (SO_LINGER 0): connection_lost with an error.
            _, writer = await _connect(port)
            await _until(lambda: counts.held(FLOOD) == 1)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            await _until(lambda: counts.held(FLOOD) == 0)

            # Closed by the server: the head did not come whole within header_timeout (408).
            reader, writer = await _connect(port)
            writer.write(b"GET / HTTP/1.1\r\n")
            answer = await asyncio.wait_for(reader.read(), DEADLINE)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            writer.close()
            await _until(lambda: counts.held(FLOOD) == 0)

            # Closed by the server with nothing sent.
            reader, writer = await _connect(port)
            assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
            writer.close()
            await _until(lambda: counts.addresses() == 0)

            # And the address can take its whole cap again.
            again = [await _connect(port) for _ in range(2)]
            for reader, writer in again:
                assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
            for _, writer in again:
                writer.close()
            await _until(lambda: counts.addresses() == 0)
        finally:
            server.close()

    _run(test, monkeypatch, max_connections_per_address=2, header_timeout=0.2)


def test_a_flood_of_refusals_leaves_nothing_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many connections at once, most refused, some closed by the client before the server even
    accepted them: once all are gone, nothing is left counted."""

    async def test(counts: OpenConnections) -> None:
        server, port = await _serve()
        try:
            opened = await asyncio.gather(*(_connect(port) for _ in range(200)))
            await _until(lambda: counts.held(FLOOD) == 5)
            for _, writer in opened:
                writer.close()
            await _until(lambda: counts.addresses() == 0)
        finally:
            server.close()

    _run(test, monkeypatch, max_connections_per_address=5)


def test_with_no_cap_nothing_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test(counts: OpenConnections) -> None:
        server, port = await _serve()
        try:
            opened = [await _connect(port) for _ in range(10)]
            for reader, writer in opened:
                assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
            assert counts.addresses() == 0
            for _, writer in opened:
                writer.close()
        finally:
            server.close()

    _run(test, monkeypatch, max_connections_per_address=0)


# -- the process can hold that many sockets ----------------------------------------------------------


def test_the_open_files_soft_limit_is_raised_to_the_hard_one() -> None:
    """Started with a soft limit of 256 (distributions give 1024, far under max_connections), a process
    that calls it may then open as many files as its hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    code = (
        "import resource; from oms.serve import raise_open_files_limit; "
        "print(*raise_open_files_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    before, after, soft_now, hard_now = (int(word) for word in done.stdout.split())
    assert before == 256
    assert after == soft_now > 256
    assert hard_now == hard
    if hard != resource.RLIM_INFINITY:
        assert soft_now == hard
