"""A throwaway certificate authority for the local control plane.

Why our own CA instead of the apiserver's self-signed certificates: every component (etcd clients, the
controller-manager, the scheduler, kubectl, the Python client, the process node) must trust the apiserver's
serving certificate *and* present a client certificate the apiserver trusts. One CA that signs both sides makes
that a single ``ca.crt`` everyone points at, exactly like a kubeadm cluster.

Keys are ECDSA P-256: generating one takes microseconds where RSA-2048 takes tens of milliseconds, and every
Kubernetes component accepts them, including for service-account token signing (ES256).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "KeyPair", "write_private_key", "write_public_key"]

_VALIDITY = dt.timedelta(days=365)
# Clocks of a just-booted VM can lag a little; a certificate valid "from now" would be rejected for a moment.
_BACKDATE = dt.timedelta(hours=1)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool) -> Path:
    """Write ``data`` to ``path``; private material is created 0600 from the start, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(mode)
    return path


def write_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    return _write(path, _key_pem(key), private=True)


def write_public_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _write(path, pem, private=False)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, as PEM bytes and as the files components are given."""

    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates into one directory."""

    def __init__(self, directory: Path, common_name: str = "sluice-devstack-ca") -> None:
        self.directory = directory
        now = dt.datetime.now(dt.UTC)
        self._key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.cert_path = _write(directory / "ca.crt", self.cert_pem, private=False)
        self.key_path = write_private_key(self._key, directory / "ca.key")

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """The CA an earlier :class:`CertificateAuthority` wrote into ``directory`` (to issue more certificates)."""
        ca = cls.__new__(cls)
        ca.directory = directory
        ca.cert_path = directory / "ca.crt"
        ca.key_path = directory / "ca.key"
        ca.cert_pem = ca.cert_path.read_bytes()
        ca._cert = x509.load_pem_x509_certificate(ca.cert_pem)
        key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{ca.key_path} is not an EC private key")
        ca._key = key
        return ca

    def issue(
        self,
        name: str,
        *,
        common_name: str,
        organizations: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> KeyPair:
        """Issue ``<name>.crt``/``<name>.key``.

        For a client certificate Kubernetes reads the user name from the CN and the groups from the O
        attributes, so ``organizations=("system:masters",)`` makes a cluster admin.
        """
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key)
        return KeyPair(
            cert_pem=cert_pem,
            key_pem=key_pem,
            cert_path=_write(self.directory / f"{name}.crt", cert_pem, private=False),
            key_path=_write(self.directory / f"{name}.key", key_pem, private=True),
        )

    def client(self, name: str, user: str, *groups: str) -> KeyPair:
        """A client certificate for Kubernetes user ``user`` in ``groups``."""
        return self.issue(name, common_name=user, organizations=groups, client=True)

    def serving(self, name: str, *, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> KeyPair:
        return self.issue(name, common_name=name, dns_names=dns_names, ip_addresses=ip_addresses, server=True)

    def new_signing_key(self, name: str) -> tuple[Path, Path]:
        """A bare key pair (``<name>.key`` private, ``<name>.pub`` public), e.g. for service-account tokens."""
        key = _new_key()
        return write_private_key(key, self.directory / f"{name}.key"), write_public_key(
            key, self.directory / f"{name}.pub"
        )
