-- Core schema of record, written in the subset SQLite and PostgreSQL both accept.
-- Types: TIMESTAMPTZ / JSONB / BOOLEAN / DOUBLE PRECISION are native on Postgres; on SQLite
-- they are just names (values are ISO-8601 UTC text, JSON text, 0/1 and REAL).
-- Every table carries organization_id; every query filters on it.

CREATE TABLE organizations (
    organization_id TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE integrations (
    integration_id  TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (organization_id),
    provider        TEXT NOT NULL,
    name            TEXT NOT NULL,
    settings        JSONB NOT NULL,
    -- names of environment variables holding the secrets, never the secrets themselves
    secret_refs     JSONB NOT NULL,
    enabled         BOOLEAN NOT NULL,
    poll_interval_s INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX integrations_org_provider_idx ON integrations (organization_id, provider);

-- The provider cursor, committed in the same transaction as the rows it covers.
CREATE TABLE integration_sync_state (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    stream          TEXT NOT NULL,
    cursor_value    JSONB,
    last_run_id     TEXT,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, stream)
);

CREATE TABLE devices (
    organization_id     TEXT NOT NULL,
    integration_id      TEXT NOT NULL,
    external_id         TEXT NOT NULL,
    name                TEXT NOT NULL,
    hardware_ids        JSONB NOT NULL,
    tags                JSONB NOT NULL,
    status              TEXT,
    enabled             BOOLEAN,
    attributes          JSONB NOT NULL,
    provider_created_at TIMESTAMPTZ,
    provider_updated_at TIMESTAMPTZ,
    last_seen_at        TIMESTAMPTZ,
    content_hash        TEXT NOT NULL,
    -- provenance: which run and which request last wrote this row
    last_run_id         TEXT,
    last_request_id     TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, external_id)
);
CREATE INDEX devices_org_integration_idx ON devices (organization_id, integration_id);

CREATE TABLE device_states (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    reported        JSONB,
    desired         JSONB,
    version         TEXT,
    observed_at     TIMESTAMPTZ NOT NULL,
    content_hash    TEXT NOT NULL,
    last_run_id     TEXT,
    last_request_id TEXT,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, external_id)
);
CREATE INDEX device_states_org_integration_idx ON device_states (organization_id, integration_id);

CREATE TABLE integration_activity_log (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    integration_id   TEXT,
    run_id           TEXT,
    step_key         TEXT,
    request_id       TEXT,
    parent_id        TEXT,
    direction        TEXT NOT NULL,   -- outgoing | incoming | internal
    activity_type    TEXT NOT NULL,   -- test_connection, import, sync, http_request, ...
    method           TEXT,
    endpoint         TEXT,
    status_code      INTEGER,
    status           TEXT NOT NULL,   -- started | success | failed | retrying
    attempt          INTEGER NOT NULL,
    response_time_ms DOUBLE PRECISION,
    error_type       TEXT,
    error_message    TEXT,
    error_stack      TEXT,
    request_headers  JSONB,
    metadata         JSONB,
    created_at       TIMESTAMPTZ NOT NULL,
    completed_at     TIMESTAMPTZ
);
CREATE INDEX activity_org_integration_created_idx
    ON integration_activity_log (organization_id, integration_id, created_at);
CREATE INDEX activity_request_id_idx ON integration_activity_log (request_id);
CREATE INDEX activity_run_id_idx ON integration_activity_log (run_id);
CREATE INDEX activity_parent_id_idx ON integration_activity_log (parent_id);

CREATE TABLE integration_sync_log (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    run_id          TEXT,
    stream          TEXT NOT NULL,    -- devices | device_states
    status          TEXT NOT NULL,    -- running | success | partial | failed
    started_at      TIMESTAMPTZ NOT NULL,
    completed_at    TIMESTAMPTZ,
    duration_ms     DOUBLE PRECISION,
    cursor_before   JSONB,
    cursor_after    JSONB,
    fetched         INTEGER NOT NULL,
    created         INTEGER NOT NULL,
    updated         INTEGER NOT NULL,
    unchanged       INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    conflicts       INTEGER NOT NULL,
    pages           INTEGER NOT NULL,
    error_type      TEXT,
    error_message   TEXT
);
CREATE INDEX sync_log_org_integration_started_idx
    ON integration_sync_log (organization_id, integration_id, started_at);
CREATE INDEX sync_log_run_id_idx ON integration_sync_log (run_id);
