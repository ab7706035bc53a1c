-- Syncs still `running`, oldest first, and how long they have been at it. One sync per
-- integration and stream runs at a time; a row running past the stale limit (1 h by default;
-- `stale_running_s` in the integration's `monitoring` setting) is one whose process died: the
-- health model counts it as failed. Look its run up in the Dagster UI (or `sync-pipelines trace
-- <run_id> --organization ...`).
-- Parameters: :organization_id, :stale_after_s (seconds, e.g. 3600).
-- The SQLite version is running_syncs.sqlite.sql.

SELECT s.integration_id, i.provider, s.stream, s.run_id, s.started_at,
       round(extract(epoch FROM (now() - s.started_at))) AS age_s,
       extract(epoch FROM (now() - s.started_at)) > :stale_after_s AS stale,
       s.pages, s.fetched, s.cursor_before
FROM integration_sync_log AS s
JOIN integrations AS i
  ON i.integration_id = s.integration_id AND i.organization_id = s.organization_id
WHERE s.organization_id = :organization_id AND s.status = 'running'
ORDER BY s.started_at;
