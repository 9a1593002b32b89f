"""PostgreSQL sink: faithful DDL, set-based apply, and the position stored in the same transaction."""
