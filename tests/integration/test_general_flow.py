"""PostgreSQL -> PostgreSQL through the general flow (``SLUICE_FASTPATH=off``), not the fast path.

The same tests as ``test_worker_replication``: the general flow runs every source and sink through the neutral
events, and PG -> PG is the one pair where both ends exist today, so it is what proves the interfaces end to end
against real servers. Left out, because the general flow does not do them yet (the fast path does): copying tables
that join the selection after the first snapshot without a key (the fast path copies them at a floor position), and
domains (the general flow's PostgreSQL sink creates the base type).
"""

from __future__ import annotations

import pytest

from tests.integration import test_schema_changes as schema_changes
from tests.integration import test_worker_replication as replication

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def _general_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers are subprocesses that inherit the environment.
    monkeypatch.setenv("SLUICE_FASTPATH", "off")


test_changes_then_restart_exactly_once = replication.test_changes_then_restart_exactly_once
test_unchanged_toast_values_are_kept = replication.test_unchanged_toast_values_are_kept
test_partitioned_table_as_root_and_as_leaves = replication.test_partitioned_table_as_root_and_as_leaves
test_keyless_table_with_replica_identity_full = replication.test_keyless_table_with_replica_identity_full
test_schema_changes_applied_when_allowed = replication.test_schema_changes_applied_when_allowed
test_schema_change_refused_stops_with_a_clear_condition = (
    replication.test_schema_change_refused_stops_with_a_clear_condition
)
test_snapshot_only_copies_and_exits_zero = replication.test_snapshot_only_copies_and_exits_zero
test_catalog_selects_tables_and_columns = replication.test_catalog_selects_tables_and_columns
test_inserted_keys_the_sink_already_has_become_upserts = (
    replication.test_inserted_keys_the_sink_already_has_become_upserts
)
test_small_batches_cover_every_merge_kind = replication.test_small_batches_cover_every_merge_kind
test_table_added_after_the_snapshot_is_copied_on_restart = (
    replication.test_table_added_after_the_snapshot_is_copied_on_restart
)

test_added_columns_with_constant_defaults_fill_existing_rows = (
    schema_changes.test_added_columns_with_constant_defaults_fill_existing_rows
)
test_added_columns_with_volatile_defaults_copy_each_rows_value = (
    schema_changes.test_added_columns_with_volatile_defaults_copy_each_rows_value
)
test_each_kind_is_applied_when_allowed_and_refused_otherwise = (
    schema_changes.test_each_kind_is_applied_when_allowed_and_refused_otherwise
)
test_omitted_strategy_applies_add_and_refuses_drop_with_the_fix = (
    schema_changes.test_omitted_strategy_applies_add_and_refuses_drop_with_the_fix
)
