"""The HTTP server's own limits (oms.edge.protocol), against a real InventoryService process over raw
sockets: oversized headers get 431, clients slower than OMS_CLIENT_TIMEOUT are cut off, idle
connections are closed, and past OMS_MAX_CONNECTIONS requests get 503; meanwhile ``GET /health``
(the one route that needs no token) keeps answering fast.

Slow and many clients (#17): one address cannot hold more than OMS_MAX_CONNECTIONS_PER_ADDRESS
connections (the next is answered 503 at once, before it sends anything), a request's head must
come whole within OMS_HEADER_TIMEOUT, and a flood of slow connections from one address leaves the
other clients' orders placed, whichever service it aims at. The slow clients connect from
127.0.0.2, the well-behaved ones from 127.0.0.1: Linux routes all of 127.0.0.0/8 to the loopback
interface.

Every wait is on a condition (the socket becomes readable, or closes) up to a deadline; the only
pauses are the pace of a trickling client, which is the behaviour under test."""

from __future__ import annotations

import json
import select
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import pytest
from system import System, client

from oms.cli.loadgen import FloodProcess
from oms.cli.supervisor import Supervisor

CLIENT_TIMEOUT = 2.0
SLACK = 1.5  # past the timeout, for the event loop's and this machine's scheduling
TRICKLE_INTERVAL = 0.5
MAX_HEADER_BYTES = 16384  # the default, which the service runs with
HEALTH_LATENCY_BOUND = 0.5  # seconds: "well under a second" for a route that takes about a millisecond
MAX_ITERATIONS = 10_000


@dataclass
class Service:
    """InventoryService alone, started by the supervisor ``oms up`` uses."""

    supervisor: Supervisor

    @property
    def port(self) -> int:
        return self.supervisor.ports["inventory"]

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.supervisor.processes["inventory"]

    @property
    def url(self) -> str:
        return self.supervisor.url("inventory")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def logs(self) -> str:
        return self.supervisor.logs["inventory"].read_text(errors="replace")[-3000:]


