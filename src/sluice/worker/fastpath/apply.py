"""Set-based apply of change batches: text COPY into a temp staging table, then one merge per table.

Per batch (whole source transactions, or a chunk of one huge transaction inside one sink transaction):

- inserts that come before any other change of their table in the batch (bulk loads, append-only tables) are not
  folded at all: their text COPY lines go straight into the target table. For a keyed table that COPY runs in a
  savepoint; if a key is already there (a replayed batch, rows the sink got elsewhere) it is rolled back and the
  same lines take the staging path below as upserts, so the result is the same, only slower.
- keyed tables, every other change: folded per key in commit order, so the staging table holds one row per key,
  the last state, with ``_op`` 'U' (upsert) or 'D' (delete). An update whose key changed becomes a delete of the
  old key and an upsert of the new one. Unchanged-TOAST values ('u' in pgoutput) are filled from an earlier change
  of the same key in the batch when there is one; otherwise a per-column mask (``_u``, '1' = unchanged) makes the
  merge keep the sink's value. Merge = ``DELETE ... USING`` + ``INSERT ... ON CONFLICT DO UPDATE`` + masked
  ``UPDATE ... FROM``.
- an update that changes the key while keeping an unchanged TOAST value the batch does not hold is applied on its
  own (:class:`Move`), after everything before it: only the sink's row under the old key has that value.
- batches of at most ``small.SMALL_BATCH`` changes skip staging: one statement with parameters (``small.py``).
- keyless tables (replica identity FULL, no primary key): there is no key to fold on, so changes are applied in
  order: runs of inserts as one COPY, each update/delete touching exactly one row that matches all old values
  (``ctid = (SELECT ctid ... LIMIT 1)``), which keeps duplicate rows' multiplicity right.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from sluice.worker.fastpath.copytext import encode_copy_row, tuple_copy_line
from sluice.worker.fastpath.small import SMALL_BATCH, apply_small
from sluice.worker.sinks.postgres.ddl import SinkTable
from sluice.worker.sinks.postgres.mergesql import key_match, masked_sets, on_conflict, shape
from sluice.worker.sources.postgres.pgoutput import UNCHANGED, TupleValue, decode_tuple

__all__ = [
    "DIRECT",
    "EncodedChanges",
    "Move",
    "TableChanges",
    "apply_encoded",
    "apply_move",
    "apply_table_changes",
    "encode_copy_row",
    "encode_table_changes",
    "forget_stages",
    "truncate_tables",
]

Row = tuple[TupleValue, ...]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    """A key-changing update applied on its own: the sink row under the old key gets the new key and values."""

    table: SinkTable
    old: Row
    new: Row


@dataclass
class TableChanges:
    """Pending changes of one table, in sink column order."""

    table: SinkTable
    #: relation tuple position of each sink column (None = identity mapping)
    positions: list[int] | None = None
    keyed: dict[Any, tuple[bytes, Row]] = field(default_factory=dict)
    keyless: list[tuple[str, Row | None, Row | None]] = field(default_factory=list)
    #: text COPY lines (newline included) of inserts that precede every other pending change of this table
    direct: list[bytes] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        names = self.table.column_names
        self.key_pos = [names.index(k) for k in self.table.key]

    def _map(self, values: Row) -> Row:
        pos = self.positions
        return values if pos is None else tuple(values[i] for i in pos)

    def _key(self, row: Row) -> Any:
        kp = self.key_pos
        return row[kp[0]] if len(kp) == 1 else tuple(row[i] for i in kp)

    def insert_wire(self, buf: bytes, pos: int) -> None:
        """An Insert's new tuple straight from its pgoutput message (``pos``: the tuple's column count)."""
        if self.positions is None and not self.keyed and not self.keyless:
            self.direct.append(tuple_copy_line(buf, pos))
            self.count += 1
        else:
            self.insert(decode_tuple(buf, pos))

    def insert(self, new: Row) -> None:
        row = self._map(new)
        self.count += 1
        if not self.keyed and not self.keyless:
            # Nothing else of this table pending: no key can repeat within the run, so nothing to fold.
            self.direct.append(encode_copy_row(row) + b"\n")
            return
        if not self.key_pos:
            self.keyless.append(("I", None, row))
            return
        key = self._key(row)
        keyed = self.keyed
        # 'I': first sight of this key in the batch, most likely new to the sink (cheaper plain INSERT path).
        keyed[key] = (b"I" if key not in keyed else b"U", row)

    def update(self, old: Row | None, new: Row) -> None:
        row = self._map(new)
        self.count += 1
        if not self.key_pos:
            self.keyless.append(("U", self._map(old) if old is not None else None, row))
            return
        key = self._key(row)
        keyed = self.keyed
        moved_from = None
        if old is not None:
            old_key = self._key(self._map(old))
            if old_key != key:
                # The row's state so far in this batch lives under its old key (see needs_move when it does not).
                moved_from = keyed.get(old_key)
                keyed[old_key] = (b"D", self._map(old))
        prior = keyed.get(key)
        fill = prior if prior is not None and prior[0] != b"D" else moved_from
        if fill is not None and fill[0] != b"D" and UNCHANGED in row:
            prev = fill[1]
            row = tuple(prev[i] if v is UNCHANGED else v for i, v in enumerate(row))
        if prior is None:
            keyed[key] = (b"U", row)  # the common case: first change of this key in the batch
            return
        keyed[key] = (b"I" if prior[0] == b"I" else b"U", row)

    def needs_move(self, old: Row | None, new: Row) -> bool:
        """An update that changes the key and keeps unchanged-TOAST values only the sink's old row holds.

        Folding it into "delete the old key, upsert the new one" would lose those values, so the caller applies
        everything pending first and then :func:`apply_move` (an UPDATE of the row found by its old key).
        """
        if old is None or not self.key_pos:
            return False
        row = self._map(new)
        if UNCHANGED not in row:
            return False
        old_key = self._key(self._map(old))
        if old_key == self._key(row):
            return False
        prior = self.keyed.get(old_key)
        return prior is None or prior[0] == b"D"

    def move(self, old: Row, new: Row) -> Move:
        return Move(table=self.table, old=self._map(old), new=self._map(new))

    def delete(self, old: Row) -> None:
        row = self._map(old)
        self.count += 1
        if self.key_pos:
            self.keyed[self._key(row)] = (b"D", row)
        else:
            self.keyless.append(("D", row, None))

    def __len__(self) -> int:
        return self.count


class _Statements:
    """SQL for one sink table, built once."""

    def __init__(self, table: SinkTable, stage: str) -> None:
        cols = table.column_names
        self.stage_name = stage
        self.stage = sql.Identifier(stage)
        t = table.ident
        ident = sql.Identifier
        col_list = sql.SQL(", ").join(map(ident, cols))
        self.create_stage = sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {s} AS SELECT {c} FROM {t} WITH NO DATA; "
            "ALTER TABLE {s} ADD COLUMN IF NOT EXISTS _op text, ADD COLUMN IF NOT EXISTS _u text"
        ).format(s=self.stage, c=col_list, t=t)
        self.copy_stage = sql.SQL("COPY {s} ({c}, _op, _u) FROM STDIN").format(s=self.stage, c=col_list)
        self.truncate_stage = sql.SQL("TRUNCATE {}").format(self.stage)
        self.delete_stage = sql.SQL("DELETE FROM {}").format(self.stage)
        match = key_match(table)
        self.delete = sql.SQL("DELETE FROM {t} t USING {s} s WHERE s._op = 'D' AND {m}").format(
            t=t, s=self.stage, m=match
        )
        conflict = on_conflict(table)
        self.upsert = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} WHERE _op = 'U' AND _u IS NULL {a}").format(
            t=t, c=col_list, s=self.stage, a=conflict
        )
        # Rows inserted at the source are new to the sink unless a batch is replayed: a plain INSERT (about 3x
        # cheaper than ON CONFLICT's speculative insertion) inside a savepoint, and the upsert only if it hit a
        # key the sink already has. No join, so no plan can go quadratic on a freshly truncated table.
        self.insert_new = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} WHERE _op = 'I'").format(
            t=t, c=col_list, s=self.stage
        )
        self.insert_upsert = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} WHERE _op = 'I' {a}").format(
            t=t, c=col_list, s=self.stage, a=conflict
        )
        sets = masked_sets(table)
        self.masked_update = (
            sql.SQL("UPDATE {t} t SET {sets} FROM {s} s WHERE s._op = 'U' AND s._u IS NOT NULL AND {m}").format(
                t=t, sets=sets, s=self.stage, m=match
            )
            if sets is not None
            else None
        )
        self.copy_target = sql.SQL("COPY {t} ({c}) FROM STDIN").format(t=t, c=col_list)


_STATEMENTS: dict[tuple[object, ...], _Statements] = {}


def _statements(table: SinkTable) -> _Statements:
    cache_key = shape(table)
    st = _STATEMENTS.get(cache_key)
    if st is None:
        st = _Statements(table, f"sluice_stage_{len(_STATEMENTS)}")
        _STATEMENTS[cache_key] = st
    return st


_FLUSH_BYTES = 1 << 20
#: dead rows a staging table may hold before it is truncated instead of emptied with DELETE
_STAGE_DEAD_ROWS = 5_000
#: per sink connection: stage name -> rows deleted from it since it was last truncated. Temp tables live as long as
#: their session, so the cache lives exactly as long as the connection object (a reconnect, even one that gets the
#: same backend PID, starts with none).
_STAGES: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


@dataclass
class EncodedChanges:
    """A table's pending changes as ready text COPY data: for its staging table, or (``DIRECT``) for itself.

    Encoding needs only the pending rows, so it can happen early (while PostgreSQL still streams an in-progress
    transaction) and the bytes can wait on disk: loading them later costs no Python work per row.
    """

    table: SinkTable
    data: bytes
    count: int
    #: bit set of what the merge must run: 1 delete, 2 masked update, 4 upsert, 8 plain insert; 16 = DIRECT, the
    #: data are rows of the target table itself (a run of inserts), copied into it without staging
    flags: int


_HAS_DELETE, _HAS_MASKED, _HAS_UPSERT, _HAS_INSERT, DIRECT = 1, 2, 4, 8, 16


def _encode_folded(changes: TableChanges) -> EncodedChanges:
    flags = 0
    buf: list[bytes] = []
    for op, row in changes.keyed.values():
        if op == b"D":
            flags |= _HAS_DELETE
            buf.append(encode_copy_row(row) + b"\tD\t\\N\n")
        elif UNCHANGED in row:
            flags |= _HAS_MASKED
            mask = b"".join(b"1" if v is UNCHANGED else b"0" for v in row)
            buf.append(encode_copy_row(row) + b"\tU\t" + mask + b"\n")
        elif op == b"I":
            flags |= _HAS_INSERT
            buf.append(encode_copy_row(row) + b"\tI\t\\N\n")
        else:
            flags |= _HAS_UPSERT
            buf.append(encode_copy_row(row) + b"\tU\t\\N\n")
    return EncodedChanges(
        table=changes.table, data=b"".join(buf), count=changes.count - len(changes.direct), flags=flags
    )


def encode_table_changes(changes: TableChanges) -> list[EncodedChanges]:
    """The COPY data of a keyed table's pending changes, in the order they must be applied (``changes`` is kept)."""
    out = []
    if changes.direct:
        out.append(
            EncodedChanges(table=changes.table, data=b"".join(changes.direct), count=len(changes.direct), flags=DIRECT)
        )
    if changes.keyed:
        out.append(_encode_folded(changes))
    return out


