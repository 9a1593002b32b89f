"""The staging-table cache of the fast path belongs to one sink connection, not to a backend PID.

Pure logic with a stand-in connection: it records statements and reports a backend PID, which is all the cache
could look at. A reconnect that happens to get the PID of the old session must create its staging table again.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sluice.worker.fastpath import apply


class _Conn:
    def __init__(self, pid: int) -> None:
        self.info = SimpleNamespace(backend_pid=pid)
        self.statements: list[Any] = []

    def execute(self, statement: Any, *args: Any) -> None:
        self.statements.append(statement)


def _statements() -> Any:
    return SimpleNamespace(
        stage_name="sluice_stage_t", create_stage="CREATE", delete_stage="DELETE", truncate_stage="TRUNCATE"
    )


def test_a_new_connection_with_the_same_pid_creates_its_stage_again() -> None:
    st = _statements()
    first = _Conn(pid=4242)
    apply._ensure_stage(first, st)  # type: ignore[arg-type]
    apply._ensure_stage(first, st)  # type: ignore[arg-type]
    assert first.statements == ["CREATE"]
    again = _Conn(pid=4242)  # the server reused the PID for the new session
    apply._ensure_stage(again, st)  # type: ignore[arg-type]
    assert again.statements == ["CREATE"]


def test_forget_stages_after_a_rollback() -> None:
    st = _statements()
    conn = _Conn(pid=7)
    apply._ensure_stage(conn, st)  # type: ignore[arg-type]
    apply.forget_stages(conn)  # type: ignore[arg-type]
    apply._ensure_stage(conn, st)  # type: ignore[arg-type]
    assert conn.statements == ["CREATE", "CREATE"]


def test_dead_rows_are_counted_per_connection() -> None:
    st = _statements()
    a, b = _Conn(pid=1), _Conn(pid=1)
    apply._empty_stage(a, st, apply._STAGE_DEAD_ROWS)  # type: ignore[arg-type]
    apply._empty_stage(b, st, 10)  # type: ignore[arg-type]
    assert a.statements == ["DELETE"] and b.statements == ["DELETE"]
    apply._empty_stage(a, st, 1)  # type: ignore[arg-type]
    assert a.statements[-1] == "TRUNCATE"
