"""Our webhook signatures, verified by the Standard Webhooks reference library (``standardwebhooks``), as a
receiver would: the current secret, a rotated-out one within its 24 h and not after, and tampering."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from oms.events.signing import (
    ROTATION_OVERLAP,
    SecretError,
    SigningSecret,
    new_secret,
    rotate,
    secret_key,
    sign,
)

BODY = b'{"specversion":"1.0","id":"evt_1","type":"oms.order.placed","data":{"total":"12.50"}}'
HOUR = 3600.0


def test_a_new_secret_is_whsec_and_the_base64_of_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert len(secret_key(first)) == 32


@pytest.mark.parametrize("bad", ["", "abc", "whsec_", "whsec_!!!!", "whsec_" + base64.b64encode(b"x" * 23).decode()])
def test_a_malformed_or_short_secret_is_refused(bad: str) -> None:
    with pytest.raises(SecretError):
        secret_key(bad)


@given(body=st.binary(max_size=2000), msg_id=st.from_regex(r"evt_[A-Za-z0-9]{1,30}", fullmatch=True))
def test_the_reference_library_verifies_every_signature(body: bytes, msg_id: str) -> None:
    secret = new_secret()
    headers = sign(msg_id, body, [SigningSecret(secret)], time.time())
    assert headers["webhook-id"] == msg_id
    Webhook(secret).verify(body, headers, json_parse=False)


def test_a_changed_body_id_or_timestamp_or_another_secret_does_not_verify() -> None:
    secret = new_secret()
    now = time.time()
    headers = sign("evt_1", BODY, [SigningSecret(secret)], now)
    for body, changed in [
        (BODY + b" ", headers),
        (BODY, {**headers, "webhook-id": "evt_2"}),
        (BODY, {**headers, "webhook-timestamp": str(int(now) - 1)}),
    ]:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, changed)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_each_try_is_signed_at_its_own_time() -> None:
    secret = [SigningSecret(new_secret())]
    first, second = sign("evt_1", BODY, secret, 1000.0), sign("evt_1", BODY, secret, 1005.9)
    assert (first["webhook-timestamp"], second["webhook-timestamp"]) == ("1000", "1005")
    assert first["webhook-signature"] != second["webhook-signature"]


def test_a_rotated_out_secret_still_verifies_within_24_hours_and_not_after() -> None:
    old = new_secret()
    rotated_at = 1_800_000_000.0  # the clock at rotation, given: any instant will do
    new, secrets = rotate([SigningSecret(old)], rotated_at)
    assert new != old and [s.secret for s in secrets] == [new, old]

    # The receiver verifies against its own (real) clock: sign at a real "now", rotation placed before it.
    now = time.time()
    shift = now - rotated_at
    moved = [SigningSecret(s.secret, None if s.retired_at is None else s.retired_at + shift) for s in secrets]
    for elapsed, old_verifies in [(0.0, True), (23 * HOUR, True), (ROTATION_OVERLAP - 1, True),
                                  (ROTATION_OVERLAP, False), (72 * HOUR, False)]:  # fmt: skip
        at_then = [SigningSecret(s.secret, None if s.retired_at is None else s.retired_at - elapsed) for s in moved]
        headers = sign("evt_1", BODY, at_then, now)
        Webhook(new).verify(BODY, headers)  # the new secret verifies throughout
        assert len(headers["webhook-signature"].split(" ")) == (2 if old_verifies else 1)
        if old_verifies:
            Webhook(old).verify(BODY, headers)
        else:
            with pytest.raises(WebhookVerificationError):
                Webhook(old).verify(BODY, headers)


def test_rotating_twice_keeps_every_secret_still_within_its_24_hours() -> None:
    first = new_secret()
    second, after_one = rotate([SigningSecret(first)], 0.0)
    third, after_two = rotate(after_one, 10 * HOUR)
    assert [(s.secret, s.retired_at) for s in after_two] == [(third, None), (second, 10 * HOUR), (first, 0.0)]
    fourth, after_three = rotate(after_two, 30 * HOUR)  # the first one's 24 h are over: dropped
    assert [(s.secret, s.retired_at) for s in after_three] == [(fourth, None), (third, 30 * HOUR), (second, 10 * HOUR)]


def test_an_endpoint_without_a_live_secret_signs_nothing() -> None:
    with pytest.raises(SecretError):
        sign("evt_1", BODY, [SigningSecret(new_secret(), retired_at=0.0)], ROTATION_OVERLAP)
