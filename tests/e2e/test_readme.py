"""Every shell block of README.md runs, verbatim, against a real stack: the README cannot drift from the product.

How the blocks run (the mapping, in one place):

- Each block runs as ``bash -e -o pipefail -c <block>``, like a fresh terminal: nothing carries over between blocks.
- The working directory is a scratch checkout: every top-level entry of the repository symlinked except
  ``.sluice``, so ``$PWD/.sluice/kubeconfig``, ``crds/``, ``manifests/``, ``hack/`` and the ``Makefile`` are where
  the README says and the developer's own ``.sluice`` is never touched.
- ``PATH`` is the test's without the virtualenv and the Kubernetes binaries, and starts with a ``kubectl`` that
  fails, so a block finds ``kubectl`` only the way the README tells a reader to. ``make`` is the real one, run
  with ``-o .venv/.installed``: the test's virtualenv counts as built, so make never reinstalls it from the
  scratch checkout.
- ``KUBECONFIG`` and ``SLUICE_*`` are unset; the blocks set what they need.
- Blocks starting with ``make cluster-up`` run in a scratch checkout of their own (their own control plane, which
  they stop themselves). Every other block runs against ``sluice dev`` — the recipe of ``make dev`` — started in a
  second scratch checkout: control plane, process node, operator, the API in no-auth mode, two sample PostgreSQL
  servers and the streaming ``demo`` connector, exactly what the README says ``make dev`` gives.
- The one substitution in the text of a block: the API's port ``8080`` becomes the port this test's ``sluice dev``
  listens on (8080 may be taken where tests run) — see :data:`SUBSTITUTIONS`.

Blocks that cannot run in a test are listed in :data:`NOT_RUN` with the reason; each entry must match a block.
Besides exiting 0, every JSON document a ``curl`` block prints must not be an error body (curl exits 0 on a 422),
and some blocks have checks of their own in :data:`CHECKS`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import bin_dir, find_binaries, free_port
from tests.support.cluster import poll, require_k8s_binaries
from tests.support.pg import require_postgres

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
SHELL_INFO = {"sh", "bash", "shell", "console", "zsh"}

#: First line of a block (prefix) -> why it does not run here. Keep this short.
NOT_RUN: dict[str, str] = {
    "make dev ": "`make dev` installs system packages and then runs `sluice dev` in the foreground until Ctrl-C; "
    "this test runs its recipe (`sluice dev`) and the README's other blocks against it, and test_dev.py covers it "
    "end to end. `make test` runs the whole suite, this test included.",
}

#: (pattern, replacement) applied to the text of blocks that run against ``sluice dev``; {api_port} is filled in.
SUBSTITUTIONS: list[tuple[str, str]] = [
    (r"\blocalhost:8080\b", "localhost:{api_port}"),
    (r"\b127\.0\.0\.1:8080\b", "127.0.0.1:{api_port}"),
]


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    text: str

    @property
    def first(self) -> str:
        return self.text.strip().splitlines()[0] if self.text.strip() else ""

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.first!r})"


def shell_blocks(markdown: str) -> list[Block]:
    """Fenced blocks whose info string is a shell (```sh ...```), in order."""
    blocks: list[Block] = []
    fence: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if m:
                fence, info = m.group(1), m.group(2).lower()
                start, body = number, []
                if info not in SHELL_INFO:
                    start = -start  # not a shell block: read past it
            continue
        if stripped.startswith(fence) and stripped.strip("`~") == "":
            if start > 0:
                blocks.append(Block(start, "\n".join(body) + "\n"))
            fence = None
            continue
        body.append(line)
    assert fence is None, "README.md has an unterminated code fence"
    return blocks


def not_run_reason(block: Block) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if block.first.startswith(prefix.strip()) and (block.first + " ").startswith(prefix):
            return reason
    return None


def test_shell_blocks_are_found_and_every_skip_is_a_block() -> None:
    """The parser sees the README's blocks, and NOT_RUN lists only blocks that exist (and few)."""
    blocks = shell_blocks(README.read_text())
    assert len(blocks) >= 4, [str(b) for b in blocks]
    assert any("curl" in b.text and '"id": ""' in b.text for b in blocks), "the REST create example must be a block"
    for prefix in NOT_RUN:
        assert any(not_run_reason(b) and (b.first + " ").startswith(prefix) for b in blocks), prefix
    assert len([b for b in blocks if not_run_reason(b)]) <= 2
    assert shell_blocks("```sh\na\n```\n```\nb\n```\n```bash\nc\n```\n") == [Block(1, "a\n"), Block(7, "c\n")]


