"""Inline PEM material becomes one private file per distinct content and process, in the spill directory."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.models import PostgresConnection
from sluice.worker.drivers.postgres import connection as pgconn

CA = "-----BEGIN CERTIFICATE-----\nMIIBcA==\n-----END CERTIFICATE-----\n"
OTHER_CA = "-----BEGIN CERTIFICATE-----\nMIIBcB==\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n-----END PRIVATE KEY-----\n"


def spec(**over: Any) -> PostgresConnection:
    base: dict[str, Any] = {"host": "db", "user": "u", "password": "pw", "database": "d", "ssl_mode": "VerifyFull"}
    return PostgresConnection.model_validate({**base, **over})


@pytest.fixture
def spill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "spill"
    directory.mkdir()
    monkeypatch.setenv("SLUICE_SPILL_DIR", str(directory))
    pgconn._cleanup()
    yield directory
    pgconn._cleanup()


def test_two_connections_reuse_one_file_per_pem(spill: Path) -> None:
    first = pgconn.conninfo_kwargs(spec(ssl_root_cert=CA, ssl_cert=CA, ssl_key=KEY))
    second = pgconn.conninfo_kwargs(spec(ssl_root_cert=CA, ssl_cert=CA, ssl_key=KEY))
    assert first["sslrootcert"] == second["sslrootcert"] == first["sslcert"]
    assert first["sslkey"] == second["sslkey"] != first["sslrootcert"]
    files = sorted(spill.iterdir())
    assert [str(p) for p in files] == sorted({first["sslrootcert"], first["sslkey"]})
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(first["sslrootcert"]).read_text() == CA
    assert Path(first["sslkey"]).read_text() == KEY
    other = pgconn.conninfo_kwargs(spec(ssl_root_cert=OTHER_CA))
    assert other["sslrootcert"] != first["sslrootcert"]
    assert Path(other["sslrootcert"]).read_text() == OTHER_CA
    assert len(list(spill.iterdir())) == 3


def test_a_removed_file_is_written_again(spill: Path) -> None:
    path = Path(pgconn.conninfo_kwargs(spec(ssl_root_cert=CA))["sslrootcert"])
    path.unlink()
    again = Path(pgconn.conninfo_kwargs(spec(ssl_root_cert=CA))["sslrootcert"])
    assert again.read_text() == CA and again.parent == spill


def test_paths_are_passed_through_and_files_removed_at_exit(spill: Path) -> None:
    assert pgconn.conninfo_kwargs(spec(ssl_root_cert="/etc/ssl/ca.pem"))["sslrootcert"] == "/etc/ssl/ca.pem"
    assert not list(spill.iterdir())
    pgconn.conninfo_kwargs(spec(ssl_root_cert=CA))
    assert list(spill.iterdir())
    pgconn._cleanup()  # what atexit runs
    assert not list(spill.iterdir())


def test_without_a_spill_dir_tempfiles_default_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_SPILL_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    pgconn._cleanup()
    try:
        path = Path(pgconn.conninfo_kwargs(spec(ssl_root_cert=CA))["sslrootcert"])
        assert path.parent == tmp_path
    finally:
        pgconn._cleanup()