def forget_stages(conn: psycopg.Connection[Any]) -> None:
    """The session's staging tables were rolled back with the transaction that created them: create them anew."""
    _STAGES.pop(conn, None)


def _empty_stage(conn: psycopg.Connection[Any], st: _Statements, rows: int) -> None:
    """Empty the staging table for the next batch.

    TRUNCATE gives the table a new file and invalidates every cached plan on it: about 1 ms a batch, most of the
    apply time of a single-row transaction. A DELETE of a few rows costs a twentieth of that but leaves dead rows,
    and nothing vacuums temp tables; so small batches DELETE until the dead rows add up, then one TRUNCATE.
    """
    stages = _STAGES.setdefault(conn, {})
    dead = stages.get(st.stage_name, 0) + rows
    if dead > _STAGE_DEAD_ROWS:
        conn.execute(st.truncate_stage)
        stages[st.stage_name] = 0
    else:
        conn.execute(st.delete_stage)
        stages[st.stage_name] = dead


def apply_table_changes(conn: psycopg.Connection[Any], changes: TableChanges) -> int:
    """Apply pending changes of one table inside the caller's open transaction; returns rows affected."""
    if changes.count == 0:
        return 0
    if not changes.key_pos:
        return _apply_keyless(conn, changes, _statements(changes.table))
    n = 0
    if changes.count <= SMALL_BATCH:
        apply_small(conn, changes.table, changes.direct, changes.keyed)
        n = changes.count
    else:
        for enc in encode_table_changes(changes):
            n += apply_encoded(conn, enc)
    changes.keyed.clear()
    changes.direct.clear()
    changes.count = 0
    return n


