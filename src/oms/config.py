"""Configuration, read once: every setting is an ``OMS_*`` environment variable, and the CLI's flags
override them. The docs site's configuration page (docs/configuration.md) is made from the docstrings
under the fields below: they are the one description of each setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from oms.auth.tokens import IdentityProvider
from oms.events.schedule import WebhookPolicy
from oms.resilience.breaker import BreakerConfig
from oms.resilience.retry import RetryPolicy
from oms.saga.policies import CompensationPolicy, WaitingPolicy

DEFAULT_PORTS = {"order": 8000, "inventory": 8001, "payment": 8002}


class Settings(BaseSettings):
    # env_nested_*: a nested setting's fields are OMS_<SETTING>_<FIELD> (the first "_" after the
    # setting's name splits), so OMS_BREAKER_WAIT_IN_OPEN is breaker.wait_in_open.
    model_config = SettingsConfigDict(
        env_prefix="OMS_", extra="ignore", env_nested_delimiter="_", env_nested_max_split=1
    )

    host: str = "127.0.0.1"
    """Address the service listens on."""
    port: int | None = None
    """Port; defaults to 8000 (order), 8001 (inventory), 8002 (payment)."""
    database_url: str | None = None
    """sqlite:///PATH or postgresql+asyncpg://USER@HOST/DB; default: SQLite under ./.oms. A primary and
    its standbys: postgresql+asyncpg://USER@HOST1:PORT,HOST2:PORT/DB?target_session_attrs=read-write
    (docs/postgresql.md)."""
    data_dir: Path = Path(".oms")
    """Where SQLite databases live when no database_url is given."""
    database_pool_size: int = Field(8, ge=1, le=100)
    """PostgreSQL connections a service process keeps at most. Measured on two cores: 6 to 8 did
    best (535 orders/s); 20 gave 450, as more backends mostly wait on the same hot rows."""
    database_timeout: float = Field(5.0, gt=0)
    """Seconds a statement, a new connection or a wait for a free one may take (PostgreSQL), or a
    wait for SQLite's write lock: past it the request is answered 503, never left waiting on a hung
    database."""
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    """SQLite's synchronous pragma: FULL makes every commit durable before it returns."""
    log_level: str = "info"
    """The least severe log lines written: ``debug``, ``info``, ``warning``, ``error`` or ``critical`` (any
    case); a name it does not know means ``info``."""
    log_format: Literal["json", "text"] = "text"
    """``text``: one ``key=value`` line per event; ``json``: one JSON object per line (``oms.telemetry.logs``)."""
    workers: int = Field(1, ge=1, le=16)
    """Processes serving the service, sharing its port and its database."""

    inventory_url: str = "http://127.0.0.1:8001"
    """Where OrderService calls InventoryService."""
    payment_url: str = "http://127.0.0.1:8002"
    """Where OrderService calls PaymentService."""
    inventory_timeout: float = Field(2.0, gt=0)
    """Seconds before a call to InventoryService counts as timed out."""
    payment_timeout: float = Field(5.0, gt=0)
    """Seconds before a charge's outcome counts as unknown and is asked for."""
    order_wait: float = Field(15.0, gt=0)
    """Seconds POST /orders waits for the saga to end before answering with the order as it stands."""
    lease_ttl: float = Field(15.0, gt=0)
    """Seconds an OrderService process holds a saga without renewing; a dead one's sagas are taken over then."""
    recovery_interval: float = Field(2.0, gt=0)
    """Seconds between two passes that look for sagas to drive on (at start-up, and while running)."""
    catalog_sync_interval: float = Field(30.0, gt=0)
    """Seconds between two syncs of the fallback catalog from InventoryService."""
    max_body_bytes: int = Field(65536, ge=1024)
    """Larger request bodies are refused with 413."""
    max_header_bytes: int = Field(16384, ge=1024)
    """A request whose line and headers together are longer is refused with 431 and its connection closed."""
    header_timeout: float = Field(5.0, gt=0)
    """Seconds a client has to send a request's line and headers whole, from when its connection opened (the
    first request) or from the request's first byte (the next ones); past it, 408 and the connection closed,
    so that slow clients cannot hold connections open."""
    client_timeout: float = Field(10.0, gt=0)
    """Seconds a client has to send a whole request (line, headers and body) once it began; a slower one's
    connection is closed, so trickling clients cannot hold connections open."""
    max_connections: int = Field(10000, ge=1)
    """Open connections (and requests in progress) a service process takes at most; past it, 503. The process
    raises its open-files limit toward the hard limit at start-up to hold them (docs/limits.md)."""
    max_connections_per_address: int = Field(256, ge=0)
    """Open connections one client address may hold to a service process; past it, a new one is answered 503
    and closed at once. 0: no cap. Raise it, or set 0, behind a proxy or load balancer (docs/limits.md)."""

    auth_key_file: Path | None = None
    """The system's Ed25519 private JWK; default ``<data_dir>/auth-key.json``, created when missing."""
    auth_jwks_url: str | None = None
    """An identity provider's JWKS URL: its tokens (RS256, EdDSA) are accepted too."""
    auth_issuer: str | None = None
    """The ``iss`` the identity provider's tokens must carry."""
    auth_audience: str | None = None
    """The ``aud`` the identity provider's tokens must carry."""
    rate_limit_per_second: float = Field(20.0, gt=0)
    """Requests a second a customer token may make on average (token bucket); admin and service tokens are
    not limited."""
    rate_limit_burst: int = Field(40, ge=1)
    """Requests a customer may make at once before the average applies."""
    auth_failure_rate_per_second: float = Field(10.0, ge=0)
    """Requests a second that fail authentication (no token, a refused one) one client address may
    make on average; past it, such requests get 429 with Retry-After, before any signature check. 0:
    no limit. Behind a proxy every client has the proxy's address: raise it, or turn it off."""
    auth_failure_burst: int = Field(100, ge=1)
    """Requests failing authentication one client address may make at once before the average applies."""
    max_sagas_in_flight: int = Field(1000, ge=1)
    """Sagas one OrderService process drives at once; past it, POST /orders answers 503 with Retry-After."""
    audit_log: str = ""
    """Where the audit trail goes (one JSON line per state-changing call): a file path, ``-`` for standard
    error, ``off``; empty: ``<data_dir>/<service>-audit.log``."""
    idempotency_key_ttl: float = Field(86400.0, gt=0)
    """Seconds an Idempotency-Key is remembered (24 h, as Stripe does); after that it makes a new order."""
    gc_threshold: int = Field(20000, ge=0)
    """Container objects allocated (net) between two passes of Python's cyclic garbage collector once
    a service is serving, after what start-up left is frozen out of its sight (``oms.edge.gc_tuning``); 0 keeps
    Python's own collector (700, nothing frozen)."""
    trace_url_template: str | None = None
    """An order's trace in a tracing UI, ``{trace_id}`` standing for its trace id (e.g.
    ``http://jaeger:16686/trace/{trace_id}``): orders then show it as ``trace_url``."""

    event_retention: float = Field(30 * 86400.0, gt=0)
    """Seconds an order's events are kept (30 days): in the feed (older ones are pruned, a batch at a
    time, by OrderService: docs/events.md), and in the NATS stream ``OMS_EVENTS``."""
    event_relay: bool = True
    """Run the relay (webhooks, NATS, ``oms_events_total``) in a process beside this OrderService
    process. Off on some replicas of a fleet, the others relay for them; off everywhere, events only
    reach the feed."""
    relay_nice: int = Field(10, ge=0, le=19)
    """The relay process's niceness, added to OrderService's: when the machine's cores are all busy,
    the orders get them first and events wait a little (0: the same priority as OrderService)."""
    relay_idle: bool = True
    """Run the relay in the cores' idle time (Linux's ``SCHED_IDLE``): it takes no core an order wants.
    If it starves there (every core busy for seconds), it starts again at ``relay_nice`` for a spell of
    a minute, doubling each time it starves again within an hour, up to an hour (docs/webhooks.md)."""
    nats_url: str | None = None
    """A NATS server or cluster (``nats://host:4222``, several comma-separated): every event is also
    published to its JetStream stream ``OMS_EVENTS`` (docs/webhooks.md). Unset: no NATS."""

    webhook: WebhookPolicy = WebhookPolicy()
    """How webhooks are delivered and tried again (``WebhookPolicy``): ``OMS_WEBHOOK_<FIELD>`` sets one
    field (``OMS_WEBHOOK_TIMEOUT``, ``OMS_WEBHOOK_RETRY_INITIAL``, ``OMS_WEBHOOK_RETRY_MAX``,
    ``OMS_WEBHOOK_GIVE_UP_AFTER``, ``OMS_WEBHOOK_CONCURRENCY``)."""
    retry: RetryPolicy = RetryPolicy()
    """How OrderService tries again a call to a participant that failed transiently
    (``RetryPolicy``): ``OMS_RETRY_<FIELD>`` sets one field (``OMS_RETRY_ATTEMPTS``)."""
    compensation: CompensationPolicy = CompensationPolicy()
    """How a failed compensation is tried again (``CompensationPolicy``): ``OMS_COMPENSATION_<FIELD>``
    sets one field (``OMS_COMPENSATION_GIVE_UP_AFTER``)."""
    waiting: WaitingPolicy = WaitingPolicy()
    """When a saga waiting on an outcome it could not learn is driven on again (``WaitingPolicy``):
    ``OMS_WAITING_<FIELD>`` sets one field (``OMS_WAITING_RETRY_INITIAL``)."""
    breaker: BreakerConfig = BreakerConfig()
    """Each downstream's circuit breaker (``BreakerConfig``): ``OMS_BREAKER_<FIELD>`` sets one field
    (``OMS_BREAKER_WAIT_IN_OPEN``, as when they were settings of their own), ``OMS_BREAKER`` all of them
    as JSON."""

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _sync_mode(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value  # full, Full: FULL

    @model_validator(mode="after")
    def _identity_provider(self) -> Settings:
        self.identity_provider()  # refuses a JWKS URL without the issuer and audience to check
        return self

    def port_for(self, service: str) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[service]

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def key_file(self) -> Path:
        return self.auth_key_file if self.auth_key_file is not None else self.data_dir / "auth-key.json"

    def identity_provider(self) -> IdentityProvider | None:
        if not self.auth_jwks_url:
            return None
        if not (self.auth_issuer and self.auth_audience):
            raise ValueError("auth_jwks_url needs auth_issuer and auth_audience too")
        return IdentityProvider(self.auth_jwks_url, self.auth_issuer, self.auth_audience)

    def environment(self) -> dict[str, str]:
        """The ``OMS_*`` environment variables that give these settings (a worker process reads them)."""
        flat: dict[str, Any] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, dict):  # a nested setting: one variable per field
                flat.update({f"{name}_{field}": item for field, item in value.items()})
            else:
                flat[name] = value
        return {f"OMS_{name.upper()}": str(value) for name, value in flat.items()}
