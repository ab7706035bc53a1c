-- The operator console's activity page (sync_pipelines/console/queries.py): newest first, one
-- keyset page at a time — ORDER BY created_at DESC, id DESC with `created_at <= :c_at AND
-- (created_at < :c_at OR id < :c_id)` after the first page — optionally within one organization.
-- bench/console_pages.py measures every filter at 1M rows; these are what it needed beyond 001-013
-- (an integration's page already has activity_org_integration_created_idx, a search the
-- request_id / run_id indexes, failed rows of an integration activity_errors_idx).
-- Same subset of SQL as 001_core.sql; on Postgres each reaches every monthly partition (011),
-- where a page reads the newest partition first and stops as soon as it has its rows.

-- Every organization, newest first (an unscoped operator's first look, and any filter that
-- keeps a large share of rows: status, direction, provider, a time range).
CREATE INDEX activity_created_idx ON integration_activity_log (created_at, id);

-- One organization, newest first: every page of an operator scoped to one organization.
CREATE INDEX activity_org_created_idx
    ON integration_activity_log (organization_id, created_at, id);

-- One activity type, newest first: the operations (import, export, webhook_processing, replay,
-- retention ...) are a small share of the log, and a rare type scanned for through the index
-- above reads the whole log to fill a page (webhook_processing at 1M rows: ~280 ms, here < 1 ms).
CREATE INDEX activity_type_created_idx
    ON integration_activity_log (activity_type, created_at, id);

-- Rows that did not succeed (failed, retrying, started: a few percent of the log), by status,
-- newest first: "what failed" and "what never finished" without walking the successes. The
-- console writes the status as a literal (it is one of four) so the planner proves the predicate.
CREATE INDEX activity_unsuccessful_idx
    ON integration_activity_log (status, created_at, id)
    WHERE status <> 'success';
