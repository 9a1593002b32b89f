"""``POST /api/v1/catalog/source`` against the real API, control plane and PostgreSQL: what the source has, and what
its ``catalog`` (and publication) would replicate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluice.devstack import free_port
from tests.support.pg import PgDatabase, connection_block

pytestmark = pytest.mark.e2e

Headers = dict[str, str]
MakeUser = Callable[..., Headers]


@pytest.fixture
def editor(api_user: MakeUser) -> Headers:
    return api_user("editor")


@pytest.fixture
def shop(source_db: PgDatabase) -> PgDatabase:
    source_db.psql(
        """
        CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, card text, note varchar(20));
        CREATE TABLE public.events (at timestamptz, payload jsonb);
        CREATE SCHEMA audit;
        CREATE TABLE audit.log (region text, seq int, line text, PRIMARY KEY (region, seq));
        """
    )
    return source_db


def source(db: PgDatabase, **extra: Any) -> dict[str, Any]:
    return {
        "postgres": {
            "connection": connection_block(db),
            "replication_type": {"logical_replication": extra.pop("logical", {})},
            **extra,
        }
    }


def catalog(api: TestClient, body: Any, namespace: str, headers: Headers) -> Any:
    return api.post("/api/v1/catalog/source", params={"namespace": namespace}, json=body, headers=headers)


def tables_of(r: Any) -> dict[str, dict[str, Any]]:
    assert r.status_code == 200, r.text
    return {f"{s['name']}.{t['name']}": t for s in r.json()["schemas"] for t in s["tables"]}


def test_every_table_with_columns_types_and_keys(
    api: TestClient, namespace: str, editor: Headers, shop: PgDatabase
) -> None:
    r = catalog(api, source(shop), namespace, editor)
    tables = tables_of(r)
    assert set(tables) == {"audit.log", "public.events", "public.orders"}
    assert [s["name"] for s in r.json()["schemas"]] == ["audit", "public"]
    orders = tables["public.orders"]
    assert orders["key"] == ["id"] and orders["replicated"] is True
    cols = {c["name"]: c for c in orders["columns"]}
    assert [c["name"] for c in orders["columns"]] == ["id", "amount", "card", "note"]
    assert cols["id"] == {
        "name": "id",
        "type": "bigint",
        "logical_type": cols["id"]["logical_type"],
        "nullable": False,
        "key": True,
        "replicated": True,
    }
    assert cols["amount"]["type"] == "numeric(12,2)" and cols["amount"]["nullable"] is False
    assert cols["note"]["type"] == "character varying(20)" and cols["note"]["nullable"] is True
    assert tables["audit.log"]["key"] == ["region", "seq"]
    assert tables["public.events"]["key"] == []
    assert {c["type"] for c in tables["public.events"]["columns"]} == {"timestamp with time zone", "jsonb"}
    assert shop.conninfo()["password"] not in r.text


def test_the_catalog_decides_what_is_replicated(
    api: TestClient, namespace: str, editor: Headers, shop: PgDatabase
) -> None:
    rules = {
        "default_action": "Include",
        "schemas": [
            {"name": "audit", "action": "Exclude"},
            {
                "name": "public",
                "tables": [
                    {"name": "orders", "columns": [{"name": "card", "action": "Exclude"}]},
                    {"name": "events", "action": "Exclude"},
                ],
            },
        ],
    }
    r = catalog(api, source(shop, catalog=rules), namespace, editor)
    tables = tables_of(r)
    assert tables["public.orders"]["replicated"] is True
    assert tables["public.events"]["replicated"] is False
    assert tables["audit.log"]["replicated"] is False
    schemas = {s["name"]: s for s in r.json()["schemas"]}
    assert schemas["audit"]["replicated"] is False and schemas["public"]["replicated"] is True
    cols = {c["name"]: c["replicated"] for c in tables["public.orders"]["columns"]}
    assert cols == {"id": True, "amount": True, "card": False, "note": True}
    assert not any(c["replicated"] for c in tables["public.events"]["columns"])


def test_a_publication_limits_what_is_replicated(
    api: TestClient, namespace: str, editor: Headers, shop: PgDatabase
) -> None:
    shop.execute("CREATE PUBLICATION only_audit FOR TABLE audit.log")
    tables = tables_of(catalog(api, source(shop, logical={"publication_name": "only_audit"}), namespace, editor))
    assert {name: t["replicated"] for name, t in tables.items()} == {
        "audit.log": True,
        "public.events": False,
        "public.orders": False,
    }


def test_an_existing_connector_by_id(api: TestClient, namespace: str, editor: Headers, shop: PgDatabase) -> None:
    """The connector's inline password went into its Secret; the catalog reads it from there."""
    body = {
        "id": "",
        "source": source(shop),
        "sink": {"postgres": {"connection": connection_block(shop)}},
        "disabled": True,
    }
    created = api.post("/api/v1/connectors", params={"namespace": namespace}, json=body, headers=editor)
    assert created.status_code == 201, created.text
    cid = created.json()["connector"]["id"]
    tables = tables_of(catalog(api, {"connector_id": cid}, namespace, editor))
    assert set(tables) == {"audit.log", "public.events", "public.orders"}

    viewer_only = catalog(api, {"connector_id": "no-such-connector"}, namespace, editor)
    assert viewer_only.status_code == 404, viewer_only.text


def test_a_catalog_naming_a_missing_table_is_422_with_the_field(
    api: TestClient, namespace: str, editor: Headers, shop: PgDatabase
) -> None:
    rules = {"default_action": "Exclude", "schemas": [{"name": "public", "tables": [{"name": "ordres"}]}]}
    r = catalog(api, source(shop, catalog=rules), namespace, editor)
    assert r.status_code == 422, r.text
    detail = r.json()["details"][0]
    assert detail["field"] == "source.postgres.catalog.schemas[0].tables[0].name"
    assert "public.ordres" in detail["msg"] and detail["fix"]


def test_an_unreachable_source_is_422_with_the_fix(
    api: TestClient, namespace: str, editor: Headers, shop: PgDatabase
) -> None:
    body = source(shop)
    body["postgres"]["connection"]["port"] = free_port()
    r = catalog(api, body, namespace, editor)
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == "source.postgres.connection"
    assert r.json()["fix"]

    body = source(shop)
    body["postgres"]["connection"]["password"] = "wrong-pw-456"
    r = catalog(api, body, namespace, editor)
    assert r.status_code == 422, r.text
    assert "password" in r.json()["fix"]
    assert "wrong-pw-456" not in r.text
