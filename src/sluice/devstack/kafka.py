"""A throw-away single-node Apache Kafka broker (KRaft, no ZooKeeper) for tests, the benchmark and ``sluice dev``.

The jars come from ``hack/install-kafka.sh`` (Maven Central, cached under ``~/.cache/sluice/kafka/<version>``); the
broker runs as ``java -cp 'libs/*' kafka.Kafka server.properties`` in a temporary directory of its own, on free
ports of 127.0.0.1, as both broker and controller. Two client listeners:

- ``PLAINTEXT`` (:attr:`KafkaInstance.bootstrap`): no authentication;
- ``SASL_PLAINTEXT`` (:attr:`KafkaInstance.sasl_bootstrap`): mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512,
  one user (:attr:`KafkaInstance.user` / :attr:`KafkaInstance.password`, test credentials only) known to all three;
- with ``tls=True``, ``SSL`` (:attr:`KafkaInstance.ssl_bootstrap`): a serving certificate for 127.0.0.1 signed by
  a throw-away CA (:attr:`KafkaInstance.ca_pem`), as a PEM keystore.

Internal topics use replication factor 1, so transactions work on one broker. The JVM is kept small
(``-Xmx256m``, serial GC, C1 only): the tests run several servers on two cores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KAFKA_VERSION", "KafkaError", "KafkaInstance", "kafka_available", "kafka_home"]

KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.4.0")


class KafkaError(RuntimeError):
    """The test broker could not be set up or driven; the message carries the tail of its log."""


def kafka_home() -> Path:
    """Where ``hack/install-kafka.sh`` puts the jars (``$SLUICE_CACHE/kafka/<version>``)."""
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return cache / "kafka" / KAFKA_VERSION


def kafka_available() -> tuple[bool, str]:
    """Whether a broker can be started here, and if not, why (for a skip or failure message)."""
    home = kafka_home()
    if not (home / ".installed").exists():
        return False, f"Kafka {KAFKA_VERSION} is not installed in {home} (run `make kafka` or hack/install-kafka.sh)"
    if shutil.which("java") is None:
        return False, "java is not on PATH (the Kafka broker is a JVM program)"
    return True, f"Kafka {KAFKA_VERSION} in {home}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class KafkaInstance:
    """One KRaft broker+controller in its own directory (``base_dir``, a new temp dir when None)."""

    name: str = "kafka"
    base_dir: Path | None = None
    user: str = "sluice"
    password: str = "sluice-kafka-pw"  # noqa: S105 - a test broker's credential, never a real secret
    port: int = 0
    sasl_port: int = 0
    controller_port: int = 0
    heap: str = "256m"
    tls: bool = False
    ssl_port: int = 0
    ca_pem: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _own_dir: bool = False

    @property
    def dir(self) -> Path:
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"sluice-{self.name}-"))
            self._own_dir = True
        return self.base_dir

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def _tls_material(self) -> Path:
        """The CA and the broker's PEM keystore (private key, then certificate), made once per directory."""
        from sluice.devstack.pki import CertificateAuthority

        keystore = self.dir / "pki" / "broker-keystore.pem"
        ca_dir = self.dir / "pki" / "ca"
        if (ca_dir / "ca.crt").exists():  # a restart keeps the CA its keystore was signed by
            ca = CertificateAuthority.load(ca_dir)
        else:
            ca = CertificateAuthority(ca_dir, common_name="sluice-test-kafka-ca")
        if not keystore.exists():
            pair = ca.serving("kafka-broker", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
            keystore.write_bytes(pair.key_pem + pair.cert_pem)
            keystore.chmod(0o600)
        self.ca_pem = ca.cert_pem.decode()
        return keystore

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            str(kafka_home() / "libs" / "*"),
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        jaas_plain = (
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{self.user}="{self.password}";'
        )
        jaas_scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas_plain,
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": jaas_scram,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas_scram,
            "log.dirs": str(self.dir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if self.tls:
            keystore = self._tls_material()
            props["listeners"] += f",SSL://127.0.0.1:{self.ssl_port}"
            props["advertised.listeners"] += f",SSL://127.0.0.1:{self.ssl_port}"
            props["listener.security.protocol.map"] += ",SSL:SSL"
            props["listener.name.ssl.ssl.keystore.type"] = "PEM"
            props["listener.name.ssl.ssl.keystore.location"] = str(keystore)
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def init(self) -> None:
        """Choose ports, write the configuration and format the storage (with the SCRAM user)."""
        ok, why = kafka_available()
        if not ok:
            raise KafkaError(why)
        self.port = self.port or _free_port()
        self.sasl_port = self.sasl_port or _free_port()
        self.controller_port = self.controller_port or _free_port()
        if self.tls:
            self.ssl_port = self.ssl_port or _free_port()
        config = self._write_config()
        if (self.dir / "data" / "meta.properties").exists():
            return
        scram = [
            arg
            for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for arg in ("--add-scram", f"{mech}=[name={self.user},password={self.password}]")
        ]
        cluster_id = "c2x1aWNlLXRlc3QtY2x1cw"  # any 22-character base64 id; one broker, one cluster
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *scram),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed:\n{done.stdout}\n{done.stderr}")

    def start(self, timeout: float = 90) -> KafkaInstance:
        """Start the broker (formatting first if needed) and wait until it answers metadata requests."""
        if self.pid is not None:
            return self
        self.init()
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            self._java("kafka.Kafka", str(self.dir / "server.properties")),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise KafkaError(f"Kafka broker exited during start-up:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception as exc:
                last = str(exc)
            time.sleep(0.2)
        raise KafkaError(f"Kafka broker not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker cleanly (SIGTERM), SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.kill()
        if self._own_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> KafkaInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def main() -> None:  # pragma: no cover - a manual helper: python -m sluice.devstack.kafka
    with KafkaInstance() as k:
        print(f"Kafka {KAFKA_VERSION} on {k.bootstrap} (SASL on {k.sasl_bootstrap}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            while k.pid is not None:
                time.sleep(1)


if __name__ == "__main__":  # pragma: no cover
    main()
