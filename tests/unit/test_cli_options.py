"""The ``oms`` command line as a user reads it: every option says what it does and its default, statuses are
listed where one is asked for, ``oms order place``'s exit codes are documented and kept."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from oms.cli.commands import PLACE_EXIT_CODES, _parse_item, parser
from oms.cli.console import STATUSES, place_exit_code
from oms.orders.answers import OrderStatus


def commands(top: argparse.ArgumentParser, path: str = "oms") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


def test_every_option_and_argument_has_help_and_every_option_its_default() -> None:
    for path, command in commands(parser()):
        for action in command._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            where = f"{path} {action.option_strings[-1] if action.option_strings else action.dest}"
            assert action.help, f"{where} has no help"
            if action.default not in (None, False, []):
                shown = action.help % {"default": action.default}
                assert str(action.default) in shown and "default" in shown, f"{where}: default not in its help"


def test_orders_status_lists_every_status() -> None:
    assert set(STATUSES) == {status.value for status in OrderStatus}
    status = next(a for a in dict(commands(parser()))["oms orders"]._actions if a.dest == "status")
    assert tuple(status.choices or ()) == STATUSES
    assert all(name in (status.help or "") for name in STATUSES)
    assert parser().parse_args(["orders", "--status", "placed"]).status == "PLACED"  # any case
    with pytest.raises(SystemExit):
        parser().parse_args(["orders", "--status", "shipped"])


def test_order_place_exit_codes() -> None:
    assert place_exit_code("PLACED") == 0
    assert place_exit_code("PENDING") == 4
    for failed in ("PAYMENT_FAILED", "OUT_OF_STOCK", "REJECTED", "CANCELLED", "COMPENSATION_FAILED"):
        assert place_exit_code(failed) == 3
    assert set(STATUSES) == {"PLACED", "PENDING", "PAYMENT_FAILED", "OUT_OF_STOCK", "REJECTED", "CANCELLED",
                             "COMPENSATION_FAILED"}  # fmt: skip
    help_text = dict(commands(parser()))["oms order place"].format_help()
    assert PLACE_EXIT_CODES in help_text
    for line in ("0  the order is PLACED", "3  the order ended failed", "4  the order is still PENDING", "1  no order"):
        assert line in help_text


def test_an_item_without_a_quantity_is_one_unit() -> None:
    assert _parse_item("WIDGET-1") == {"sku": "WIDGET-1", "quantity": 1}
    assert _parse_item("WIDGET-1:3") == {"sku": "WIDGET-1", "quantity": 3}
    for wrong in ("WIDGET-1:", ":3", "WIDGET-1:x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="write SKU or SKU:QUANTITY"):
            _parse_item(wrong)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["-n", "0"], "0 is less than 1"),
        (["-c", "0"], "0 is less than 1"),
        (["-n", "many"], "'many' is not a whole number"),
        (["--warmup", "-1"], "-1 is less than 0"),
        (["--decline-rate", "2"], "2.0 is not between 0 and 1"),
        (["--out-of-stock-rate", "-0.1"], "-0.1 is not between 0 and 1"),
        (["--env", "OMS_LOG_LEVEL"], "write NAME=VALUE"),
        (["--json", "/no/such/folder/figures.json"], "/no/such/folder is not a folder"),
    ],
)
def test_bench_refuses_wrong_options_before_it_starts(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the command line (exit 2, what is wrong), not a traceback after the whole run."""
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["bench", *args])
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err


def test_bench_takes_settings_and_a_figures_file(tmp_path: Path) -> None:
    args = parser().parse_args(["bench", "--env", "OMS_A=1=2", "--env", "OMS_B=", "--json", str(tmp_path / "f.json")])
    assert dict(args.env) == {"OMS_A": "1=2", "OMS_B": ""}
    assert args.json == tmp_path / "f.json"


def test_up_takes_a_port_with_room_for_the_two_after_it_or_0() -> None:
    assert parser().parse_args(["up", "--port", "9000"]).order_port == 9000
    assert parser().parse_args(["up", "--port", "0"]).order_port == 0
    assert parser().parse_args(["up"]).order_port is None
    for wrong in ("65534", "-1", "eighty"):
        with pytest.raises(SystemExit):
            parser().parse_args(["up", "--port", wrong])
