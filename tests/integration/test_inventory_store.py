"""InventoryService's store on a real database: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oms.db import Database
from oms.inventory import store
from oms.inventory.errors import AlreadyReleased, OutOfStock, ReservationMismatch, Shortage, UnknownSkus
from oms.inventory.schema import metadata
from oms.inventory.store import ReservationStatus


async def add(db: Database, sku: str, available: int, *, unit_price: int = 1250, currency: str = "EUR") -> bool:
    return await store.put_item(
        db, sku=sku, name=f"Item {sku}", unit_price=unit_price, currency=currency, available=available
    )


async def stock(db: Database, sku: str) -> tuple[int, int]:
    """(available, reserved) of one item."""
    item = await store.get_item(db, sku)
    assert item is not None, sku
    return item["available"], item["reserved"]


async def reservation_count(db: Database) -> int:
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM reservations")
    assert row is not None
    return int(row["n"])


# --- the catalog ------------------------------------------------------------------------------


def test_put_item_creates_then_replaces(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        assert await add(db, "SKU-1", 10, unit_price=500) is True
        assert await store.get_item(db, "SKU-1") == {
            "sku": "SKU-1",
            "name": "Item SKU-1",
            "unit_price": 500,
            "currency": "EUR",
            "available": 10,
            "reserved": 0,
        }
        created = await store.put_item(db, sku="SKU-1", name="Renamed", unit_price=750, currency="USD", available=3)
        assert created is False
        assert await store.get_item(db, "SKU-1") == {
            "sku": "SKU-1",
            "name": "Renamed",
            "unit_price": 750,
            "currency": "USD",
            "available": 3,
            "reserved": 0,
        }
        assert await store.get_item(db, "NOPE") is None
        await add(db, "SKU-0", 1)
        assert [i["sku"] for i in (await store.list_items(db)).items] == ["SKU-0", "SKU-1"]

    with_db(metadata, scenario)


def test_replacing_an_item_keeps_its_reserved_units_reserved(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 10)
        await store.reserve(db, "order-1", [("A", 3)])
        assert await stock(db, "A") == (7, 3)

        assert await add(db, "A", 20, unit_price=999) is False
        item = await store.get_item(db, "A")
        assert item is not None
        assert (item["available"], item["reserved"], item["unit_price"]) == (20, 3, 999)
        reservation = await store.get_reservation(db, "order-1")
        assert reservation is not None and reservation.status == ReservationStatus.RESERVED

        # The three reserved units come back on top of the new stock.
        await store.release(db, "order-1")
        assert await stock(db, "A") == (23, 0)

    with_db(metadata, scenario)


# --- check ------------------------------------------------------------------------------------


def test_check_says_whether_every_line_could_be_reserved(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5, unit_price=100)
        await add(db, "B", 1, unit_price=200)

        enough = await store.check(db, [("A", 5), ("B", 1)])
        assert enough["available"] is True
        assert enough["unknown"] == []
        assert [(i["sku"], i["requested"], i["sufficient"], i["unit_price"]) for i in enough["items"]] == [
            ("A", 5, True, 100),
            ("B", 1, True, 200),
        ]

        short = await store.check(db, [("B", 2), ("A", 1)])
        assert short["available"] is False
        assert [(i["sku"], i["available"], i["sufficient"]) for i in short["items"]] == [
            ("B", 1, False),
            ("A", 5, True),
        ]

        # A check holds nothing.
        assert await stock(db, "A") == (5, 0)
        assert await stock(db, "B") == (1, 0)

    with_db(metadata, scenario)


def test_check_lists_unknown_skus(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        answer = await store.check(db, [("GHOST", 1), ("A", 1), ("PHANTOM", 2)])
        assert answer["available"] is False
        assert answer["unknown"] == ["GHOST", "PHANTOM"]
        assert [i["sku"] for i in answer["items"]] == ["A"]
        assert answer["items"][0]["sufficient"] is True

    with_db(metadata, scenario)


# --- reserve ----------------------------------------------------------------------------------


def test_reserve_moves_units_from_available_to_reserved(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        await add(db, "B", 1)
        await add(db, "C", 9)

        reservation, created, after = await store.reserve(db, "order-1", [("B", 1), ("A", 2)])
        assert created is True
        assert [(i["sku"], i["available"], i["reserved"]) for i in after] == [("A", 3, 2), ("B", 0, 1)]
        assert reservation.order_id == "order-1"
        assert reservation.status == ReservationStatus.RESERVED
        assert reservation.lines == [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]

        assert await stock(db, "A") == (3, 2)
        assert await stock(db, "B") == (0, 1)
        assert await stock(db, "C") == (9, 0)
        assert await store.get_reservation(db, "order-1") == reservation

    with_db(metadata, scenario)


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([("A", 2), ("B", 2)], id="second-line-short"),
        pytest.param([("A", 6), ("B", 1)], id="first-line-short"),
    ],
)
def test_reserve_is_all_or_nothing(with_db: Any, lines: list[tuple[str, int]]) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        await add(db, "B", 1)

        with pytest.raises(OutOfStock):
            await store.reserve(db, "order-1", lines)

        # The line that fitted was given back with the rest: nothing moved, nothing recorded.
        assert await stock(db, "A") == (5, 0)
        assert await stock(db, "B") == (1, 0)
        assert await store.get_reservation(db, "order-1") is None
        assert await reservation_count(db) == 0

        # And the refusal left nothing behind that blocks the order: it can reserve what there is.
        _, created, _ = await store.reserve(db, "order-1", [("A", 5), ("B", 1)])
        assert created is True
        assert await stock(db, "A") == (0, 5)
        assert await stock(db, "B") == (0, 1)

    with_db(metadata, scenario)


def test_out_of_stock_reports_every_short_line(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 1)
        await add(db, "B", 0)
        await add(db, "C", 10)

        with pytest.raises(OutOfStock) as caught:
            await store.reserve(db, "order-1", [("C", 1), ("B", 4), ("A", 2)])
        assert sorted(caught.value.shortages, key=lambda s: s.sku) == [
            Shortage(sku="A", requested=2, available=1),
            Shortage(sku="B", requested=4, available=0),
        ]
        assert await stock(db, "C") == (10, 0)

    with_db(metadata, scenario)


def test_unknown_skus_are_refused_and_nothing_moves(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        await add(db, "B", 0)

        with pytest.raises(UnknownSkus) as caught:
            await store.reserve(db, "order-1", [("A", 1), ("NOPE", 1), ("ZILCH", 3)])
        assert sorted(caught.value.skus) == ["NOPE", "ZILCH"]

        # An unknown SKU wins over a short one: the order is wrong, not just early.
        with pytest.raises(UnknownSkus) as caught:
            await store.reserve(db, "order-2", [("B", 1), ("NOPE", 1)])
        assert caught.value.skus == ["NOPE"]

        assert await stock(db, "A") == (5, 0)
        assert await reservation_count(db) == 0

    with_db(metadata, scenario)


def test_reserve_is_idempotent_per_order(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        await add(db, "B", 5)

        first, created, _ = await store.reserve(db, "order-1", [("A", 2), ("B", 1)])
        assert created is True
        # The same lines in another order are the same request.
        again, created_again, now = await store.reserve(db, "order-1", [("B", 1), ("A", 2)])
        assert created_again is False
        assert again == first
        assert [(i["sku"], i["available"]) for i in now] == [("A", 3), ("B", 4)]

        assert await stock(db, "A") == (3, 2)
        assert await stock(db, "B") == (4, 1)
        assert await reservation_count(db) == 1

    with_db(metadata, scenario)


def test_reserving_other_lines_for_the_same_order_is_a_mismatch(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        await add(db, "B", 5)
        await store.reserve(db, "order-1", [("A", 2)])

        for other in ([("A", 3)], [("A", 2), ("B", 1)], [("B", 2)]):
            with pytest.raises(ReservationMismatch):
                await store.reserve(db, "order-1", other)

        assert await stock(db, "A") == (3, 2)
        assert await stock(db, "B") == (5, 0)
        reservation = await store.get_reservation(db, "order-1")
        assert reservation is not None and reservation.lines == [{"sku": "A", "quantity": 2}]

    with_db(metadata, scenario)


# --- release ----------------------------------------------------------------------------------


def test_release_gives_units_back_once(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        await add(db, "B", 2)
        await add(db, "C", 7)
        held, _, _ = await store.reserve(db, "order-1", [("A", 2), ("B", 2)])
        await store.reserve(db, "order-2", [("A", 1)])

        released, created = await store.release(db, "order-1")
        assert created is True
        assert released.status == ReservationStatus.RELEASED
        assert released.lines == held.lines
        assert released.created_at == held.created_at
        assert await stock(db, "A") == (4, 1)  # order-2 still holds its unit
        assert await stock(db, "B") == (2, 0)
        assert await stock(db, "C") == (7, 0)

        again, created_again = await store.release(db, "order-1")
        assert created_again is False
        assert again.status == ReservationStatus.RELEASED
        assert await stock(db, "A") == (4, 1)
        assert await stock(db, "B") == (2, 0)

        # A released order cannot take stock again.
        with pytest.raises(AlreadyReleased):
            await store.reserve(db, "order-1", [("A", 2), ("B", 2)])
        assert await stock(db, "A") == (4, 1)

    with_db(metadata, scenario)


def test_release_before_reserve_leaves_a_tombstone(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)

        tombstone, created = await store.release(db, "late-order")
        assert created is True
        assert (tombstone.status, tombstone.lines) == (ReservationStatus.RELEASED, [])
        stored = await store.get_reservation(db, "late-order")
        assert stored is not None and (stored.status, stored.lines) == (ReservationStatus.RELEASED, [])

        # The reservation that arrives after its release is refused, and takes nothing.
        with pytest.raises(AlreadyReleased):
            await store.reserve(db, "late-order", [("A", 1)])
        assert await stock(db, "A") == (5, 0)

        _, created_again = await store.release(db, "late-order")
        assert created_again is False
        assert await stock(db, "A") == (5, 0)

    with_db(metadata, scenario)


# --- concurrency (on PostgreSQL the transactions really overlap, on SQLite they queue) --------


def test_concurrent_reserves_never_oversell(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 5)
        done = asyncio.Event()
        seen: list[tuple[int, int]] = []

        async def watch() -> None:
            while not done.is_set():
                seen.append(await stock(db, "A"))
                await asyncio.sleep(0)

        async def attempt(i: int) -> bool:
            try:
                await store.reserve(db, f"order-{i}", [("A", 1)])
            except OutOfStock as exc:
                assert exc.shortages == [Shortage("A", 1, 0)]
                return False
            return True

        watcher = asyncio.create_task(watch())
        try:
            outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
        finally:
            done.set()
            await watcher

        assert outcomes.count(True) == 5
        assert await stock(db, "A") == (0, 5)
        assert await reservation_count(db) == 5
        assert all(available >= 0 and reserved >= 0 and available + reserved == 5 for available, reserved in seen)

    with_db(metadata, scenario, pool_size=21)


def test_concurrent_reserves_over_shared_skus_do_not_deadlock(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 10)
        await add(db, "B", 10)

        async def attempt(i: int) -> bool:
            # Half the orders list the SKUs the other way round: the store must lock them in one order.
            lines = [("A", 1), ("B", 1)] if i % 2 else [("B", 1), ("A", 1)]
            try:
                await store.reserve(db, f"order-{i}", lines)
            except OutOfStock:
                return False
            return True

        outcomes = await asyncio.wait_for(asyncio.gather(*(attempt(i) for i in range(16))), timeout=30)
        assert outcomes.count(True) == 10
        assert await stock(db, "A") == (0, 10)
        assert await stock(db, "B") == (0, 10)

    with_db(metadata, scenario, pool_size=16)


def test_concurrent_duplicate_reserves_move_stock_once(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 10)
        await add(db, "B", 10)

        results = await asyncio.gather(*(store.reserve(db, "order-1", [("A", 3), ("B", 1)]) for _ in range(10)))

        assert [created for _, created, _ in results].count(True) == 1
        assert all(reservation.lines == results[0][0].lines for reservation, _, _ in results)
        assert await stock(db, "A") == (7, 3)
        assert await stock(db, "B") == (9, 1)
        assert await reservation_count(db) == 1

    with_db(metadata, scenario, pool_size=10)


def test_concurrent_reserve_and_release_of_one_order_leave_stock_whole(with_db: Any) -> None:
    async def scenario(db: Database) -> None:
        await add(db, "A", 100)

        async def reserve(order_id: str) -> str:
            try:
                await store.reserve(db, order_id, [("A", 2)])
            except AlreadyReleased:
                return "refused"
            return "reserved"

        orders = [f"order-{i}" for i in range(10)]
        await asyncio.gather(*(op for o in orders for op in (reserve(o), store.release(db, o))))

        # Whichever came first, each order ends released and holds nothing.
        assert await stock(db, "A") == (100, 0)
        for order_id in orders:
            reservation = await store.get_reservation(db, order_id)
            assert reservation is not None and reservation.status == ReservationStatus.RELEASED

    with_db(metadata, scenario, pool_size=20)


def test_concurrent_duplicate_releases_give_units_back_once(with_db: Any) -> None:
    """A compensation is retried until it succeeds, so a retry may overlap a release still in flight."""

    async def scenario(db: Database) -> None:
        await add(db, "A", 100)
        await store.reserve(db, "other-order", [("A", 10)])
        await store.reserve(db, "order-1", [("A", 5)])
        assert await stock(db, "A") == (85, 15)

        results = await asyncio.gather(*(store.release(db, "order-1") for _ in range(10)))

        # other-order still holds its 10 units; order-1's 5 came back exactly once.
        assert await stock(db, "A") == (90, 10)
        assert [created for _, created in results].count(True) == 1

    with_db(metadata, scenario, pool_size=10)
