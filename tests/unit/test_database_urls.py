"""Database URLs with several hosts (a primary and its standbys) and options in the query string."""

from __future__ import annotations

import pytest

from oms.config import Settings
from oms.db import database_label
from oms.db.schema import asyncpg_dsn

TWO_HOSTS = "db1.internal:5432,db2.internal:5432"


def test_the_label_of_a_url_with_several_hosts_keeps_them_all_and_hides_the_password() -> None:
    url = f"postgresql+asyncpg://oms:s3cr%40t@{TWO_HOSTS}/orders?target_session_attrs=read-write"
    assert database_label(url) == f"postgresql+asyncpg://oms:***@{TWO_HOSTS}/orders?target_session_attrs=read-write"
    url = f"postgresql+asyncpg://oms@{TWO_HOSTS}/orders?target_session_attrs=read-write"
    assert database_label(url) == url


def test_a_password_in_the_query_string_is_hidden_too() -> None:
    url = f"postgresql+asyncpg://oms@{TWO_HOSTS}/orders?password=hunter2&target_session_attrs=read-write"
    assert database_label(url) == (
        f"postgresql+asyncpg://oms@{TWO_HOSTS}/orders?password=***&target_session_attrs=read-write"
    )
    assert database_label("postgresql://oms@db/orders?sslpassword=x&sslmode=require") == (
        "postgresql://oms@db/orders?sslpassword=***&sslmode=require"
    )


def test_an_at_sign_in_the_query_string_is_not_taken_for_the_end_of_the_credentials() -> None:
    assert database_label("postgresql://oms@db/orders?application_name=a@b") == (
        "postgresql://oms@db/orders?application_name=a@b"
    )
    assert database_label("postgresql://oms:pw@db/orders?application_name=a@b") == (
        "postgresql://oms:***@db/orders?application_name=a@b"
    )


def test_unix_sockets_and_sqlite_files() -> None:
    assert (
        database_label("postgresql://oms@/orders?host=/run/postgresql")
        == "postgresql://oms@/orders?host=/run/postgresql"
    )
    assert database_label("sqlite:////srv/oms/order.db") == "/srv/oms/order.db"


def test_asyncpg_is_handed_the_url_whole_but_for_the_driver_in_the_scheme() -> None:
    url = f"postgresql+asyncpg://oms:pw@{TWO_HOSTS}/orders?target_session_attrs=read-write&sslmode=require"
    assert asyncpg_dsn(url) == f"postgresql://oms:pw@{TWO_HOSTS}/orders?target_session_attrs=read-write&sslmode=require"
    assert asyncpg_dsn("postgres://oms@db/orders") == "postgresql://oms@db/orders"


def test_a_url_with_several_hosts_goes_through_the_settings_and_to_a_worker_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"postgresql+asyncpg://oms@{TWO_HOSTS}/orders?target_session_attrs=read-write"
    monkeypatch.setenv("OMS_DATABASE_URL", url)
    settings = Settings.model_validate({})
    assert settings.database_url_for("order") == url
    assert settings.environment()["OMS_DATABASE_URL"] == url  # what a worker process is given
