"""A worker pod spills a big streamed transaction into its ``spill`` volume, under a read-only root filesystem.

PostgreSQL streams a transaction to the worker while it is still in progress once its decoded changes exceed
``logical_decoding_work_mem`` (the worker asks for 4MB on its replication connection). The worker keeps those
changes in a spill file (``tempfile.TemporaryFile(prefix="sluice-tx-", dir=spill_dir())``) until the commit
arrives. Worker pods run with ``readOnlyRootFilesystem``, and the process node enforces it with bubblewrap as a
kubelet would, so the only writable place is the ``spill`` emptyDir the operator mounts (``SLUICE_SPILL_DIR`` and
``TMPDIR`` point at it).

Without that volume and those variables the first streamed chunk fails in the worker: ``tempfile`` finds no
writable temporary directory (``No usable temporary directory found in ['/tmp', '/var/tmp', ...]``). Depending on
how the worker handles it, the pod crash-loops (its restart count grows) or the worker retries in-process forever
(``transient failure (attempt N ...)`` in its log, ``last_error`` in the status); either way the same transaction
fails again on every attempt and never reaches the sink. This test then fails: without the volume at the first
check of the pod, without the variables because no spill file is ever open in the spill volume — and if it were,
at the data, restart and error checks.

The proof that the spill really happens is taken while the source transaction is still open (so it is not a race):
a process of the worker pod holds an open, unlinked file in the pod's ``spill`` volume directory on the process
node (``<node workdir>/pods/<ns>_<pod>_<uid>/volumes/spill``; bubblewrap binds it at that same path).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase, table_diff

pytestmark = pytest.mark.e2e

NAME = "spill"
POD = f"{NAME}-worker-0"
SEED_ROWS = 1_000
BIG_ROWS = 200_000  # x ~100-byte payloads: tens of MB of decoded changes, far above the worker's 4MB
# Every column of the keyless table: its rows are compared as whole rows (duplicates counted).
NOTES_COLUMNS = ("note", "n")


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


def _get(control_plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    out = control_plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _condition(status: dict[str, Any], ctype: str) -> str | None:
    return next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == ctype), None)


def _streaming(control_plane: ControlPlane, namespace: str) -> dict[str, Any] | None:
    status: dict[str, Any] = (_get(control_plane, namespace, "connector", NAME) or {}).get("status") or {}
    ok = _condition(status, "Streaming") == "True" and _condition(status, "Ready") == "True"
    return status if ok else None


def _worker_pod(control_plane: ControlPlane, namespace: str) -> dict[str, Any] | None:
    return _get(control_plane, namespace, "pod", POD)


def _restart_count(pod: dict[str, Any]) -> int:
    return sum(int(cs.get("restartCount", 0)) for cs in pod["status"].get("containerStatuses") or [])


def _describe(
    control_plane: ControlPlane, process_node: ProcessNode, op: OperatorProcess, namespace: str, source: PgDatabase
) -> str:
    cr = _get(control_plane, namespace, "connector", NAME) or {}
    parts = [f"status: {json.dumps(cr.get('status') or {}, indent=1)[:3000]}"]
    # Whether PostgreSQL streamed a transaction in progress to the slot's consumer at all
    slots = source.execute(
        "SELECT slot_name, stream_txns, stream_bytes, spill_txns, total_txns FROM pg_stat_replication_slots"
    )
    parts.append(f"source slots (name, stream_txns, stream_bytes, spill_txns, total_txns): {slots}")
    parts.append("pods:\n" + control_plane.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout)
    log = process_node.log_path(namespace, POD, "worker")
    if log is not None:
        parts.append("worker log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    parts.append("operator log:\n" + op.log_tail(20))
    return "\n".join(parts)


def _spill_volume(process_node: ProcessNode, pod: dict[str, Any]) -> Path:
    """Where the process node materialized the pod's ``spill`` emptyDir."""
    meta = pod["metadata"]
    return process_node.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / "volumes" / "spill"


def _pod_pids(pod: dict[str, Any]) -> list[int]:
    """The processes of the pod's container: the process its ``containerID`` names (``bwrap`` in the sandbox) and
    all its descendants (the sandboxed ``sluice worker`` among them)."""
    root = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    pids = {root}
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in pids} - pids
        pids |= children
        grew = bool(children)
    return sorted(pids)


def _open_spill_files(pod: dict[str, Any], volume: Path) -> list[str]:
    """Temporary (unlinked) files in ``volume`` that a process of the pod holds open, as ``/proc`` names them."""
    prefix = f"{volume}/"
    found = []
    for pid in _pod_pids(pod):
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith(prefix) and target.endswith(" (deleted)"):
                found.append(f"pid {pid} fd {fd.name}: {target}")
    return found


