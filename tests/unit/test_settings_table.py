"""The configuration page's table (oms.settings_table): every setting on it, nested ones field by field,
each with the variable that sets it and a description, since the page is the settings' documentation
and is made from nothing but the code."""

from __future__ import annotations

import dataclasses
import re

from oms.config import Settings
from oms.resilience.breaker import BreakerConfig
from oms.settings_table import attribute_docstrings, markdown, rows


def test_every_setting_has_a_row_with_a_description() -> None:
    described = {row.name: row.description for row in rows()}
    names = list(Settings.model_fields)
    for name, field in Settings.model_fields.items():  # a nested policy: each of its fields too
        if dataclasses.is_dataclass(field.annotation):
            names += [f"{name}.{f.name}" for f in dataclasses.fields(field.annotation)]
    assert {"breaker.wait_in_open", "retry.attempts", "compensation.give_up_after"} <= set(names)
    assert sorted(described) == sorted(names)
    assert [name for name in names if not described[name]] == []


def test_every_variable_the_settings_read_is_on_the_page() -> None:
    # Settings.environment() names the variables a worker process is given, by pydantic-settings' own rules.
    page = markdown()
    variables = Settings.model_validate({}).environment()
    assert [name for name in variables if f"`{name}`" not in page] == []
    assert "`OMS_BREAKER_WAIT_IN_OPEN`" in page and "`OMS_DATABASE_URL`" in page


def test_each_row_shows_the_fields_default() -> None:
    table = {row.name: row.default for row in rows()}
    assert table["lease_ttl"] == "`15.0`"
    assert table["data_dir"] == "`.oms`"
    assert table["port"] == "none"
    assert table["event_relay"] == "`true`"
    assert table["breaker.wait_in_open"] == f"`{BreakerConfig().wait_in_open}`"
    assert table["breaker.window_type"] == "`count`"


def test_choices_and_bounds_are_said() -> None:
    described = {row.name: row.description for row in rows()}
    assert "One of `OFF`, `NORMAL`, `FULL`, `EXTRA`." in described["sqlite_synchronous"]
    assert described["database_pool_size"].endswith("Must be at least 1, at most 100.")


def test_the_table_is_one_line_a_setting_and_no_cell_breaks_it() -> None:
    lines = markdown().splitlines()
    assert len(lines) == 2 + len(rows())
    for line in lines:
        assert len(re.findall(r"(?<!\\)\|", line)) == 5, line


def test_docstrings_are_read_from_under_each_field() -> None:
    docs = attribute_docstrings(Settings)
    assert docs["lease_ttl"].startswith("Seconds an OrderService process holds a saga")
    assert attribute_docstrings(BreakerConfig)["wait_in_open"].startswith("Seconds in OPEN")
