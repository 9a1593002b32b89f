"""Database driver helpers shared by a source and a sink of the same database kind (never by the engine)."""
