"""PostgreSQL source: connection, preflight, publication, slot, snapshot and the pgoutput stream."""
