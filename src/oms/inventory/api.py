"""InventoryService's HTTP API: the catalog, stock checks, and reservations keyed by order id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request
from pydantic import Field

from oms.auth.tokens import Role
from oms.config import Settings
from oms.edge.access import audit, only
from oms.edge.answers import JSON, json
from oms.edge.app import database_of, database_service, gated
from oms.edge.listing import Limit, Next, Offset, after, answer
from oms.edge.openapi import Tag, errors, link, listed, ok
from oms.edge.problems import Problem
from oms.fields import ORDER_ID_PATTERN, Currency, Lines, OrderId, Price, Strict, Text, Visible
from oms.inventory import problems as _problems  # noqa: F401  (registers how this service's errors are answered)
from oms.inventory import store
from oms.inventory.answers import Check, Item, Reservation, ReservationStatus, Reserved


class ItemIn(Strict):
    name: Text
    unit_price: Price
    currency: Currency
    available: Annotated[int, Field(strict=True, ge=0, le=10**9)]


class ReserveIn(Lines):
    order_id: OrderId


SkuPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), Visible]
OrderPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ORDER_ID_PATTERN), Visible]


def _lines(body: Lines) -> list[tuple[str, int]]:
    return [(line.sku, line.quantity) for line in body.items]


ITEM_LINKS = {"get": link("GET", "/items/{sku}", "The item.", parameters={"sku": "$response.body#/sku"})}
RESERVATION_LINKS = {
    "get": link(
        "GET", "/reservations/{order_id}", "The reservation.", parameters={"order_id": "$response.body#/order_id"}
    ),
    "release": link(
        "POST", "/reservations/{order_id}/release", "Release it.", parameters={"order_id": "$response.body#/order_id"}
    ),
}
RESERVE: dict[int | str, dict[str, Any]] = {
    201: ok(Reserved, "Every line held for the order, and the stock left.", links=RESERVATION_LINKS),
    200: ok(
        Reserved,
        "The order held these lines already: the reservation as it was made, and the stock now.",
        links=RESERVATION_LINKS,
    ),
    **errors(
        e409="Not enough stock (`shortages`; nothing held), the reservation was released, or it holds other lines.",
        e422="A field is wrong, or an unknown SKU (`skus`).",
    ),
}
"""POST /reservations' answers."""

READERS = (Role.CUSTOMER, Role.ADMIN, Role.SERVICE)
PARTICIPANT = (Role.SERVICE, Role.ADMIN)
"""Who may call the saga's participant routes: OrderService's own token, and admins."""


def create_app(settings: Settings) -> Any:
    app, front = database_service("oms InventoryService", "inventory", settings)
    database = database_of

    @app.put(
        "/items/{sku}",
        dependencies=[only(Role.ADMIN)],
        tags=[Tag.CATALOG],
        responses={
            201: ok(Item, "The item, new.", links=ITEM_LINKS),
            200: ok(Item, "The item, replaced.", links=ITEM_LINKS),
        },
    )
    async def put_item(sku: SkuPath, body: ItemIn, request: Request) -> JSON:
        audit(request, "put_item", sku)
        created = await store.put_item(
            database(request),
            sku=sku,
            name=body.name,
            unit_price=body.unit_price,
            currency=body.currency,
            available=body.available,
        )
        item = await store.get_item(database(request), sku)
        return json(item, 201 if created else 200)

    @app.get(
        "/items/{sku}",
        dependencies=[only(*READERS)],
        tags=[Tag.CATALOG],
        responses={200: ok(Item, "The item."), **errors(e404="No item has this SKU.")},
    )
    async def get_item(sku: SkuPath, request: Request) -> JSON:
        item = await store.get_item(database(request), sku)
        if item is None:
            raise Problem(404, "Unknown SKU", f"No item has SKU {sku}.", type_="/problems/unknown-sku", skus=[sku])
        return json(item)

    @app.get(
        "/items", dependencies=[only(*READERS)], tags=[Tag.CATALOG], responses={200: listed(Item, "Items, by SKU.")}
    )
    async def list_items(request: Request, limit: Limit = 100, offset: Offset = 0, cursor: Next = None) -> JSON:
        page = await store.list_items(
            database(request), limit=limit, offset=offset, after=after(store.ITEMS, cursor, offset)
        )
        return answer(request, page)

    async def check_inventory(request: Request, body: Lines) -> JSON:
        return json(await store.check(database(request), _lines(body)))

    async def reserve(request: Request, body: ReserveIn) -> JSON:
        audit(request, "reserve", body.order_id)
        reservation, created, stock = await store.reserve(database(request), body.order_id, _lines(body))
        return json({**reservation.as_dict(), "stock": stock}, 201 if created else 200)

    # The calls OrderService makes on every order: lean routes (see oms.edge.app.Front).
    front.post(
        "/inventory/check",
        Lines,
        check_inventory,
        roles=PARTICIPANT,
        tags=[Tag.CATALOG],
        responses={200: ok(Check, "Whether every line could be reserved now, with each item's price and stock.")},
    )
    front.post("/reservations", ReserveIn, reserve, roles=PARTICIPANT, tags=[Tag.RESERVATIONS], responses=RESERVE)

    @app.get(
        "/reservations",
        dependencies=[only(*PARTICIPANT)],
        tags=[Tag.RESERVATIONS],
        responses={200: listed(Reservation, "Reservations, oldest first.")},
    )
    async def list_reservations(
        request: Request,
        status: Annotated[ReservationStatus | None, Query()] = None,
        limit: Limit = 100,
        offset: Offset = 0,
        cursor: Next = None,
    ) -> JSON:
        page = await store.list_reservations(
            database(request),
            status=status,
            limit=limit,
            offset=offset,
            after=after(store.RESERVATIONS, cursor, offset),
        )
        return answer(request, page, [r.as_dict() for r in page.items])

    @app.get(
        "/reservations/{order_id}",
        dependencies=[only(*PARTICIPANT)],
        tags=[Tag.RESERVATIONS],
        responses={200: ok(Reservation, "The order's reservation."), **errors(e404="The order has no reservation.")},
    )
    async def get_reservation(order_id: OrderPath, request: Request) -> JSON:
        reservation = await store.get_reservation(database(request), order_id)
        if reservation is None:
            raise Problem(404, "No reservation", f"Order {order_id} has no reservation.")
        return json(reservation.as_dict())

    @app.post(
        "/reservations/{order_id}/release",
        dependencies=[only(*PARTICIPANT)],
        tags=[Tag.RESERVATIONS],
        responses={200: ok(Reservation, "Released; one made before its reservation is a tombstone that refuses it.")},
    )
    async def release_reservation(order_id: OrderPath, request: Request) -> JSON:
        audit(request, "release", order_id)
        reservation, _ = await store.release(database(request), order_id)
        return json(reservation.as_dict())

    return gated(front, settings, "inventory")
