"""MySQL-source fixtures: one MariaDB and one MySQL 8 server per test session, a fresh database per test.

Registered in ``tests/conftest.py``; any test may ask for:

- ``mariadb_server`` / ``mysql8_server`` (session): :class:`MySqlInstance` servers with row binlogs and full row
  metadata (GTIDs on for MySQL), started on first use only.
- ``mysql_server`` (session, parametrized): both of them in turn (``ids`` ``mariadb`` and ``mysql8``).
- ``mysql_db`` (function): a new database on ``mysql_server``, dropped afterwards, with shortcuts and
  :meth:`MySqlDatabase.source_spec` for a connector's ``source``.

When a server cannot be started here the tests are skipped with the reason, unless ``CI`` is set, where a
missing server is a broken machine and the tests fail instead.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sluice.devstack.mysql import MySqlInstance, mysql_available
from tests.support.pg import _in_ci

FLAVORS = {"mariadb": "mariadb", "mysql8": "mysql"}


def require_mysql(flavor: str) -> None:
    ok, reason = mysql_available(flavor)
    if ok:
        return
    if _in_ci():
        pytest.fail(f"{flavor} is required under CI: {reason}", pytrace=False)
    pytest.skip(f"{flavor} not available: {reason}")


def _server(flavor: str) -> Iterator[MySqlInstance]:
    require_mysql(flavor)
    instance = MySqlInstance(flavor=flavor, name="src")
    try:
        instance.start()
        yield instance
    finally:
        instance.destroy()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MySqlInstance]:
    yield from _server("mariadb")


@pytest.fixture(scope="session")
def mysql8_server() -> Iterator[MySqlInstance]:
    yield from _server("mysql")


@pytest.fixture(scope="session", params=list(FLAVORS), ids=list(FLAVORS))
def mysql_server(request: pytest.FixtureRequest) -> MySqlInstance:
    name = "mariadb_server" if request.param == "mariadb" else "mysql8_server"
    server: MySqlInstance = request.getfixturevalue(name)
    return server


@dataclass
class MySqlDatabase:
    """One database on one test server."""

    server: MySqlInstance
    name: str

    @property
    def mariadb(self) -> bool:
        return self.server.is_mariadb

    def connect(self, user: str | None = None, password: str | None = None) -> Any:
        return self.server.connect(self.name, user, password)

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.server.execute(query, params, database=self.name)

    def executemany(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.executemany(query, rows)
        finally:
            conn.close()

    def scalar(self, query: str, params: Any = None) -> Any:
        rows = self.execute(query, params)
        return rows[0][0] if rows else None

    def source_spec(self, *, user: str | None = None, password: str | None = None, **options: Any) -> dict[str, Any]:
        """The connector's ``source`` (``{"mysql": {...}}``); options are fields of the mysql source."""
        return {"mysql": {"connection": self.server.connection_spec(self.name, user, password), **options}}

    def create_user(self, name: str, password: str, grants: list[str]) -> None:
        """A user with exactly ``grants`` (``"REPLICATION SLAVE ON *.*"``, ...), created afresh."""
        self.server.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        self.server.execute(f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", (password,))
        for grant in grants:
            self.server.execute(f"GRANT {grant} TO '{name}'@'%'")


@pytest.fixture
def mysql_db(mysql_server: MySqlInstance, request: pytest.FixtureRequest) -> Iterator[MySqlDatabase]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    mysql_server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield MySqlDatabase(mysql_server, name)
    finally:
        with contextlib.suppress(Exception):
            mysql_server.execute(f"DROP DATABASE IF EXISTS `{name}`")
