"""RFC 7396 merge patch and the connector rules on top of it (secret siblings, identity fields)."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.api.merge_patch import merge_patch, reconcile_secret_siblings
from sluice.models.identity import identity_changes

# The examples of RFC 7396, Appendix A.
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_rfc7396_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_modify_its_arguments() -> None:
    target = {"a": {"b": 1}}
    patch = {"a": {"c": 2}}
    merge_patch(target, patch)
    assert target == {"a": {"b": 1}}
    assert patch == {"a": {"c": 2}}


REF = {"name": "c-1-credentials", "key": "source.postgres.connection.password"}


def test_inline_secret_in_patch_replaces_the_stored_reference() -> None:
    current = {"connection": {"host": "h", "password_secret_ref": REF}}
    patch = {"connection": {"password": "new"}}
    merged = reconcile_secret_siblings(merge_patch(current, patch), patch)
    assert merged == {"connection": {"host": "h", "password": "new"}}


def test_reference_in_patch_replaces_an_inline_secret() -> None:
    current = {"connection": {"password": "old"}}
    patch = {"connection": {"password_secret_ref": {"name": "mine", "key": "pw"}}}
    merged = reconcile_secret_siblings(merge_patch(current, patch), patch)
    assert merged == {"connection": {"password_secret_ref": {"name": "mine", "key": "pw"}}}


def test_patch_giving_both_keeps_both_for_validation_to_refuse() -> None:
    current: dict[str, Any] = {"connection": {}}
    patch = {"connection": {"password": "x", "password_secret_ref": REF}}
    merged = reconcile_secret_siblings(merge_patch(current, patch), patch)
    assert merged == patch


def test_unrelated_patch_keeps_the_reference() -> None:
    current = {"connection": {"host": "h", "password_secret_ref": REF}}
    patch = {"connection": {"user": "u2"}}
    merged = reconcile_secret_siblings(merge_patch(current, patch), patch)
    assert merged["connection"]["password_secret_ref"] == REF


def _pg(host: str = "h", port: int = 5432, database: str = "d") -> dict[str, Any]:
    return {"postgres": {"connection": {"host": host, "port": port, "user": "u", "database": database}}}


def test_identity_changes_allows_other_fields() -> None:
    old = {"source": _pg(), "sink": _pg()}
    new = {"source": _pg(), "sink": {"postgres": {**_pg()["postgres"], "target_schema": "x"}}}
    assert identity_changes(old, new) == []


@pytest.mark.parametrize(
    ("new_source", "field"),
    [
        (_pg(host="other"), "source.postgres.connection.host"),
        (_pg(port=5433), "source.postgres.connection.port"),
        (_pg(database="d2"), "source.postgres.connection.database"),
        ({"mysql": {"connection": {"host": "h"}}}, "source"),
    ],
)
def test_identity_changes_refuses_kind_host_port_database(new_source: dict[str, Any], field: str) -> None:
    problems = identity_changes({"source": _pg(), "sink": _pg()}, {"source": new_source, "sink": _pg()})
    assert [p.field for p in problems] == [field]
    assert problems[0].fix


def test_identity_changes_on_the_sink_too() -> None:
    problems = identity_changes({"source": _pg(), "sink": _pg()}, {"source": _pg(), "sink": _pg(host="x")})
    assert [p.field for p in problems] == ["sink.postgres.connection.host"]


def test_identity_changes_tolerates_odd_stored_specs() -> None:
    assert identity_changes({"source": {"postgres": "x"}}, {"source": _pg()}) == []
    assert identity_changes({"source": {"postgres": {"connection": 1}}}, {"source": _pg()}) == []
    assert identity_changes({}, {"source": _pg()}) == []
