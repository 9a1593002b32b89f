"""Sluice's Kafka events against Debezium 3.6.1's, field by field, on the same source and the same changes.

Debezium's PostgreSQL connector runs in its embedded engine with Kafka Connect's JsonConverter (schemas on), from
the jars ``hack/install-debezium.sh`` resolves on Maven Central (skipped when they are not installed; under
``CI=true`` a failure). Sluice streams the same table into the session's Kafka broker. Both take a snapshot, then
see the same changes: every PostgreSQL type of the type table (numeric, temporal, json, arrays, enums, bytea, uuid),
an update that leaves a TOASTed value unchanged, a key change, deletes and a truncate.

The events are compared in order: key, op, before, after, the Connect schemas of key, before and after, and the
``source`` fields both fill the same way. What differs on purpose is listed in :data:`DELIBERATE` (and in the
README's Kafka section); any other difference fails the test with every differing field listed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack.kafka import KafkaInstance
from tests.integration.test_sink_kafka import kafka_spec, realtime, write_spec
from tests.support.kafka import consume_all
from tests.support.pg import PgDatabase, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DEBEZIUM_VERSION = "3.6.1.Final"

#: source fields whose values differ on purpose (README, "Differences from Debezium"), or are times of the run
DELIBERATE_SOURCE = {"version", "ts_ms", "ts_us", "ts_ns", "snapshot", "sequence", "xmin"}
#: envelope fields that are times of the run
RUN_TIMES = {"ts_ms", "ts_us", "ts_ns"}


def debezium_home() -> Path:
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return cache / "debezium" / DEBEZIUM_VERSION


@pytest.fixture
def debezium(tmp_path: Path) -> Any:
    home = debezium_home()
    if not (home / ".installed").exists():
        reason = f"Debezium {DEBEZIUM_VERSION} is not installed in {home} (bash hack/install-debezium.sh)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    procs: list[subprocess.Popen[bytes]] = []

    def start(props: dict[str, str]) -> Path:
        conf = tmp_path / "debezium.properties"
        conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        out = tmp_path / "debezium.jsonl"
        log = (tmp_path / "debezium.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    "java",
                    "-Xmx384m",
                    "-XX:TieredStopAtLevel=1",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "-cp",
                    f"{home / 'classes'}:{home / 'libs' / '*'}",
                    "DebeziumJsonLines",
                    str(conf),
                    str(out),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        return out

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait(fn: Any, what: str, timeout: float = 120, describe: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s\n{describe() if describe else ''}")
        time.sleep(0.3)


def _fields(schema: dict[str, Any] | None, name: str) -> Any:
    if schema is None:
        return None
    for f in schema.get("fields", []):
        if f["field"] == name:
            return f
    return None


def _diff(path: str, dbz: Any, ours: Any, out: list[str]) -> None:
    """Every leaf where ``dbz`` and ``ours`` differ, as ``path: debezium X sluice Y``."""
    if isinstance(dbz, dict) and isinstance(ours, dict):
        for k in list(dbz) + [k for k in ours if k not in dbz]:
            _diff(f"{path}.{k}", dbz.get(k, "<absent>"), ours.get(k, "<absent>"), out)
    elif isinstance(dbz, list) and isinstance(ours, list) and _named(dbz) and _named(ours):
        # Connect struct fields: by name, then their order once
        a, b = {f["field"]: f for f in dbz}, {f["field"]: f for f in ours}
        for name in list(a) + [n for n in b if n not in a]:
            _diff(f"{path}[{name}]", a.get(name, "<absent>"), b.get(name, "<absent>"), out)
        if [n for n in a if n in b] != [n for n in b if n in a]:
            out.append(f"{path} order: debezium {list(a)} sluice {list(b)}")
    elif isinstance(dbz, list) and isinstance(ours, list) and len(dbz) == len(ours):
        for n, (a, b) in enumerate(zip(dbz, ours, strict=True)):
            name = a.get("field", n) if isinstance(a, dict) else n
            _diff(f"{path}[{name}]", a, b, out)
    elif dbz != ours:
        out.append(f"{path}: debezium {dbz!r} sluice {ours!r}")


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "field" in i for i in items)


def compare(dbz: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Differences between one Debezium event and Sluice's (``{"key", "value"}`` each as JsonConverter JSON),
    leaving out the run's times and the fields in :data:`DELIBERATE_SOURCE`."""
    out: list[str] = []
    _diff("key", dbz["key"], ours["key"], out)
    dv, ov = dbz["value"], ours["value"]
    if dv is None or ov is None:
        if dv != ov:
            out.append(f"value: debezium {dv} sluice {ov}")
        return out
    dp, op = dict(dv["payload"]), dict(ov["payload"])
    for t in RUN_TIMES:
        dp.pop(t, None)
        op.pop(t, None)
    ds, os_ = dp.pop("source"), op.pop("source")
    for f in DELIBERATE_SOURCE:
        ds.pop(f, None)
        os_.pop(f, None)
    _diff("payload", dp, op, out)
    _diff("payload.source", ds, os_, out)
    _diff("schema", dv["schema"], ov["schema"], out)
    return out


#: Differences on purpose (README, Kafka section): the neutral change model has no per-change log position, and
#: the snapshot is read by the source, not by a transaction the sink knows.
DELIBERATE: list[tuple[str, str]] = [
    (r"^payload\.source\.lsn: ", "source.lsn is the transaction's commit position (Debezium: each change's LSN)"),
    (r"^payload\.source\.txId: debezium \d+ sluice None$", "snapshot rows carry no txId"),
]


