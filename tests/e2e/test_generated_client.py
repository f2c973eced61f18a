"""Clients generated from each service's live ``/openapi.json`` by openapi-python-client, used as a
customer would use them: the document is what other languages' and teams' clients are made from.

The generator must print no warning (and exits non-zero on one: ``--fail-on-warning``), and the
clients must work with nothing added by hand: their own bearer auth (``AuthenticatedClient(token=)``),
no extra header. Through them: an item put and checked (InventoryService), orders placed, read,
paged, cancelled and drawn (OrderService), and the order's payment found, then refunded by the
cancel (PaymentService). The names are the document's: ``orders.cancel_order``, ``OrderStatus``.

Generating takes a few seconds a service, so each is generated once for the module (on whichever
database's system asks first: the document is the same on both) into a temporary folder, and
imported from there.
"""

from __future__ import annotations

import enum
import importlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from system import System

from oms.auth.tokens import customer_token
from oms.orders.saga import STATUSES

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
CONFIG = "post_hooks: []\n"
"""No ruff run on the generated code: it is imported, not read."""


class Generated:
    """The generated client of each service, made on first use from a live service's document."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.packages: dict[str, ModuleType] = {}
        self.outputs: dict[str, str] = {}
        (directory / "config.yaml").write_text(CONFIG)

    def __call__(self, system: System, service: str) -> Callable[[str], Any]:
        """An importer of the generated package's modules for ``service``: ``client("api.orders.get_order")``."""
        if service not in self.packages:
            self.packages[service] = self._generate(system, service)
        name = self.packages[service].__name__
        return lambda module: importlib.import_module(f"{name}.{module}")

    def _generate(self, system: System, service: str) -> ModuleType:
        answer = system.http.get(f"{system.url(service)}/openapi.json")
        assert answer.status_code == 200, answer.text
        document = self.directory / f"{service}.json"
        document.write_bytes(answer.content)
        package = f"oms_{service}_client"
        run = subprocess.run(
            [
                str(GENERATOR), "generate", "--path", str(document), "--meta", "none",
                "--output-path", str(self.directory / package), "--config", str(self.directory / "config.yaml"),
                "--fail-on-warning",
            ],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        output = run.stdout + run.stderr
        self.outputs[service] = output
        assert run.returncode == 0, output
        assert "warning" not in output.lower(), output
        return importlib.import_module(package)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    if not GENERATOR.exists():
        pytest.fail(f"no {GENERATOR}: pip install -e '.[test]' (openapi-python-client)")
    made = Generated(tmp_path_factory.mktemp("clients"))
    sys.path.insert(0, str(made.directory))
    try:
        yield made
    finally:
        sys.path.remove(str(made.directory))
        for name in [m for m in sys.modules if m.split(".")[0] in {p.__name__ for p in made.packages.values()}]:
            del sys.modules[name]


def authenticated(modules: Callable[[str], Any], url: str, token: str) -> Any:
    client = modules("client")
    return client.AuthenticatedClient(base_url=url, token=token, raise_on_unexpected_status=True, timeout=30.0)


def test_the_operations_are_named_for_clients(shared_system: System, generated: Generated) -> None:
    """What a developer reads: one module per tag, one function per operation, one type per enum."""
    orders = generated(shared_system, "order")
    for module in ("place_order", "get_order", "list_orders", "cancel_order", "retry_order", "get_order_diagram"):
        assert hasattr(orders(f"api.orders.{module}"), "sync_detailed"), module
    assert {s.value for s in orders("models").OrderStatus} == set(STATUSES)
    inventory = generated(shared_system, "inventory")
    for module in ("reserve", "list_reservations", "get_reservation", "release_reservation"):
        assert hasattr(inventory(f"api.reservations.{module}"), "sync"), module
    assert hasattr(inventory("api.catalog.check_inventory"), "sync")
    payments = generated(shared_system, "payment")
    for module in ("charge", "list_payments", "refund", "void"):
        assert hasattr(payments(f"api.payments.{module}"), "sync"), module
    assert hasattr(payments("api.operations.health"), "sync")
    for modules in (orders, inventory, payments):
        enums = enum_types(modules("models"))
        by_values: dict[frozenset[str], list[str]] = {}
        for name, values in enums.items():
            by_values.setdefault(values, []).append(name)
        assert [names for names in by_values.values() if len(names) > 1] == []  # one type per enum


def enum_types(models: ModuleType) -> dict[str, frozenset[str]]:
    """The enum classes of a generated ``models`` package, by name, with their values."""
    found = {}
    for name in dir(models):
        value = getattr(models, name)
        if isinstance(value, type) and issubclass(value, enum.Enum):
            found[name] = frozenset(str(member.value) for member in value)
    return found


def test_a_generated_client_places_reads_pages_cancels_and_draws_orders(
    shared_system: System, generated: Generated
) -> None:
    s = shared_system
    sku = f"GEN-{uuid.uuid4().hex[:8].upper()}"
    customer = f"gen-{uuid.uuid4().hex[:8]}"

    # InventoryService, as an admin: an item put, then checked.
    inventory = generated(s, "inventory")
    stock = authenticated(inventory, s.url("inventory"), s.token)
    item_in = inventory("models").ItemIn(name="Generated widget", unit_price=1250, currency="EUR", available=10)
    put = inventory("api.catalog.put_item").sync_detailed(sku, client=stock, body=item_in)
    assert put.status_code == 201 and put.parsed.sku == sku
    line = inventory("models").Line(sku=sku, quantity=2)
    check = inventory("api.catalog.check_inventory").sync(client=stock, body=inventory("models").Lines(items=[line]))
    assert check.available is True and check.items[0].available == 10

    # OrderService, as a customer, with the client's own bearer auth and nothing else.
    orders = generated(s, "order")
    models = orders("models")
    mine = authenticated(orders, s.url("order"), customer_token(s.key, customer))
    body = models.PlaceOrderIn(items=[models.Line(sku=sku, quantity=1)], payment_method="pm_card_visa")
    placed = []
    for key in ("first", "second"):
        place = orders("api.orders.place_order")
        answer = place.sync_detailed(client=mine, body=body, idempotency_key=f"{customer}-{key}")
        assert answer.status_code == 201, answer.content
        assert answer.parsed.status is models.OrderStatus.PLACED
        placed.append(answer.parsed)
    first, second = placed

    read = orders("api.orders.get_order").sync(first.id, client=mine)
    assert (read.id, read.customer_id, read.total_amount, read.currency) == (first.id, customer, 1250, "EUR")
    assert read.saga_status is models.SagaStatus.COMPLETED and read.failure_reason is None
    assert [(e.name, e.outcome) for e in read.saga] == [
        (step, models.StepOutcome.DONE) for step in ("check_inventory", "reserve_inventory", "process_payment")
    ]

    lister = orders("api.orders.list_orders")
    page = lister.sync(client=mine, status=models.OrderStatus.PLACED, limit=1)
    assert [o.id for o in page.items] == [second.id] and page.next_
    after = lister.sync(client=mine, status=models.OrderStatus.PLACED, limit=1, next_=page.next_)
    assert [o.id for o in after.items] == [first.id]

    cancelled = orders("api.orders.cancel_order").sync_detailed(first.id, client=mine)
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.parsed.status is models.OrderStatus.CANCELLED
    assert cancelled.parsed.reservation is models.OrderReservation.RELEASED

    drawing = orders("api.orders.get_order_diagram")
    text = drawing.sync(first.id, client=mine)
    assert text.startswith(f"title Order {first.id} (CANCELLED)")
    mermaid = drawing.sync(first.id, client=mine, format_=models.GetOrderDiagramFormat.MERMAID)
    assert mermaid.startswith("sequenceDiagram")

    # PaymentService, as an admin: the cancelled order's payment, refunded.
    payments = generated(s, "payment")
    money = authenticated(payments, s.url("payment"), s.token)
    found = payments("api.payments.list_payments").sync(client=money, order_id=first.id)
    [payment] = found.items
    assert (payment.amount, payment.status) == (1250, payments("models").PaymentStatus.REFUNDED)
    again = payments("api.payments.refund").sync(client=money, body=payments("models").OrderRef(order_id=first.id))
    assert again.id == payment.id and again.status is payments("models").PaymentStatus.REFUNDED
