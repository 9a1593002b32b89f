"""``sluice operator`` flags: the worker spill size is checked at start-up (a typo would otherwise make every worker
StatefulSet the operator builds a rejected one) and defaults to the builders' size."""

from __future__ import annotations

import argparse

import pytest

from sluice.operator import builders
from sluice.operator.cli import add_arguments


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_worker_spill_size_defaults_to_the_builders_limit() -> None:
    assert _parse().worker_spill_size == builders.SPILL_SIZE_LIMIT == "10Gi"


@pytest.mark.parametrize("quantity", ["3Gi", "500Mi", "2G", "1073741824", "1.5Gi", "1e9", "750k"])
def test_worker_spill_size_takes_kubernetes_quantities(quantity: str) -> None:
    assert _parse("--worker-spill-size", quantity).worker_spill_size == quantity


@pytest.mark.parametrize("bad", ["", "10 GiB", "10GB", "ten", "-1Gi", "10gi", "Gi"])
def test_worker_spill_size_refuses_what_the_apiserver_would(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(f"--worker-spill-size={bad}")
    assert "not a Kubernetes quantity" in capsys.readouterr().err
