"""The SQLSTATE table of ``sluice.worker.drivers.postgres.errors.classify`` (pure logic: no server).

psycopg 3's error classes carry their SQLSTATE as a class attribute, so constructing one is a faithful stand-in for
what the server sends; diagnostic fields (the server's source file, the violated index's schema) need a subclass.
The real errors, provoked on a real server, are in ``tests/integration/test_pg_errors.py``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psycopg
import psycopg2
import pytest
from psycopg import errors as pe

from sluice.errors import (
    ConfigError,
    ReplicationError,
    SluiceError,
    SourceSetupError,
    TransientError,
)
from sluice.worker.drivers.postgres.errors import classify, sqlstate_of

# message text that would mislead any text matcher: the classification must come from the code alone
_MISLEADING = "la relation « t » n'existe pas: password authentication failed, permission denied, no pg_hba.conf entry"


def _with_diag(cls: type[psycopg.Error], **fields: str) -> psycopg.Error:
    """An instance of ``cls`` whose ``diag`` has the given fields (others None)."""
    names = ("source_file", "schema_name", "constraint_name")
    diag = SimpleNamespace(**{n: fields.get(n) for n in names})
    sub = type(cls.__name__, (cls,), {"diag": property(lambda self: diag)})
    err: psycopg.Error = sub(_MISLEADING)
    return err


@pytest.mark.parametrize(
    ("exc", "expected", "fix_has"),
    [
        (pe.InvalidPassword(_MISLEADING), ConfigError, ["source.postgres.connection.password", ".user"]),
        (pe.InvalidAuthorizationSpecification(_MISLEADING), ConfigError, ["pg_hba.conf", "ssl_mode", ".user"]),
        (pe.InvalidCatalogName(_MISLEADING), ConfigError, ["source.postgres.connection.database"]),
        (pe.InsufficientPrivilege(_MISLEADING), ConfigError, ["Grant source.postgres.connection.user"]),
        (pe.UndefinedTable(_MISLEADING), ConfigError, ["dropped or renamed", "source.postgres.catalog"]),
        (pe.UndefinedColumn(_MISLEADING), ConfigError, ["dropped or renamed"]),
        (pe.InvalidSchemaName(_MISLEADING), ConfigError, ["dropped or renamed"]),
        (pe.UndefinedObject(_MISLEADING), ConfigError, ["does not exist on the source"]),
        (_with_diag(pe.UndefinedObject, source_file="slot.c"), ReplicationError, ["ReIntialize"]),
        (_with_diag(pe.UndefinedObject, source_file="pg_publication.c"), SourceSetupError, ["publication_name"]),
        (pe.ObjectInUse(_MISLEADING), TransientError, ["replication slot"]),
        (_with_diag(pe.UniqueViolation, schema_name="pg_catalog"), TransientError, ["catalog object"]),
        (_with_diag(pe.UniqueViolation, schema_name="public"), ReplicationError, ["worker log"]),
        (pe.ConnectionFailure(_MISLEADING), TransientError, ["source.postgres.connection.host"]),
        (pe.TooManyConnections(_MISLEADING), TransientError, ["resource"]),
        (pe.DiskFull(_MISLEADING), TransientError, ["resource"]),
        (pe.AdminShutdown(_MISLEADING), TransientError, ["restarted"]),
        (pe.CannotConnectNow(_MISLEADING), TransientError, ["restarted"]),
        (pe.QueryCanceled(_MISLEADING), TransientError, ["cancelled"]),
        (pe.SerializationFailure(_MISLEADING), TransientError, ["deadlock"]),
        (pe.DeadlockDetected(_MISLEADING), TransientError, ["deadlock"]),
        (pe.DivisionByZero(_MISLEADING), ReplicationError, ["worker log"]),
        (pe.InternalError_(_MISLEADING), ReplicationError, ["worker log"]),
    ],
    ids=lambda v: getattr(v, "sqlstate", None) or getattr(v, "__name__", None) or str(v)[:20],
)
def test_each_sqlstate_has_its_class_and_fix(
    exc: psycopg.Error, expected: type[SluiceError], fix_has: list[str]
) -> None:
    err = classify(exc, side="source")
    assert type(err) is expected, (exc.sqlstate, err)
    assert err.retryable is expected.retryable
    for part in fix_has:
        assert part in err.fix, (exc.sqlstate, err.fix)
    assert f"SQLSTATE {exc.sqlstate}" in err.message
    assert err.message.startswith("source PostgreSQL: ")


def test_fixes_name_the_sink_fields_for_the_sink() -> None:
    assert "sink.postgres.connection.password" in classify(pe.InvalidPassword("x"), side="sink").fix
    vanished = classify(pe.UndefinedTable("x"), side="sink")
    assert "ReIntialize" in vanished.fix and "source.postgres.catalog" not in vanished.fix
    assert "Grant sink.postgres.connection.user" in classify(pe.InsufficientPrivilege("x"), side="sink").fix


def test_every_class_carries_a_fix() -> None:
    samples: list[BaseException] = [
        *(cls("x") for cls in (pe.InvalidPassword, pe.UndefinedTable, pe.ObjectInUse, pe.DataCorrupted)),
        psycopg.OperationalError("x"),
        ValueError("x"),
    ]
    for exc in samples:
        assert classify(exc, side="sink").fix, exc


def test_sluice_errors_pass_through_and_side_is_checked() -> None:
    own = SourceSetupError("wal_level is replica", fix="set wal_level")
    assert classify(own, side="source") is own
    with pytest.raises(ValueError, match="side"):
        classify(pe.InvalidPassword("x"), side="both")


class _Pg2Error(psycopg2.OperationalError):
    """psycopg2 sets ``pgcode`` from C; a subclass stands in for an error read off the wire."""

    pgcode: Any = None


def test_psycopg2_codes_are_read_from_pgcode() -> None:
    err = _Pg2Error("replication slot « s » n'existe pas")
    err.pgcode = "42704"
    assert sqlstate_of(err) == "42704"
    assert isinstance(classify(err, side="source"), ConfigError)
    err.pgcode = "57P01"
    assert isinstance(classify(err, side="source"), TransientError)


@pytest.mark.parametrize(
    ("text", "fix_has"),
    [
        ("SSL error: certificate verify failed", "ssl_root_cert"),
        ('server certificate for "localhost" does not match host name "127.0.0.2"', "VerifyCa"),
        ("server does not support SSL, but SSL was required", "ssl_mode to Prefer"),
        ('root certificate file "/nope.pem" does not exist', "ssl_root_cert"),
        ("certificate present, but not private key file", "ssl_key"),
        ('private key file "/k.pem" has group or world access', "ssl_key"),
        ('could not open certificate file "/c.pem": No such file or directory', "ssl_cert"),
        ("SSL error: tlsv1 alert unknown ca", "ssl_cert"),
    ],
)
def test_tls_client_failures_without_sqlstate_are_spec_errors(text: str, fix_has: str) -> None:
    """libpq's own client messages: the server never answered, so no SQLSTATE exists; these are not retried."""
    for exc in (psycopg.OperationalError(f"connection failed: {text}"), psycopg2.OperationalError(text)):
        err = classify(exc, side="sink")
        assert type(err) is ConfigError, (text, err)
        assert fix_has in err.fix and "sink.postgres.connection" in err.fix, err.fix


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError('connection to server at "10.0.0.9", port 5432 failed: Connection refused'),
        psycopg.OperationalError("connection failed: timeout expired"),
        psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
        psycopg2.OperationalError('could not translate host name "db" to address'),
        psycopg2.InterfaceError("connection already closed"),
        psycopg2.DatabaseError("no COPY in progress"),
        ConnectionResetError("reset by peer"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:24],
)
def test_connection_failures_without_sqlstate_are_retried(exc: BaseException) -> None:
    err = classify(exc, side="source")
    assert type(err) is TransientError and err.retryable
    assert "source.postgres.connection.host" in err.fix


def test_anything_else_is_a_replication_error_not_retried() -> None:
    for exc in (ValueError("bad pgoutput message"), psycopg.ProgrammingError("query has 2 placeholders")):
        err = classify(exc, side="source")
        assert type(err) is ReplicationError and not err.retryable
        assert err.fix
