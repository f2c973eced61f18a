"""Events published to NATS JetStream, for consumers that would rather read a durable stream than run a
webhook receiver: the stream ``OMS_EVENTS`` (subjects ``oms.>``), each event on the subject of its type.

A publish repeated after a crash (published, but the relay died before noting it) must land once: each
message carries ``Nats-Msg-Id`` = the event's id, and JetStream drops a second message with an id it saw
within the stream's duplicate window. Any failure to get JetStream's acknowledgement (server down,
reconnecting, no stream, timeout) raises ``NatsUnavailable``: the event stays in the outbox and is
published again later; the client reconnects by itself meanwhile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.api import StorageType, StreamConfig

from oms.errors import OmsError

log = structlog.get_logger("oms.events.nats")

STREAM = "OMS_EVENTS"
SUBJECTS = ["oms.>"]
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
DUPLICATE_WINDOW = 120.0
"""Seconds JetStream remembers a message id (its default): a relay back within this after a crash
publishes nothing twice."""


class NatsUnavailable(OmsError):
    """No acknowledgement from JetStream: try again later."""


@dataclass(frozen=True)
class Published:
    sequence: int
    """The message's sequence in the stream (the first one's, for a duplicate)."""
    duplicate: bool
    """JetStream had it already (same ``Nats-Msg-Id`` within the duplicate window): stored once."""


class EventStream:
    """A connection to NATS and the ``OMS_EVENTS`` stream. ``url``: a server, or a cluster's servers
    comma-separated (the client moves to another when its own goes away); ``retention``: seconds a message is kept
    (``event_retention``); ``publish_timeout``: seconds to wait for JetStream's acknowledgement."""

    def __init__(
        self,
        url: str,
        *,
        retention: float,
        publish_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        duplicate_window: float = DUPLICATE_WINDOW,
    ) -> None:
        self.url = url
        self.retention = retention
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self.duplicate_window = duplicate_window
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._closing = False
        self._opening = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """Connected (or reconnecting by itself) and the stream known to exist."""
        return self._client is not None and not self._client.is_closed and self._stream_ready

    async def open(self) -> None:
        """Connect and make sure the stream exists; ``NatsUnavailable`` when NATS cannot be reached (call
        ``open`` again later). Once connected, the client reconnects by itself for as long as it runs.
        Callers at once wait for one connection."""
        async with self._opening:
            if not self.ready:
                await self._open()

    async def _open(self) -> None:
        if self._client is None or self._client.is_closed:
            self._closing = False
            try:
                self._client = await nats.connect(
                    [server.strip() for server in self.url.split(",") if server.strip()],  # a cluster's servers
                    name="oms-order-service",
                    connect_timeout=max(1, round(self.connect_timeout)),
                    reconnect_time_wait=1,
                    max_reconnect_attempts=1,  # the first connection: two tries, then NatsUnavailable
                    error_cb=self._error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                raise NatsUnavailable(f"cannot connect to NATS at {self.url}: {exc!r}") from exc
            # Connected: from now on, reconnect for as long as it takes. nats-py reads this option at each
            # reconnection; given at connect, it would make a first connection to a dead server wait forever.
            self._client.options["max_reconnect_attempts"] = -1
            self._js = self._client.jetstream(timeout=self.publish_timeout)
        await self.ensure_stream()

    async def ensure_stream(self) -> None:
        """Create ``OMS_EVENTS`` when it is missing. One that exists is kept as it is (its replicas and
        placement are the operator's) but for its maximum age, set to ``retention``."""
        js = self._jetstream()
        try:
            try:
                info = await js.stream_info(STREAM)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=STREAM,
                        subjects=SUBJECTS,
                        max_age=self.retention,
                        storage=StorageType.FILE,
                        duplicate_window=self.duplicate_window,
                        description="oms: every order's events, as CloudEvents (JSON)",
                    )
                )
                log.info("nats stream created", stream=STREAM, subjects=SUBJECTS, max_age=self.retention)
            else:
                if info.config.max_age != self.retention:
                    info.config.max_age = self.retention
                    await js.update_stream(info.config)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise NatsUnavailable(f"cannot set up the stream {STREAM}: {exc!r}") from exc
        self._stream_ready = True

    async def publish(self, event_id: str, event_type: str, body: bytes) -> Published:
        """Publish an event's CloudEvent JSON on the subject ``event_type``, once: returns when JetStream
        has stored it (or had it already); raises ``NatsUnavailable`` otherwise."""
        (outcome,) = await self.publish_many([(event_id, event_type, body)])
        if isinstance(outcome, NatsUnavailable):
            raise outcome
        return outcome

    async def publish_many(self, events: list[tuple[str, str, bytes]]) -> list[Published | NatsUnavailable]:
        """Publish events (id, type, CloudEvent JSON) at once, each as ``publish`` does, and wait for their
        acknowledgements together: each one's outcome, in order. Raises ``NatsUnavailable`` when none
        could go (not connected, no stream).

        All are written before any acknowledgement is awaited, so the client sends them in a few
        writes, and one wait covers them all: measured under ``oms bench --nats``, a task, a semaphore
        wait and a timer per event cost the relay a fifth of its CPU."""
        if not self._stream_ready:
            await self.ensure_stream()
        js = self._jetstream()
        # Not while reconnecting: the client would buffer it (up to 2 MB, then refuse), and a publish it
        # refuses keeps one of publish_async's pending places for good.
        if self._client is None or not self._client.is_connected:
            raise NatsUnavailable(f"not connected to NATS at {self.url}")
        acknowledgements: list[asyncio.Future[api.PubAck]] = []
        refused: NatsUnavailable | None = None
        try:
            for event_id, event_type, body in events:
                # Asynchronous publishing: every acknowledgement comes to one inbox, where a request makes
                # a subscription of its own for each. No ``wait_stall``: with one, each publish waits for a
                # pending place in a task of its own; a batch is far below the client's 4,000 places, and
                # each place is given back when its acknowledgement comes or is given up on below.
                acknowledgements.append(
                    await js.publish_async(
                        event_type,
                        body,
                        stream=STREAM,
                        headers={"Nats-Msg-Id": event_id, "Content-Type": CONTENT_TYPE},
                    )
                )
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            refused = NatsUnavailable(f"publish to NATS refused: {exc!r}")
            if not acknowledgements:
                raise refused from exc
        if acknowledgements:
            _, late = await asyncio.wait(acknowledgements, timeout=self.publish_timeout)
            for future in late:
                future.cancel()  # gives its pending place back
        outcomes = [self._outcome(events[n][0], events[n][1], future) for n, future in enumerate(acknowledgements)]
        if refused is not None:
            outcomes.extend(refused for _ in events[len(acknowledgements) :])
        return outcomes

    def _outcome(
        self, event_id: str, event_type: str, acknowledged: asyncio.Future[api.PubAck]
    ) -> Published | NatsUnavailable:
        if acknowledged.cancelled():
            return NatsUnavailable(f"publish of {event_id} to NATS not acknowledged within {self.publish_timeout} s")
        error = acknowledged.exception()
        if isinstance(error, (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)):
            self._stream_ready = False  # connected, but no stream takes the subject
            return NatsUnavailable(f"no JetStream stream took {event_type}: {error!r}")
        if error is not None:
            return NatsUnavailable(f"publish of {event_id} to NATS not acknowledged: {error!r}")
        ack = acknowledged.result()
        return Published(ack.seq, bool(ack.duplicate))

    async def close(self) -> None:
        client, self._client, self._js, self._stream_ready = self._client, None, None, False
        self._closing = True
        if client is not None and not client.is_closed:
            await client.close()

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise NatsUnavailable("not connected to NATS: open() first")
        return self._js

    async def _error(self, exc: Exception) -> None:
        log.debug("nats client error", url=self.url, error=repr(exc))

    async def _disconnected(self) -> None:
        if self._closing:
            return
        log.warning("nats disconnected", url=self.url)

    async def _reconnected(self) -> None:
        log.info("nats reconnected", url=self.url)


__all__ = ["STREAM", "SUBJECTS", "EventStream", "NatsUnavailable", "Published"]