def _write_copy(conn: psycopg.Connection[Any], statement: sql.Composed, data: bytes) -> None:
    view = memoryview(data)
    with conn.cursor().copy(statement) as copy:
        for start in range(0, len(view), _FLUSH_BYTES):
            copy.write(view[start : start + _FLUSH_BYTES])


def _ensure_stage(conn: psycopg.Connection[Any], st: _Statements) -> None:
    stages = _STAGES.setdefault(conn, {})
    if st.stage_name not in stages:
        conn.execute(st.create_stage)
        stages[st.stage_name] = 0


def _apply_direct(conn: psycopg.Connection[Any], enc: EncodedChanges, st: _Statements) -> None:
    """COPY a run of inserts straight into the target; keys already there turn the run into upserts."""
    if not enc.table.key:
        _write_copy(conn, st.copy_target, enc.data)
        return
    # Plain SQL savepoints, not conn.transaction(): this must never open (and then commit) a transaction itself.
    conn.execute("SAVEPOINT sluice_direct")
    try:
        _write_copy(conn, st.copy_target, enc.data)
    except psycopg.errors.UniqueViolation:
        conn.execute("ROLLBACK TO SAVEPOINT sluice_direct")
        _ensure_stage(conn, st)
        # Escaped COPY text has no raw newline inside a value, so every newline ends a row.
        _write_copy(conn, st.copy_stage, enc.data.replace(b"\n", b"\tI\t\\N\n"))
        conn.execute(st.insert_upsert)
        _empty_stage(conn, st, enc.count)
    conn.execute("RELEASE SAVEPOINT sluice_direct")


