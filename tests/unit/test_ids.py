import time

import pytest

from oms.ids import sortable_id


def test_ids_made_in_one_millisecond_sort_in_the_order_they_were_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    made = [sortable_id("we_") for _ in range(500)]
    assert made == sorted(made) and len(set(made)) == 500
    assert all(m.startswith("we_") and len(m) == 27 for m in made)
    assert {m[3:15] for m in made} == {f"{1_800_000_000_000:012x}"}  # the millisecond, while 48 random bits last


def test_a_clock_stepping_back_does_not_make_an_id_that_sorts_before_an_earlier_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.5)
    before = sortable_id("ord_")
    monkeypatch.setattr(time, "time", lambda: 1_799_999_000.0)
    assert sortable_id("ord_") > before


def test_a_later_millisecond_starts_with_its_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_900_000_000.0)
    assert sortable_id("evt_")[4:16] == f"{1_900_000_000_000:012x}"
