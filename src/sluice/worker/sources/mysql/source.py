"""The MySQL / MariaDB source behind :class:`~sluice.worker.sources.base.Source`.

Parts: :mod:`.preflight` (settings and privileges, one fix each), :mod:`.types` (the type table and value
loaders), :mod:`.snapshot` (the consistent point and key-range chunks), :mod:`.copytext` (chunks as PostgreSQL
COPY text straight from the row packets, for the MySQL -> PostgreSQL fast path), :mod:`.stream` (the binlog reader),
:mod:`.positions` (GTID set / MariaDB GTID / file+offset) and :mod:`.errors` (classification by error number).

The connector's ``connection.database`` is the one database replicated (the namespace of every table); ``catalog``
rules name it as their schema. Nothing is created at the source: there is no slot, so :meth:`cleanup` has nothing
to drop, and the server keeps binlogs by time (``binlog_expire_logs_seconds``), not for this connector — a
connector stopped for longer than that must re-snapshot (:meth:`can_resume` says so with the fix).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pymysql
import pymysql.cursors

from sluice.errors import ConfigError, ReplicationError, SluiceError
from sluice.models import Connector
from sluice.worker.catalog import excluded_columns, is_selected
from sluice.worker.events import ExistingValues, TableId, TableSchema
from sluice.worker.positions import Position
from sluice.worker.sources.base import ChangeStream, Check, RetainedLog, SnapshotChunk, SnapshotSession, Source
from sluice.worker.sources.mysql.errors import REINIT_FIX, classify
from sluice.worker.sources.mysql.positions import MySqlPosition
from sluice.worker.sources.mysql.preflight import raise_failed, server_checks
from sluice.worker.sources.mysql.snapshot import MySqlSnapshot, plan_table, qi, read_position
from sluice.worker.sources.mysql.stream import BinlogStream
from sluice.worker.sources.mysql.types import INFO_COLUMNS, ColumnInfo, Loader, column_info, column_of, loader_for

__all__ = ["MySqlSource", "connection_settings", "server_id_for"]

log = logging.getLogger(__name__)

_CONNECTION = ("source", "mysql", "connection")
#: session settings of every connection: UTC for TIMESTAMP values, long writes for slow sinks
_SESSION = ("SET SESSION time_zone = '+00:00'", "SET SESSION net_write_timeout = 3600")


def server_id_for(connector_id: str) -> int:
    """The replica server id this connector registers with (stable per connector, away from small ids)."""
    return 100_000 + zlib.crc32(connector_id.encode()) % (2**31 - 200_000)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "get_secret_value"):
        return str(value.get_secret_value())
    return str(value)


def _ssl_context(mode: Any) -> ssl.SSLContext | None:
    """``ssl_mode`` as an SSL context for PyMySQL (None: plain TCP for ``disable``; for an omitted mode, TLS
    without verification when the server offers it, PyMySQL's default)."""
    if mode is None or getattr(mode, "disable", None) is not None:
        return None
    if getattr(mode, "require", None) is not None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    verify = getattr(mode, "verify_identity", None) or getattr(mode, "verify_ca", None)
    ca = getattr(verify, "ca_file", None)
    if ca and "-----BEGIN" in ca:
        ctx = ssl.create_default_context(cadata=ca)
    else:
        ctx = ssl.create_default_context(cafile=ca or None)
    ctx.check_hostname = getattr(mode, "verify_identity", None) is not None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def connection_settings(conn: Any) -> dict[str, Any]:
    """PyMySQL keyword arguments for a ``MySqlConnection`` (hold the password: never log them)."""
    password = _secret(conn.password)
    if password is None and conn.password_secret_ref is not None:
        raise ConfigError(
            "password_secret_ref was not resolved to a value",
            fix="Mount the Secret for the worker (SLUICE_SECRETS_DIR/<name>/<key>) or give the password inline.",
        )
    settings: dict[str, Any] = {
        "host": conn.host,
        "port": int(conn.port),
        "user": conn.user,
        # bytes: PyMySQL would encode a str as latin-1, failing on other characters with a message that quotes
        # part of the password
        "password": (password or "").encode("utf-8"),
        "charset": "utf8mb4",
        "connect_timeout": 10,
    }
    ctx = _ssl_context(conn.ssl_mode)
    if ctx is not None:
        settings["ssl"] = ctx
    elif conn.ssl_mode is not None:
        settings["ssl_disabled"] = True  # PyMySQL otherwise uses TLS whenever the server offers it
    return settings


class MySqlSource(Source):
    """One connector's MySQL or MariaDB source (the flavor is detected on connect)."""

    kind = "mysql"

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        self.config: Any = connector.source.config
        self.database: str = self.config.connection.database
        self.settings = connection_settings(self.config.connection)
        self.server_id = server_id_for(connector.id)
        self.schemas: dict[str, TableSchema] = {}
        self.infos: dict[str, list[ColumnInfo]] = {}
        self._loaders: dict[str, list[Loader]] = {}
        self._conn: Any = None
        self._mariadb: bool | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ options

    def classify(self, exc: BaseException) -> SluiceError | None:
        if isinstance(exc, pymysql.err.MySQLError):
            return classify(exc, conninfo=self.settings)
        return None

    @property
    def skip_snapshot(self) -> bool:
        return bool(self.config.skip_snapshot)

    @property
    def snapshot_parallelism(self) -> int:
        if not self.config.parallel_snapshots_enabled:
            return 1
        size = int(self.config.connection.max_pool_size or 0)
        return max(1, size - 1) if size else 4

    def parse_position(self, text: str) -> Position:
        return MySqlPosition.decode(text)

    # ------------------------------------------------------------------ connections

    def connect(self) -> Any:
        """A new autocommit connection in UTC."""
        try:
            conn = pymysql.connect(**self.settings, autocommit=True)
            with conn.cursor() as cur:
                for statement in _SESSION:
                    cur.execute(statement)
            return conn
        except pymysql.err.MySQLError as exc:
            c = self.config.connection
            raise classify(exc, f"cannot connect to the source {c.host}:{c.port}", self.settings) from exc

    @property
    def conn(self) -> Any:
        with self._lock:
            if self._conn is None or not self._conn.open:
                self._conn = self.connect()
                if self._mariadb is None:
                    self._mariadb = "mariadb" in str(self._conn.get_server_info()).lower()
            return self._conn

    @property
    def mariadb(self) -> bool:
        _ = self.conn
        return bool(self._mariadb)

    def _sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                with self.conn.cursor() as cur:
                    cur.execute(query, params)
                    return list(cur.fetchall())
            except pymysql.err.MySQLError as exc:
                raise classify(exc, "source query failed", self.settings) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------ checks

    def _checks(self) -> list[Check]:
        with self._lock:
            try:
                with self.conn.cursor() as cur:
                    return server_checks(
                        cur,
                        mariadb=self.mariadb,
                        database=self.database,
                        server_id=self.server_id,
                        needs_reload=not self.skip_snapshot,
                    )
            except pymysql.err.MySQLError as exc:
                err = classify(exc, "cannot check the source", self.settings)
                return [Check("settings", False, err.message, err.fix, _CONNECTION)]

    def checks(self) -> list[Check]:
        c = self.config.connection
        try:
            version = self.conn.get_server_info()
        except SluiceError as exc:
            return [Check("connection", False, exc.message, exc.fix, _CONNECTION)]
        out = [Check("connection", True, f"connected to {c.host}:{c.port}/{c.database} as {c.user} ({version})")]
        try:
            tables = self.discover()
            out.append(Check("catalog", True, f"{len(tables)} table(s) selected", field=("source", "mysql")))
        except SluiceError as exc:
            out.append(Check("catalog", False, exc.message, exc.fix, ("source", "mysql", "catalog")))
        return out + self._checks()

    def preflight(self, tables: list[TableSchema]) -> None:
        raise_failed(self._checks())

    # ------------------------------------------------------------------ catalog

    def _json_checks(self, table: str) -> set[str]:
        """MariaDB's JSON columns: LONGTEXT with a ``json_valid(col)`` check."""
        if not self.mariadb:
            return set()
        rows = self._sql(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
            (self.database, table),
        )
        out = set()
        for (clause,) in rows:
            text = str(clause).strip()
            if text.lower().startswith("json_valid(") and text.endswith(")"):
                out.add(text[len("json_valid(") : -1].strip("`"))
        return out

    def describe(self, table: str) -> TableSchema | None:
        """One table as it is now (None when it is gone or not selected); also refreshes its loaders."""
        if not is_selected(self.config.catalog, self.database, table):
            return None
        rows = self._sql(
            f"SELECT {INFO_COLUMNS} FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (self.database, table),
        )
        if not rows:
            return None
        excluded = excluded_columns(self.config.catalog, self.database, table)
        json_cols = self._json_checks(table)
        infos = [column_info(r, json_check=str(r[0]) in json_cols) for r in rows if str(r[0]) not in excluded]
        key_rows = self._sql(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (self.database, table),
        )
        infer = bool(self.config.infer_tinyint1_as_boolean)
        columns = tuple(column_of(i, infer_bool=infer) for i in infos)
        names = {c.name for c in columns}
        key = tuple(str(k[0]) for k in key_rows)
        if any(k not in names for k in key):
            raise ConfigError(
                f"table {self.database}.{table}: a primary key column is excluded by the catalog",
                fix="Do not exclude primary key columns.",
            )
        schema = TableSchema(TableId(self.database, table), columns, key)
        label = schema.table.label
        with self._lock:
            self.infos[label] = infos
            self._loaders[label] = [loader_for(i, c) for i, c in zip(infos, columns, strict=True)]
            self.schemas[label] = schema
        return schema

    def column_infos(self, label: str) -> list[ColumnInfo]:
        with self._lock:
            return self.infos[label]

    def loaders(self, label: str) -> list[Loader]:
        with self._lock:
            return self._loaders[label]

    def discover(self) -> list[TableSchema]:
        rows = self._sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
            "ORDER BY TABLE_NAME",
            (self.database,),
        )
        if not rows and not self._sql(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (self.database,)
        ):
            raise ConfigError(
                f"database {self.database} does not exist on the source",
                fix="Check source.mysql.connection.database.",
            )
        out: list[TableSchema] = []
        for (name,) in rows:
            schema = self.describe(str(name))
            if schema is not None:
                out.append(schema)
        return out

    def prepare_stream(self, tables: list[TableSchema]) -> None:
        """Nothing to create: a MySQL replica needs no slot or publication."""

    # ------------------------------------------------------------------ snapshot

    def position(self) -> MySqlPosition:
        with self._lock, self.conn.cursor() as cur:
            try:
                return read_position(cur, mariadb=self.mariadb)
            except pymysql.err.MySQLError as exc:
                raise classify(exc, "cannot read the binlog position", self.settings) from exc

    def _session(self, readers: list[Any], position: MySqlPosition | None) -> MySqlSnapshot:
        return MySqlSnapshot(
            database=self.database,
            schemas=lambda label: self.schemas[label],
            loaders=self.loaders,
            connect=self.connect,
            readers=readers,
            position=position,
            infos=self.column_infos,
        )

    def open_snapshot(self) -> SnapshotSession:
        if self.skip_snapshot:
            return self._session([], self.position())
        mariadb = self.mariadb
        holder = self.connect()
        readers: list[Any] = []
        try:
            with holder.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 60")
                cur.execute("FLUSH TABLES WITH READ LOCK")
                try:
                    for _ in range(self.snapshot_parallelism):
                        reader = self.connect()
                        readers.append(reader)
                        with reader.cursor() as rc:
                            rc.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                            rc.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    position = read_position(cur, mariadb=mariadb)
                finally:
                    cur.execute("UNLOCK TABLES")
        except pymysql.err.MySQLError as exc:
            for reader in readers:
                with contextlib.suppress(Exception):
                    reader.close()
            raise classify(exc, "cannot take the snapshot's consistent point", self.settings) from exc
        except BaseException:
            for reader in readers:
                with contextlib.suppress(Exception):
                    reader.close()
            raise
        finally:
            with contextlib.suppress(Exception):
                holder.close()
        log.info("snapshot at binlog position %s with %d reader(s)", position, len(readers))
        return self._session(readers, position)

    def resume_snapshot(self) -> SnapshotSession:
        return self._session([], None)

    def plan(self, tables: list[TableSchema], batch_rows: int) -> list[SnapshotChunk]:
        chunks: list[SnapshotChunk] = []
        with self._lock:
            try:
                with self.conn.cursor() as cur:
                    for schema in tables:
                        chunks += plan_table(cur, self.database, schema, batch_rows, self.snapshot_parallelism)
            except pymysql.err.MySQLError as exc:
                raise classify(exc, "cannot plan the snapshot", self.settings) from exc
        return chunks

    # ------------------------------------------------------------------ stream

    def binlogs(self) -> list[tuple[str, int]]:
        return [(str(r[0]), int(r[1])) for r in self._sql("SHOW BINARY LOGS")]

    def can_resume(self, position: Position) -> None:
        if not isinstance(position, MySqlPosition):
            raise ReplicationError(f"not a MySQL position: {position!r}", fix=REINIT_FIX)
        files = [name for name, _ in self.binlogs()]
        gone = position.file not in files
        if not gone and position.gtid_set:
            rows = self._sql("SELECT GTID_SUBSET(@@global.gtid_purged, %s)", (position.gtid_set,))
            gone = not (rows and int(rows[0][0]))
        if gone:
            raise ReplicationError(
                f"the binlog from position {position} was purged at the source (oldest binlog now: "
                f"{files[0] if files else 'none'}), so the changes made since then cannot be read any more",
                fix=REINIT_FIX,
            )

    def lag_bytes(self, position: MySqlPosition) -> int | None:
        try:
            files = self.binlogs()
        except SluiceError:
            return None
        total, seen = 0, False
        for name, size in files:
            if name == position.file:
                seen = True
                total += max(0, size - position.pos)
            elif seen:
                total += size
        return total if seen else None

    def stream(self, start: Position, tables: list[TableSchema]) -> ChangeStream:
        if not isinstance(start, MySqlPosition):
            raise ReplicationError(f"not a MySQL position: {start!r}", fix=REINIT_FIX)
        for t in tables:
            if t.table.label not in self._loaders:
                self.describe(t.table.name)
        return BinlogStream(
            settings=self.settings,
            server_id=self.server_id,
            database=self.database,
            mariadb=self.mariadb,
            start=start,
            schemas={t.table.label: self.schemas.get(t.table.label, t) for t in tables},
            loaders=self.loaders,
            refresh=lambda db, name: self.describe(name),
            lag_bytes=self.lag_bytes,
            current_rows=self.current_rows,
            existing=self.existing_values,
        )

    def existing_values(self, schema: TableSchema, added: list[str]) -> dict[str, ExistingValues]:
        """What rows that existed before hold in columns just added: NULL for a NULL default; otherwise the
        source's values by key (``per_row``: read back exactly, whatever the default's expression), or, for a keyless
        table, the default's literal text."""
        rows = self._sql(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s",
            (self.database, schema.table.name),
        )
        defaults = {str(r[0]): r[1] for r in rows}
        out: dict[str, ExistingValues] = {}
        for name in added:
            default = defaults.get(name)
            if default is None or str(default).upper() == "NULL":
                out[name] = ExistingValues(None)
            elif schema.key:
                out[name] = ExistingValues(per_row=True)
            else:
                text = str(default)
                if len(text) >= 2 and text[0] == text[-1] == "'":  # MariaDB quotes literals
                    text = text[1:-1].replace("''", "'")
                out[name] = ExistingValues(text)
        return out

    def backfill_rows(self, table: TableSchema, columns: list[str], batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        """``(key..., columns...)`` of every current row, as neutral values."""
        label = table.table.label
        names = [*table.key, *columns]
        with self._lock:
            infos = {i.name: i for i in self.infos.get(label, [])}
            current = self.schemas.get(label, table)
        cols = {c.name: c for c in current.columns}
        loaders = [loader_for(infos[n], cols[n]) for n in names]
        conn = self.connect()
        try:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                select = ", ".join(qi(n) for n in names)
                cur.execute(f"SELECT {select} FROM {qi(self.database)}.{qi(table.table.name)}")
                while rows := cur.fetchmany(max(1, batch_rows)):
                    yield [tuple(load(v) for load, v in zip(loaders, row, strict=True)) for row in rows]
        except pymysql.err.MySQLError as exc:
            raise classify(exc, f"cannot read the values of columns added to {label}", self.settings) from exc
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def current_rows(self, label: str) -> Iterator[tuple[Any, ...]]:
        """Every row of a table as it is now, loaded (a table renamed into the selection while streaming)."""
        session = self._session([], None)
        try:
            for batch in session.read(SnapshotChunk(label, 0, {}), 1000):
                yield from batch
        finally:
            session.close()

    # ------------------------------------------------------------------ retention

    def retained(self) -> RetainedLog:
        try:
            files = self.binlogs()
            rows = self._sql("SELECT @@global.binlog_expire_logs_seconds")
        except SluiceError as exc:
            return RetainedLog("binlogs", error=exc.message)
        expire = int(rows[0][0]) if rows and rows[0][0] is not None else 0
        name = f"binlogs ({len(files)} files, purged after {expire} s)" if expire else f"binlogs ({len(files)} files)"
        return RetainedLog(name, exists=bool(files), active=False, retained_bytes=sum(size for _, size in files))

    def cleanup(self, *, force: bool = False) -> list[str]:
        """Nothing to drop: the MySQL source creates no slot, publication or table at the source."""
        return []
