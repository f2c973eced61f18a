"""The settings of the ways out, from their ``OMS_*`` variables, the issue's names: ``OMS_WEBHOOK_TIMEOUT``
is ``webhook.timeout``, a field of the nested ``WebhookPolicy``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oms.config import Settings
from oms.events.schedule import WebhookPolicy


def test_the_defaults_are_those_of_the_issue() -> None:
    s = Settings(**{})
    w = s.webhook
    assert (w.timeout, w.retry_initial, w.retry_max) == (10.0, 5.0, 3600.0)
    assert (w.give_up_after, w.concurrency, s.event_retention) == (259200.0, 16, 2592000.0)
    assert s.nats_url is None
    assert w == WebhookPolicy()


def test_each_is_read_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "OMS_WEBHOOK_TIMEOUT": "2.5",
        "OMS_WEBHOOK_RETRY_INITIAL": "1",
        "OMS_WEBHOOK_RETRY_MAX": "60",
        "OMS_WEBHOOK_GIVE_UP_AFTER": "600",
        "OMS_WEBHOOK_CONCURRENCY": "4",
        "OMS_NATS_URL": "nats://10.0.0.1:4222,nats://10.0.0.2:4222",
        "OMS_EVENT_RETENTION": "86400",
    }.items():
        monkeypatch.setenv(name, value)
    s = Settings(**{})
    w = s.webhook
    assert (w.timeout, w.retry_initial, w.retry_max, w.give_up_after) == (2.5, 1.0, 60.0, 600.0)
    assert (w.concurrency, s.nats_url, s.event_retention) == (
        4, "nats://10.0.0.1:4222,nats://10.0.0.2:4222", 86400.0
    )  # fmt: skip
    environment = s.environment()
    assert environment["OMS_WEBHOOK_RETRY_MAX"] == "60.0" and environment["OMS_NATS_URL"].startswith("nats://")


@pytest.mark.parametrize(
    "bad",
    [{"webhook": {"timeout": 0}}, {"webhook": {"concurrency": 0}}, {"webhook": {"concurrency": 1001}},
     {"webhook": {"retry_initial": 10, "retry_max": 5}}, {"webhook": {"give_up_after": 0}}, {"event_retention": -1}],
)  # fmt: skip
def test_nonsense_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]
