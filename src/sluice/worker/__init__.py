"""The replication engine: one connector's source → pipeline → sink, run by ``sluice worker``."""
