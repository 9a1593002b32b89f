"""Pure parts of the local control plane: the CA, kubeconfig files, the binary location, process handling."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sluice.devstack import binaries
from sluice.devstack.controlplane import ControlPlane, ControlPlaneError, free_port
from sluice.devstack.kubeconfig import write_kubeconfig
from sluice.devstack.pki import CertificateAuthority
from sluice.devstack.processes import ManagedProcess, stop_all

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_binaries_version_matches_build_script() -> None:
    script = (REPO_ROOT / "hack" / "build-k8s.sh").read_text()
    match = re.search(r'K8S_VERSION="\$\{K8S_VERSION:-(v[0-9.]+)\}"', script)
    assert match, "hack/build-k8s.sh no longer sets a default K8S_VERSION"
    assert match.group(1) == binaries.K8S_VERSION


def test_build_script_and_python_agree_on_the_bin_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLUICE_K8S_BIN_DIR", raising=False)
    monkeypatch.delenv("K8S_VERSION", raising=False)
    monkeypatch.setenv("SLUICE_CACHE", str(tmp_path))
    printed = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-k8s.sh"), "--print-bin-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(printed) == binaries.bin_dir()


def test_bin_dir_follows_cache_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLUICE_K8S_BIN_DIR", raising=False)
    monkeypatch.delenv("K8S_VERSION", raising=False)
    monkeypatch.setenv("SLUICE_CACHE", str(tmp_path))
    assert binaries.bin_dir() == tmp_path / "k8s" / binaries.K8S_VERSION / "bin"
    assert binaries.missing_binaries() == list(binaries.BINARIES)
    with pytest.raises(binaries.BinariesMissingError, match="kube-apiserver"):
        binaries.find_binaries()
    monkeypatch.setenv("SLUICE_K8S_BIN_DIR", str(tmp_path / "elsewhere"))
    assert binaries.bin_dir() == tmp_path / "elsewhere"


def test_ca_issues_verifiable_serving_and_client_certs(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    serving = ca.serving("apiserver", dns_names=("kubernetes",), ip_addresses=("127.0.0.1",))
    client = ca.client("admin", "alice", "system:masters", "devs")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)

    srv = x509.load_pem_x509_certificate(serving.cert_pem)
    srv.verify_directly_issued_by(ca_cert)
    sans = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["kubernetes"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

    cli = x509.load_pem_x509_certificate(client.cert_pem)
    cli.verify_directly_issued_by(ca_cert)
    # Kubernetes reads the user from CN and the groups from O.
    assert cli.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert [a.value for a in cli.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters",
        "devs",
    ]
    # Private keys are never readable by other users.
    assert ca.key_path.stat().st_mode & 0o077 == 0
    assert client.key_path.stat().st_mode & 0o077 == 0


def test_reloaded_ca_issues_certificates_the_original_trusts(tmp_path: Path) -> None:
    original = CertificateAuthority(tmp_path)
    reloaded = CertificateAuthority.load(tmp_path)
    pair = reloaded.client("later", "dave")
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(original.cert_pem))


def test_kubeconfig_embeds_credentials_and_is_private(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "kc", server="https://127.0.0.1:1", ca_pem=b"CA", user="bob", token="t0k", namespace="ns"
    )
    doc = yaml.safe_load(path.read_text())
    assert doc["users"][0]["user"] == {"token": "t0k"}
    assert doc["contexts"][0]["context"] == {"cluster": "sluice", "user": "bob", "namespace": "ns"}
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == "Q0E="
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="exactly one"):
        write_kubeconfig(tmp_path / "kc2", server="s", ca_pem=b"", user="u")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


_IGNORE_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n"
)


def test_stop_all_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = ManagedProcess("stubborn", [sys.executable, "-c", _IGNORE_SIGTERM], tmp_path / "stubborn.log")
    stubborn.start(tie_to_parent=True)
    deadline = time.monotonic() + 10
    while "up" not in stubborn.tail():  # SIGTERM must arrive after the handler is installed
        assert time.monotonic() < deadline, stubborn.tail()
        time.sleep(0.05)
    stop_all([stubborn], grace=0.5)
    assert not stubborn.alive()
    assert stubborn.exit_code() == -signal.SIGKILL


def test_attached_process_is_recognised_by_its_executable(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", ["/bin/sleep", "30"], tmp_path / "s.log")
    proc.start(tie_to_parent=True)
    try:
        attached = ManagedProcess.attach("sleeper", ["/bin/sleep", "30"], tmp_path / "s.log", proc.pid or 0)
        assert attached.alive()
        # The same pid recorded for another binary (a recycled pid) is never treated as ours.
        impostor = ManagedProcess.attach("etcd", ["/x/etcd"], tmp_path / "s.log", proc.pid or 0)
        assert not impostor.alive()
        stop_all([attached], grace=5)
        assert proc.wait(5)
    finally:
        stop_all([proc], grace=1)


def test_start_without_binaries_says_how_to_build_them(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "cp", bin_dir=tmp_path / "nothing-here")
    with pytest.raises(binaries.BinariesMissingError, match="etcd") as info:
        plane.start()
    assert "hack/build-k8s.sh" in info.value.fix
    assert not plane.processes
    with pytest.raises(ControlPlaneError, match="not been started"):
        _ = plane.server_url


_PARENT = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from sluice.devstack.processes import ManagedProcess\n"
    "p = ManagedProcess('sleeper', ['/bin/sleep', '120'], Path(sys.argv[1]))\n"
    "p.start(tie_to_parent=True)\n"
    "print(p.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    """kill -9 of the test session must not leave etcd and friends running: they get the parent-death signal."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path / "sleeper.log")],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    child = ManagedProcess.attach("sleeper", ["/bin/sleep"], tmp_path / "sleeper.log", child_pid)
    assert child.alive()
    parent.kill()
    parent.wait(10)
    assert child.wait(10), "the child outlived its SIGKILLed parent"


def test_missing_binaries_skip_locally_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.support.cluster import require_k8s_binaries

    monkeypatch.setenv("SLUICE_K8S_BIN_DIR", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape("hack/build-k8s.sh")):
        require_k8s_binaries()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI"):
        require_k8s_binaries()