def _big_checksum(db: PgDatabase) -> tuple[int, str]:
    row = db.execute(
        "SELECT count(*), md5(coalesce(string_agg(id || ':' || payload || ':' || qty, ',' ORDER BY id), '')) FROM big"
    )[0]
    return int(row[0]), str(row[1])


def test_big_streamed_transaction_is_spilled_to_the_spill_volume_and_applied_once(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    """One source transaction of 200k inserts (+ updates, deletes, and changes of a keyless table) is streamed in
    progress, spilled into the pod's spill volume, and applied exactly once; the worker never restarts."""
    source_db.execute("CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL, qty int NOT NULL)")
    source_db.execute(
        "INSERT INTO big SELECT g, rpad(md5(g::text), 100, md5('p' || g)), g %% 7 FROM generate_series(1, %s) g",
        (SEED_ROWS,),
    )
    source_db.execute("CREATE TABLE notes (note text NOT NULL, n int NOT NULL)")
    source_db.execute("ALTER TABLE notes REPLICA IDENTITY FULL")
    source_db.execute("INSERT INTO notes VALUES ('seed-1', 1), ('seed-2', 2), ('seed-3', 3), ('seed-3', 3)")
    apply(
        control_plane,
        namespace,
        secret_resource(f"{NAME}-creds", source_db, sink_db),
        connector_resource(NAME, source_db, sink_db, f"{NAME}-creds"),
    )

    def describe() -> str:
        return _describe(control_plane, process_node, sluice_operator, namespace, source_db)

    poll(lambda: _streaming(control_plane, namespace), timeout=120, message="Streaming and Ready", describe=describe)
    poll(
        lambda: _big_checksum(sink_db) == _big_checksum(source_db),
        timeout=60,
        message="the snapshot in the sink",
        describe=describe,
    )
    pod = _worker_pod(control_plane, namespace)
    assert pod is not None and pod["status"].get("phase") == "Running", describe()
    assert _restart_count(pod) == 0, describe()
    volume = _spill_volume(process_node, pod)
    assert volume.is_dir(), f"no spill volume at {volume}: {describe()}"

    conn = source_db.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO big SELECT g, rpad(md5(g::text), 100, md5('p' || g)), g %% 7"
                " FROM generate_series(%s, %s) g",
                (SEED_ROWS + 1, SEED_ROWS + BIG_ROWS),
            )
            cur.execute("UPDATE big SET qty = qty + 100, payload = upper(payload) WHERE id <= %s", (SEED_ROWS // 2,))
            cur.execute("DELETE FROM big WHERE id % 1000 = 999")  # no parameters: % is literal
            cur.execute("INSERT INTO notes VALUES ('in-big-tx', 42), ('seed-3', 3)")
            cur.execute("UPDATE notes SET n = n + 10 WHERE note = 'seed-2'")
            cur.execute("DELETE FROM notes WHERE note = 'seed-1'")
        # Still uncommitted: PostgreSQL streams it in progress, and the worker must hold it in a spill file.
        spilled = poll(
            lambda: _open_spill_files(pod, volume),
            timeout=90,
            message=f"an open spill file in the pod's spill volume {volume} while the source transaction is open",
            describe=describe,
        )
        conn.commit()
    finally:
        conn.close()

    poll(
        lambda: _big_checksum(sink_db) == _big_checksum(source_db),
        timeout=180,
        interval=1.0,
        message="the big transaction in the sink",
        describe=lambda: f"source {_big_checksum(source_db)}, sink {_big_checksum(sink_db)}; {describe()}",
    )
    count, _ = _big_checksum(sink_db)
    assert count == SEED_ROWS + BIG_ROWS - (SEED_ROWS + BIG_ROWS) // 1000
    assert sink_db.scalar("SELECT count(*) FROM big WHERE qty >= 100") == SEED_ROWS // 2
    diff = table_diff(source_db, sink_db, "notes", NOTES_COLUMNS)
    assert diff is None, diff
    assert sorted(sink_db.execute("SELECT note, n FROM notes")) == [
        ("in-big-tx", 42),
        ("seed-2", 12),
        ("seed-3", 3),
        ("seed-3", 3),
        ("seed-3", 3),
    ]
    # The commit replayed and closed the spill file.
    poll(lambda: not _open_spill_files(pod, volume), timeout=30, message="the spill file closed", describe=describe)
    after = _worker_pod(control_plane, namespace)
    assert after is not None, describe()
    assert after["metadata"]["uid"] == pod["metadata"]["uid"], f"the worker pod was replaced: {describe()}"
    assert _restart_count(after) == 0, f"the worker restarted (spilled: {spilled}): {describe()}"
    status = _streaming(control_plane, namespace)
    assert status is not None, describe()
    # the worker retries some failures in-process: a retried failure would show here, not in restartCount
    assert status.get("last_error") is None, describe()
    assert not status.get("restarts"), describe()
