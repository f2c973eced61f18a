"""Standard Webhooks signatures (https://www.standardwebhooks.com): what lets a receiver know a delivery
came from us, unaltered, and recently.

A delivery carries ``webhook-id`` (the event's id, the same on every try, so a receiver can drop a
repeat), ``webhook-timestamp`` (seconds since the epoch, when this try was signed, so a receiver can refuse
an old capture played again) and ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256, under the
secret's bytes, of ``{id}.{timestamp}.{body}``. Each try is signed afresh: its timestamp is its own.

A secret is ``whsec_`` and the base64 of random bytes (32 here, at least 24 accepted). When an endpoint's
secret is rotated, the old one keeps signing beside the new one for ``ROTATION_OVERLAP`` (24 h): the header
then holds both signatures, space-separated, and a receiver still holding the old secret keeps verifying
until it is updated. Pure functions: the caller gives the time, so tests give any.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from oms.errors import OmsError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
"""Random bytes in a secret we make (Standard Webhooks asks for 24 to 64)."""
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
ROTATION_OVERLAP = 24 * 3600.0
"""Seconds a rotated-out secret keeps signing beside its successor."""


class SecretError(OmsError, ValueError):
    """Not a Standard Webhooks secret: no ``whsec_``, not base64, or too short or too long."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and the base64 of 32 bytes from the operating system's CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The bytes a secret stands for: the HMAC key."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise SecretError("a webhook secret is whsec_ and base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SecretError(f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}")
    return key


@dataclass(frozen=True)
class SigningSecret:
    """One of an endpoint's secrets. ``retired_at``: when it was rotated out (seconds since the epoch);
    ``None`` for the current one."""

    secret: str
    retired_at: float | None = None

    def signs_at(self, now: float) -> bool:
        return self.retired_at is None or now < self.retired_at + ROTATION_OVERLAP


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def sign(msg_id: str, body: bytes, secrets: Iterable[SigningSecret], now: float) -> dict[str, str]:
    """The three Standard Webhooks headers for one try at ``now``: one signature per secret that still
    signs then, the current one first."""
    timestamp = math.floor(now)
    live = sorted((s for s in secrets if s.signs_at(now)), key=lambda s: s.retired_at is not None)
    if not live:
        raise SecretError("the endpoint has no secret that signs now")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret_key(s.secret), msg_id, timestamp, body) for s in live),
    }


def rotate(current: Iterable[SigningSecret], now: float) -> tuple[str, list[SigningSecret]]:
    """A new secret, and the endpoint's secrets after rotating to it: the new one, the one it replaces
    retired at ``now``, and those retired before that still sign; the others are dropped."""
    fresh = new_secret()
    kept = [SigningSecret(s.secret, now if s.retired_at is None else s.retired_at) for s in current if s.signs_at(now)]
    return fresh, [SigningSecret(fresh), *kept]
