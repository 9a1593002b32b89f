"""Every invalid worker config gets a clear ConfigError naming the field and the fix (and the CLI exits 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.errors import ConfigError
from sluice.worker.config import load_connector, settings_for
from sluice.worker.drivers.postgres.connection import conninfo_kwargs

REPO = Path(__file__).resolve().parents[2]


def conn(**over: Any) -> dict[str, Any]:
    base = {"host": "127.0.0.1", "port": 5432, "user": "u", "database": "d", "password": "pw"}
    base.update(over)
    return base


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "orders",
        "source": {"postgres": {"connection": conn(), "replication_type": {"logical_replication": {}}}},
        "sink": {"postgres": {"connection": conn(database="w")}},
    }
    body.update(over)
    return body


def write(tmp_path: Path, data: Any, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def test_valid_body_and_resource(tmp_path: Path) -> None:
    c = load_connector(write(tmp_path, spec()))
    assert c.id == "orders"
    cr = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Connector", "metadata": {"name": "from-cr"}, "spec": spec()}
    del cr["spec"]["id"]
    assert load_connector(write(tmp_path, cr, "cr.yaml")).id == "from-cr"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("id: [unclosed", "not valid YAML"),
        ("- a list", "must hold a mapping"),
        ({**spec(), "id": "Bad_Id"}, "not a valid connector id"),
        ({**spec(), "bogus": 1}, "bogus"),
        ({k: v for k, v in spec().items() if k != "sink"}, "sink"),
        (
            spec(source={"postgres": {"connection": conn(port=70000), "replication_type": {"snapshot": {}}}}),
            "port",
        ),
        (
            spec(
                source={
                    "postgres": {
                        "connection": conn(),
                        "replication_type": {"snapshot": {}, "logical_replication": {}},
                    }
                }
            ),
            "replication_type",
        ),
        (
            spec(source={"postgres": {"connection": conn(ssl_mode="Sometimes"), "replication_type": {"snapshot": {}}}}),
            "ssl_mode",
        ),
        (spec(limits={"cdc": {"max_buffer_rows": 0}}), "max_buffer_rows"),
        (
            spec(
                sink={
                    "clickhouse": {
                        "connection": {"http_url": "http://127.0.0.1:8123", "user": "u", "password": "p"},
                        "target_database": "d",
                    }
                }
            ),
            "sink.clickhouse is not available in this version of Sluice yet",
        ),
    ],
)
def test_invalid_configs(tmp_path: Path, data: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_connector(write(tmp_path, data))
    text = json.dumps(err.value.as_dict())
    assert needle in text, text
    assert err.value.fix


def test_missing_file_and_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_connector(tmp_path / "nope.yaml")
    monkeypatch.setenv("SLUICE_SECRETS_DIR", str(tmp_path / "secrets"))
    c = conn()
    del c["password"]
    c["password_secret_ref"] = {"name": "pg", "key": "password"}
    body = spec(source={"postgres": {"connection": c, "replication_type": {"snapshot": {}}}})
    with pytest.raises(ConfigError, match="secret 'pg' key 'password'"):
        load_connector(write(tmp_path, body))
    (tmp_path / "secrets" / "pg").mkdir(parents=True)
    (tmp_path / "secrets" / "pg" / "password").write_text("s3cret\n")
    loaded = load_connector(write(tmp_path, body))
    assert conninfo_kwargs(loaded.source.config.connection)["password"] == "s3cret"


def test_ssl_mode_mapping_and_lock_timeout() -> None:
    from sluice.models import PostgresConnection

    for mode, libpq in [
        ("Disable", "disable"),
        ("Prefer", "prefer"),
        ("Require", "require"),
        ("VerifyCa", "verify-ca"),
        ("VerifyFull", "verify-full"),
    ]:
        extra = {"ssl_root_cert": "/etc/ssl/ca.pem"} if mode.startswith("Verify") else {}
        c = PostgresConnection.model_validate(conn(ssl_mode=mode, operation_lock_timeout_seconds=3, **extra))
        kw = conninfo_kwargs(c)
        assert kw["sslmode"] == libpq
        assert "lock_timeout=3000" in kw["options"]
    with pytest.raises(ConfigError, match="ssl_root_cert"):
        conninfo_kwargs(PostgresConnection.model_validate(conn(ssl_mode="VerifyFull")))
    pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    kw = conninfo_kwargs(PostgresConnection.model_validate(conn(ssl_mode="VerifyCa", ssl_root_cert=pem)))
    assert Path(kw["sslrootcert"]).read_text() == pem


def test_limits_defaults_and_overrides(tmp_path: Path) -> None:
    s = settings_for(load_connector(write(tmp_path, spec())))
    assert s.cdc_max_buffer_rows > 0 and s.cdc_flush_interval_ms > 0 and s.snapshot_max_buffer_rows > 0
    body = spec(limits={"cdc": {"max_buffer_rows": 7, "flush_interval_ms": 5}, "snapshot": {"max_buffer_rows": 9}})
    s = settings_for(load_connector(write(tmp_path, body)))
    assert (s.cdc_max_buffer_rows, s.cdc_flush_interval_ms, s.snapshot_max_buffer_rows) == (7, 5, 9)


def test_cli_exits_2_with_the_error_on_stderr(tmp_path: Path) -> None:
    cfg = write(tmp_path, {**spec(), "id": "Bad_Id"})
    status = tmp_path / "status.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "sluice", "worker", "--config", str(cfg), "--status-file", str(status)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "InvalidSpec" in proc.stderr
    last = json.loads(status.read_text().splitlines()[-1])
    assert last["status"] == "failed" and last["last_error"]["error"] == "InvalidSpec"
    assert "pw" not in proc.stderr + status.read_text()
