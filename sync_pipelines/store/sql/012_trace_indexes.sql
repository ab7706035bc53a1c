-- Indexes for `sync-pipelines trace` / `export` (sync_pipelines/tracing/) and the integration-
-- health report (sync_pipelines/reports/, bench/observability_queries.py measures both). Only what their queries need beyond 001-010: the
-- activity log's request_id, run_id and parent_id indexes, the sync log's run_id index, the
-- dead letters' external_id index and the check-result and alert run/integration indexes already
-- serve them. Same subset of SQL as 001_core.sql (partial indexes work on both engines).

-- A run's operations (import, state_import, webhook_processing ...) without walking its calls:
-- a sync of 100,000 devices has ~100,000 call rows under its run id and a handful of operations,
-- which are the rows without a request id. Tiny: calls never enter it.
CREATE INDEX activity_run_operations_idx
    ON integration_activity_log (run_id) WHERE request_id IS NULL;

-- An integration's failed and retried rows over a period: the report's top errors read the
-- errors alone instead of every call of the period.
CREATE INDEX activity_errors_idx
    ON integration_activity_log (organization_id, integration_id, created_at)
    WHERE status IN ('failed', 'retrying');

-- An integration's last good sync (monitoring.integration_stats.sync_history, which every health
-- check and report row reads): max(completed_at) over the good rows from the end of this index
-- instead of every sync-log row the integration ever had (90 days of syncs: ~2,000 heap reads).
CREATE INDEX sync_log_last_success_idx
    ON integration_sync_log (organization_id, integration_id, completed_at)
    WHERE status IN ('success', 'partial');

-- A device id without its integration: the trace of "device X" in an organization.
CREATE INDEX devices_external_id_idx ON devices (external_id);

-- The webhook inbox by every id a trace can start from or arrive at: the provider's event id
-- (the unique key needs the integration, which the operator may not know), the delivery (the
-- request id of its `webhook_received` row), the device it named, and the run that processed it.
CREATE INDEX webhook_events_event_id_idx ON webhook_events (event_id);
CREATE INDEX webhook_events_delivery_idx ON webhook_events (delivery_id);
CREATE INDEX webhook_events_external_idx ON webhook_events (external_id, received_at);
CREATE INDEX webhook_events_run_idx ON webhook_events (run_id);

-- Dead letters of a run and of a provider call.
CREATE INDEX dead_letters_run_idx ON dead_letters (run_id);
CREATE INDEX dead_letters_request_idx ON dead_letters (request_id);
