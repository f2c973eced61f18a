"""Plain HTTP calls to a service (urllib, no event loop): the command line's, and the dashboard's
audit reading the three services."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Answer:
    """A service's answer: its status, its body (decoded JSON, or the text of a text answer), the body's
    bytes as sent, and its headers (names in lower case)."""

    status: int
    body: Any
    raw: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def http_call(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> Answer:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            names = {name.lower(): value for name, value in response.headers.items()}
            if response.headers.get_content_maintype() == "text":  # a diagram: the text itself
                text = raw.decode(response.headers.get_content_charset() or "utf-8")
                return Answer(response.status, text, raw, names)
            return Answer(response.status, orjson.loads(raw) if raw else None, raw, names)
    except urllib.error.HTTPError as error:
        raw = error.read()
        names = {name.lower(): value for name, value in error.headers.items()}
        try:
            return Answer(error.code, orjson.loads(raw), raw, names)
        except orjson.JSONDecodeError:
            return Answer(error.code, {"detail": raw.decode(errors="replace")}, raw, names)


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = None
) -> tuple[int, Any]:
    answer = http_call(method, url, body, headers, token)
    return answer.status, answer.body
