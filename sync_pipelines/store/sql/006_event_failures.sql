-- Every failed Dagster run, recorded once by the run-failure sensor: what failed, where, why.
-- `organization_id` is the failed integration's organization ('_system' when a run names no
-- integration, e.g. a job outside any tenant), so tenant-scoped queries still apply.
CREATE TABLE event_failures (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    integration_id  TEXT,
    run_id          TEXT NOT NULL UNIQUE,
    job_name        TEXT NOT NULL,
    partition_key   TEXT,
    step_key        TEXT,
    error_type      TEXT,
    error_message   TEXT NOT NULL,
    error_stack     TEXT,
    status          TEXT NOT NULL,   -- failed | retrying | resolved
    retry_count     INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    resolved_at     TIMESTAMPTZ
);
CREATE INDEX event_failures_org_created_idx ON event_failures (organization_id, created_at);
CREATE INDEX event_failures_integration_idx ON event_failures (integration_id, created_at);
