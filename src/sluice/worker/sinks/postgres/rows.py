"""Neutral row changes into PostgreSQL tables: folded per key, COPYed into staging, merged set-based.

Values are the Python objects of :mod:`sluice.worker.events`; psycopg adapts them (``Copy.write_row`` and query
parameters), so no text encoding of our own is involved.

- keyed tables: the changes of one :meth:`RowApplier.add` run are folded per key in order, so the staging table
  holds one row per key with its last state: ``_op`` 'U' (upsert) or 'D' (delete). An update whose key changed is a
  delete of the old key and an upsert of the new one. Columns the source did not send (``unchanged``) are filled
  from an earlier change of the same key when the run has one; otherwise the staged row carries a mask (``_u``,
  '1' = unchanged) and the merge keeps the sink's value (:func:`~.mergesql.masked_sets`). Merge = ``DELETE ...
  USING`` + ``INSERT ... ON CONFLICT DO UPDATE`` + masked ``UPDATE ... FROM``, the SQL the fast path uses too.
- a key-changing update with unchanged columns that only the sink's old row holds is applied on its own after
  everything before it: an ``UPDATE`` of the row found by its old key.
- keyless tables: no key to fold on, so changes are applied in order: runs of inserts as one COPY, each
  update/delete touching exactly one row that matches every column of ``before``
  (``ctid = (SELECT ctid ... LIMIT 1)``), which keeps the multiplicity of duplicate rows right.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql

from sluice.worker.events import Op, RowChange, TableSchema
from sluice.worker.sinks.postgres.ddl import SinkTable, ensure_key
from sluice.worker.sinks.postgres.mergesql import key_match, masked_sets, on_conflict

__all__ = ["RowApplier", "Target", "copy_rows", "copy_text", "stage_for", "upsert_rows"]

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
# module constants: an enum member's attribute look-up costs more than the comparison, once per row
_DELETE, _UPDATE = Op.DELETE, Op.UPDATE
_NONE: frozenset[int] = frozenset()


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


@dataclass
class Target:
    """Where the rows of one source table go.

    ``view`` is the sink table narrowed to the columns of ``schema`` that the sink has, in the schema's order; rows
    (in schema order) are mapped onto it by :meth:`row`. Every SQL statement here is built from ``view``.
    """

    table: SinkTable
    schema: TableSchema
    view: SinkTable = field(init=False)
    positions: list[int] = field(init=False)
    identity: bool = field(init=False)

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.table.columns}
        self.positions = [i for i, c in enumerate(self.schema.columns) if c.name in by_name]
        cols = [by_name[self.schema.columns[i].name] for i in self.positions]
        self.view = SinkTable(
            schema=self.table.schema,
            name=self.table.name,
            columns=cols,
            key=list(self.table.key),
            source=self.table.source,
        )
        self.identity = self.positions == list(range(len(self.schema.columns)))
        self._view_index = {src: i for i, src in enumerate(self.positions)}
        names = self.view.column_names
        self.key_pos = [names.index(k) for k in self.view.key if k in names]
        if len(self.key_pos) == 1:
            only = self.key_pos[0]
            self._key_of: Callable[[Row], tuple[Any, ...]] = lambda row: (row[only],)
        else:
            getter = itemgetter(*self.key_pos) if self.key_pos else None
            self._key_of = (lambda row: getter(row)) if getter is not None else (lambda row: ())

    def row(self, values: Sequence[Any]) -> Row:
        return tuple(values) if self.identity else tuple(values[i] for i in self.positions)

    def unchanged(self, indexes: frozenset[int]) -> frozenset[int]:
        """Schema-order column indexes -> view-order ones."""
        if self.identity or not indexes:
            return indexes
        return frozenset(self._view_index[i] for i in indexes if i in self._view_index)

    def key(self, row: Row) -> Any:
        key = self._key_of(row)
        try:
            hash(key)
        except TypeError:  # a list or dict in the key (arrays, JSON): its hashable form
            return tuple(_hashable(v) for v in key)
        return key


# ---------------------------------------------------------------------------------------------------- COPY helpers


def _col_list(table: SinkTable) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, table.column_names))


def copy_rows(conn: psycopg.Connection[Any], table: SinkTable, rows: Sequence[Row]) -> None:
    """COPY ``rows`` (in ``table``'s column order) straight into the table."""
    if not rows:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table.ident, _col_list(table))
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def stage_for(conn: psycopg.Connection[Any], table: SinkTable) -> sql.Identifier:
    """An empty temp staging table of ``table``'s columns plus ``_op`` and ``_u`` (created when missing).

    Its name is derived from the table's shape, so a table whose columns changed gets a new one.
    """
    shape = repr((table.schema, table.name, [(c.name, c.type_sql) for c in table.columns]))
    stage = sql.Identifier(f"sluice_rows_{hashlib.sha256(shape.encode()).hexdigest()[:16]}")
    defs: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type_sql)) for c in table.columns
    ]
    defs += [sql.SQL("_op text"), sql.SQL("_u text")]
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({})").format(stage, sql.SQL(", ").join(defs)))
    return stage