# -- running blocks --------------------------------------------------------------------------------------------------


def scratch_checkout(path: Path) -> Path:
    path.mkdir(parents=True)
    for entry in REPO_ROOT.iterdir():
        if entry.name in (".sluice", ".git"):
            continue
        (path / entry.name).symlink_to(entry)
    return path


def block_env(shims: Path) -> dict[str, str]:
    """The environment of a reader's terminal (see the module docstring)."""
    hidden = {str(REPO_ROOT / ".venv" / "bin"), str(bin_dir()), str(Path(sys.executable).parent)}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in hidden]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("SLUICE_")}
    env["PATH"] = os.pathsep.join([str(shims), *path])
    return env


@pytest.fixture
def shims(tmp_path: Path) -> Path:
    """``make`` that treats the test's virtualenv as built (``-o .venv/.installed``), and a ``kubectl`` that fails:
    a kubectl installed on this machine must not hide a block that forgot to put Sluice's on PATH."""
    real = shutil.which("make")
    if real is None:
        pytest.skip("make is not installed")
    d = tmp_path / "shims"
    d.mkdir()
    (d / "make").write_text(f'#!/bin/sh\nexec {real} -o .venv/.installed "$@"\n')
    (d / "kubectl").write_text(
        "#!/bin/sh\necho 'kubectl: not on PATH (a fresh machine has none; the README must set PATH)' >&2\nexit 127\n"
    )
    for shim in d.iterdir():
        shim.chmod(0o755)
    return d


@dataclass
class Ran:
    block: Block
    script: str
    stdout: str
    stderr: str


def run_block(block: Block, cwd: Path, env: dict[str, str], script: str | None = None, timeout: float = 300) -> Ran:
    script = block.text if script is None else script
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{block} exited {proc.returncode}\n--- script ---\n{script}\n--- stdout ---\n{proc.stdout}"
        f"\n--- stderr ---\n{proc.stderr}"
    )
    if "curl" in script:
        for doc in json_documents(proc.stdout):
            assert not (isinstance(doc, dict) and "error" in doc), f"{block} answered an error: {doc}"
    return Ran(block, script, proc.stdout, proc.stderr)