def apply_encoded(conn: psycopg.Connection[Any], enc: EncodedChanges) -> int:
    """Load encoded changes (into staging and merge them, or straight in), inside the caller's open transaction."""
    if enc.count == 0:
        return 0
    st = _statements(enc.table)
    flags = enc.flags
    if flags & DIRECT:
        _apply_direct(conn, enc, st)
        return enc.count
    _ensure_stage(conn, st)
    _write_copy(conn, st.copy_stage, enc.data)
    if flags & _HAS_DELETE:
        conn.execute(st.delete)
    if flags & _HAS_UPSERT:
        conn.execute(st.upsert)
    if flags & _HAS_INSERT:
        try:
            with conn.transaction():  # a savepoint: the caller's transaction is open (the COPY above ran in it)
                conn.execute(st.insert_new)
        except psycopg.errors.UniqueViolation:
            conn.execute(st.insert_upsert)
    if flags & _HAS_MASKED and st.masked_update is not None:
        conn.execute(st.masked_update)
    _empty_stage(conn, st, enc.count)
    return enc.count


def _set_values(table: SinkTable, new: Row) -> tuple[sql.Composed, list[Any]]:
    """``col = %s::type, ...`` for every column of ``new`` but its unchanged-TOAST ones, and the parameters."""
    sets: list[sql.Composable] = []
    params: list[Any] = []
    for col, v in zip(table.columns, new, strict=True):
        if v is UNCHANGED:
            continue
        sets.append(sql.SQL("{} = %s::{}").format(sql.Identifier(col.name), sql.SQL(col.type_sql)))
        params.append(None if v is None else bytes(v).decode())  # type: ignore[arg-type]
    return sql.SQL(", ").join(sets), params


