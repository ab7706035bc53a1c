-- Provider-call figures of the monitors at 10M activity rows (SPEC §4: error rate, trend,
-- latency, the health report; bench/observability_queries.py measures them).
--
-- Every monitoring read of provider calls (monitoring.integration_stats call_window/call_windows,
-- reports.period_stats call_series/call_totals) filters one integration's http_request /
-- mqtt_request rows over a time range and reads only their status and response time. Through
-- activity_org_integration_created_idx each of those rows costs a heap visit (an integration's
-- rows are spread over every page of its month, between the other integrations'), and the
-- operations and webhook rows of the range are visited too, only to be thrown away. This index
-- holds exactly the provider calls with the columns read, so Postgres answers from the index
-- alone (an index-only scan) and SQLite from the index too (a covering index).
-- Same subset of SQL as 001_core.sql; on Postgres it reaches every monthly partition (011).
CREATE INDEX activity_provider_calls_idx
    ON integration_activity_log (organization_id, integration_id, created_at, status, response_time_ms)
    WHERE activity_type IN ('http_request', 'mqtt_request');

-- The report's sync outcomes of a period (reports.period_stats.sync_outcomes: status counts of
-- the syncs started in it): from the index alone instead of a heap visit per sync-log row (a
-- week of one integration's syncs is ~1,700 rows spread over the whole log).
CREATE INDEX sync_log_outcomes_idx
    ON integration_sync_log (organization_id, integration_id, started_at, status);
