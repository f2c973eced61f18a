"""oms.telemetry.logs: every line, structlog's and the standard library's (uvicorn's), in the one format, with
the service and what the context binds; and the saga's order id, saga and step bound by OrderService."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
import structlog

from oms.orders.saga import OrderContext
from oms.orders.service import OrderService, _naming_steps
from oms.saga.engine import SagaDefinition, SagaEnd, SagaStatus, Step, StepResult
from oms.telemetry import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_json_lines_carry_timestamp_level_event_service_and_the_context(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("debug", "json", "order")
    log = structlog.get_logger("oms.test")
    tokens = structlog.contextvars.bind_contextvars(request_id="r-1", order_id="ord_1", trace_id="abc")
    log.info("saga ended", status="completed")
    structlog.contextvars.reset_contextvars(**tokens)
    log.debug("no request")
    out, _ = capfd.readouterr()
    first, second = lines(out)
    assert first["event"] == "saga ended" and first["level"] == "info" and first["status"] == "completed"
    context = (first["service"], first["request_id"], first["order_id"], first["trace_id"])
    assert context == ("order", "r-1", "ord_1", "abc")
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert second["event"] == "no request" and "request_id" not in second and second["service"] == "order"


def test_standard_library_lines_and_tracebacks_are_json_too(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json", "inventory")
    structlog.contextvars.bind_contextvars(request_id="r-2")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.error").debug("below the level")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin")  # another library's info: not shown
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("asyncio").exception("a task failed")
        structlog.get_logger().exception("request failed")
    out, err = capfd.readouterr()
    started, failed = lines(err)
    assert started["event"] == "Started server process [42]" and started["level"] == "info"
    assert (started["service"], started["request_id"], started["logger"]) == ("inventory", "r-2", "uvicorn.error")
    assert "timestamp" in started
    assert failed["level"] == "error" and "ValueError: boom\nsecond line" in failed["exception"]
    [own] = lines(out)
    assert own["event"] == "request failed" and "Traceback" in own["exception"]


def test_text_lines_carry_the_service_and_the_context(capfd: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "text", "payment")
    structlog.contextvars.bind_contextvars(request_id="r-3")
    structlog.get_logger().warning("circuit breaker changed state", breaker="inventory")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    out, err = capfd.readouterr()
    assert "circuit breaker changed state" in out and "service=payment" in out and "request_id=r-3" in out
    assert "Application startup complete." in err and "service=payment" in err
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(out.splitlines()[0])


def test_a_saga_binds_its_order_id_and_name_and_each_step_its_name() -> None:
    seen: list[dict[str, Any]] = []

    async def act(context: OrderContext) -> StepResult:
        seen.append(structlog.contextvars.get_contextvars())
        return StepResult.failed("declined")

    async def undo(context: OrderContext) -> StepResult:
        seen.append(structlog.contextvars.get_contextvars())
        return StepResult.done()

    steps = (Step("reserve", act, undo), Step("pay", act, None, recover=act))
    definition = _naming_steps(SagaDefinition("order", steps))
    service = OrderService.__new__(OrderService)
    service.running = {}

    context = OrderContext(saga="order", order_id="ord_9", lines=[], payment_method="pm_card_visa")

    async def saga() -> SagaEnd:
        for step in definition.steps:
            await step.action(context)
        assert definition.steps[0].compensation is not None and definition.steps[1].recover is not None
        await definition.steps[0].compensation(context)
        await definition.steps[1].recover(context)
        return SagaEnd(SagaStatus.COMPLETED)

    async def go() -> None:
        service._drive("ord_9", "order", saga())
        await asyncio.gather(*service.running.values())

    asyncio.run(go())
    assert [(c["order_id"], c["saga"], c["step"]) for c in seen] == [
        ("ord_9", "order", "reserve"),
        ("ord_9", "order", "pay"),
        ("ord_9", "order", "undo_reserve"),
        ("ord_9", "order", "pay"),
    ]
    assert definition.steps[1].compensation is None
    assert structlog.contextvars.get_contextvars() == {}  # the saga's task kept them to itself


def test_the_log_format_is_a_setting_and_a_flag_of_serve_and_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError
    from rich.console import Console

    from oms.cli.commands import _settings, parser
    from oms.config import Settings

    assert Settings.model_validate({}).log_format == "text"
    monkeypatch.setenv("OMS_LOG_FORMAT", "json")
    assert Settings.model_validate({}).log_format == "json"
    monkeypatch.setenv("OMS_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings.model_validate({})
    monkeypatch.delenv("OMS_LOG_FORMAT")
    for command in (["serve", "order"], ["up"]):
        settings = _settings(parser().parse_args([*command, "--log-format", "json"]), Console())
        assert settings is not None and settings.log_format == "json"
        with pytest.raises(SystemExit):
            parser().parse_args([*command, "--log-format", "xml"])


def test_uvicorn_access_lines_stay_off_when_uvicorn_turned_them_off() -> None:
    access = logging.getLogger("uvicorn.access")
    access.handlers, access.propagate = [], False  # what uvicorn does without access_log
    try:
        logs.configure("info", "json", "order")  # as a worker process does, after uvicorn's set-up
        assert not access.hasHandlers()  # uvicorn's protocol would write a line per request
        assert logging.getLogger("uvicorn.error").hasHandlers()
    finally:
        access.propagate = True
