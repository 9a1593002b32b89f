"""Generated connector ids and the DNS-1123 rule for path ids and namespaces."""

from __future__ import annotations

import pytest

from sluice.api.ids import check_id, check_namespace, is_dns_label, new_connector_id
from sluice.errors import ConfigError


def test_generated_ids_are_dns_labels_and_distinct() -> None:
    ids = {new_connector_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cid in ids:
        assert is_dns_label(cid), cid
        assert cid.startswith("c-")
        assert len(cid) == 12


@pytest.mark.parametrize("good", ["a", "orders-to-warehouse", "c-0123456789", "9a", "a" * 63])
def test_valid_ids_pass(good: str) -> None:
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "A", "Orders", "a_b", "-a", "a-", "a.b", "a" * 64, "ä", "a b", "a/b"])
def test_invalid_ids_are_422_with_the_rule(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_id(bad)
    err = info.value
    assert err.http_status == 422
    assert "DNS-1123" in err.fix
    assert err.details[0].loc == ["path", "id"]


def test_invalid_namespace_is_a_query_error() -> None:
    with pytest.raises(ConfigError) as info:
        check_namespace("Kube_System")
    assert info.value.details[0].loc == ["query", "namespace"]
