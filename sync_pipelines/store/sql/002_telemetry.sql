-- Telemetry (MQTT today, webhooks later): append-only messages, the last sequence number seen
-- per device, and the gaps that sequence numbers reveal. Same type subset as 001_core.sql.
-- Every table carries organization_id; every query filters on it.

-- One row per message, written at most once: `message_key` is 'seq:<n>' when the device sent a
-- sequence number, else 'sha256:<hex of topic and payload>', so a broker redelivery (or a
-- device retransmitting the same reading) is absorbed by the primary key.
CREATE TABLE device_telemetry (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    message_key     TEXT NOT NULL,
    sequence        BIGINT,
    topic           TEXT NOT NULL,
    payload         JSONB NOT NULL,
    device_time     TIMESTAMPTZ,
    received_at     TIMESTAMPTZ NOT NULL,
    -- provenance: the run that stored it and the batch (activity request id) it came in
    run_id          TEXT,
    request_id      TEXT,
    PRIMARY KEY (integration_id, external_id, message_key)
);
CREATE INDEX device_telemetry_org_integration_received_idx
    ON device_telemetry (organization_id, integration_id, received_at);

-- The highest sequence number stored per device: the baseline the next batch is checked against.
CREATE TABLE telemetry_sequences (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    last_sequence   BIGINT NOT NULL,
    last_run_id     TEXT,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, external_id)
);

-- Sequence numbers that never arrived (e.g. the broker dropped them when a session's queue
-- overflowed): reported, never silent.
CREATE TABLE telemetry_gaps (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    first_missing   BIGINT NOT NULL,
    last_missing    BIGINT NOT NULL,
    missing_count   BIGINT NOT NULL,
    detected_at     TIMESTAMPTZ NOT NULL,
    run_id          TEXT
);
CREATE INDEX telemetry_gaps_org_integration_detected_idx
    ON telemetry_gaps (organization_id, integration_id, detected_at);

ALTER TABLE integration_sync_log ADD COLUMN gaps INTEGER NOT NULL DEFAULT 0;
