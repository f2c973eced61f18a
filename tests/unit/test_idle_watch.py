"""The watch that tells a relay starving in the cores' idle time: within the last ten seconds it waited
for a core at least 2.5 s, and more than 90% of the time it wanted one; however the looks fall."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oms.events.idle import Watch
from oms.events.process import next_spell


def test_a_relay_that_waits_half_the_time_it_wants_a_core_keeps_up_and_is_not_starving() -> None:
    watch = Watch()
    for n in range(400):  # 100 s: every quarter of a second, 0.1 s run and 0.1 s waited
        assert not watch.came(n * 0.25, n * 0.1, n * 0.1)


def test_a_relay_with_little_to_do_is_not_starving_however_long_it_waits() -> None:
    watch = Watch()
    for n in range(400):  # 99% of the time it wanted a core spent waiting, but 0.2 s in ten seconds
        assert not watch.came(n * 0.25, n * 0.005, n * 0.00005)


def test_waiting_nearly_all_the_time_is_starving_once_it_adds_up() -> None:
    watch = Watch()
    verdicts = [watch.came(n * 0.25, n * 0.2, n * 0.002) for n in range(14)]  # 99% waiting
    assert verdicts.index(True) == 13  # at 3.25 s: 2.6 s waited, past 2.5
    assert round(watch.waited, 6) == 2.6 and round(watch.ran, 6) == 0.026


def test_waiting_long_ago_leaves_the_window() -> None:
    watch = Watch()
    assert not watch.came(0.0, 0.0, 0.0)
    assert not watch.came(1.0, 2.0, 0.0)  # 2 s waited in a burst
    assert watch.came(2.0, 3.0, 0.0)  # 3 s within the window
    assert not watch.came(12.5, 3.0, 0.5)  # the burst is more than 10 s old now
    assert watch.waited == 0.0


@given(st.lists(st.tuples(st.floats(0.01, 2.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=1, max_size=100))
def test_starving_is_what_the_window_holds_past_both_bounds(looks: list[tuple[float, float, float]]) -> None:
    watch = Watch()
    now = waited = ran = 0.0
    seen = [(now, waited, ran)]
    watch.came(now, waited, ran)
    for step, waiting, running in looks:
        now += step
        waited, ran = waited + step * waiting, ran + step * running * (1 - waiting)
        seen.append((now, waited, ran))
        starving = watch.came(now, waited, ran)
        # counted from the last look at or before the window's start (or the first look)
        first = max((s for s in seen if s[0] <= now - watch.window), default=seen[0], key=lambda s: s[0])
        w, r = waited - first[1], ran - first[2]
        assert abs(watch.waited - w) < 1e-9 and abs(watch.ran - r) < 1e-9
        assert starving == (w >= watch.least and w > watch.share * (w + r))


def test_the_spell_at_its_niceness_doubles_while_it_keeps_starving_and_stays_at_an_hour() -> None:
    spell, starved_at, now = 0.0, None, 0.0
    spells: list[float] = []
    for _ in range(9):  # each time it starves right after its spell ended
        spell, starved_at = next_spell(spell, starved_at, now), now
        spells.append(spell)
        now += spell + 1
    assert spells == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    last = 10_000.0
    assert next_spell(3600, last, last + 3600 + 3599) == 3600  # within the hour after its spell
    assert next_spell(3600, last, last + 3600 + 3601) == 60  # an hour in idle time since
