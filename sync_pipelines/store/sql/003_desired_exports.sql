-- Export (bidirectional sync): desired-state changes made on our side, waiting to be pushed
-- to the provider, and the conflicts found when both sides changed since the last sync.

CREATE TABLE desired_changes (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    patch           JSONB NOT NULL,
    -- the provider's state version our side last saw when the change was made: if the
    -- provider's version differs at push time, the provider changed too (a conflict)
    base_version    TEXT,
    status          TEXT NOT NULL,   -- pending | pushed | conflict | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    requested_by    TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    pushed_at       TIMESTAMPTZ,
    version_after   TEXT,
    run_id          TEXT,
    request_id      TEXT,
    error_type      TEXT,
    error_message   TEXT
);
CREATE INDEX desired_changes_pending_idx
    ON desired_changes (organization_id, integration_id, status, created_at);

CREATE TABLE sync_conflicts (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    integration_id   TEXT NOT NULL,
    external_id      TEXT NOT NULL,
    change_id        TEXT NOT NULL,
    local_patch      JSONB NOT NULL,
    provider_desired JSONB,
    base_version     TEXT,
    provider_version TEXT,
    resolution       TEXT NOT NULL,   -- provider_wins | local_wins
    run_id           TEXT,
    request_id       TEXT,
    detected_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX sync_conflicts_integration_idx
    ON sync_conflicts (organization_id, integration_id, detected_at);
CREATE INDEX sync_conflicts_device_idx ON sync_conflicts (integration_id, external_id);
