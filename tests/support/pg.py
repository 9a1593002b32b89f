"""PostgreSQL fixtures: two real servers per test session, a fresh database per test, worker configs and processes.

Registered in ``tests/conftest.py``; any test may ask for:

- ``pg_source`` / ``pg_sink`` (session): two separate :class:`PostgresInstance` servers, ``wal_level=logical``,
  fsync off for speed (``fast=True``).
- ``source_db`` / ``sink_db`` (function): a new database with a unique name on each server, dropped afterwards.
- ``make_connector_config(...)`` (function): writes a connector YAML for ``sluice worker --config``, returns its path.
- ``run_worker(config) -> WorkerProcess`` (function): starts ``sluice worker`` as a subprocess; every worker still
  running at the end of the test is killed.
- :func:`wait_tables_equal` / :func:`table_diff`: row-by-row comparison of a source and a sink table.

When PostgreSQL is not installed, tests using these fixtures are skipped with the reason — unless ``CI`` is set
(``CI=true``), where a missing database is a broken machine and the tests fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.devstack.postgres import PostgresInstance, PostgresUser, postgres_available

REPO_ROOT = Path(__file__).resolve().parents[2]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_postgres() -> None:
    """Skip (locally) or fail (under CI) when PostgreSQL servers cannot be started here."""
    ok, reason = postgres_available()
    if ok:
        return
    if _in_ci():
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _start_instance(name: str) -> Iterator[PostgresInstance]:
    require_postgres()
    instance = PostgresInstance(name=name, fast=True)
    try:
        instance.start()
        yield instance
    finally:
        instance.destroy()


@pytest.fixture(scope="session")
def pg_source() -> Iterator[PostgresInstance]:
    """The source server of the session (logical replication enabled)."""
    yield from _start_instance("source")


@pytest.fixture(scope="session")
def pg_sink() -> Iterator[PostgresInstance]:
    """The sink server of the session: a separate server, so nothing can pass through shared state."""
    yield from _start_instance("sink")


@dataclass
class PgDatabase:
    """One database on one test server, with the shortcuts tests need."""

    instance: PostgresInstance
    name: str

    @property
    def dsn(self) -> str:
        return self.instance.dsn(self.name)

    def conninfo(self, user: PostgresUser | None = None) -> dict[str, Any]:
        return self.instance.conninfo(self.name, user)

    def connect(self, *, autocommit: bool = True) -> Any:
        return self.instance.connect(self.name, autocommit=autocommit)

    def execute(self, query: Any, params: Mapping[str, Any] | Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.instance.execute(query, params, dbname=self.name)

    def psql(self, script: str) -> str:
        return self.instance.psql(script, dbname=self.name)

    def scalar(self, query: Any, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        rows = self.execute(query, params)
        return rows[0][0] if rows else None


def _fresh_database(instance: PostgresInstance, prefix: str, request: pytest.FixtureRequest) -> Iterator[PgDatabase]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    instance.create_database(name)
    yield PgDatabase(instance, name)
    # A failed test keeps its databases when SLUICE_KEEP_DBS is set, for a look with psql.
    if os.environ.get("SLUICE_KEEP_DBS"):
        return
    with contextlib.suppress(Exception):
        if instance.is_running():
            instance.drop_database(name)


@pytest.fixture
def source_db(pg_source: PostgresInstance, request: pytest.FixtureRequest) -> Iterator[PgDatabase]:
    """A new, empty database on the source server."""
    yield from _fresh_database(pg_source, "src", request)


@pytest.fixture
def sink_db(pg_sink: PostgresInstance, request: pytest.FixtureRequest) -> Iterator[PgDatabase]:
    """A new, empty database on the sink server."""
    yield from _fresh_database(pg_sink, "snk", request)


# ---- connector configs --------------------------------------------------------------------------------------------


def connection_block(db: PgDatabase, user: PostgresUser | None = None) -> dict[str, Any]:
    """The ``connection`` object of the connector schema for a test database."""
    return db.instance.connection_spec(db.name, user)


def connector_spec(
    source: PgDatabase | None,
    sink: PgDatabase,
    *,
    connector_id: str | None = None,
    replication: str = "logical_replication",
    publication_name: str | None = None,
    skip_snapshots: bool = False,
    retry_window_seconds: int | None = None,
    parallel_snapshots_enabled: bool | None = None,
    target_schema: str | None = None,
    catalog: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
    migration_strategy: Mapping[str, Any] | None = None,
    source_user: PostgresUser | None = None,
    source_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A connector body (the REST/CR ``spec`` form) from source to sink; options map 1:1 to schema fields.

    ``source_spec`` (e.g. ``{"mysql": {...}}``) replaces the PostgreSQL source built from ``source``.
    """
    if replication == "logical_replication":
        repl: dict[str, Any] = {"skip_snapshots": skip_snapshots}
        if publication_name is not None:
            repl["publication_name"] = publication_name
        if retry_window_seconds is not None:
            repl["retry_window_seconds"] = retry_window_seconds
        replication_type: dict[str, Any] = {"logical_replication": repl}
    elif replication == "snapshot":
        replication_type = {"snapshot": {}}
    else:
        raise ValueError(f"unknown replication type {replication!r}")
    pg_source: dict[str, Any] = {
        "connection": connection_block(source, source_user) if source is not None else {},
        "replication_type": replication_type,
    }
    if parallel_snapshots_enabled is not None:
        pg_source["parallel_snapshots_enabled"] = parallel_snapshots_enabled
    if catalog is not None:
        pg_source["catalog"] = dict(catalog)
    pg_sink: dict[str, Any] = {"connection": connection_block(sink)}
    if target_schema is not None:
        pg_sink["target_schema"] = target_schema
    if migration_strategy is not None:
        pg_sink["migration_strategy"] = dict(migration_strategy)
    spec: dict[str, Any] = {
        "id": connector_id or f"t-{uuid.uuid4().hex[:10]}",
        "source": dict(source_spec) if source_spec is not None else {"postgres": pg_source},
        "sink": {"postgres": pg_sink},
    }
    if limits is not None:
        spec["limits"] = dict(limits)
    return spec


