"""The pure parts of bench/operator_scale.py: Prometheus text, deltas and the quantile of a histogram delta."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "operator_scale.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_operator_scale", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TEXT = """# HELP apiserver_request_total x
apiserver_request_total{code="200",resource="pods",verb="GET"} 10
apiserver_request_total{code="200",resource="connectors",subresource="status",verb="PATCH"} 4
apiserver_request_total{code="201",resource="pods",verb="POST"} 1e+01
h_bucket{le="0.1"} 50
h_bucket{le="1"} 90
h_bucket{le="+Inf"} 100
other 3
"""


def test_parse_and_sum_by_label(bench: ModuleType) -> None:
    samples = bench.parse_metrics(TEXT, "apiserver_request_total")
    assert len(samples) == 3
    assert bench.sum_by(samples, "apiserver_request_total", "verb") == {"GET": 10, "PATCH": 4, "POST": 10}
    later = bench.parse_metrics(TEXT.replace("} 10\n", "} 25\n"), "apiserver_request_total")
    assert bench.sum_by(bench.delta(samples, later), "apiserver_request_total", "verb")["GET"] == 15


def test_histogram_quantile_interpolates_inside_a_bucket(bench: ModuleType) -> None:
    samples = bench.parse_metrics(TEXT)
    assert bench.histogram_quantile(samples, "h", 0.25) == pytest.approx(0.05)
    assert bench.histogram_quantile(samples, "h", 0.7) == pytest.approx(0.55)
    assert bench.histogram_quantile(samples, "h", 0.99) == 1.0  # in +Inf: the largest finite bound
    assert bench.histogram_quantile({}, "h", 0.5) is None
