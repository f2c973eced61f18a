"""One try of one webhook delivery: the event POSTed, signed for this try, and what came of it.

The body is the CloudEvent in JSON structured mode (CloudEvents' HTTP binding, section 3.2): the whole
envelope as the body, ``content-type: application/cloudevents+json; charset=utf-8``, which is what tells
a CloudEvents SDK (``from_http``) that the attributes are in the body and not in ``ce-`` headers. Standard
Webhooks asks only for a JSON body and its three headers, which any JSON body with them satisfies.

Redirects are not followed: a signed event goes only to the URL its endpoint registered, and a 3xx
counts as a failed try. Nothing raises for the receiver's sake: a timeout, a refused or dropped
connection is an ``Attempt`` with ``error`` set, for the retry schedule to judge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp

from oms.events.schedule import is_success
from oms.events.signing import SigningSecret, sign

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "oms-webhooks/1"
ANSWER_READ_LIMIT = 64 * 1024
"""Bytes of a receiver's answer read (then dropped) before the connection is let go: the answer is not
used, and a receiver answering at length must not cost memory."""


@dataclass(frozen=True)
class Attempt:
    """What one try came to: the answer's status, or the error that stood in for an answer; seconds it took."""

    status: int | None
    error: str | None
    duration: float

    @property
    def delivered(self) -> bool:
        return is_success(self.status)


async def deliver(
    session: aiohttp.ClientSession,
    url: str,
    event_id: str,
    body: bytes,
    secrets: Iterable[SigningSecret],
    *,
    time_limit: float,
    clock: Callable[[], float] = time.time,
) -> Attempt:
    """POST ``body`` (the event's CloudEvent JSON) to ``url``, signed at ``clock()`` with the endpoint's
    live secrets; ``time_limit``: seconds for the whole exchange, connecting included."""
    headers = {"content-type": CONTENT_TYPE, "user-agent": USER_AGENT, **sign(event_id, body, secrets, clock())}
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as answer:
            status = answer.status
            await answer.content.read(ANSWER_READ_LIMIT)
    except TimeoutError:
        error = f"no answer within {time_limit:g} s"
    except aiohttp.ServerDisconnectedError:
        error = "connection closed without an answer"
    except aiohttp.ClientConnectorError as exc:
        error = f"cannot connect: {exc.os_error.strerror or exc.os_error!r}"
    except (aiohttp.ClientError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if status is not None and error is not None:  # the status came, the body broke off: the status stands
        error = None
    return Attempt(status, error, time.monotonic() - started)


def new_session(limit_per_host: int = 16) -> aiohttp.ClientSession:
    """A session for deliveries: no cookies kept between receivers, ``limit_per_host`` connections to
    one receiver at most (the per-endpoint concurrency), the environment's proxies ignored."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


__all__ = ["CONTENT_TYPE", "Attempt", "deliver", "new_session"]
