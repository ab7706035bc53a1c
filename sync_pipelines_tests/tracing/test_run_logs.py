"""A Dagster run's event-log lines in the support bundle: the Golioth inventory asset
materialized in-process for the traced integration, then its run id exported."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from sync_pipelines.defs.partitions import golioth_integrations
from sync_pipelines.defs.provider_assets import PROVIDER_DEFS
from sync_pipelines.defs.resources import SyncStoreResource
from sync_pipelines.tracing.bundle import support_bundle
from sync_pipelines.tracing.chain import RUN, build_chain
from sync_pipelines.tracing.run_logs import dagster_log_lines
from sync_pipelines_tests.tracing.conftest import INTEGRATION, ORG


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_dagster_run_exports_with_its_event_log_lines(traced):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(golioth_integrations.name, [INTEGRATION])
        result = dg.materialize(
            [PROVIDER_DEFS["golioth"].devices],
            partition_key=INTEGRATION,
            instance=instance,
            resources={"store": SyncStoreResource(database_url=traced.store.url)},
        )
        run_id = result.run_id
        with traced.store.connect() as conn:
            chain = build_chain(conn, ORG, run_id)
        lines = dagster_log_lines(instance, [run_id, traced.sync_run])  # a CLI run has no log
    assert chain.kind == RUN and chain.runs[0].sync_logs[0]["stream"] == "devices"
    types = {line["event_type"] for line in lines}
    assert {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION"} <= types, types
    assert {line["run_id"] for line in lines} == {run_id}
    bundle = support_bundle(chain, log_lines=lines)
    text = json.dumps(bundle)
    assert len(bundle["log_lines"]) == len(lines) and traced.api_key not in text
