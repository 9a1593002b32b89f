"""Throw-away PostgreSQL servers for tests, the benchmark and ``sluice dev``.

Why not a container: the project runs without Docker, and a real ``initdb`` + ``pg_ctl`` server starts in about a
second. Why ``runuser``: PostgreSQL refuses to run as root, and CI runs as root, so the data directory belongs to the
``postgres`` OS user and every server-side command runs as that user. Client tools (psql, pgbench, pgcopydb) and
the worker connect over TCP with a password, so they exercise the same authentication path as a real deployment.

Every instance is configured for logical replication (``wal_level=logical``) and listens on ``127.0.0.1`` on a free
port, with its unix socket inside its own directory so several instances never collide.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "PostgresError",
    "PostgresInstance",
    "PostgresUser",
    "find_bin_dir",
    "postgres_available",
]

log = logging.getLogger(__name__)

#: Settings that make a test server fast at the price of durability. The benchmark uses the same value for every
#: peer, so ratios stay honest either way.
FAST_SETTINGS: dict[str, str] = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

_OS_SERVER_USER = "postgres"


class PostgresError(RuntimeError):
    """A test server could not be set up or driven; the message carries the tail of the server log."""


@dataclass(frozen=True)
class PostgresUser:
    """A login role with its password (test credentials only, never a real secret)."""

    name: str
    password: str


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb``, or ``$SLUICE_PG_BIN`` if set."""
    override = os.environ.get("SLUICE_PG_BIN")
    if override:
        path = Path(override)
        return path if (path / "initdb").exists() else None
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    candidates: list[tuple[int, Path]] = []
    for child in root.iterdir():
        if child.name.isdigit() and (child / "bin" / "initdb").exists():
            candidates.append((int(child.name), child / "bin"))
    return max(candidates)[1] if candidates else None


