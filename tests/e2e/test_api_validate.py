"""``POST /api/v1/validate/{source,sink,buffer}`` against the real API, control plane and PostgreSQL servers.

Each check the worker's preflight runs is made to fail by its own wrong setting (wal_level, a missing publication,
no REPLICATION privilege, a wrong password, an unreachable host, a server that requires TLS), and must say so with
its fix; the same request with the setting right must pass. Credentials never come back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluice.devstack import ControlPlane, free_port
from sluice.devstack.postgres import PostgresInstance, PostgresUser
from tests.support.pg import PgDatabase, connection_block, require_postgres
from tests.support.tls import TlsPostgres, start_tls_postgres

pytestmark = pytest.mark.e2e

Headers = dict[str, str]
MakeUser = Callable[..., Headers]


@pytest.fixture
def editor(api_user: MakeUser) -> Headers:
    return api_user("editor")


@pytest.fixture(scope="module")
def replica_pg() -> Iterator[PostgresInstance]:
    """A server with wal_level=replica: logical replication is impossible there."""
    require_postgres()
    instance = PostgresInstance(name="walreplica", fast=True, settings={"wal_level": "replica"})
    try:
        instance.start()
        yield instance
    finally:
        instance.destroy()


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    require_postgres()
    server = start_tls_postgres("tls-validate")
    try:
        yield server
    finally:
        server.destroy()


def source(conn: dict[str, Any], **logical: Any) -> dict[str, Any]:
    return {"postgres": {"connection": conn, "replication_type": {"logical_replication": logical}}}


def checks_of(r: Any) -> dict[str, dict[str, Any]]:
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()["checks"]}


def validate(api: TestClient, part: str, body: Any, namespace: str, headers: Headers) -> Any:
    return api.post(f"/api/v1/validate/{part}", params={"namespace": namespace}, json=body, headers=headers)


def keyed_table(db: PgDatabase) -> None:
    db.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY, note text)")


def test_a_ready_source_passes_every_check_and_no_password_comes_back(
    api: TestClient, namespace: str, editor: Headers, source_db: PgDatabase
) -> None:
    keyed_table(source_db)
    conn = connection_block(source_db)
    r = validate(api, "source", source(conn), namespace, editor)
    checks = checks_of(r)
    assert r.json()["valid"] is True and r.json()["kind"] == "postgres"
    for name in ("connection", "catalog", "wal_level", "replication_slots", "wal_senders", "replication_privilege"):
        assert checks[name]["status"] == "passed", checks[name]
    assert "1 table(s) selected" in checks["catalog"]["message"]
    assert conn["password"] not in r.text


def test_wal_level_replica_fails_with_its_fix(
    api: TestClient, namespace: str, editor: Headers, replica_pg: PostgresInstance
) -> None:
    db = replica_pg.create_database(f"v_{uuid.uuid4().hex[:8]}")
    checks = checks_of(validate(api, "source", source(replica_pg.connection_spec(db)), namespace, editor))
    wal = checks["wal_level"]
    assert wal["status"] == "failed"
    assert "'replica'" in wal["message"]
    assert "wal_level = logical" in wal["fix"]
    assert checks["connection"]["status"] == "passed"


def test_missing_publication_fails_and_an_existing_one_passes(
    api: TestClient, namespace: str, editor: Headers, source_db: PgDatabase
) -> None:
    keyed_table(source_db)
    conn = connection_block(source_db)
    r = validate(api, "source", source(conn, publication_name="no_such_pub"), namespace, editor)
    assert r.json()["valid"] is False
    pub = checks_of(r)["publication"]
    assert pub["status"] == "failed"
    assert "no_such_pub" in pub["message"]
    assert 'CREATE PUBLICATION "no_such_pub"' in pub["fix"]
    assert pub["field"] == "source.postgres.replication_type.logical_replication.publication_name"

    source_db.execute("CREATE PUBLICATION mine FOR TABLE public.orders")
    r = validate(api, "source", source(conn, publication_name="mine"), namespace, editor)
    assert checks_of(r)["publication"]["status"] == "passed"
    assert r.json()["valid"] is True, r.text


def test_a_user_without_replication_fails_with_the_grant_to_run(
    api: TestClient, namespace: str, editor: Headers, source_db: PgDatabase, pg_source: PostgresInstance
) -> None:
    keyed_table(source_db)
    user = PostgresUser(f"norepl_{uuid.uuid4().hex[:6]}", "norepl-pw")
    pg_source.execute(f"CREATE ROLE {user.name} LOGIN PASSWORD '{user.password}'")
    try:
        r = validate(api, "source", source(connection_block(source_db, user)), namespace, editor)
        priv = checks_of(r)["replication_privilege"]
        assert priv["status"] == "failed"
        assert f'ALTER ROLE "{user.name}" WITH REPLICATION' in priv["fix"]
        assert priv["field"] == "source.postgres.connection.user"
        assert r.json()["valid"] is False

        pg_source.execute(f"ALTER ROLE {user.name} WITH REPLICATION")
        r = validate(api, "source", source(connection_block(source_db, user)), namespace, editor)
        assert checks_of(r)["replication_privilege"]["status"] == "passed"
    finally:
        pg_source.execute(f"DROP ROLE {user.name}")


def test_wrong_password_fails_the_connection_check_with_its_fix(
    api: TestClient, namespace: str, editor: Headers, source_db: PgDatabase, sink_db: PgDatabase
) -> None:
    for part, db in (("source", source_db), ("sink", sink_db)):
        conn = connection_block(db) | {"password": "not-the-password-123"}
        body = source(conn) if part == "source" else {"postgres": {"connection": conn}}
        r = validate(api, part, body, namespace, editor)
        assert r.status_code == 200, r.text
        assert r.json()["valid"] is False
        first = r.json()["checks"][0]
        assert first["status"] == "failed", first
        assert "password" in first["fix"], first
        assert first["field"].startswith(f"{part}.postgres.connection"), first
        assert "not-the-password-123" not in r.text


def test_unreachable_host_fails_the_connection_check(
    api: TestClient, namespace: str, editor: Headers, source_db: PgDatabase
) -> None:
    conn = connection_block(source_db) | {"port": free_port()}
    r = validate(api, "source", source(conn), namespace, editor)
    checks = r.json()["checks"]
    assert [c["name"] for c in checks] == ["connection"], checks
    assert checks[0]["status"] == "failed"
    assert str(conn["port"]) in checks[0]["message"]
    assert checks[0]["fix"]


def test_a_server_that_requires_tls_fails_without_it_and_passes_with_it(
    api: TestClient, namespace: str, editor: Headers, tls_pg: TlsPostgres
) -> None:
    db = tls_pg.instance.create_database(f"v_{uuid.uuid4().hex[:8]}")
    plain = tls_pg.instance.connection_spec(db) | {"host": "127.0.0.1"}
    r = validate(api, "source", source(plain), namespace, editor)
    conn = checks_of(r)["connection"]
    assert conn["status"] == "failed"
    assert "ssl_mode to Require" in conn["fix"], conn

    verified = plain | {"ssl_mode": "VerifyFull", "ssl_root_cert": tls_pg.ca.cert_pem.decode()}
    r = validate(api, "source", source(verified), namespace, editor)
    assert checks_of(r)["connection"]["status"] == "passed", r.text

    # A TLS setting that cannot work is a failed check, not an error: VerifyCa without the CA to verify with.
    r = validate(api, "source", source(plain | {"ssl_mode": "VerifyCa"}), namespace, editor)
    conf = checks_of(r)["configuration"]
    assert conf["status"] == "failed" and "ssl_root_cert" in conf["fix"], conf


def test_a_ready_sink_passes(api: TestClient, namespace: str, editor: Headers, sink_db: PgDatabase) -> None:
    r = validate(api, "sink", {"postgres": {"connection": connection_block(sink_db)}}, namespace, editor)
    checks = checks_of(r)
    assert r.json()["valid"] is True, r.text
    assert checks["sink connection"]["status"] == "passed"


def test_secret_refs_are_read_only_when_the_caller_may_read_the_secret(
    api: TestClient, control_plane: ControlPlane, namespace: str, api_user: MakeUser, source_db: PgDatabase
) -> None:
    keyed_table(source_db)
    conn = connection_block(source_db)
    control_plane.kubectl(
        "create", "secret", "generic", "pg", f"--from-literal=password={conn['password']}", "-n", namespace
    )
    by_ref = {k: v for k, v in conn.items() if k != "password"} | {
        "password_secret_ref": {"name": "pg", "key": "password"}
    }
    editor = api_user("editor")
    r = validate(api, "source", source(by_ref), namespace, editor)
    assert r.status_code == 403, r.text
    assert r.json()["details"][0]["field"] == "source.postgres.connection.password_secret_ref"
    assert 'Secret "pg"' in r.json()["message"]

    control_plane.kubectl(
        "create", "role", "read-pg", "--verb=get", "--resource=secrets", "--resource-name=pg", "-n", namespace
    )
    control_plane.kubectl(
        "create", "rolebinding", "read-pg", "--role=read-pg", f"--serviceaccount={namespace}:editor", "-n", namespace
    )
    r = validate(api, "source", source(by_ref), namespace, editor)
    assert checks_of(r)["connection"]["status"] == "passed", r.text
    assert conn["password"] not in r.text

    missing_key = by_ref | {"password_secret_ref": {"name": "pg", "key": "nope"}}
    r = validate(api, "source", source(missing_key), namespace, editor)
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == "source.postgres.connection.password_secret_ref.key"


def test_buffer_fields_are_checked_and_the_store_is_said_to_be_unused(
    api: TestClient, namespace: str, editor: Headers
) -> None:
    r = validate(api, "buffer", {"object_store": {"url": "s3://bucket/prefix"}}, namespace, editor)
    checks = checks_of(r)
    assert r.json()["valid"] is True
    assert checks["fields"]["status"] == "passed"
    assert checks["connection"]["status"] == "skipped"
    assert "no sink" in checks["connection"]["message"]

    r = validate(api, "buffer", {"object_store": {"url": "ftp://x"}}, namespace, editor)
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == "buffer.object_store.url"


def test_request_mistakes_are_4xx_with_field_problem_and_fix(
    api: TestClient, namespace: str, editor: Headers, api_user: MakeUser
) -> None:
    r = validate(api, "source", [], namespace, editor)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body"

    r = validate(api, "source", {"postgres": {"connection": {"host": "h"}}}, namespace, editor)
    assert r.status_code == 422, r.text
    fields = {d["field"] for d in r.json()["details"]}
    assert "source.postgres.connection.user" in fields

    r = validate(api, "source", {"sqlserver": {}}, namespace, editor)
    assert r.status_code == 422 and r.json()["error"] == "UnsupportedKind", r.text
    assert r.json()["fix"]

    r = validate(api, "source", {"connector_id": "missing"}, namespace, editor)
    assert r.status_code == 404, r.text

    r = validate(api, "sink", {"connector_id": "Not_An_Id"}, namespace, editor)
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == "connector_id" and r.json()["fix"]

    r = api.post("/api/v1/validate/source", params={"namespace": namespace}, json={"postgres": {}})
    assert r.status_code == 401

    nobody = api_user("nobody", None)
    r = validate(api, "sink", {"postgres": {}}, namespace, nobody)
    assert r.status_code == 403, r.text
