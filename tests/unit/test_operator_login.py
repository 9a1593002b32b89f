"""The operator's kopf login takes a kubeconfig user's ``tokenFile`` (kopf alone ignores it and connects as
``system:anonymous``): the kubeconfigs the process node gives pods name their token that way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from sluice.operator.login import login, token_file


def _kubeconfig(path: Path, user: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "contexts": [{"name": "pod", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
                "current-context": "pod",
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def _login() -> kopf.ConnectionInfo | None:
    return login(settings=kopf.OperatorSettings(), logger=logging.getLogger("test"))


@pytest.fixture(autouse=True)
def _not_in_a_pod() -> None:
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("runs in a pod: the ServiceAccount login would win")


def test_token_file_supplies_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("secret-token\n")
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kc", {"tokenFile": str(tmp_path / "token")})))
    info = _login()
    assert info is not None and info.token == "secret-token" and info.server == "https://127.0.0.1:6443"
    assert info.default_namespace == "ns"
    # a rotated token is read again at the next login (kopf logs in again after a 401)
    (tmp_path / "token").write_text("rotated")
    again = _login()
    assert again is not None and again.token == "rotated"


def test_relative_token_file_is_relative_to_its_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "token").write_text("t")
    kubeconfig = _kubeconfig(tmp_path / "sub" / "kc", {"tokenFile": "token"})
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{kubeconfig}")
    assert token_file() == tmp_path / "sub" / "token"


def test_inline_token_and_certificates_are_kopfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("from-file")
    user = {"token": "inline", "tokenFile": str(tmp_path / "token")}
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kc", user)))
    info = _login()
    assert info is not None and info.token == "inline"
    certificates = {"client-certificate": "/c", "client-key": "/k"}
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kc2", certificates)))
    info = _login()
    assert info is not None and info.token is None and info.certificate_path == "/c"