def start_inventory(directory: Path, env: dict[str, str] | None = None) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    settings = {"OMS_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT), "OMS_LOG_LEVEL": "info", **(env or {})}
    supervisor = Supervisor(directory, env=settings)
    supervisor.start("inventory")  # raises, with the end of its log, if it does not come up
    return Service(supervisor)


def stop(service: Service) -> None:
    service.supervisor.stop(timeout=10)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = start_inventory(tmp_path_factory.mktemp("limits"))
    yield running
    stop(running)


# -- raw HTTP/1.1 over a socket ---------------------------------------------------------------------


def read_until_closed(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (end of stream or reset), and whether it
    did close before ``deadline`` (time.monotonic)."""
    data = b""
    for _ in range(MAX_ITERATIONS):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def trickle_until_closed(sock: socket.socket, payload: bytes, deadline: float) -> tuple[bytes, bool]:
    """Sends ``payload`` one byte every TRICKLE_INTERVAL, reading whatever the server answers, until
    it closes the connection or ``deadline``; as read_until_closed."""
    data = b""
    sent = 0
    for _ in range(MAX_ITERATIONS):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(min(TRICKLE_INTERVAL, left))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:  # nothing from the server for one interval: the next byte
            if sent < len(payload):
                try:
                    sock.sendall(payload[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return data, True
                sent += 1
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, object]:
        assert self.headers.get("content-type") == "application/problem+json", self.headers
        problem: dict[str, object] = json.loads(self.body)
        return problem


def parse_response(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(status_line.split(" ")[1]), headers, body)


def exchange(sock: socket.socket, request: bytes, timeout: float = 5.0) -> Response:
    """Sends ``request`` and reads one whole response (Content-Length framed) off the connection."""
    sock.settimeout(timeout)
    sock.sendall(request)
    deadline = time.monotonic() + timeout
    data = b""
    for _ in range(MAX_ITERATIONS):
        _head, found, body = data.partition(b"\r\n\r\n")
        if found:
            response = parse_response(data)
            if len(body) >= int(response.headers.get("content-length", "0")):
                return response
        left = deadline - time.monotonic()
        assert left > 0, f"no whole response within {timeout} s: {data!r}"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    raise AssertionError("too many reads for one response")


def get_health(keep_alive: bool = True) -> bytes:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + connection + b"\r\n"


# -- a normal client, meanwhile ---------------------------------------------------------------------


@dataclass
class HealthProbe:
    """GET /health in a loop on its own thread and keep-alive connection, each answer's latency kept."""

    service: Service
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _answered: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._answered.wait(10), f"the probe got no answer: {self.errors}"
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        try:
            with httpx.Client(base_url=self.service.url, timeout=5) as client:
                for _ in range(100_000):
                    if self._stop.is_set() or time.monotonic() > deadline:
                        return
                    started = time.perf_counter()
                    answer = client.get("/health")
                    self.latencies.append(time.perf_counter() - started)
                    self.statuses.append(answer.status_code)
                    self._answered.set()
                    self._stop.wait(0.005)  # the loop's pace, and its way out
        except Exception as error:
            self.errors.append(repr(error))
            self._answered.set()

    def assert_fast(self, minimum_answers: int = 10) -> None:
        assert not self.errors, self.errors
        assert len(self.statuses) >= minimum_answers, self.statuses
        assert set(self.statuses) == {200}, self.statuses
        assert max(self.latencies) < HEALTH_LATENCY_BOUND, f"max {max(self.latencies):.3f} s"


# -- 431 ---------------------------------------------------------------------------------------------

OVERSIZED = {
    # 64 KB of headers, each of them small
    "many-headers": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    + b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"a" * 1000) for i in range(64))
    + b"\r\n",
    # one header of 64 KB
    "one-header": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 65536 + b"\r\n\r\n",
    # a 64 KB request line
    "long-url": b"GET /health?" + b"a" * 65536 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("shape", OVERSIZED)
def test_64_kb_of_headers_get_431_and_the_connection_closed_while_health_answers_fast(
    service: Service, shape: str
) -> None:
    refused = 0
    with HealthProbe(service) as probe:
        # Refusals one after the other until the probe has seen enough of them, for 10 s at most.
        deadline = time.monotonic() + 10
        for _ in range(5000):
            if (refused >= 20 and len(probe.statuses) >= 50) or time.monotonic() > deadline:
                break
            with service.connect() as sock:
                sock.sendall(OVERSIZED[shape])
                raw, closed = read_until_closed(sock, time.monotonic() + 5)
            assert closed, raw
            response = parse_response(raw)
            assert response.status == 431, raw[:200]
            assert response.headers["connection"] == "close"
            problem = response.problem()
            assert problem["type"] == "/problems/headers-too-large"
            assert problem["status"] == 431
            assert problem["title"] and problem["detail"]
            assert len(response.body) == int(response.headers["content-length"])
            refused += 1
    assert refused >= 20
    probe.assert_fast(minimum_answers=50)
    assert "431" in service.logs()


def test_an_endless_header_gets_431_before_the_timeout(service: Service) -> None:
    """httptools hands a header over only once it ends: one that never ends is counted as it comes."""
    with service.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        for _ in range(256):  # 1 MB at most
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"a" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                break
        raw, closed = read_until_closed(sock, time.monotonic() + 5)
    assert closed
    assert parse_response(raw).status == 431, raw[:200]
    assert time.monotonic() - started < CLIENT_TIMEOUT  # refused for its size, not its time


def test_a_15_kb_header_is_served(service: Service) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 15 * 1024 + b"\r\n\r\n"
    assert len(request) < MAX_HEADER_BYTES
    with service.connect() as sock:
        assert exchange(sock, request).status == 200
        assert exchange(sock, get_health()).status == 200  # and the connection stays usable


def test_a_client_that_keeps_sending_after_its_431_is_cut_off(service: Service) -> None:
    """After the 431 the server drains what the client still sends, so that the client can read the
    answer (closing with unread bytes would reset the connection), but not for long nor much."""
    with service.connect() as sock:
        sock.settimeout(1)
        sock.sendall(OVERSIZED["one-header"])
        deadline = time.monotonic() + CLIENT_TIMEOUT + SLACK
        cut_off = False
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() > deadline:
                break
            try:
                sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            except TimeoutError:  # the server no longer reads: its buffers are full
                continue
        assert cut_off


# -- a deadline for each request ---------------------------------------------------------------------


def test_a_connection_on_which_nothing_is_sent_is_closed(service: Service) -> None:
    started = time.monotonic()
    with service.connect() as sock:
        raw, closed = read_until_closed(sock, started + CLIENT_TIMEOUT + SLACK)
    assert closed
    assert raw == b""  # no request, no answer
    assert time.monotonic() - started >= CLIENT_TIMEOUT * 0.9


def test_a_client_trickling_its_headers_gets_408_and_is_closed(service: Service) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    with service.connect() as sock:
        started = time.monotonic()
        raw, closed = trickle_until_closed(sock, request, started + CLIENT_TIMEOUT + SLACK)
    elapsed = time.monotonic() - started
    assert closed, raw
    assert elapsed >= CLIENT_TIMEOUT * 0.9
    response = parse_response(raw)
    assert response.status == 408
    assert response.headers["connection"] == "close"
    problem = response.problem()
    assert problem["type"] == "/problems/request-timeout"
    assert problem["status"] == 408
    assert "408" in service.logs()


def test_a_client_trickling_its_body_is_closed(service: Service) -> None:
    """Its headers were whole, so the app started (and may have answered already): no 408, the
    connection is closed."""
    head = b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    with service.connect() as sock:
        sock.sendall(head + b"\r\n")
        started = time.monotonic()
        raw, closed = trickle_until_closed(sock, b"a" * 1000, started + CLIENT_TIMEOUT + SLACK)
    assert closed, raw
    assert time.monotonic() - started >= CLIENT_TIMEOUT * 0.9
    assert not raw.startswith(b"HTTP/1.1 408"), raw


def test_a_request_sent_slowly_but_within_the_timeout_of_its_first_byte_is_served(service: Service) -> None:
    """The deadline counts from the request's first byte, not from when the connection opened: this
    one is whole about 2.2 s after the connection opened, 1 s after its first byte."""
    request = get_health(keep_alive=False)  # about 45 bytes, over about one second
    with service.connect() as sock:
        opened = time.monotonic()
        raw, closed = read_until_closed(sock, opened + CLIENT_TIMEOUT * 0.6)  # nothing sent yet
        assert (raw, closed) == (b"", False)
        started = time.monotonic()
        for index in range(len(request) - 1):
            sock.sendall(request[index : index + 1])
            sock.settimeout(CLIENT_TIMEOUT / 2 / len(request))
            with pytest.raises(TimeoutError):  # nothing comes back before the request is whole
                sock.recv(1)
        sock.sendall(request[-1:])
        now = time.monotonic()
        assert now - started < CLIENT_TIMEOUT < now - opened
        raw, closed = read_until_closed(sock, now + 5)
    assert closed
    assert parse_response(raw).status == 200


def test_a_keep_alive_connection_idle_past_the_timeout_is_still_served(service: Service) -> None:
    """Idle time between requests is uvicorn's keep-alive timeout's (5 s), not the request deadline's."""
    with service.connect() as sock:
        assert exchange(sock, get_health()).status == 200
        raw, closed = read_until_closed(sock, time.monotonic() + CLIENT_TIMEOUT + 0.5)
        assert (raw, closed) == (b"", False)
        assert exchange(sock, get_health()).status == 200


def test_200_idle_connections_are_closed_while_health_answers(service: Service) -> None:
    with HealthProbe(service) as probe, selectors.DefaultSelector() as selector:
        started = time.monotonic()
        sockets = [service.connect() for _ in range(200)]
        try:
            for sock in sockets:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            open_ = set(sockets)
            deadline = started + CLIENT_TIMEOUT + SLACK
            for _ in range(MAX_ITERATIONS):
                left = deadline - time.monotonic()
                if not open_ or left <= 0:
                    break
                for key, _events in selector.select(left):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    try:
                        chunk = ready.recv(4096)
                    except ConnectionResetError:
                        chunk = b""
                    assert chunk == b"", chunk  # closed without an answer
                    selector.unregister(ready)
                    open_.discard(ready)
            assert not open_, f"{len(open_)} of 200 still open after {CLIENT_TIMEOUT + SLACK} s"
            assert time.monotonic() - started >= CLIENT_TIMEOUT * 0.9
        finally:
            for sock in sockets:
                sock.close()
    probe.assert_fast()


# -- max_connections ---------------------------------------------------------------------------------


def test_past_max_connections_requests_get_503_and_the_service_recovers(tmp_path: Path) -> None:
    """The connection cap: a request that finds more than max_connections connections open is answered
    503 problem+json with Retry-After, and its connection closed. Those served stay open (keep-alive), so
    whatever the order the server accepts the 30 connections in, at least 10 requests find 20 open."""
    # A longer request deadline here: the connections not used yet must not be closed as idle.
    service = start_inventory(tmp_path, {"OMS_MAX_CONNECTIONS": "20", "OMS_CLIENT_TIMEOUT": "30"})
    try:
        sockets = [service.connect() for _ in range(30)]
        statuses = []
        try:
            for sock in sockets:
                response = exchange(sock, get_health())
                statuses.append(response.status)
                if response.status == 503:
                    assert response.headers["connection"] == "close"
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.headers["retry-after"] == "1"
                    assert read_until_closed(sock, time.monotonic() + 5)[1]
        finally:
            for sock in sockets:
                sock.close()
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(503) >= 9, statuses
        assert statuses.count(200) >= 1, statuses  # once the refused ones had closed

        # Recovered once the server has seen those connections go: fewer than the limit are all served.
        deadline = time.monotonic() + 10
        for _ in range(100):
            sockets = [service.connect() for _ in range(15)]
            try:
                statuses = [exchange(sock, get_health()).status for sock in sockets]
            finally:
                for sock in sockets:
                    sock.close()
            if statuses == [200] * 15 or time.monotonic() > deadline:
                break
        assert statuses == [200] * 15
    finally:
        stop(service)


# -- max_connections_per_address, header_timeout, a flood (#17) ----------------------------------------

FLOOD = "127.0.0.2"
GENEROUS = 15.0  # seconds: far past the deadlines under test, far short of the ones they replace


def connect_from(service: Service, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- max_connections_per_address ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """InventoryService taking 20 connections from one address; long deadlines, so that the held
    connections stay held for the test's length."""
    settings = {"OMS_MAX_CONNECTIONS_PER_ADDRESS": "20", "OMS_HEADER_TIMEOUT": "60", "OMS_CLIENT_TIMEOUT": "60"}
    running = start_inventory(tmp_path_factory.mktemp("capped"), settings)
    yield running
    stop(running)


def test_past_max_connections_per_address_a_connection_is_refused_at_once_and_others_are_served(
    capped: Service,
) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(20):
            sock = connect_from(capped, FLOOD)
            held.append(sock)
            assert exchange(sock, get_health()).status == 200  # accepted, and counted
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # then slow: half a head, held by the 60 s deadline

        # The 21st from that address: answered and closed without a byte sent.
        with connect_from(capped, FLOOD) as refused:
            raw, closed = read_until_closed(refused, time.monotonic() + GENEROUS)
        assert closed, raw
        response = parse_response(raw)
        assert response.status == 503, raw
        assert response.headers["retry-after"] == "1"
        assert response.headers["connection"] == "close"
        problem = response.problem()
        assert problem["type"] == "/problems/too-many-connections"
        assert "20 connections" in str(problem["detail"])

        # Another address is served meanwhile, read and write.
        with client(capped.supervisor.token) as http:
            assert http.get(f"{capped.url}/health").status_code == 200
            body = {"name": "Slow", "unit_price": 100, "currency": "USD", "available": 3}
            assert http.put(f"{capped.url}/items/SLOW-1", json=body).status_code in (200, 201)
            assert http.get(f"{capped.url}/items/SLOW-1").json()["available"] == 3

        # One of the 20 closes: the address may open one more (once the server has seen it go).
        held.pop().close()
        deadline = time.monotonic() + GENEROUS
        for _ in range(1000):
            with connect_from(capped, FLOOD) as sock:
                sock.sendall(get_health(keep_alive=False))
                raw, _ = read_until_closed(sock, time.monotonic() + GENEROUS)
            if parse_response(raw).status == 200 or time.monotonic() > deadline:
                break
        assert parse_response(raw).status == 200, raw
    finally:
        for sock in held:
            sock.close()
    assert "max_connections_per_address" in capped.logs()


# -- header_timeout -----------------------------------------------------------------------------------


def test_a_head_not_whole_within_header_timeout_gets_408_and_a_slow_body_is_still_served(tmp_path: Path) -> None:
    """header_timeout 0.5 s, client_timeout 60 s: a partial head is cut off after about half a second
    (the connection would otherwise be held a minute), counted from connection open for the first
    request and from the first byte for the next; a body may take longer than the head's deadline."""
    service = start_inventory(tmp_path, {"OMS_HEADER_TIMEOUT": "0.5", "OMS_CLIENT_TIMEOUT": "60"})
    try:
        # Half a request line and a header, and no more.
        with service.connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            raw, closed = read_until_closed(sock, time.monotonic() + GENEROUS)
        assert closed, raw
        response = parse_response(raw)
        assert response.status == 408
        assert response.headers["connection"] == "close"
        problem = response.problem()
        assert problem["type"] == "/problems/request-timeout"
        assert "line and headers" in str(problem["detail"])

        # Nothing at all: closed, without an answer.
        with service.connect() as sock:
            raw, closed = read_until_closed(sock, time.monotonic() + GENEROUS)
        assert (raw, closed) == (b"", True)

        # A kept-alive connection whose second head stops halfway.
        with service.connect() as sock:
            assert exchange(sock, get_health()).status == 200
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            raw, closed = read_until_closed(sock, time.monotonic() + GENEROUS)
        assert closed, raw
        assert parse_response(raw).status == 408

        # A whole head, then its body after more than header_timeout: the body has client_timeout.
        body = b'{"name": "Slow", "unit_price": 100, "currency": "USD", "available": 1}'
        head = (
            b"PUT /items/SLOW-BODY HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + service.supervisor.token.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        with service.connect() as sock:
            sock.sendall(head)
            raw, closed = read_until_closed(sock, time.monotonic() + 1.5)  # three header_timeouts: the pace
            assert (raw, closed) == (b"", False)
            assert exchange(sock, body).status in (200, 201)
    finally:
        stop(service)
    assert "within 0.5s: 408" in service.logs()


# -- a flood, and orders ------------------------------------------------------------------------------

FLOOD_CONNECTIONS = 1100  # past the 1,000 connections a process took in all before #17
ORDERS = 10


# The flood meets the HTTP server, which is the same whatever the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("target", ["order", "inventory", "payment"])
def test_orders_are_placed_while_1100_slow_connections_from_one_address_flood_a_service(
    shared_system: System, target: str
) -> None:
    shared_system.put_item("FLOOD-1", 1000)
    with FloodProcess(shared_system.url(target), FLOOD_CONNECTIONS, FLOOD) as flood:
        answers = [shared_system.place([("FLOOD-1", 1)]) for _ in range(ORDERS)]
    assert [answer.status_code for answer in answers] == [201] * ORDERS, [a.text[:300] for a in answers]
    assert {answer.json()["status"] for answer in answers} == {"PLACED"}
    assert {answer.json()["reservation"] for answer in answers} == {"held"}  # by InventoryService, not on fallback data
    assert flood.figures["refused"] > 0, flood.figures  # the flood was there, and met the cap
    assert flood.figures["opened"] >= FLOOD_CONNECTIONS, flood.figures
