"""Folding a batch of changes per key (pure logic of the set-based apply)."""

from __future__ import annotations

from sluice.worker.fastpath.apply import DIRECT, TableChanges, encode_copy_row, encode_table_changes
from sluice.worker.sinks.postgres.ddl import SinkTable
from sluice.worker.sources.postgres.pgoutput import UNCHANGED
from sluice.worker.sources.postgres.tables import SourceColumn, SourceTable


def table(key: list[str]) -> SinkTable:
    cols = [SourceColumn(n, "text", 25, False, True, False) for n in ("id", "a", "big")]
    src = SourceTable(oid=1, schema="public", name="t", relkind="r", replica_identity="d", columns=cols, key=key)
    return SinkTable(schema="public", name="t", columns=cols, key=key, source=src)


def test_last_change_per_key_wins() -> None:
    tc = TableChanges(table(["id"]))
    tc.update(None, (b"0", b"w", b"v"))
    tc.insert((b"1", b"x", b"v"))
    tc.update(None, (b"1", b"y", b"v"))
    tc.insert((b"2", b"z", b"w"))
    tc.delete((b"2", None, None))
    # Key 1 was first inserted in this batch: it stays an 'I' (cheap plain-INSERT path in the sink).
    assert tc.keyed == {
        b"0": (b"U", (b"0", b"w", b"v")),
        b"1": (b"I", (b"1", b"y", b"v")),
        b"2": (b"D", (b"2", None, None)),
    }
    assert len(tc) == 5


def test_leading_inserts_go_straight_to_copy_lines_in_order() -> None:
    tc = TableChanges(table(["id"]))
    tc.insert((b"2", b"a\tb", None))
    tc.insert((b"1", b"x", b"v"))
    tc.update(None, (b"2", b"y", b"v"))  # after the run: folded, applied after the run
    tc.insert((b"3", b"z", b"w"))  # something else is pending now: folded too
    assert tc.direct == [b"2\ta\\tb\t\\N\n", b"1\tx\tv\n"]
    assert tc.keyed == {b"2": (b"U", (b"2", b"y", b"v")), b"3": (b"I", (b"3", b"z", b"w"))}
    encoded = encode_table_changes(tc)
    assert [(e.flags & DIRECT, e.count) for e in encoded] == [(DIRECT, 2), (0, 2)]
    assert encoded[0].data == b"2\ta\\tb\t\\N\n1\tx\tv\n"


def test_delete_then_reinsert_is_an_upsert() -> None:
    tc = TableChanges(table(["id"]))
    tc.delete((b"1", None, None))
    assert not tc.direct
    tc.insert((b"1", b"again", b"v"))
    assert tc.keyed[b"1"] == (b"U", (b"1", b"again", b"v"))


def test_key_change_deletes_old_key() -> None:
    tc = TableChanges(table(["id"]))
    tc.update((b"1", None, None), (b"9", b"a", b"b"))
    assert tc.keyed[b"1"][0] == b"D"
    assert tc.keyed[b"9"] == (b"U", (b"9", b"a", b"b"))


def test_update_of_a_key_not_inserted_in_the_batch_is_an_upsert() -> None:
    tc = TableChanges(table(["id"]))
    tc.update(None, (b"5", b"a", b"b"))
    tc.update(None, (b"5", b"c", UNCHANGED))
    assert tc.keyed[b"5"] == (b"U", (b"5", b"c", b"b"))


def test_unchanged_toast_filled_from_earlier_change_in_batch() -> None:
    tc = TableChanges(table(["id"]))
    tc.delete((b"0", None, None))
    tc.insert((b"1", b"a", b"huge"))
    tc.update(None, (b"1", b"b", UNCHANGED))
    assert tc.keyed[b"1"] == (b"I", (b"1", b"b", b"huge"))


def test_unchanged_toast_after_a_direct_insert_keeps_the_masked_update() -> None:
    # The insert is copied into the target first, so the masked update finds the value there.
    tc = TableChanges(table(["id"]))
    tc.insert((b"1", b"a", b"huge"))
    tc.update(None, (b"1", b"b", UNCHANGED))
    assert tc.direct == [b"1\ta\thuge\n"]
    assert tc.keyed[b"1"] == (b"U", (b"1", b"b", UNCHANGED))


def test_unchanged_toast_without_earlier_change_stays_masked() -> None:
    tc = TableChanges(table(["id"]))
    tc.update(None, (b"1", b"b", UNCHANGED))
    assert tc.keyed[b"1"] == (b"U", (b"1", b"b", UNCHANGED))


def test_composite_key_and_column_mapping() -> None:
    # The relation sends columns in another order than the sink's: (big, a, id).
    tc = TableChanges(table(["id", "a"]), positions=[2, 1, 0])
    tc.update(None, (b"C", b"A", b"0"))
    tc.insert((b"B", b"A", b"1"))
    assert tc.keyed[(b"1", b"A")] == (b"I", (b"1", b"A", b"B"))


def test_direct_insert_lines_follow_the_sink_column_order() -> None:
    tc = TableChanges(table(["id", "a"]), positions=[2, 1, 0])
    tc.insert((b"B", b"A", b"1"))
    assert tc.direct == [b"1\tA\tB\n"]


def test_keyless_keeps_every_change_in_order() -> None:
    tc = TableChanges(table([]))
    tc.insert((b"1", b"a", b"b"))
    tc.insert((b"1", b"a", b"b"))
    tc.delete((b"1", b"a", b"b"))
    tc.insert((b"1", b"a", b"b"))
    assert tc.direct == [b"1\ta\tb\n", b"1\ta\tb\n"]
    assert [op for op, _old, _new in tc.keyless] == ["D", "I"]


def test_copy_text_escaping() -> None:
    assert (
        encode_copy_row((b"a\tb", None, b"back\\slash\nnl\r", UNCHANGED)) == b"a\\tb\t\\N\tback\\\\slash\\nnl\\r\t\\N"
    )


def test_key_change_with_unchanged_toast_fills_from_the_old_keys_batch_state() -> None:
    tc = TableChanges(table(["id"]))
    tc.update(None, (b"1", b"a", b"big"))
    assert not tc.needs_move((b"1", None, None), (b"2", b"a", UNCHANGED))
    tc.update((b"1", None, None), (b"2", b"a", UNCHANGED))
    assert tc.keyed[b"1"][0] == b"D"
    assert tc.keyed[b"2"] == (b"U", (b"2", b"a", b"big"))


def test_key_change_with_unchanged_toast_the_batch_does_not_hold_is_a_move() -> None:
    tc = TableChanges(table(["id"]))
    assert tc.needs_move((b"1", None, None), (b"2", b"a", UNCHANGED))
    assert not tc.needs_move((b"1", None, None), (b"2", b"a", b"v"))  # nothing unchanged: delete + upsert
    assert not tc.needs_move(None, (b"2", b"a", UNCHANGED))  # key unchanged: the masked update keeps it
    move = tc.move((b"1", None, None), (b"2", b"a", UNCHANGED))
    assert (move.old, move.new) == ((b"1", None, None), (b"2", b"a", UNCHANGED))