def explained(diff: str, op: str) -> str | None:
    for pattern, why in DELIBERATE:
        if re.search(pattern, diff):
            if why == "snapshot rows carry no txId" and op != "r":
                return None
            return why
    return None


TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE types (
    id bigint PRIMARY KEY, small smallint, i int NOT NULL, amount numeric(12,3), anynum numeric, f4 real, f8 float8,
    flag boolean, t text, vc varchar(20), ch char(3), b bytea, d date, tm time, tmtz timetz,
    ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb, ints int[], texts text[], m mood,
    big text
);
ALTER TABLE types ALTER COLUMN big SET STORAGE EXTERNAL;
"""

ROW = (
    "{id}, 7, {id}, 1234.567, 3.14159265358979, 1.5, 2.25, true, 'text {id}', 'vc', 'abc', '\\x00ff10'::bytea, "
    "'2024-02-29', '13:45:01.123456', '13:45:01+02', '2024-02-29 13:45:01.5', '2024-02-29 13:45:01.5+01', "
    "'1 day 02:03:04.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2]}}', '{{\"b\": null}}', "
    "'{{1,2,3}}', '{{x,\"y z\"}}', 'happy', repeat('0123456789', 300)"
)


def test_events_match_debezium_field_by_field(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: Any, tmp_path: Path, debezium: Any
) -> None:
    source_db.psql(TYPES_DDL + "".join(f"INSERT INTO types VALUES ({ROW.format(id=i)});" for i in (1, 2, 3)))
    spec = kafka_spec(source_db, kafka, transactions=True, limits={"cdc": {"flush_interval_ms": 50}})
    prefix = spec["id"]
    conn = spec["source"]["postgres"]["connection"]
    out = debezium(
        {
            "name": "conformance",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "offset.storage": "org.apache.kafka.connect.storage.MemoryOffsetBackingStore",
            "offset.flush.interval.ms": "1000",
            "database.hostname": str(conn["host"]),
            "database.port": str(conn["port"]),
            "database.user": str(conn["user"]),
            "database.password": str(conn["password"]),
            "database.dbname": str(conn["database"]),
            "topic.prefix": prefix,
            "plugin.name": "pgoutput",
            "slot.name": f"dbz_{uuid.uuid4().hex[:8]}",
            "publication.name": "dbz_conformance",
            "publication.autocreate.mode": "filtered",
            "table.include.list": "public.types",
            "snapshot.mode": "initial",
            "skipped.operations": "none",
            "tombstones.on.delete": "true",
            "converter.schemas.enable": "true",
        }
    )
    log = tmp_path / "debezium.log"

    def dbz_tail() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""

    _wait(lambda: len(_lines(out)) >= 3, "Debezium's snapshot", describe=dbz_tail)
    worker: WorkerProcess = run_worker(write_spec(tmp_path, spec))
    worker.wait_for_status(realtime, timeout=90)
    # Debezium is streaming once its slot exists and is active.
    _wait(
        lambda: source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'dbz_%' AND active"),
        "Debezium streaming",
        describe=dbz_tail,
    )
    source_db.psql(
        f"INSERT INTO types VALUES ({ROW.format(id=10)});"
        "UPDATE types SET i = -1, amount = -0.001, ints = '{}', m = 'sad' WHERE id = 1;"  # big unchanged (TOAST)
        "UPDATE types SET id = 20 WHERE id = 2;"  # key change
        "INSERT INTO types (id, i) VALUES (30, 0);"  # nulls everywhere else
        "DELETE FROM types WHERE id = 3;"
        "TRUNCATE types;"
    )
    topic = f"{prefix}.public.types"
    dbz = _wait(
        lambda: (
            (ev := [e for e in _lines(out) if e["topic"] == topic])
            and ev[-1]["value"]
            and ev[-1]["value"]["payload"]["op"] == "t"
            and ev
        ),
        "Debezium's truncate event",
        describe=dbz_tail,
    )
    ours_records = _wait(
        lambda: (
            (rs := consume_all(kafka.bootstrap, [topic], timeout=10))
            and rs[-1].value
            and json.loads(rs[-1].value)["payload"]["op"] == "t"
            and rs
        ),
        "Sluice's truncate event",
        describe=worker.output_tail,
    )
    ours = [
        {"key": None if r.key is None else json.loads(r.key), "value": None if r.value is None else json.loads(r.value)}
        for r in ours_records
    ]

    def label(e: dict[str, Any]) -> str:
        v = e["value"]
        return "tombstone" if v is None else v["payload"]["op"]

    assert [label(e) for e in ours] == [label(e) for e in dbz], "the same events in the same order"
    problems: dict[str, list[int]] = {}
    known: dict[str, int] = {}
    for n, (d, o) in enumerate(zip(dbz, ours, strict=True)):
        for diff in compare(d, o):
            why = explained(diff, label(d))
            if why is not None:
                known[why] = known.get(why, 0) + 1
            else:
                problems.setdefault(diff, []).append(n)
    print("known differences:", json.dumps(known, indent=1))
    assert not problems, "differences from Debezium:\n" + "\n".join(f"{d} (events {n})" for d, n in problems.items())
