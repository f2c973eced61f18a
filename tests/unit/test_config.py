"""Settings: the breaker's, nested in ``Settings.breaker``, are read from the environment variables they
always had (``OMS_BREAKER_<FIELD>``), and a worker process gets every setting back from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oms.config import Settings
from oms.resilience.breaker import BreakerConfig

OLD_NAMES = {
    "OMS_BREAKER_FAILURE_RATE_THRESHOLD": ("failure_rate_threshold", "40", 40.0),
    "OMS_BREAKER_SLOW_CALL_RATE_THRESHOLD": ("slow_call_rate_threshold", "90", 90.0),
    "OMS_BREAKER_SLOW_CALL_DURATION": ("slow_call_duration", "1.5", 1.5),
    "OMS_BREAKER_WINDOW_TYPE": ("window_type", "time", "time"),
    "OMS_BREAKER_WINDOW_SIZE": ("window_size", "20", 20),
    "OMS_BREAKER_MINIMUM_CALLS": ("minimum_calls", "4", 4),
    "OMS_BREAKER_WAIT_IN_OPEN": ("wait_in_open", "1.0", 1.0),
    "OMS_BREAKER_HALF_OPEN_CALLS": ("half_open_calls", "2", 2),
    "OMS_BREAKER_MAX_WAIT_IN_HALF_OPEN": ("max_wait_in_half_open", "5.0", 5.0),
}


def test_breaker_defaults() -> None:
    assert Settings.model_validate({}).breaker == BreakerConfig()


def test_the_old_environment_variables_set_the_nested_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (_, text, _) in OLD_NAMES.items():
        monkeypatch.setenv(name, text)
    breaker = Settings.model_validate({}).breaker
    assert {field: getattr(breaker, field) for field, _, _ in OLD_NAMES.values()} == {
        field: value for field, _, value in OLD_NAMES.values()
    }


def test_one_old_variable_leaves_the_other_fields_at_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_BREAKER_WAIT_IN_OPEN", "1.0")
    monkeypatch.setenv("OMS_DATABASE_URL", "sqlite:///elsewhere.db")  # names with "_" stay settings of their own
    settings = Settings.model_validate({})
    assert settings.breaker == BreakerConfig(wait_in_open=1.0)
    assert settings.database_url == "sqlite:///elsewhere.db"


@pytest.mark.parametrize(
    ("name", "value", "loc"),
    [
        ("OMS_BREAKER_WINDOW_TYPE", "sliding", ("breaker", "window_type")),
        ("OMS_BREAKER_WINDOW_SIZE", "ten", ("breaker", "window_size")),
        ("OMS_BREAKER_FAILURE_RATE_THRESHOLD", "0", ("breaker",)),
    ],
)
def test_a_wrong_breaker_figure_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, loc: tuple[str, ...]
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({})
    assert caught.value.errors()[0]["loc"] == loc


def test_a_worker_reads_the_same_settings_back(monkeypatch: pytest.MonkeyPatch) -> None:
    given = Settings.model_validate(
        {"database_url": "sqlite:///x.db", "workers": 2, "log_format": "json", "breaker": {"window_type": "time"}}
    )
    environment = given.environment()
    assert environment["OMS_BREAKER_WINDOW_TYPE"] == "time" and "OMS_BREAKER" not in environment
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert Settings.model_validate({}) == given
