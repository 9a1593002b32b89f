"""SSH tunnels to databases that are only reachable through a bastion host."""

from __future__ import annotations

from pydantic import Field

from sluice.models.common import OneOf, Port, Secret, SecretRef, SluiceModel

__all__ = ["SshAuth", "SshPasswordAuth", "SshPrivateKeyAuth", "SshTunnel", "Tunnel"]


class SshPasswordAuth(SluiceModel):
    """Log in to the bastion with a password."""

    password: Secret | None = None
    """SSH password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the SSH password."""


class SshPrivateKeyAuth(SluiceModel):
    """Log in to the bastion with a private key (OpenSSH PEM)."""

    private_key: Secret | None = None
    """Private key in PEM/OpenSSH format. Prefer `private_key_secret_ref`."""
    private_key_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the private key."""
    passphrase: Secret | None = None
    """Passphrase of the private key, if it is encrypted."""
    passphrase_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the passphrase."""


class SshAuth(OneOf):
    """How to authenticate to the bastion host: exactly one of password, private_key."""

    one_of_label = "SSH authentication method"

    password: SshPasswordAuth | None = None
    """Password authentication."""
    private_key: SshPrivateKeyAuth | None = None
    """Public-key authentication."""


class SshTunnel(SluiceModel):
    """Reach the database through an SSH bastion (port forwarding)."""

    bastion_host: str = Field(min_length=1)
    """Host name or IP address of the SSH bastion."""
    bastion_port: Port = 22
    """SSH port of the bastion."""
    user: str = Field(min_length=1)
    """SSH user on the bastion."""
    auth: SshAuth
    """How to authenticate to the bastion."""


class Tunnel(OneOf):
    """A tunnel to the database: exactly one of ssh."""

    one_of_label = "tunnel kind"

    ssh: SshTunnel | None = None
    """SSH port forwarding through a bastion host."""