def upsert_rows(conn: psycopg.Connection[Any], table: SinkTable, rows: Sequence[Row]) -> None:
    """Insert ``rows``, replacing rows whose key exists (a keyless table just gets them inserted)."""
    if not rows:
        return
    if not table.key:
        copy_rows(conn, table, rows)
        return
    stage = stage_for(conn, table)
    cols = _col_list(table)
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute(
        sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} {a}").format(
            t=table.ident, c=cols, s=stage, a=on_conflict(table)
        )
    )
    conn.execute(sql.SQL("TRUNCATE {}").format(stage))


def copy_text(
    conn: psycopg.Connection[Any],
    table: SinkTable,
    blocks: Iterable[tuple[bytes, int]],
    *,
    upsert: bool,
    halted: Callable[[], bool],
) -> int | None:
    """COPY lines already in PostgreSQL's text format (``table``'s columns, in order), given as blocks with their row
    counts; with ``upsert`` through the staging table, replacing rows whose key exists. The row count, or None when
    ``halted`` said stop midway (what was written is the caller's to roll back)."""
    keyed = upsert and bool(table.key)
    into = stage_for(conn, table) if keyed else table.ident
    cols = _col_list(table)
    rows = 0
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(into, cols)) as copy:
        for data, n in blocks:
            if halted():
                return None
            copy.write(data)
            rows += n
    if keyed:
        conn.execute(
            sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} {a}").format(
                t=table.ident, c=cols, s=into, a=on_conflict(table)
            )
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(into))
    return rows


# ---------------------------------------------------------------------------------------------------- change runs


@dataclass
class _Pending:
    target: Target
    #: keyed: key -> (op 'U'/'D', row, unchanged view indexes)
    keyed: dict[Any, tuple[str, Row, frozenset[int]]] = field(default_factory=dict)
    #: keyless, in order: (op, before, after, unchanged)
    keyless: list[tuple[str, Row | None, Row | None, frozenset[int]]] = field(default_factory=list)


