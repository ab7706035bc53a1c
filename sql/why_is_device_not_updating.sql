-- Why isn't device X updating? Everything the store knows about one device, newest first:
--   1. the device row (and whether its integration is enabled), with the run and request that
--      last wrote it;
--   2. its reported/desired state row, with the run and request that last wrote that;
--   3. the activity rows of those last-writing requests (the provider calls and their attempts);
--   4. its dead letters (records of it that failed and wait for replay or were quarantined);
--   5. the latest sync-log rows of its integration(s): are syncs running, failing, stuck?
-- Parameters: :organization_id, :external_id (the provider's device id).
-- Then: `sync-pipelines trace <external_id> --organization <organization_id>` for the whole chain.

SELECT d.integration_id, i.provider, i.enabled AS integration_enabled, d.external_id, d.name,
       d.status, d.last_seen_at, d.provider_updated_at, d.updated_at,
       d.last_run_id, d.last_request_id
FROM devices AS d
JOIN integrations AS i
  ON i.integration_id = d.integration_id AND i.organization_id = d.organization_id
WHERE d.organization_id = :organization_id AND d.external_id = :external_id;

SELECT integration_id, external_id, version, observed_at, updated_at, last_run_id,
       last_request_id
FROM device_states
WHERE organization_id = :organization_id AND external_id = :external_id;

SELECT created_at, integration_id, run_id, request_id, activity_type, method, endpoint,
       status, status_code, attempt, response_time_ms, error_type, error_message
FROM integration_activity_log
WHERE organization_id = :organization_id
  AND request_id IN (
      SELECT last_request_id FROM devices
      WHERE organization_id = :organization_id AND external_id = :external_id
      UNION
      SELECT last_request_id FROM device_states
      WHERE organization_id = :organization_id AND external_id = :external_id
  )
ORDER BY created_at DESC, attempt DESC
LIMIT 50;

SELECT id, integration_id, stream, status, attempts, max_attempts, error_type, error_message,
       first_failed_at, last_failed_at, next_attempt_at, run_id, request_id
FROM dead_letters
WHERE organization_id = :organization_id AND external_id = :external_id
ORDER BY last_failed_at DESC;

SELECT integration_id, stream, status, started_at, completed_at, duration_ms, run_id,
       fetched, created, updated, unchanged, failed, error_type, error_message
FROM integration_sync_log
WHERE organization_id = :organization_id
  AND integration_id IN (
      SELECT integration_id FROM devices
      WHERE organization_id = :organization_id AND external_id = :external_id
  )
ORDER BY started_at DESC
LIMIT 10;
