-- Every asset-check evaluation of an integration, as the store's own record: Dagster's event
-- log holds them too, but the alert sensor, `trace`, reports and retention read them here,
-- organization-scoped and next to the activity they judge.
CREATE TABLE integration_check_results (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    provider        TEXT NOT NULL,
    check_name      TEXT NOT NULL,      -- error_rate | freshness | failure_streak | p95_latency ...
    passed          BOOLEAN NOT NULL,
    severity        TEXT NOT NULL,      -- WARN | ERROR (Dagster's AssetCheckSeverity names)
    description     TEXT NOT NULL,
    metadata        JSONB NOT NULL,     -- the numeric figures the result was judged on
    run_id          TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX check_results_org_integration_created_idx
    ON integration_check_results (organization_id, integration_id, created_at);
CREATE INDEX check_results_run_idx ON integration_check_results (run_id);
-- the alert sensor's scan for new failures across tenants
CREATE INDEX check_results_created_idx ON integration_check_results (created_at);
