"""PostgreSQL helpers used by both the PostgreSQL source and the PostgreSQL sink."""
