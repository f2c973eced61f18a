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

from oms.events.client import DeliveryError, Pool
from oms.events.schedule import is_success
from oms.events.signing import SigningSecret, sign

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = "oms-webhooks/1"


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
    pool: Pool,
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
    try:
        status: int | None = await pool.post(url, headers, body, time_limit=time_limit)
        error = None
    except DeliveryError as exc:
        status, error = None, str(exc)
    except Exception as exc:  # whatever the URL or the receiver did: a failed try, never a lost event
        status, error = None, f"{type(exc).__name__}: {exc}"
    return Attempt(status, error, time.monotonic() - started)


def new_pool(idle_per_host: int = 16) -> Pool:
    """Connections for deliveries: ``idle_per_host`` kept alive to one receiver at most (the
    per-endpoint concurrency), no cookies, no proxies."""
    return Pool(idle_per_host)


__all__ = ["CONTENT_TYPE", "Attempt", "deliver", "new_pool"]
