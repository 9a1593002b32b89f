"""A PostgreSQL test server that speaks TLS only, with its own CA (for the worker's ssl_mode tests).

The server gets a serving certificate for ``127.0.0.1``/``localhost`` signed by a throw-away CA, trusts that CA for
client certificates, and its ``pg_hba.conf`` refuses every plaintext TCP connection. A second, unrelated CA is made
too, so a test can present the wrong root certificate.

The harness itself (creating roles and databases, comparing tables) goes through the server's private unix socket
(``local ... trust``), so it never depends on the TLS set-up that the tests are about.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.devstack.pki import CertificateAuthority, KeyPair
from sluice.devstack.postgres import PostgresInstance, PostgresUser

__all__ = ["CERT_USER", "UNNAMED_HOST", "TlsPostgres", "pg_hba_lines", "start_tls_postgres"]

#: the role that logs in with a client certificate (CN = role name) and has no password
CERT_USER = "sluice_cert"
#: a second loopback address the server listens on, which its certificate does not name (for host name checks)
UNNAMED_HOST = "127.0.0.2"


def pg_hba_lines(cert_user: str = CERT_USER) -> list[str]:
    """TLS for every TCP connection; ``cert_user`` authenticates by client certificate, everyone else by SCRAM."""
    return [
        "# written by tests/support/tls.py: TLS only over TCP",
        "local all all trust",
        f"hostssl all {cert_user} 127.0.0.0/8 cert",
        "hostssl all all 127.0.0.0/8 scram-sha-256",
        "hostnossl all all 0.0.0.0/0 reject",
    ]


class SocketAdminInstance(PostgresInstance):
    """A :class:`PostgresInstance` whose own client helpers (execute, connect, psql) use the unix socket."""

    def conninfo(self, dbname: str = "postgres", user: PostgresUser | None = None) -> dict[str, Any]:
        info = super().conninfo(dbname, user)
        info["host"] = str(self.socket_dir)
        return info

    def client_env(self, user: PostgresUser | None = None) -> dict[str, str]:
        env = super().client_env(user)
        env["PGHOST"] = str(self.socket_dir)
        return env


@dataclass
class TlsPostgres:
    """The running TLS server with the material a test needs to connect to it (or fail to)."""

    instance: SocketAdminInstance
    ca: CertificateAuthority
    other_ca: CertificateAuthority
    server: KeyPair
    client: KeyPair
    pki_dir: Path

    def destroy(self) -> None:
        self.instance.destroy()
        shutil.rmtree(self.pki_dir, ignore_errors=True)


def _install(src: bytes, dest: Path, *, private: bool) -> None:
    """Write a file the server reads: owned by the server's OS user when we are root, keys 0600."""
    dest.write_bytes(src)
    dest.chmod(0o600 if private else 0o644)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(dest, entry.pw_uid, entry.pw_gid)


def start_tls_postgres(name: str = "tls") -> TlsPostgres:
    """Start a TLS-only server (``wal_level=logical`` like every test server) with a ``cert``-auth role."""
    pki_dir = Path(tempfile.mkdtemp(prefix="sluice-tls-pki-"))
    ca = CertificateAuthority(pki_dir / "ca", common_name="sluice-test-pg-ca")
    other_ca = CertificateAuthority(pki_dir / "other-ca", common_name="sluice-test-unrelated-ca")
    server = ca.serving("pg-server", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    client = ca.client("pg-client", CERT_USER)
    instance = SocketAdminInstance(
        name=name,
        fast=True,
        settings={
            "listen_addresses": f"'127.0.0.1,{UNNAMED_HOST}'",
            "ssl": "on",
            "ssl_cert_file": "'server.crt'",
            "ssl_key_file": "'server.key'",
            "ssl_ca_file": "'root.crt'",
        },
    )
    try:
        instance.init()
        data = instance.data_dir
        _install(server.cert_pem, data / "server.crt", private=False)
        _install(server.key_pem, data / "server.key", private=True)
        _install(ca.cert_pem, data / "root.crt", private=False)
        _install(("\n".join(pg_hba_lines()) + "\n").encode(), data / "pg_hba.conf", private=True)
        instance.start()
        instance.execute(f'CREATE ROLE "{CERT_USER}" LOGIN SUPERUSER')
    except BaseException:
        instance.destroy()
        shutil.rmtree(pki_dir, ignore_errors=True)
        raise
    return TlsPostgres(instance=instance, ca=ca, other_ca=other_ca, server=server, client=client, pki_dir=pki_dir)