class RowApplier:
    """Collects row changes (:meth:`add`) and writes them (:meth:`flush`) in the caller's open transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._pending: dict[str, _Pending] = {}
        #: sink tables whose key index was checked in this run (ON CONFLICT needs it)
        self._keyed_ready: set[str] = set()

    def forget_key(self, label: str) -> None:
        """The sink table ``label`` (schema.name) changed: check its key index again before the next merge."""
        self._keyed_ready.discard(label)

    def add(self, target: Target, change: RowChange) -> None:
        label = change.table.label
        pending = self._pending.get(label)
        if pending is None or pending.target is not target:
            if pending is not None:
                self._flush_one(pending)
            pending = self._pending[label] = _Pending(target)
        if not target.key_pos:
            self._add_keyless(pending, change)
        else:
            self._add_keyed(pending, change)

    # -- keyless

    @staticmethod
    def _add_keyless(pending: _Pending, change: RowChange) -> None:
        t = pending.target
        before = t.row(change.before) if change.before is not None else None
        after = t.row(change.after) if change.after is not None else None
        if change.op in (Op.INSERT, Op.READ):
            pending.keyless.append(("I", None, after, frozenset()))
        elif change.op == Op.UPDATE:
            pending.keyless.append(("U", before, after, t.unchanged(change.unchanged)))
        else:
            pending.keyless.append(("D", before, None, frozenset()))

    # -- keyed

    def _add_keyed(self, pending: _Pending, change: RowChange) -> None:
        t = pending.target
        keyed = pending.keyed
        op = change.op
        if op == _DELETE:
            if change.before is None:
                return
            old = t.row(change.before)
            keyed[t.key(old)] = ("D", old, _NONE)
            return
        assert change.after is not None, f"{op} change of {change.table.label} without a row"
        row = t.row(change.after)
        unchanged = t.unchanged(change.unchanged) if op == _UPDATE else _NONE
        key = t.key(row)
        moved_from = None
        if op == _UPDATE and change.before is not None:
            old = t.row(change.before)
            old_key = t.key(old)
            if old_key != key:
                moved_from = keyed.get(old_key)
                if unchanged and (moved_from is None or moved_from[0] == "D"):
                    # Only the sink's row under the old key has the unchanged values: move that row.
                    self._flush_one(pending)
                    self._move(t, old, row, unchanged)
                    return
                keyed[old_key] = ("D", old, _NONE)
        prior = keyed.get(key)
        fill = prior if prior is not None and prior[0] != "D" else moved_from
        if unchanged and fill is not None and fill[0] != "D":
            prev_row, prev_unchanged = fill[1], fill[2]
            row = tuple(prev_row[i] if i in unchanged else v for i, v in enumerate(row))
            unchanged = unchanged & prev_unchanged
        keyed[key] = ("U", row, unchanged)

    def _move(self, t: Target, old: Row, new: Row, unchanged: frozenset[int]) -> None:
        view = t.view
        sets: list[sql.Composable] = []
        params: list[Any] = []
        for i, col in enumerate(view.columns):
            if i in unchanged:
                continue
            sets.append(sql.SQL("{} = %s::{}").format(sql.Identifier(col.name), sql.SQL(col.type_sql)))
            params.append(new[i])
        where: list[sql.Composable] = []
        for i in t.key_pos:
            col = view.columns[i]
            where.append(sql.SQL("{} = %s::{}").format(sql.Identifier(col.name), sql.SQL(col.type_sql)))
            params.append(old[i])
        cur = self.conn.execute(
            sql.SQL("UPDATE {t} SET {s} WHERE {w}").format(
                t=view.ident, s=sql.SQL(", ").join(sets), w=sql.SQL(" AND ").join(where)
            ),
            params,
        )
        if cur.rowcount == 0:
            # As native logical replication does: the sink lacks the row, so its unchanged values are unknown.
            log.warning(
                "%s: key change of a row the sink does not have; skipped (unchanged values unknown)", view.label
            )

    # -- flushing

    def flush(self) -> None:
        """Write everything collected so far."""
        for pending in list(self._pending.values()):
            self._flush_one(pending)
        self._pending.clear()

    def _flush_one(self, pending: _Pending) -> None:
        if pending.keyed:
            self._merge(pending.target, pending.keyed)
            pending.keyed = {}
        if pending.keyless:
            self._apply_keyless(pending.target, pending.keyless)
            pending.keyless = []

    def _merge(self, t: Target, keyed: dict[Any, tuple[str, Row, frozenset[int]]]) -> None:
        conn = self.conn
        view = t.view
        if view.label not in self._keyed_ready:
            ensure_key(conn, t.table)
            self._keyed_ready.add(view.label)
        stage = stage_for(conn, view)
        cols = _col_list(view)
        width = len(view.columns)
        has_delete = has_upsert = has_masked = False
        with conn.cursor().copy(sql.SQL("COPY {} ({}, _op, _u) FROM STDIN").format(stage, cols)) as copy:
            for op, row, unchanged in keyed.values():
                if op == "D":
                    has_delete = True
                    copy.write_row((*row, "D", None))
                elif unchanged:
                    has_masked = True
                    mask = "".join("1" if i in unchanged else "0" for i in range(width))
                    copy.write_row((*(None if i in unchanged else v for i, v in enumerate(row)), "U", mask))
                else:
                    has_upsert = True
                    copy.write_row((*row, "U", None))
        match = key_match(view)
        if has_delete:
            conn.execute(
                sql.SQL("DELETE FROM {t} t USING {s} s WHERE s._op = 'D' AND {m}").format(
                    t=view.ident, s=stage, m=match
                )
            )
        if has_upsert:
            conn.execute(
                sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} WHERE _op = 'U' AND _u IS NULL {a}").format(
                    t=view.ident, c=cols, s=stage, a=on_conflict(view)
                )
            )
        sets = masked_sets(view)
        if has_masked and sets is not None:
            conn.execute(
                sql.SQL("UPDATE {t} t SET {sets} FROM {s} s WHERE s._op = 'U' AND s._u IS NOT NULL AND {m}").format(
                    t=view.ident, sets=sets, s=stage, m=match
                )
            )
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))

    def _apply_keyless(self, t: Target, ops: list[tuple[str, Row | None, Row | None, frozenset[int]]]) -> None:
        view = t.view
        i = 0
        while i < len(ops):
            op, before, after, unchanged = ops[i]
            if op == "I":
                run: list[Row] = []
                while i < len(ops) and ops[i][0] == "I":
                    row = ops[i][2]
                    assert row is not None
                    run.append(row)
                    i += 1
                copy_rows(self.conn, view, run)
                continue
            i += 1
            if before is None:
                log.warning("%s: %s without the old row; nothing to match it on in a keyless table", view.label, op)
                continue
            where, params = _match(view, before)
            one = sql.SQL("ctid = (SELECT ctid FROM {t} WHERE {w} LIMIT 1)").format(t=view.ident, w=where)
            if op == "D":
                self.conn.execute(sql.SQL("DELETE FROM {t} WHERE {one}").format(t=view.ident, one=one), params)
                continue
            assert after is not None
            sets: list[sql.Composable] = []
            set_params: list[Any] = []
            for j, col in enumerate(view.columns):
                if j in unchanged:
                    continue
                sets.append(sql.SQL("{} = %s::{}").format(sql.Identifier(col.name), sql.SQL(col.type_sql)))
                set_params.append(after[j])
            if sets:
                self.conn.execute(
                    sql.SQL("UPDATE {t} SET {s} WHERE {one}").format(t=view.ident, s=sql.SQL(", ").join(sets), one=one),
                    set_params + params,
                )


def _match(table: SinkTable, row: Row) -> tuple[sql.Composable, list[Any]]:
    """``WHERE`` text matching every column of ``row`` (NULL as ``IS NULL``), and its parameters."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for col, v in zip(table.columns, row, strict=True):
        c = sql.Identifier(col.name)
        if v is None:
            parts.append(sql.SQL("{} IS NULL").format(c))
        elif col.text_compare:
            parts.append(sql.SQL("{}::text = (%s::{})::text").format(c, sql.SQL(col.type_sql)))
            params.append(v)
        else:
            parts.append(sql.SQL("{} = %s::{}").format(c, sql.SQL(col.type_sql)))
            params.append(v)
    return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")), params
