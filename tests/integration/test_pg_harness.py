"""The PostgreSQL test harness itself: if these fail, every replication test result is suspect."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import yaml

from sluice.devstack.postgres import PostgresInstance
from tests.support.pg import PgDatabase, require_postgres, table_diff

pytestmark = pytest.mark.integration


def test_servers_are_separate_and_logical(pg_source: PostgresInstance, pg_sink: PostgresInstance) -> None:
    assert pg_source.port != pg_sink.port
    assert pg_source.dir != pg_sink.dir
    for pg in (pg_source, pg_sink):
        assert pg.execute("SHOW wal_level") == [("logical",)]
        assert pg.execute("SHOW listen_addresses") == [("127.0.0.1",)]
        assert int(pg.execute("SHOW max_replication_slots")[0][0]) >= 10


def test_password_auth_is_enforced(pg_source: PostgresInstance) -> None:
    info = pg_source.conninfo()
    info["password"] = "wrong"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**info, connect_timeout=5)


def test_replication_user_is_not_superuser(pg_source: PostgresInstance) -> None:
    role = pg_source.replication_user.name
    assert pg_source.execute("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = %s", (role,)) == [
        (False, True)
    ]
    with psycopg.connect(**pg_source.conninfo("postgres", pg_source.replication_user)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_fresh_databases_per_test(source_db: PgDatabase, sink_db: PgDatabase) -> None:
    assert source_db.name != sink_db.name
    assert source_db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert source_db.psql("SELECT current_database();") == source_db.name


def test_restart_and_kill_keep_committed_data() -> None:
    require_postgres()
    pg = PostgresInstance(name="harness", fast=False)
    with pg:
        pg.execute("CREATE TABLE t (id int PRIMARY KEY)")
        pg.execute("INSERT INTO t VALUES (1)")
        port = pg.port
        pg.restart()
        assert pg.port == port
        pg.execute("INSERT INTO t VALUES (2)")
        pg.kill()
        assert not pg.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(**pg.conninfo(), connect_timeout=2)
        pg.start()
        assert pg.execute("SELECT id FROM t ORDER BY id") == [(1,), (2,)]


def test_table_diff_detects_every_kind_of_difference(source_db: PgDatabase, sink_db: PgDatabase) -> None:
    for db in (source_db, sink_db):
        db.execute("CREATE TABLE t (v text, id int)")
    source_db.execute("INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    sink_db.execute("INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    assert table_diff(source_db, sink_db, "t") is None
    sink_db.execute("INSERT INTO t (id, v) VALUES (3, 'c')")
    assert "duplicated 1" in (table_diff(source_db, sink_db, "t") or "")
    sink_db.execute("DELETE FROM t WHERE id = 3")
    assert "missing 1" in (table_diff(source_db, sink_db, "t") or "")
    sink_db.execute("INSERT INTO t (id, v) VALUES (3, 'C')")
    assert "changed 1" in (table_diff(source_db, sink_db, "t") or "")


def test_connector_config_points_at_the_test_databases(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: Any
) -> None:
    path = make_connector_config(skip_snapshots=True, target_schema="public")
    spec = yaml.safe_load(path.read_text())
    src = spec["source"]["postgres"]
    assert src["connection"]["database"] == source_db.name
    assert src["connection"]["port"] == source_db.instance.port
    assert src["replication_type"] == {"logical_replication": {"skip_snapshots": True}}
    assert spec["sink"]["postgres"]["connection"]["database"] == sink_db.name
    assert spec["sink"]["postgres"]["target_schema"] == "public"
    try:
        from sluice.models import Connector
    except ImportError:
        return  # the models land in parallel; the shape above follows connector-schema.md
    Connector.model_validate(spec)