def write_connector_config(path: Path, spec: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(spec), sort_keys=False))
    return path


@pytest.fixture
def make_connector_config(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_connector_config(source=None, sink=None, **options) -> Path`` of a connector YAML.

    ``source``/``sink`` default to this test's ``source_db``/``sink_db``; options are those of :func:`connector_spec`.
    """
    counter = iter(range(1, 1_000_000))

    def make(source: PgDatabase | None = None, sink: PgDatabase | None = None, **options: Any) -> Path:
        src = source or (None if options.get("source_spec") is not None else request.getfixturevalue("source_db"))
        dst = sink or request.getfixturevalue("sink_db")
        spec = connector_spec(src, dst, **options)
        return write_connector_config(tmp_path / f"connector-{next(counter)}.yaml", spec)

    return make


# ---- worker processes ---------------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """A ``sluice worker`` subprocess in its own process group (so kill() takes any helper processes with it)."""

    config: Path
    workdir: Path
    popen: subprocess.Popen[bytes]
    status_file: Path
    stdout_file: Path
    stderr_file: Path
    _status_offset: int = field(default=0, repr=False)
    _stdout_offset: int = field(default=0, repr=False)
    _statuses: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def terminate(self) -> None:
        """SIGTERM: the worker finishes its batch, flushes and exits 0."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole process group: a crash at an arbitrary instant."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def wait(self, timeout: float | None = 60) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 60) -> int:
        """terminate() and wait; kills (and raises) if the worker ignores SIGTERM past the deadline."""
        self.terminate()
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker did not exit within {timeout}s of SIGTERM\n{self.output_tail()}") from None

    def _read_new_lines(self, path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return [], offset
        # Only whole lines: the worker may be in the middle of writing the last one.
        end = data.rfind(b"\n") + 1
        out: list[dict[str, Any]] = []
        for raw in data[:end].splitlines():
            line = raw.strip()
            if not line.startswith(b"{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out, offset + end

    def statuses(self) -> list[dict[str, Any]]:
        """Every status line so far (JSON objects from the status file, or from stdout when no file is written)."""
        new, self._status_offset = self._read_new_lines(self.status_file, self._status_offset)
        self._statuses.extend(new)
        if not self.status_file.exists():
            new, self._stdout_offset = self._read_new_lines(self.stdout_file, self._stdout_offset)
            self._statuses.extend(new)
        return list(self._statuses)

    def last_status(self) -> dict[str, Any] | None:
        statuses = self.statuses()
        return statuses[-1] if statuses else None

    def wait_for_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60, interval: float = 0.05
    ) -> dict[str, Any]:
        """The first status line matching ``predicate``; fails early if the worker exits, or at the deadline."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            statuses = self.statuses()
            for status in statuses[seen:]:
                if predicate(status):
                    return status
            seen = len(statuses)
            if self.popen.poll() is not None:
                # One last read: the line may have been written just before exit.
                for status in self.statuses()[seen:]:
                    if predicate(status):
                        return status
                raise AssertionError(
                    f"worker exited with {self.popen.returncode} before the expected status\n{self.output_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching worker status within {timeout}s\n{self.output_tail()}")
            time.sleep(interval)

    def output_tail(self, lines: int = 40) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_file), ("stderr", self.stderr_file), ("status", self.status_file)):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
            parts.append(f"--- worker {label} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)


def start_worker(
    config: Path,
    workdir: Path,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> WorkerProcess:
    """Start ``python -m sluice worker --config CONFIG --status-file ...`` with output captured in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = uuid.uuid4().hex[:6]
    status_file = workdir / f"worker-{stamp}.status.jsonl"
    stdout_file = workdir / f"worker-{stamp}.stdout"
    stderr_file = workdir / f"worker-{stamp}.stderr"
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "src"), full_env.get("PYTHONPATH", "")) if p)
    if env:
        full_env.update(env)
    argv = [python, "-m", "sluice", "worker", "--config", str(config), "--status-file", str(status_file), *extra_args]
    with stdout_file.open("wb") as out, stderr_file.open("wb") as err:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env, start_new_session=True, cwd=workdir
        )
    return WorkerProcess(
        config=config,
        workdir=workdir,
        popen=popen,
        status_file=status_file,
        stdout_file=stdout_file,
        stderr_file=stderr_file,
    )


