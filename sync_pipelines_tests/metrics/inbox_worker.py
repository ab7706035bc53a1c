"""Processes one integration's webhook inbox in a process of its own, as a Dagster run worker
would: `python -m sync_pipelines_tests.metrics.inbox_worker INTEGRATION_ID` (store from
$SYNC_DATABASE_URL). For the cross-process metrics test."""

from __future__ import annotations

import sys
import uuid

from sync_pipelines.store.database import Store
from sync_pipelines.sync.session import RunContext, integration_session
from sync_pipelines.sync.webhook_processing import process_webhook_events


def main(integration_id: str) -> None:
    run = RunContext(run_id=f"inbox-worker-{uuid.uuid4()}", step_key="process", job_name="test")
    with integration_session(Store(), integration_id, run) as session:
        result = process_webhook_events(session)
    print(f"processed: {result.status}")


if __name__ == "__main__":
    main(sys.argv[1])
