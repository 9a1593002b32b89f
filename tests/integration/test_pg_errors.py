"""Real PostgreSQL errors, provoked on the session's source server, classified by SQLSTATE.

Each test makes the server (or libpq) fail the way a connector meets it in the field, then checks the Sluice class,
whether it is retried, and that the fix is the one for *that* failure (a missing replication slot must not be told
to edit pg_hba.conf). Login failures carry no SQLSTATE in libpq, so they also check that the classifier learned
the server's code (it is put in the message).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras
import pytest

from sluice.devstack.postgres import PostgresUser, free_port
from sluice.errors import ConfigError, ReplicationError, SluiceError, TransientError
from sluice.models import PostgresConnection
from sluice.worker.drivers.postgres.connection import conninfo_kwargs
from sluice.worker.drivers.postgres.errors import classify
from tests.support.pg import PgDatabase, require_postgres
from tests.support.tls import UNNAMED_HOST, TlsPostgres, start_tls_postgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def raised(action: Callable[[], Any]) -> BaseException:
    """The exception ``action`` raises (the test fails if it raises none)."""
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("expected the server to refuse")


def check(
    err: SluiceError, cls: type[SluiceError], *, retryable: bool, fix_has: list[str], fix_lacks: list[str]
) -> None:
    assert type(err) is cls, (err.message, err.fix)
    assert err.retryable is retryable, err.message
    for part in fix_has:
        assert part in err.fix, err.fix
    for part in fix_lacks:
        assert part not in err.fix, err.fix


@pytest.fixture
def limited_user(source_db: PgDatabase) -> Iterator[PostgresUser]:
    """A login role with no privilege on anything the test creates."""
    user = PostgresUser(f"lim_{uuid.uuid4().hex[:8]}", "lim-pw")
    source_db.execute(f"CREATE ROLE \"{user.name}\" LOGIN PASSWORD '{user.password}'")
    yield user
    with contextlib.suppress(Exception):
        source_db.psql(f'DROP OWNED BY "{user.name}"; DROP ROLE "{user.name}";')


def test_wrong_password_is_a_spec_error_naming_the_password(source_db: PgDatabase) -> None:
    kwargs = {**source_db.conninfo(), "password": "not-the-password"}
    exc = raised(lambda: psycopg.connect(**kwargs, connect_timeout=10))
    assert getattr(exc, "sqlstate", None) is None  # libpq gives no code for a failed login
    err = classify(exc, side="source")
    check(
        err,
        ConfigError,
        retryable=False,
        fix_has=["source.postgres.connection.password"],
        fix_lacks=["pg_hba"],
    )
    assert "SQLSTATE 28P01" in err.message
    assert "not-the-password" not in err.message + err.fix


def test_wrong_password_on_a_psycopg2_connection_with_its_conninfo(source_db: PgDatabase) -> None:
    kwargs = {**source_db.conninfo(), "password": "not-the-password"}
    exc = raised(lambda: psycopg2.connect(**kwargs, connect_timeout=10))
    err = classify(exc, side="sink", conninfo=kwargs)
    check(err, ConfigError, retryable=False, fix_has=["sink.postgres.connection.password"], fix_lacks=["pg_hba"])


def test_missing_database_names_the_database_field(source_db: PgDatabase) -> None:
    kwargs = {**source_db.conninfo(), "dbname": f"gone_{uuid.uuid4().hex[:8]}"}
    err = classify(raised(lambda: psycopg.connect(**kwargs, connect_timeout=10)), side="sink")
    check(
        err,
        ConfigError,
        retryable=False,
        fix_has=["sink.postgres.connection.database"],
        fix_lacks=["pg_hba", "password"],
    )
    assert "SQLSTATE 3D000" in err.message


def test_missing_privilege_says_grant(source_db: PgDatabase, limited_user: PostgresUser) -> None:
    source_db.execute("CREATE TABLE secret (id int PRIMARY KEY)")

    def select() -> None:
        with psycopg.connect(**source_db.conninfo(limited_user), connect_timeout=10) as conn:
            conn.execute("SELECT * FROM secret")

    err = classify(raised(select), side="source")
    check(
        err,
        ConfigError,
        retryable=False,
        fix_has=["Grant source.postgres.connection.user", "SELECT"],
        fix_lacks=["pg_hba", "password"],
    )


def test_start_replication_on_a_missing_slot_says_reinitialize(source_db: PgDatabase) -> None:
    """The old text matcher saw "does not exist" and sent the user to pg_hba.conf."""

    def start() -> None:
        conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **source_db.conninfo())
        try:
            cur = conn.cursor()
            cur.start_replication(
                slot_name=f"sluice_gone_{uuid.uuid4().hex[:8]}",
                decode=False,
                options={"proto_version": "2", "publication_names": "p"},
            )
            cur.read_message()
        finally:
            conn.close()

    exc = raised(start)
    assert getattr(exc, "pgcode", None) == "42704"
    err = classify(exc, side="source")
    check(
        err,
        ReplicationError,
        retryable=False,
        fix_has=["ReIntialize", "replication slot"],
        fix_lacks=["pg_hba", "password", "user"],
    )


def test_slot_streamed_by_another_session_is_retried(source_db: PgDatabase) -> None:
    slot = f"sluice_busy_{uuid.uuid4().hex[:8]}"
    source_db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    source_db.execute("CREATE PUBLICATION p_busy")
    holder = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **source_db.conninfo())
    try:
        options = {"proto_version": "2", "publication_names": "p_busy"}
        holder.cursor().start_replication(slot_name=slot, decode=False, options=options)

        def second() -> None:
            conn = psycopg2.connect(
                connection_factory=psycopg2.extras.LogicalReplicationConnection, **source_db.conninfo()
            )
            try:
                cur = conn.cursor()
                cur.start_replication(slot_name=slot, decode=False, options=options)
                cur.read_message()
            finally:
                conn.close()

        exc = raised(second)
        assert getattr(exc, "pgcode", None) == "55006"
        check(classify(exc, side="source"), TransientError, retryable=True, fix_has=["slot"], fix_lacks=["pg_hba"])
    finally:
        holder.close()


def test_dropped_table_is_a_vanished_object(source_db: PgDatabase) -> None:
    source_db.execute("CREATE TABLE brief (id int PRIMARY KEY)")
    with psycopg.connect(**source_db.conninfo(), connect_timeout=10, autocommit=True) as conn:
        conn.execute("SELECT * FROM brief")
        source_db.execute("DROP TABLE brief")
        exc = raised(lambda: conn.execute("SELECT * FROM brief"))
    err = classify(exc, side="source")
    check(
        err,
        ConfigError,
        retryable=False,
        fix_has=["dropped or renamed", "source.postgres.catalog"],
        fix_lacks=["pg_hba", "password"],
    )
    assert "SQLSTATE 42P01" in err.message


def test_terminated_session_is_retried(source_db: PgDatabase) -> None:
    with psycopg.connect(**source_db.conninfo(), connect_timeout=10, autocommit=True) as conn:
        pid = conn.info.backend_pid
        source_db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        exc = raised(lambda: conn.execute("SELECT 1"))
    check(classify(exc, side="source"), TransientError, retryable=True, fix_has=[], fix_lacks=["pg_hba"])


def test_connection_refused_is_retried(source_db: PgDatabase) -> None:
    kwargs = {**source_db.conninfo(), "port": free_port()}
    err = classify(raised(lambda: psycopg.connect(**kwargs, connect_timeout=10)), side="source")
    check(err, TransientError, retryable=True, fix_has=["source.postgres.connection.host"], fix_lacks=["pg_hba"])


# ---- TLS: client-side failures (no SQLSTATE) and the server's pg_hba refusal ---------------------------------------


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    require_postgres()
    server = start_tls_postgres("tls-errors")
    try:
        yield server
    finally:
        server.destroy()


def tls_kwargs(tls_pg: TlsPostgres, **over: Any) -> dict[str, Any]:
    """libpq parameters the worker would build (inline PEM included) for a connection to the TLS-only server."""
    spec = {**tls_pg.instance.connection_spec("postgres"), **over}
    return conninfo_kwargs(PostgresConnection.model_validate(spec))


def test_plaintext_refused_by_pg_hba_says_ssl_mode(tls_pg: TlsPostgres) -> None:
    kwargs = tls_kwargs(tls_pg, ssl_mode="Disable")
    err = classify(raised(lambda: psycopg.connect(**kwargs)), side="source")
    check(err, ConfigError, retryable=False, fix_has=["source.postgres.connection.ssl_mode", "pg_hba"], fix_lacks=[])
    assert "SQLSTATE 28000" in err.message


def test_wrong_root_certificate_says_ssl_root_cert(tls_pg: TlsPostgres) -> None:
    kwargs = tls_kwargs(tls_pg, ssl_mode="VerifyFull", ssl_root_cert=tls_pg.other_ca.cert_pem.decode())
    err = classify(raised(lambda: psycopg.connect(**kwargs)), side="sink")
    check(err, ConfigError, retryable=False, fix_has=["sink.postgres.connection.ssl_root_cert"], fix_lacks=["pg_hba"])
    assert "certificate verify failed" in err.message


def test_host_not_in_the_certificate_says_verify_ca(tls_pg: TlsPostgres) -> None:
    kwargs = tls_kwargs(tls_pg, host=UNNAMED_HOST, ssl_mode="VerifyFull", ssl_root_cert=tls_pg.ca.cert_pem.decode())
    err = classify(raised(lambda: psycopg.connect(**kwargs)), side="source")
    check(err, ConfigError, retryable=False, fix_has=["VerifyCa"], fix_lacks=["pg_hba"])


def test_inline_root_certificate_is_one_file_for_every_connection(tls_pg: TlsPostgres) -> None:
    pem = tls_pg.ca.cert_pem.decode()
    first, second = (tls_kwargs(tls_pg, ssl_mode="VerifyFull", ssl_root_cert=pem) for _ in range(2))
    assert first["sslrootcert"] == second["sslrootcert"]
    for kwargs in (first, second):
        with psycopg.connect(**kwargs) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
