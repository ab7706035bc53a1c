-- Provider-call failure rate per integration since a time (e.g. an hour ago): calls, failed or
-- retried attempts, the rate, latency, and the newest error. A call is an `http_request` or
-- `mqtt_request` activity row, one per attempt; `retrying` counts as an error, as in the
-- call-failure-rate check. (p95 latency: `sync-pipelines report --hours 1`.)
-- Parameters: :organization_id, :since (Postgres: '2026-01-31 09:00+00'; SQLite:
-- '2026-01-31T09:00:00.000000Z').

SELECT integration_id,
       count(*) AS calls,
       sum(CASE WHEN status IN ('failed', 'retrying') THEN 1 ELSE 0 END) AS failed,
       round(1.0 * sum(CASE WHEN status IN ('failed', 'retrying') THEN 1 ELSE 0 END)
             / count(*), 4) AS call_failure_rate,
       round(avg(response_time_ms)) AS avg_ms,
       max(response_time_ms) AS max_ms,
       max(CASE WHEN status IN ('failed', 'retrying') THEN created_at END) AS last_error_at
FROM integration_activity_log
WHERE organization_id = :organization_id
  AND created_at >= :since
  AND activity_type IN ('http_request', 'mqtt_request')
GROUP BY integration_id
ORDER BY call_failure_rate DESC, calls DESC, integration_id;