def postgres_available() -> tuple[bool, str]:
    """Whether servers can be started here, and if not, why (for a skip or failure message)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return (
            False,
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (run hack/install-system-deps.sh)",
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_OS_SERVER_USER)
        except KeyError:
            return False, "running as root but there is no 'postgres' OS user to run the server as"
        if shutil.which("runuser") is None:
            return False, "running as root but 'runuser' is missing"
    return True, f"PostgreSQL binaries in {bin_dir}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (start() retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresInstance:
    """One PostgreSQL server in its own directory.

    ``fast=True`` turns off fsync, synchronous_commit and full_page_writes (tests only: a crash of the *server* may
    then lose data, which no test here provokes). ``settings`` adds or overrides ``postgresql.conf`` entries.
    """

    name: str = "pg"
    base_dir: Path | None = None
    fast: bool = False
    settings: Mapping[str, str | int] = field(default_factory=dict)
    superuser: PostgresUser = field(default_factory=lambda: PostgresUser("sluice", "sluice-test-pw"))
    replication_user: PostgresUser = field(default_factory=lambda: PostgresUser("sluice_repl", "sluice-repl-pw"))
    #: "password" (scram over TCP, trust on the private socket) or "trust" everywhere.
    auth: str = "password"
    port: int = 0
    host: str = "127.0.0.1"
    bin_dir: Path | None = None

    _owns_base_dir: bool = field(default=False, init=False, repr=False)
    _initialized: bool = field(default=False, init=False, repr=False)

    # ---- layout -------------------------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        if self.base_dir is None:
            raise PostgresError("instance has no directory yet; call init() or start()")
        return self.base_dir

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    def _bin(self, tool: str) -> str:
        if self.bin_dir is None:
            found = find_bin_dir()
            if found is None:
                raise PostgresError(postgres_available()[1])
            self.bin_dir = found
        return str(self.bin_dir / tool)

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _server_cmd(self, argv: Sequence[str]) -> list[str]:
        """Server-side commands run as the ``postgres`` OS user when we are root (PostgreSQL refuses root)."""
        if self._as_root():
            return ["runuser", "-u", _OS_SERVER_USER, "--", *argv]
        return list(argv)

    def _run_server_cmd(self, argv: Sequence[str], what: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._server_cmd(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
        if proc.returncode != 0:
            raise PostgresError(
                f"{self.name}: {what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                f"\n--- server log tail ---\n{self.log_tail()}"
            )
        return proc

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the directory and the cluster (idempotent)."""
        if self._initialized:
            return
        if self.base_dir is None:
            # Under /tmp rather than pytest's tmp_path: that one is mode 0700 for root, so 'postgres' could not enter.
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"sluice-{self.name}-"))
            self._owns_base_dir = True
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.superuser.password + "\n")
        if self._as_root():
            entry = pwd.getpwnam(_OS_SERVER_USER)
            _check_traversable(self.dir.parent, entry.pw_uid)
            for path in (self.dir, self.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.dir.chmod(0o755)  # clients (root or others) read the log; the data dir itself stays 0700
        started = time.monotonic()
        self._run_server_cmd(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser.name,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                f"--auth-host={'trust' if self.auth == 'trust' else 'scram-sha-256'}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            "initdb",
        )
        pwfile.unlink()
        self._write_config()
        self._initialized = True
        log.info("%s: initdb in %.1fs at %s", self.name, time.monotonic() - started, self.data_dir)

    def _write_config(self) -> None:
        conf: dict[str, str | int] = {
            "wal_level": "logical",
            "max_replication_slots": 20,
            "max_wal_senders": 20,
            "max_logical_replication_workers": 8,
            "max_worker_processes": 16,
            "max_connections": 100,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "wal_sender_timeout": "60s",
            "max_wal_size": "2GB",
        }
        if self.fast:
            conf.update(FAST_SETTINGS)
        conf.update(self.settings)
        lines = ["# written by sluice.devstack.postgres", *(f"{key} = {_conf_value(v)}" for key, v in conf.items())]
        # A separate file included last keeps initdb's defaults readable and ours in one place.
        (self.data_dir / "sluice.conf").write_text("\n".join(lines) + "\n")
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\ninclude = 'sluice.conf'\n")
        if self._as_root():
            entry = pwd.getpwnam(_OS_SERVER_USER)
            os.chown(self.data_dir / "sluice.conf", entry.pw_uid, entry.pw_gid)

    def _set_port(self, port: int) -> None:
        self.port = port
        auto = self.data_dir / "sluice.port.conf"
        auto.write_text(f"port = {port}\n")
        if self._as_root():
            entry = pwd.getpwnam(_OS_SERVER_USER)
            os.chown(auto, entry.pw_uid, entry.pw_gid)
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        if "sluice.port.conf" not in text:
            with conf.open("a") as fh:
                fh.write("include = 'sluice.port.conf'\n")

    def start(self) -> PostgresInstance:
        """Start the server (initdb first if needed) and wait until it accepts connections."""
        self.init()
        if self.is_running():
            return self
        fixed_port = self.port != 0
        attempts = 1 if fixed_port else 4
        for attempt in range(1, attempts + 1):
            self._set_port(self.port if fixed_port else free_port())
            try:
                self._pg_ctl_start()
                break
            except PostgresError as exc:
                if attempt < attempts and "could not bind" in str(exc).lower():
                    log.warning("%s: port %s taken, trying another", self.name, self.port)
                    self.port = 0
                    continue
                raise
        self._ensure_roles()
        return self

    def _pg_ctl_start(self) -> None:
        started = time.monotonic()
        if self._as_root():
            entry = pwd.getpwnam(_OS_SERVER_USER)
            if not self.log_file.exists():
                self.log_file.touch()
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._run_server_cmd(
            [
                self._bin("pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-s",
            ],
            "start",
            timeout=90,
        )
        log.info("%s: started on %s:%s in %.1fs", self.name, self.host, self.port, time.monotonic() - started)

    def _ensure_roles(self) -> None:
        """The non-superuser REPLICATION role (password path for a least-privilege connector)."""
        from psycopg import sql

        role = self.replication_user
        if self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.name,)):
            return
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(role.name), sql.Literal(role.password)
            )
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; falls back to ``immediate`` if a fast shutdown hangs (e.g. a stuck walsender)."""
        if not self.is_running():
            return
        try:
            self._run_server_cmd(
                [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "-s"],
                f"stop ({mode})",
                timeout=45,
            )
        except (PostgresError, subprocess.TimeoutExpired):
            if mode == "immediate":
                raise
            log.warning("%s: %s shutdown failed, using immediate", self.name, mode)
            self.stop("immediate")

    def restart(self) -> None:
        """Fast stop then start on the same port: clients see their connections dropped, like a server restart."""
        self.stop("fast")
        self._pg_ctl_start()

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: a crash, followed by recovery on the next start()."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        victims = [pid, *_descendants(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(v) for v in victims):
            time.sleep(0.02)
        # The dead postmaster may linger as a zombie until init reaps it; kill(pid, 0) still succeeds on a zombie,
        # so pg_ctl would take the lock file for a live server. Nothing holds the shared memory any more: drop it.
        # The same holds for the socket lock file.
        for lock in [self.data_dir / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*")]:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def destroy(self) -> None:
        """Stop and delete the directory if this instance created it."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        if self._owns_base_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        try:
            pid = int(first)
        except ValueError:
            return None
        return pid if _alive(pid) else None

    def is_running(self) -> bool:
        return self._initialized and self.postmaster_pid() is not None

    # ---- clients ------------------------------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", user: PostgresUser | None = None) -> str:
        """A libpq URI over TCP with the password (test credentials only)."""
        who = user or self.superuser
        return (
            f"postgresql://{quote(who.name)}:{quote(who.password, safe='')}@{self.host}:{self.port}/"
            f"{quote(dbname)}?sslmode=disable"
        )

    def conninfo(self, dbname: str = "postgres", user: PostgresUser | None = None) -> dict[str, Any]:
        """Keyword form of dsn(), for psycopg.connect(**...) and for writing connector configs."""
        who = user or self.superuser
        return {
            "host": self.host,
            "port": self.port,
            "user": who.name,
            "password": who.password,
            "dbname": dbname,
            "sslmode": "disable",
        }

    def connection_spec(self, dbname: str, user: PostgresUser | None = None) -> dict[str, Any]:
        """The ``connection`` object of the connector schema (ssl_mode Disable: test servers have no TLS)."""
        who = user or self.superuser
        return {
            "host": self.host,
            "port": self.port,
            "user": who.name,
            "password": who.password,
            "database": dbname,
            "ssl_mode": "Disable",
        }

    def client_env(self, user: PostgresUser | None = None) -> dict[str, str]:
        """Environment for libpq client tools (psql, pgbench, pgcopydb): host/port/user/password."""
        who = user or self.superuser
        env = dict(os.environ)
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=who.name,
            PGPASSWORD=who.password,
            PGSSLMODE="disable",
        )
        return env

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True, user: PostgresUser | None = None) -> Any:
        """A psycopg 3 connection (imported lazily so the module itself needs only the stdlib)."""
        import psycopg

        return psycopg.connect(**self.conninfo(dbname, user), autocommit=autocommit, connect_timeout=10)

    def execute(
        self, query: Any, params: Mapping[str, Any] | Sequence[Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement (str or psycopg.sql.Composable) in autocommit mode; returns its rows."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def psql(self, sql: str, dbname: str = "postgres", *, check: bool = True) -> str:
        """Run a script through ``psql`` (stops at the first error); returns unaligned, tuples-only output."""
        proc = subprocess.run(
            [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", "-"],
            input=sql,
            capture_output=True,
            text=True,
            env=self.client_env(),
            timeout=600,
            check=False,
        )
        if check and proc.returncode != 0:
            raise PostgresError(f"{self.name}: psql failed in {dbname!r}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """CREATE DATABASE; returns the name so callers can chain it."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise PostgresError(f"database name {name!r} must be a lower-case identifier")
        owner_clause = f" OWNER {owner}" if owner else ""
        self.execute(f'CREATE DATABASE "{name}"{owner_clause}')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database with its inactive replication slots (a slot pins the database otherwise)."""
        self.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active",
            (name,),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = self.execute(
                "SELECT slot_name, active FROM pg_replication_slots WHERE database = %s",
                (name,),
            )
            for slot, active in rows:
                if not active:
                    with contextlib.suppress(Exception):
                        self.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            if not self.execute("SELECT 1 FROM pg_replication_slots WHERE database = %s", (name,)):
                break
            time.sleep(0.1)
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_traversable(path: Path, uid: int) -> None:
    """Fail clearly when the server's OS user could not reach its directory (e.g. under a 0700 root temp dir)."""
    for parent in [path.resolve(), *path.resolve().parents]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            raise PostgresError(
                f"{parent} cannot be entered by the {_OS_SERVER_USER!r} OS user that runs the server; "
                f"use a base_dir elsewhere or 'chmod o+x {parent}'"
            )


def _conf_value(value: str | int) -> str:
    return str(value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), so a kill leaves no orphaned backend holding shared memory."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[-1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out
