"""The PostgreSQL connection settings live in :mod:`sluice.worker.drivers.postgres.connection` (the sink uses
them too); the source's modules import them from here."""

from sluice.worker.drivers.postgres.connection import conninfo_kwargs, lock_timeout_ms, pool_size

__all__ = ["conninfo_kwargs", "lock_timeout_ms", "pool_size"]
