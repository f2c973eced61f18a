"""The deliveries' HTTP/1.1 client (``oms.events.client``) against real servers on 127.0.0.1: one kept-
alive connection for many deliveries, a connection its server closed while idle replaced at once, a long
answer cut at 64 KiB with its status kept, a chunked one, one delimited by the connection's close, and
https (a certificate made for the test, trusted by the pool; refused when the pool does not trust it)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oms.events.client import DeliveryError, Pool

Answer = Callable[[int], bytes]
"""The bytes to answer the n-th request of a connection with (and whether to close after: see CLOSE)."""
CLOSE = b"<close>"


@asynccontextmanager
async def server(answer: Answer, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP/1.1 server; yields its base URL and, per connection, the requests it served."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(served)
        served.append(0)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                served[index] += 1
                reply = answer(served[index])
                writer.write(reply.replace(CLOSE, b""))
                await writer.drain()
                if CLOSE in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", served
    finally:
        listening.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_many_deliveries_go_on_one_kept_alive_connection() -> None:
    async def scenario() -> list[int]:
        async with server(lambda n: OK) as (base, served), Pool() as pool:
            for _ in range(20):
                assert await pool.post(base + "/hook?x=1", {"a": "b"}, b"{}", time_limit=5) == 200
            return served

    assert asyncio.run(scenario()) == [20]


def test_a_kept_alive_connection_its_server_closed_is_replaced_without_a_failed_try() -> None:
    """The server answers each connection's first request; the second it reads, then closes the
    connection without a byte (as a server closing an idle connection as the request arrives)."""

    async def scenario() -> list[int]:
        async with server(lambda n: OK if n == 1 else CLOSE) as (base, served), Pool() as pool:
            for _ in range(3):
                assert await pool.post(base, {}, b"{}", time_limit=5) == 200
            return served

    assert asyncio.run(scenario()) == [2, 2, 1]


def test_long_chunked_and_close_delimited_answers_keep_their_status() -> None:
    long = b"HTTP/1.1 500 Oops\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 1_000_000
    chunked = b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    close_delimited = b"HTTP/1.0 204 No Content\r\n\r\n" + CLOSE

    async def scenario() -> list[int]:
        statuses = []
        for reply in (long, chunked, close_delimited):
            async with server(lambda n, r=reply: r) as (base, _), Pool() as pool:  # type: ignore[misc]
                statuses.append(await pool.post(base, {}, b"{}", time_limit=5))
                statuses.append(await pool.post(base, {}, b"{}", time_limit=5))  # and the connection after it
        return statuses

    assert asyncio.run(scenario()) == [500, 500, 202, 202, 204, 204]


def certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_https_with_a_trusted_certificate_and_refused_without(tmp_path: Path) -> None:
    cert_file, key_file = certificate(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))

    async def scenario() -> tuple[int, str]:
        async with server(lambda n: OK, tls=serving) as (base, _):
            async with Pool(tls=trusting) as pool:
                status = await pool.post(base + "/hook", {}, b"{}", time_limit=5)
            async with Pool() as pool:  # the system's trust store: this certificate is no one's
                try:
                    await pool.post(base + "/hook", {}, b"{}", time_limit=5)
                    refused = ""
                except DeliveryError as exc:
                    refused = str(exc)
            return status, refused

    status, refused = asyncio.run(scenario())
    assert status == 200
    assert refused.startswith("TLS failed") and "CERTIFICATE_VERIFY_FAILED" in refused


def test_an_interim_answer_is_not_taken_for_the_answer() -> None:
    """100 Continue, then the real answer: the status is the real one, and the next delivery on the
    connection gets its own (not the first one's, late)."""
    replies = {1: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n", 2: OK}

    async def scenario() -> list[int]:
        async with server(lambda n: replies[n]) as (base, _), Pool() as pool:
            return [await pool.post(base, {}, b"{}", time_limit=5) for _ in range(2)]

    assert asyncio.run(scenario()) == [500, 200]


def test_a_url_with_non_ascii_letters_goes_percent_encoded_and_a_bad_host_is_a_failed_try() -> None:
    from oms.events.sender import deliver
    from oms.events.signing import SigningSecret, new_secret

    seen: list[bytes] = []

    async def scenario() -> tuple[int, str | None]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head.split(b" ")[1])
            await reader.readexactly(2)
            writer.write(OK)
            await writer.drain()
            writer.close()

        listening = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        async with Pool() as pool:
            status = await pool.post(f"http://127.0.0.1:{port}/hooks/订单?x=ä b", {}, b"{}", time_limit=5)
            bad = await deliver(
                pool, "http://a..example/hook", "evt_1", b"{}", [SigningSecret(new_secret())], time_limit=5
            )
        listening.close()
        return status, bad.error

    status, error = asyncio.run(scenario())
    assert status == 200 and seen == [b"/hooks/%E8%AE%A2%E5%8D%95?x=%C3%A4%20b"]
    assert error is not None  # a host no resolver takes: a failed try, not a crashed relay
