"""The relay's window (``oms.events.window``): each order's events one at a time and in order,
different orders side by side, the cursor held by the oldest event not done."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from oms.events.window import Window


def events(*orders: str) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    seen: dict[str, int] = {}
    out = []
    for n, order in enumerate(orders, start=1):
        seen[order] = seen.get(order, 0) + 1
        out.append(((0, n), {"order_id": order, "sequence": seen[order], "type": "t", "time": f"T{n}"}))
    return out


def test_an_orders_next_event_waits_for_the_one_before() -> None:
    window = Window((0, 0))
    ready = window.add(events("a", "b", "a", "a"))
    assert [(i.order_id, i.event["sequence"]) for i in ready] == [("a", 1), ("b", 1)]
    a1, b1 = ready
    following = window.done(a1)
    assert following is not None and following.event["sequence"] == 2
    assert window.advance() == (0, 1)  # b's first is not done: the cursor stops before it
    window.done(b1)
    assert window.advance() == (0, 2)
    assert window.oldest_time() == "T3"


def test_handing_over_takes_the_orders_later_events_too() -> None:
    window = Window((0, 0))
    a1, b1 = window.add(events("a", "b", "a", "a"))
    later = window.hand_over(a1)
    assert [i.event["sequence"] for i in later] == [2, 3]
    window.done(b1)
    assert window.advance() == (0, 4)
    assert window.oldest_time() is None


def test_skipped_events_are_done_at_once_and_the_window_has_a_size() -> None:
    window = Window((0, 7), size=3)
    ready = window.add(events("a", "b", "c"), skip=lambda e: e["order_id"] == "b")
    assert [i.order_id for i in ready] == ["a", "c"]
    assert window.room == 0
    for item in ready:
        window.done(item)
    assert window.advance() == (0, 3) and window.room == 3


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=40), st.randoms())
def test_whatever_finishes_first_each_order_goes_in_order(orders: list[str], rng: Any) -> None:
    window = Window((0, 0))
    sent: list[tuple[str, int]] = []
    going = window.add(events(*orders))
    while going:
        item = going.pop(rng.randrange(len(going)))
        sent.append((item.order_id, item.event["sequence"]))
        following = window.done(item)
        if following is not None:
            going.append(following)
    assert len(sent) == len(orders)
    for order in set(orders):
        assert [s for o, s in sent if o == order] == list(range(1, orders.count(order) + 1))
    assert window.advance() == (0, len(orders))


def test_the_tail_reads_each_event_once_for_ways_close_behind_one_another() -> None:
    import asyncio

    from oms.events.ways import Tail

    table: list[dict[str, Any]] = [{"tx": 0, "position": n, "type": "t"} for n in range(1, 101)]
    reads: list[tuple[int, int]] = []

    class Outbox:
        async def events_after(self, key: tuple[int, int], limit: int) -> list[dict[str, Any]]:
            reads.append((key[1], limit))
            return [row for row in table if row["position"] > key[1]][:limit]

    async def scenario() -> None:
        tail = Tail(Outbox(), size=30)  # type: ignore[arg-type]
        first = await tail.after((0, 0), 10)
        again = await tail.after((0, 0), 10)  # a second way, as far: no read
        assert [k for k, _ in first] == [k for k, _ in again] == [(0, n) for n in range(1, 11)]
        assert first[0][1] is again[0][1]  # the same row, shared
        assert [k for k, _ in await tail.after((0, 5), 10)] == [(0, n) for n in range(6, 16)]  # reads on from 10
        assert reads == [(0, 10), (10, 5)]
        for start in range(15, 100, 10):
            await tail.after((0, start), 10)
        assert len(tail.keys) <= 30
        assert [k for k, _ in await tail.after((0, 3), 2)] == [(0, 4), (0, 5)]  # far behind: the database
        assert reads[-1] == (3, 2)

    asyncio.run(scenario())
