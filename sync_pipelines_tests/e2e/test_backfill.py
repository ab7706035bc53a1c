"""A backfill as a user launches it in the UI, under the real daemon: one run per partition
(the assets' BackfillPolicy), so an integration whose provider refuses its credentials fails its
own run and blocks none of the others."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import get_integration
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines_tests.e2e.stack import (
    DEVICE_COUNT,
    ORGANIZATION,
    POLLED,
    SYNCED,
    WRONG_KEY_ENV,
    DagsterStack,
)
from sync_pipelines_tests.e2e.waiting import wait_for

PARTITIONS = "golioth_integrations"
ASSETS = ("golioth_devices", "golioth_device_states")
BAD = "golioth-e2e-bad-key"
BACKFILL_TIMEOUT_S = 300
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


@pytest.fixture(scope="module")
def partitions(stack: DagsterStack, instance: dg.DagsterInstance) -> list[str]:
    """SYNCED and POLLED, plus BAD: a copy of SYNCED naming the wrong key's variable (the
    provider answers 401); their partitions, once the partitions sensor has added them."""
    store = Store(stack.store_url)
    try:
        with store.connect() as conn:
            integration = get_integration(conn, ORGANIZATION, SYNCED)
        register_integration(
            store,
            dataclasses.replace(
                integration, integration_id=BAD, secret_refs={"api_key": WRONG_KEY_ENV}
            ),
        )
    finally:
        store.dispose()
    keys = [SYNCED, POLLED, BAD]
    wait_for(
        lambda: set(keys) <= set(instance.get_dynamic_partitions(PARTITIONS)),
        timeout_s=90,
        what="the integrations' partitions",
    )
    return keys


def _launch_backfill(stack: DagsterStack, partition_keys: list[str]) -> str:
    launched = stack.graphql(
        """
        mutation ($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename
            ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message }
            ... on InvalidSubsetError { message }
          }
        }""",
        {
            "params": {
                "partitionNames": partition_keys,
                "assetSelection": [{"path": [asset]} for asset in ASSETS],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def _backfill_status(stack: DagsterStack, backfill_id: str) -> str:
    answer = stack.graphql(
        """
        query ($id: String!) {
          partitionBackfillOrError(backfillId: $id) {
            __typename ... on PartitionBackfill { status }
          }
        }""",
        {"id": backfill_id},
    )["partitionBackfillOrError"]
    return answer["status"]


def _partition_of(run: dg.DagsterRun) -> str:
    # a backfill run names its partitions as a range (start = end here: one partition per run)
    # rather than with `dagster/partition`
    start, end = run.tags[RANGE_START], run.tags[RANGE_END]
    assert start == end, f"run {run.run_id} covers {start}..{end}"
    return start


def test_a_failing_partition_of_a_backfill_blocks_none_of_the_others(
    stack: DagsterStack, instance: dg.DagsterInstance, partitions: list[str]
):
    backfill_id = _launch_backfill(stack, partitions)

    status = wait_for(
        lambda: (s := _backfill_status(stack, backfill_id)) in FINISHED and s,
        timeout_s=BACKFILL_TIMEOUT_S,
        what=f"backfill {backfill_id} to finish",
    )

    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    # one run per partition, each with its own outcome
    outcome = {_partition_of(run): run.status for run in runs}
    assert len(runs) == len(partitions), outcome
    assert outcome == {
        SYNCED: dg.DagsterRunStatus.SUCCESS,
        POLLED: dg.DagsterRunStatus.SUCCESS,
        BAD: dg.DagsterRunStatus.FAILURE,
    }
    assert status in ("COMPLETED", "COMPLETED_FAILED"), status
    for partition in (SYNCED, POLLED):
        (run,) = [r for r in runs if _partition_of(r) == partition]
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        materialized = {
            r.event_log_entry.asset_materialization.asset_key.to_user_string(): r.event_log_entry.asset_materialization
            for r in records
        }
        assert set(materialized) == set(ASSETS)
        devices = materialized["golioth_devices"].metadata
        assert devices["dagster/row_count"].value == DEVICE_COUNT
        assert devices["dagster/table_name"].value == "devices"
