-- OpenTelemetry trace context of each activity row (SPEC §4.12): the trace and span the row was
-- recorded in, as W3C lowercase hex (32 and 16 characters), so an activity row, a log line and a
-- span in the tracing backend can be joined. NULL when tracing is off (no OTLP endpoint).
-- On Postgres the activity log is partitioned (011): columns and indexes added to the parent
-- reach every monthly partition, and partitions created later inherit them.
ALTER TABLE integration_activity_log ADD COLUMN trace_id TEXT;
ALTER TABLE integration_activity_log ADD COLUMN span_id TEXT;

-- A trace id from the tracing backend (or a log line) → its activity rows.
CREATE INDEX activity_trace_idx ON integration_activity_log (trace_id) WHERE trace_id IS NOT NULL;
