"""The worker's PostgreSQL TLS settings against a real TLS-only server.

The source is a dedicated server (``tests/support/tls.py``) whose ``pg_hba.conf`` accepts TCP only over TLS
(``hostssl``), refuses plaintext (``hostnossl ... reject``) and lets one role log in by client certificate alone.
Its serving certificate, for 127.0.0.1 and localhost, is signed by a throw-away CA; a second, unrelated CA stands
in for a wrong ``ssl_root_cert``. The sink is the session's ordinary (plaintext) sink server, except in the last test,
where the TLS server is the sink.

Each successful case streams a snapshot and one insert end to end, then checks in ``pg_stat_ssl`` that the
worker's own source sessions were encrypted (and, for the client certificate, with which identity). Each failing
case checks the worker's exit code and the ``last_error`` of its final status line.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pg import (
    PgDatabase,
    WorkerProcess,
    connector_spec,
    require_postgres,
    wait_tables_equal,
    write_connector_config,
)
from tests.support.tls import CERT_USER, UNNAMED_HOST, TlsPostgres, start_tls_postgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RunWorker = Callable[..., WorkerProcess]


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    require_postgres()
    server = start_tls_postgres("tls-source")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def tls_db(tls_pg: TlsPostgres) -> Iterator[PgDatabase]:
    """A fresh database on the TLS server, with a small table to replicate."""
    name = tls_pg.instance.create_database(f"tls_{uuid.uuid4().hex[:10]}")
    db = PgDatabase(tls_pg.instance, name)
    db.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two');")
    yield db
    with contextlib.suppress(Exception):
        tls_pg.instance.drop_database(name)


def tls_config(
    tmp_path: Path, source: PgDatabase, sink: PgDatabase, retry_window_seconds: int | None = None, **connection: Any
) -> tuple[Path, str]:
    """A connector YAML whose source connection is ``connection`` over the ordinary test one; returns (path, id).

    A ``None`` value removes the key (e.g. ``password=None`` for certificate authentication).
    """
    spec = connector_spec(source, sink, retry_window_seconds=retry_window_seconds)
    conn = spec["source"]["postgres"]["connection"]
    for key, value in connection.items():
        if value is None:
            conn.pop(key, None)
        else:
            conn[key] = value
    return write_connector_config(tmp_path / f"{spec['id']}.yaml", spec), spec["id"]


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


def worker_sessions(tls_pg: TlsPostgres, connector_id: str) -> list[tuple[Any, ...]]:
    """(user, ssl, client_dn) of every session the worker holds on the TLS source, walsender included."""
    return tls_pg.instance.execute(
        "SELECT a.usename, s.ssl, s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
        "WHERE a.application_name = %s ORDER BY a.backend_type",
        (f"sluice-{connector_id}"[:63],),
    )


def stream_one_insert(worker: WorkerProcess, source: PgDatabase, sink: PgDatabase) -> None:
    """Snapshot reached the sink, then one insert made after it does too."""
    worker.wait_for_status(realtime, timeout=60)
    wait_tables_equal(source, sink, {"t": ("id",)}, timeout=30)
    source.execute("INSERT INTO t VALUES (3, 'three')")
    wait_tables_equal(source, sink, {"t": ("id",)}, timeout=30)
    assert sink.execute("SELECT v FROM public.t WHERE id = 3") == [("three",)]


def failure(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    """The exit code of a worker that must fail on its own, and the ``last_error`` of its final status."""
    code = worker.wait(60)
    status = worker.last_status()
    assert status is not None, worker.output_tail()
    assert status.get("status") == "failed", worker.output_tail()
    return code, status["last_error"]


def exit_error(worker: WorkerProcess) -> dict[str, Any]:
    """The error JSON the worker prints as the last line of stderr when it gives up."""
    lines = [line for line in worker.stderr_file.read_text().splitlines() if line.startswith("{")]
    assert lines, worker.output_tail()
    final: dict[str, Any] = json.loads(lines[-1])
    assert final.get("fix"), final
    return final


@pytest.mark.parametrize("ssl_mode", ["Require", "Prefer"])
def test_require_streams_over_tls(
    ssl_mode: str,
    tls_pg: TlsPostgres,
    tls_db: PgDatabase,
    sink_db: PgDatabase,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    config, connector_id = tls_config(tmp_path, tls_db, sink_db, ssl_mode=ssl_mode)
    worker = run_worker(config)
    stream_one_insert(worker, tls_db, sink_db)
    sessions = worker_sessions(tls_pg, connector_id)
    assert sessions, "the worker holds no session on the TLS source"
    assert all(ssl for _, ssl, _ in sessions), sessions
    assert worker.stop() == 0


@pytest.mark.parametrize("root_cert_as", ["inline_pem", "file_path"])
def test_verify_full_with_the_right_ca(
    root_cert_as: str,
    tls_pg: TlsPostgres,
    tls_db: PgDatabase,
    sink_db: PgDatabase,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    root = tls_pg.ca.cert_pem.decode() if root_cert_as == "inline_pem" else str(tls_pg.ca.cert_path)
    config, connector_id = tls_config(tmp_path, tls_db, sink_db, ssl_mode="VerifyFull", ssl_root_cert=root)
    worker = run_worker(config)
    stream_one_insert(worker, tls_db, sink_db)
    assert all(ssl for _, ssl, _ in worker_sessions(tls_pg, connector_id))
    assert worker.stop() == 0


@pytest.mark.parametrize("ssl_mode", ["VerifyFull", "VerifyCa"])
def test_another_ca_fails_on_certificate_verification(
    ssl_mode: str,
    tls_pg: TlsPostgres,
    tls_db: PgDatabase,
    sink_db: PgDatabase,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    config, _ = tls_config(
        tmp_path,
        tls_db,
        sink_db,
        ssl_mode=ssl_mode,
        ssl_root_cert=tls_pg.other_ca.cert_pem.decode(),
    )
    worker = run_worker(config)
    code, err = failure(worker)
    assert code == 2, worker.output_tail()
    assert err["error"] == "InvalidSpec", err
    assert "certificate verify failed" in err["message"], err
    assert "ssl_root_cert" in err["fix"], err
    assert "certificate verify failed" in exit_error(worker)["message"]
    assert "sluice-test-pw" not in worker.output_tail()
    assert sink_db.execute("SELECT to_regclass('public.t')") == [(None,)]


def test_verify_full_checks_the_host_name(
    tls_pg: TlsPostgres, tls_db: PgDatabase, sink_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    """The right CA, but an address of the server that its certificate does not name."""
    config, _ = tls_config(
        tmp_path,
        tls_db,
        sink_db,
        host=UNNAMED_HOST,
        ssl_mode="VerifyFull",
        ssl_root_cert=tls_pg.ca.cert_pem.decode(),
    )
    worker = run_worker(config)
    code, err = failure(worker)
    assert code == 2, worker.output_tail()
    assert f'does not match host name "{UNNAMED_HOST}"' in err["message"], err
    assert "VerifyCa" in err["fix"], err


def test_verify_ca_does_not_check_the_host_name(
    tls_pg: TlsPostgres, tls_db: PgDatabase, sink_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    config, connector_id = tls_config(
        tmp_path, tls_db, sink_db, host=UNNAMED_HOST, ssl_mode="VerifyCa", ssl_root_cert=str(tls_pg.ca.cert_path)
    )
    worker = run_worker(config)
    stream_one_insert(worker, tls_db, sink_db)
    assert all(ssl for _, ssl, _ in worker_sessions(tls_pg, connector_id))
    assert worker.stop() == 0


def test_disable_is_refused_by_a_tls_only_server(
    tls_pg: TlsPostgres, tls_db: PgDatabase, sink_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    config, _ = tls_config(tmp_path, tls_db, sink_db, ssl_mode="Disable")
    worker = run_worker(config)
    code, err = failure(worker)
    assert code == 2, worker.output_tail()
    assert "pg_hba.conf" in err["message"], err
    assert "no encryption" in err["message"], err
    assert "ssl_mode" in err["fix"], err
    assert "no encryption" in exit_error(worker)["message"]
    assert "sluice-test-pw" not in worker.output_tail()


def test_verify_ca_without_root_cert_is_an_invalid_spec(
    tls_db: PgDatabase, sink_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    config, _ = tls_config(tmp_path, tls_db, sink_db, ssl_mode="VerifyCa")
    worker = run_worker(config)
    code, err = failure(worker)
    assert code == 2, worker.output_tail()
    assert err["error"] == "InvalidSpec", err
    assert "needs ssl_root_cert" in err["message"], err
    assert "ssl_root_cert" in err["fix"], err


def test_client_certificate_authentication_without_password(
    tls_pg: TlsPostgres, tls_db: PgDatabase, sink_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    config, connector_id = tls_config(
        tmp_path,
        tls_db,
        sink_db,
        ssl_mode="VerifyFull",
        ssl_root_cert=tls_pg.ca.cert_pem.decode(),
        ssl_cert=tls_pg.client.cert_pem.decode(),
        ssl_key=tls_pg.client.key_pem.decode(),
        user=CERT_USER,
        password=None,
    )
    source_connection = yaml.safe_load(config.read_text())["source"]["postgres"]["connection"]
    assert "password" not in source_connection, source_connection
    worker = run_worker(config)
    stream_one_insert(worker, tls_db, sink_db)
    sessions = worker_sessions(tls_pg, connector_id)
    assert sessions, "the worker holds no session on the TLS source"
    assert all(user == CERT_USER and ssl and dn == f"/CN={CERT_USER}" for user, ssl, dn in sessions), sessions
    assert worker.stop() == 0
    key_body = tls_pg.client.key_pem.decode().splitlines()[1]
    assert key_body not in worker.output_tail()


@pytest.mark.parametrize("case", ["disable", "wrong_ca"])
def test_tls_misconfiguration_is_a_spec_error_not_retried(
    case: str, tls_pg: TlsPostgres, tls_db: PgDatabase, sink_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    if case == "disable":
        connection: dict[str, Any] = {"ssl_mode": "Disable"}
    else:
        connection = {"ssl_mode": "VerifyFull", "ssl_root_cert": tls_pg.other_ca.cert_pem.decode()}
    config, _ = tls_config(tmp_path, tls_db, sink_db, **connection)
    worker = run_worker(config)
    code, err = failure(worker)
    assert code == 2, worker.output_tail()
    assert err["error"] == "InvalidSpec", err
    assert not any(s.get("status") == "retry" for s in worker.statuses())


def test_sink_over_tls_with_verify_full(
    tls_pg: TlsPostgres, source_db: PgDatabase, run_worker: RunWorker, tmp_path: Path
) -> None:
    """The sink's connection takes the same TLS settings: a plaintext source into the TLS-only server."""
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one');")
    name = tls_pg.instance.create_database(f"tls_sink_{uuid.uuid4().hex[:10]}")
    sink = PgDatabase(tls_pg.instance, name)
    try:
        spec = connector_spec(source_db, sink)
        spec["sink"]["postgres"]["connection"].update(ssl_mode="VerifyFull", ssl_root_cert=tls_pg.ca.cert_pem.decode())
        worker = run_worker(write_connector_config(tmp_path / "sink-tls.yaml", spec))
        stream_one_insert(worker, source_db, sink)
        sessions = worker_sessions(tls_pg, spec["id"])
        assert sessions, "the worker holds no session on the TLS sink"
        assert all(ssl for _, ssl, _ in sessions), sessions
        assert worker.stop() == 0
    finally:
        with contextlib.suppress(Exception):
            tls_pg.instance.drop_database(name)