@pytest.fixture
def run_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``run_worker(config, **kw) -> WorkerProcess``; leftover workers are killed after the test."""
    started: list[WorkerProcess] = []

    def run(config: Path, **kwargs: Any) -> WorkerProcess:
        worker = start_worker(config, tmp_path / "worker", **kwargs)
        started.append(worker)
        return worker

    yield run
    for worker in started:
        if worker.returncode is None:
            worker.kill()


# ---- comparing tables ---------------------------------------------------------------------------------------------


def _table(
    db: PgDatabase, table: str, key: Sequence[str], schema: str, columns: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    from psycopg import sql

    cols = db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema, table),
    )
    if not cols:
        raise AssertionError(f"{db.instance.name}/{db.name}: table {schema}.{table} does not exist")
    present = [c[0] for c in cols]
    names = list(columns) if columns is not None else present
    absent = [n for n in names if n not in present]
    if absent:
        raise AssertionError(f"{db.instance.name}/{db.name}: {schema}.{table} lacks columns {absent}")
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names),
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(k) for k in key),
    )
    return names, db.execute(query)


def table_rows(db: PgDatabase, table: str, key: Sequence[str], schema: str = "public") -> list[tuple[Any, ...]]:
    """Every row of ``schema.table`` ordered by ``key``, as tuples of text (types compare by their text form)."""
    return _table(db, table, key, schema)[1]


def table_diff(
    source: PgDatabase,
    sink: PgDatabase,
    table: str,
    key: Sequence[str] = ("id",),
    *,
    schema: str = "public",
    sink_schema: str | None = None,
    limit: int = 5,
) -> str | None:
    """``None`` when both tables hold exactly the same rows, else a short description of missing/extra/changed rows.

    The source's columns are compared by name (the sink may order them differently, or add bookkeeping columns of
    its own); a duplicated key counts as a difference.
    """
    try:
        src_names, src = _table(source, table, key, schema)
        _, dst = _table(sink, table, key, sink_schema or schema, columns=src_names)
    except AssertionError as exc:
        return str(exc)
    if src == dst:
        return None
    key_idx = [src_names.index(k) for k in key]

    def keyed(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
        out: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            out.setdefault(tuple(row[i] for i in key_idx), []).append(row)
        return out

    src_map, dst_map = keyed(src), keyed(dst)
    missing = [k for k in src_map if k not in dst_map]
    extra = [k for k in dst_map if k not in src_map]
    dupes = [k for k, v in dst_map.items() if len(v) > len(src_map.get(k, []))]
    changed = [k for k in src_map if k in dst_map and sorted(src_map[k]) != sorted(dst_map[k])]
    return (
        f"{schema}.{table}: source {len(src)} rows, sink {len(dst)} rows; "
        f"missing {len(missing)} {missing[:limit]}; extra {len(extra)} {extra[:limit]}; "
        f"duplicated {len(dupes)} {dupes[:limit]}; changed {len(changed)} "
        f"{[(src_map[k], dst_map[k]) for k in changed[:limit]]}"
    )


def wait_tables_equal(
    source: PgDatabase,
    sink: PgDatabase,
    tables: Mapping[str, Sequence[str]],
    *,
    timeout: float = 60,
    interval: float = 0.2,
    schema: str = "public",
    sink_schema: str | None = None,
    on_poll: Callable[[], None] | None = None,
) -> None:
    """Poll until every ``table -> key columns`` matches row by row; at the deadline, fail with the differences."""
    deadline = time.monotonic() + timeout
    while True:
        diffs = [
            d
            for t, k in tables.items()
            if (d := table_diff(source, sink, t, k, schema=schema, sink_schema=sink_schema)) is not None
        ]
        if not diffs:
            return
        if on_poll is not None:
            on_poll()
        if time.monotonic() > deadline:
            raise AssertionError(f"tables still differ after {timeout}s:\n" + "\n".join(diffs))
        time.sleep(interval)
