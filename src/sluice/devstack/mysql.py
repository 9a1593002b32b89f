"""Throw-away MySQL 8.0 and MariaDB servers for tests, the benchmark and ``sluice dev``.

Two flavors, each a real server started in a directory of its own on ``127.0.0.1`` and a free port:

- ``mariadb``: Debian's ``mariadb-server`` (``mariadb-install-db`` + ``mariadbd``); GTIDs are always on
  (``domain-server-seq``).
- ``mysql``: MySQL 8.0.15 unpacked by ``hack/install-mysql.sh`` into ``~/.cache/sluice/mysql/8.0.15``
  (``mysqld --initialize-insecure`` + ``mysqld``), started with ``gtid_mode=ON``.

Both log row-based binlogs as a CDC source needs them (``log_bin``, ``binlog_format=ROW``,
``binlog_row_image=FULL``, ``binlog_row_metadata=FULL``) and are tuned for speed over durability (no fsync per
commit): fine for tests, never for data you keep. When the session runs as root the server drops to the ``mysql`` OS
user (``--user=mysql``), which owns the directory, as the Debian package's user does.

Users: ``root`` (no network login), ``admin`` (every privilege, over TCP with a password) for the tests' own set-up.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MYSQL_VERSION", "MySqlError", "MySqlInstance", "mysql_available", "mysql_base_dir"]

MYSQL_VERSION = "8.0.15"
_OS_SERVER_USER = "mysql"


class MySqlError(RuntimeError):
    """A test server could not be set up or driven; the message carries the tail of the server log."""


def mysql_base_dir() -> Path:
    """Where ``hack/install-mysql.sh`` unpacks MySQL (``$SLUICE_MYSQL_BASE`` overrides)."""
    override = os.environ.get("SLUICE_MYSQL_BASE")
    if override:
        return Path(override)
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return cache / "mysql" / MYSQL_VERSION


def _mariadbd() -> str | None:
    return shutil.which("mariadbd") or next((p for p in ("/usr/sbin/mariadbd",) if Path(p).exists()), None)


def mysql_available(flavor: str) -> tuple[bool, str]:
    """Whether a ``flavor`` server can be started here, and if not, why (for a skip or failure message)."""
    if flavor == "mariadb":
        if _mariadbd() is None or shutil.which("mariadb-install-db") is None:
            return False, "mariadbd not found (run hack/install-system-deps.sh: Debian package mariadb-server)"
    elif flavor == "mysql":
        if not (mysql_base_dir() / "bin" / "mysqld").exists():
            return False, f"no mysqld in {mysql_base_dir()} (run hack/install-mysql.sh or make mysql)"
    else:
        return False, f"unknown flavor {flavor!r}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_OS_SERVER_USER)
        except KeyError:
            return False, "running as root but there is no 'mysql' OS user to run the server as"
    return True, flavor


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MySqlInstance:
    """One MySQL or MariaDB server in its own directory (``flavor`` ``mysql`` or ``mariadb``)."""

    flavor: str = "mariadb"
    name: str = "mysql"
    base_dir: Path | None = None
    port: int = 0
    host: str = "127.0.0.1"
    admin_user: str = "admin"
    admin_password: str = "sluice-admin-pw"  # noqa: S105 (test credentials only)
    server_id: int = field(default_factory=lambda: random.randint(1000, 2**31))  # noqa: S311
    #: extra ``--name=value`` server options
    options: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_base_dir: bool = field(default=False, init=False, repr=False)

    # ---- layout -------------------------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        if self.base_dir is None:
            raise MySqlError("instance has no directory yet; call start()")
        return self.base_dir

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.dir / "mysqld.sock"

    @property
    def log_file(self) -> Path:
        return self.dir / "error.log"

    @property
    def is_mariadb(self) -> bool:
        return self.flavor == "mariadb"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        entry = pwd.getpwnam(_OS_SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _user_args(self) -> list[str]:
        return [f"--user={_OS_SERVER_USER}"] if os.geteuid() == 0 else []

    # ---- life cycle ---------------------------------------------------------------------------------------------

    def init(self) -> None:
        ok, why = mysql_available(self.flavor)
        if not ok:
            raise MySqlError(why)
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"sluice-{self.flavor}-{self.name}-"))
            self._owns_base_dir = True
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self._chown(self.dir)
        if (self.data_dir / "mysql").exists():
            return
        if self.is_mariadb:
            argv = [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data_dir}",
                *self._user_args(),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]
        else:
            base = mysql_base_dir()
            argv = [
                str(base / "bin" / "mysqld"),
                "--no-defaults",
                "--initialize-insecure",
                *self._user_args(),
                f"--basedir={base}",
                f"--datadir={self.data_dir}",
                f"--lc-messages-dir={base / 'share'}",
                f"--log-error={self.log_file}",
            ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise MySqlError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.log_tail()}")

    def _server_argv(self) -> list[str]:
        common = [
            "--no-defaults",
            *self._user_args(),
            f"--datadir={self.data_dir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--log-error={self.log_file}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--server-id={self.server_id}",
            f"--log-bin={self.data_dir / 'binlog'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--max-connections=200",
        ]
        if self.is_mariadb:
            mariadbd = _mariadbd()
            assert mariadbd is not None
            argv = [mariadbd, *common, "--collation-server=utf8mb4_general_ci"]
        else:
            base = mysql_base_dir()
            argv = [
                str(base / "bin" / "mysqld"),
                *common,
                f"--basedir={base}",
                f"--lc-messages-dir={base / 'share'}",
                f"--tmpdir={self.dir}",
                "--gtid-mode=ON",
                "--enforce-gtid-consistency=ON",
                "--mysqlx=OFF",
                "--performance-schema=OFF",
                "--secure-file-priv=NULL",
            ]
        argv += [f"--{k}={v}" for k, v in self.options.items()]
        return argv

    def start(self) -> MySqlInstance:
        self.init()
        for attempt in range(3):
            if not self.port or attempt:
                self.port = free_port()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            self._proc = subprocess.Popen(
                self._server_argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            if self._wait_ready(60):
                break
            self._stop_proc()
        else:
            raise MySqlError(f"{self.flavor} server did not start:\n{self.log_tail()}")
        self._ensure_admin()
        return self

    def _root_connect(self) -> Any:
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket_path), user="root", password="", autocommit=True)

    def _wait_ready(self, timeout: float) -> bool:
        import pymysql

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False
            if self.socket_path.exists():
                try:
                    self._root_connect().close()
                    return True
                except pymysql.Error:
                    pass
            time.sleep(0.1)
        return False

    def _ensure_admin(self) -> None:
        conn = self._root_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{self.admin_user}'@'%%' IDENTIFIED BY %s", (self.admin_password,)
                )
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.admin_user}'@'%' WITH GRANT OPTION")
        finally:
            conn.close()

    def _stop_proc(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        self._stop_proc()

    def destroy(self) -> None:
        self._stop_proc()
        if self._owns_base_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> MySqlInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # ---- clients ------------------------------------------------------------------------------------------------

    def connect(self, database: str | None = None, user: str | None = None, password: str | None = None) -> Any:
        """A PyMySQL autocommit connection over TCP (as the admin user unless told otherwise)."""
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=user or self.admin_user,
            password=self.admin_password if password is None else password,
            database=database,
            autocommit=True,
            charset="utf8mb4",
        )

    def execute(self, query: str, params: Any = None, database: str | None = None) -> list[tuple[Any, ...]]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def connection_spec(self, database: str, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        """The ``connection`` object of the connector schema's ``mysql`` source."""
        return {
            "host": self.host,
            "port": self.port,
            "user": user or self.admin_user,
            "password": self.admin_password if password is None else password,
            "database": database,
            "ssl_mode": {"disable": {}},
        }