def apply_move(conn: psycopg.Connection[Any], move: Move) -> int:
    """UPDATE the row found by the old key; unchanged-TOAST columns keep the sink's values. Returns rows moved."""
    table = move.table
    sets, params = _set_values(table, move.new)
    where: list[sql.Composable] = []
    by_name = {c.name: (i, c) for i, c in enumerate(table.columns)}
    for k in table.key:
        i, col = by_name[k]
        where.append(sql.SQL("{} = %s::{}").format(sql.Identifier(k), sql.SQL(col.type_sql)))
        params.append(bytes(move.old[i]).decode())  # type: ignore[arg-type]
    cur = conn.execute(
        sql.SQL("UPDATE {t} SET {s} WHERE {w}").format(t=table.ident, s=sets, w=sql.SQL(" AND ").join(where)),
        params,
    )
    if cur.rowcount == 0:
        # Like native logical replication: the sink lacks the row, so its unchanged values are unknown.
        log.warning(
            "%s: key change of a row the sink does not have; skipped (its TOAST values are unknown)", table.label
        )
    return max(cur.rowcount, 0)


def _match_clause(table: SinkTable, row: Row) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for col, v in zip(table.columns, row, strict=True):
        if v is UNCHANGED:
            continue
        c = sql.Identifier(col.name)
        if v is None:
            parts.append(sql.SQL("{} IS NULL").format(c))
        elif col.text_compare:
            parts.append(sql.SQL("{}::text = (%s::{})::text").format(c, sql.SQL(col.type_sql)))
            params.append(bytes(v).decode())  # type: ignore[arg-type]
        else:
            parts.append(sql.SQL("{} = %s::{}").format(c, sql.SQL(col.type_sql)))
            params.append(bytes(v).decode())  # type: ignore[arg-type]
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true"), params


def _apply_keyless(conn: psycopg.Connection[Any], changes: TableChanges, st: _Statements) -> int:
    table = changes.table
    ops = changes.keyless
    i = 0
    n = len(changes.direct)
    if changes.direct:
        _write_copy(conn, st.copy_target, b"".join(changes.direct))
        changes.direct.clear()
    with conn.cursor() as cur:
        while i < len(ops):
            op, old, new = ops[i]
            if op == "I":
                with cur.copy(st.copy_target) as copy:
                    while i < len(ops) and ops[i][0] == "I":
                        row = ops[i][2]
                        assert row is not None
                        copy.write(encode_copy_row(row) + b"\n")
                        i += 1
                        n += 1
                continue
            i += 1
            n += 1
            if old is None:
                continue  # no old image (replica identity default without a key): nothing to match on
            where, params = _match_clause(table, old)
            if op == "D":
                cur.execute(
                    sql.SQL("DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {w} LIMIT 1)").format(
                        t=table.ident, w=where
                    ),
                    params,
                )
            else:
                assert new is not None
                sets, set_params = _set_values(table, new)
                cur.execute(
                    sql.SQL("UPDATE {t} SET {s} WHERE ctid = (SELECT ctid FROM {t} WHERE {w} LIMIT 1)").format(
                        t=table.ident, s=sets, w=where
                    ),
                    set_params + params,
                )
    ops.clear()
    changes.count = 0
    return n


def truncate_tables(conn: psycopg.Connection[Any], tables: list[SinkTable]) -> None:
    if tables:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(t.ident for t in tables)))
