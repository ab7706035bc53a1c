-- Webhook inbox: each event the receiver (sync_pipelines/webhooks/) accepts is stored here,
-- durably and at most once per provider event id, before the sender gets its 2xx; the inbox
-- sensor's runs (sync/webhook_processing.py) later apply it to devices and telemetry.
-- Same type subset as 001_core.sql; every query filters on organization_id.
--
-- Retention rule (enforced by the retention job of a later issue, never sooner): keep a row at
-- least 7 days after received_at. Senders retry for days (Standard Webhooks/Svix up to ~3 days,
-- Event Grid up to 24 h) and the unique key below is what absorbs a late retry, so deleting a
-- row early would let a retry become a second event. Pending, processing and failed rows are
-- kept until they are processed or their dead letter is resolved, whatever their age.
CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,   -- uuid
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    provider        TEXT NOT NULL,
    -- the provider's idempotency key: Standard Webhooks `webhook-id`, Event Grid `id`,
    -- Golioth `Ce-Id` else 'sha256:' of (Ce-Source, body), AWS body `id` else 'sha256:' of body
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    external_id     TEXT,               -- the device, when the delivery names one
    payload         JSONB NOT NULL,
    headers         JSONB NOT NULL,     -- redacted
    -- the request id of the delivery's `webhook_received` activity row (a batch shares one)
    delivery_id     TEXT NOT NULL,
    status          TEXT NOT NULL,      -- pending | processing | processed | failed
    received_at     TIMESTAMPTZ NOT NULL,
    claimed_at      TIMESTAMPTZ,        -- when a run claimed it (status processing); a lease
    processed_at    TIMESTAMPTZ,        -- processed_at - received_at = processing delay
    attempts        INTEGER NOT NULL DEFAULT 0,
    run_id          TEXT,
    error_type      TEXT,
    error_message   TEXT,
    UNIQUE (integration_id, event_id)
);
CREATE INDEX webhook_events_status_received_idx ON webhook_events (status, received_at, id);
CREATE INDEX webhook_events_integration_status_idx
    ON webhook_events (organization_id, integration_id, status, received_at);
