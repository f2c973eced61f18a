"""Plain synchronous HTTP calls to a service (httpx, no event loop): the command line's, the
supervisor's and the dashboard's audit reading the three services. One client for the process, made
on first use (making one costs milliseconds: its TLS context), its connections kept between calls."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Answer:
    """A service's answer: its status, its body (decoded JSON, or the text of a text answer), the body's
    bytes as sent, and its headers (names in lower case)."""

    status: int
    body: Any
    raw: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@functools.cache
def client() -> httpx.Client:
    """The process's client: redirects not followed, the environment's proxies not used (the services
    are called where they are)."""
    return httpx.Client(follow_redirects=False, trust_env=False)


def http_call(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> Answer:
    """The answer, whatever its status; ``ConnectionError`` (an ``OSError``) when there is none: nothing
    listens, the connection broke, or no answer came within ``timeout`` seconds."""
    sent = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    try:
        response = client().request(
            method, url, content=orjson.dumps(body) if body is not None else None,
            headers={**sent, **(headers or {})}, timeout=timeout,
        )  # fmt: skip
    except httpx.TransportError as exc:
        raise ConnectionError(str(exc) or type(exc).__name__) from exc
    raw = response.content
    names = {name.lower(): value for name, value in response.headers.items()}
    if names.get("content-type", "").startswith("text/"):  # a diagram: the text itself
        return Answer(response.status_code, response.text, raw, names)
    try:
        return Answer(response.status_code, orjson.loads(raw) if raw else None, raw, names)
    except orjson.JSONDecodeError:
        return Answer(response.status_code, {"detail": raw.decode(errors="replace")}, raw, names)


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = None
) -> tuple[int, Any]:
    answer = http_call(method, url, body, headers, token)
    return answer.status, answer.body