def json_documents(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        yield doc


# -- checks of particular blocks -------------------------------------------------------------------------------------


@dataclass
class DevStack:
    checkout: Path
    api_port: int

    def kubectl(self, *args: str) -> str:
        kubectl = str(find_binaries()["kubectl"])
        kubeconfig = self.checkout / ".sluice" / "kubeconfig"
        out = subprocess.run(
            [kubectl, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, check=True, timeout=60
        )
        return out.stdout


def check_dev_next_steps(ran: Ran, stack: DevStack) -> None:
    assert re.search(r"^demo\s+postgres\s+postgres\s+realtime", ran.stdout, re.M), ran.stdout
    assert re.search(r"^Name:\s+demo$", ran.stdout, re.M), ran.stdout
    assert re.search(r"^demo-worker-0\s+1/1\s+Running", ran.stdout, re.M), ran.stdout


def check_rest_create(ran: Ran, stack: DevStack) -> None:
    (out,) = list(json_documents(ran.stdout))
    cid = out["connector"]["id"]
    assert re.fullmatch(r"c-[a-z0-9]{10}", cid), out
    assert '"id": ""' in ran.script
    assert "secret" not in json.dumps(out["connector"]).replace("_secret_ref", "")
    stored = json.loads(stack.kubectl("get", "connector", cid, "-o", "json"))
    assert stored["spec"]["source"]["postgres"]["connection"]["database"] == "shop"


def check_validate_catalog_dry_run(ran: Ran, stack: DevStack) -> None:
    validation, catalog, dry = list(json_documents(ran.stdout))
    assert validation["valid"] is True, validation
    assert {c["name"] for c in validation["checks"]} >= {"connection", "wal_level", "replication_privilege"}
    tables = [t for s in catalog["schemas"] for t in s["tables"]]
    assert tables and all(t["replicated"] for t in tables), catalog
    assert dry["dry_run"] is True and dry["connector"]["disabled"] is True
    stored = json.loads(stack.kubectl("get", "connector", "demo", "-o", "json"))
    assert stored["spec"].get("disabled", False) is False, "a dry run must not change the connector"


#: First line of a block (prefix) -> what to check of its output besides exit 0 (and curl errors).
CHECKS: dict[str, Callable[[Ran, DevStack], None]] = {
    "export KUBECONFIG": check_dev_next_steps,
    "curl -s -X POST localhost:8080/api/v1/connectors ": check_rest_create,
    "curl -s -X POST localhost:8080/api/v1/validate/source": check_validate_catalog_dry_run,
}


def check_for(block: Block) -> Callable[[Ran, DevStack], None] | None:
    for prefix, check in CHECKS.items():
        if (block.first + " ").startswith(prefix):
            return check
    return None


# -- the stack -------------------------------------------------------------------------------------------------------


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[DevStack]:
    """``sluice dev`` as ``make dev`` runs it (venv and Kubernetes binaries on PATH), in a scratch checkout."""
    require_k8s_binaries()
    require_postgres()
    checkout = scratch_checkout(tmp_path / "dev-checkout")
    port = free_port()
    out = tmp_path / "sluice-dev.out"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PATH"] = os.pathsep.join([str(REPO_ROOT / ".venv" / "bin"), str(bin_dir()), env.get("PATH", "")])
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice", "dev", "--api-port", str(port)],
            cwd=checkout,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"sluice dev exited with {proc.returncode}:\n{out.read_text()}")
            return "Press Ctrl-C" in out.read_text()

        poll(ready, timeout=300, interval=1, message="sluice dev to be ready", describe=out.read_text)
        yield DevStack(checkout, port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def substituted(text: str, api_port: int) -> str:
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement.format(api_port=api_port), text)
    return text


def blocks_to_run() -> tuple[list[Block], list[Block]]:
    """(blocks with their own control plane, blocks run against ``sluice dev``) — every block not in NOT_RUN."""
    blocks = [b for b in shell_blocks(README.read_text()) if not not_run_reason(b)]
    cluster = [b for b in blocks if b.first.startswith("make cluster-up")]
    return cluster, [b for b in blocks if b not in cluster]


def test_cluster_blocks_run(tmp_path: Path, shims: Path) -> None:
    """``make cluster-up`` ... ``make cluster-down``: a control plane of the block's own, started and stopped by it."""
    require_k8s_binaries()
    cluster_blocks, _ = blocks_to_run()
    assert cluster_blocks, "README.md has no `make cluster-up` block any more: update this test"
    env = block_env(shims)
    for block in cluster_blocks:
        checkout = scratch_checkout(tmp_path / f"cluster-checkout-{block.line}")
        try:
            result = run_block(block, checkout, env)
        finally:
            subprocess.run(
                [sys.executable, "-m", "sluice.devstack.controlplane", "down"],
                cwd=checkout,
                capture_output=True,
                timeout=120,
                check=False,
            )
        if "manifests/samples/postgres-to-postgres.yaml" in block.text:
            assert re.search(r"^orders-to-warehouse\s", result.stdout, re.M), result.stdout
        assert not (checkout / ".sluice" / "kubeconfig").exists(), "make cluster-down must remove the kubeconfig"


def test_dev_blocks_run(shims: Path, dev_stack: DevStack) -> None:
    """Every other block, in README order, against ``sluice dev`` (the recipe of ``make dev``)."""
    cluster_blocks, dev_blocks = blocks_to_run()
    all_blocks = shell_blocks(README.read_text())
    assert len(cluster_blocks) + len(dev_blocks) + len([b for b in all_blocks if not_run_reason(b)]) == len(all_blocks)
    for prefix in CHECKS:
        assert any((b.first + " ").startswith(prefix) for b in dev_blocks), f"CHECKS has {prefix!r}: no such block"
    env = block_env(shims)
    for block in dev_blocks:
        result = run_block(block, dev_stack.checkout, env, substituted(block.text, dev_stack.api_port))
        check = check_for(block)
        if check is not None:
            check(result, dev_stack)
