"""Slot safety (issue 13): the ``wal_budget`` spec field, the SlotAtRisk condition and the WAL gauges."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from sluice.models import ConnectorSpec
from sluice.models.quantity import parse_byte_quantity

PG = {"host": "db", "user": "replicator", "database": "app"}
SPEC: dict[str, Any] = {
    "source": {"postgres": {"connection": PG, "replication_type": {"logical_replication": {}}}},
    "sink": {"postgres": {"connection": PG}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10Gi", 10 << 30), ("512Mi", 512 << 20), ("1Mi", 1 << 20), ("1G", 10**9), ("4096", 4096), ("3k", 3000)],
)
def test_byte_quantities(text: str, expected: int) -> None:
    assert parse_byte_quantity(text) == expected
    assert ConnectorSpec.model_validate({**copy.deepcopy(SPEC), "wal_budget": text}).wal_budget == text


@pytest.mark.parametrize("text", ["10GB", "1.5Gi", "1e9", "500m", "-1Gi", " 5Mi", "0", "0Gi", "", "Gi"])
def test_bad_budget_names_the_field_and_the_fix(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectorSpec.model_validate({**copy.deepcopy(SPEC), "wal_budget": text})
    (error,) = info.value.errors()
    assert error["loc"] == ("wal_budget",)
    assert '"10Gi"' in error["msg"] and "Kubernetes quantity" in error["msg"]


def test_budget_is_optional() -> None:
    assert ConnectorSpec.model_validate(copy.deepcopy(SPEC)).wal_budget is None
