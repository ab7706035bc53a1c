-- Dead letters: records a sync could not validate or process, kept whole with their error so
-- the rest of the sync completes and the record can be replayed (with backoff) or quarantined.
-- Same type subset as 001_core.sql. Every query filters on organization_id (the replay sensor's
-- due scan is the one system-level read; see store/dead_letters.py).

CREATE TABLE dead_letters (
    -- time-ordered (UUIDv7), so an id range is a creation-time range
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL,
    integration_id     TEXT NOT NULL,
    provider           TEXT NOT NULL,
    stream             TEXT NOT NULL,   -- devices | device_states | desired_exports | telemetry | webhook_events
    -- what makes two failures "the same record": the device id, the desired change id, a digest
    -- of the message; the next sync finding the same failure updates this row instead of adding one
    dedupe_key         TEXT NOT NULL,
    external_id        TEXT,
    -- the id of what failed inside the stream: desired change id, webhook event id, message key
    source_id          TEXT,
    payload            JSONB,
    error_type         TEXT NOT NULL,
    error_message      TEXT,
    -- replay attempts made (a sync finding the record again is not an attempt)
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    status             TEXT NOT NULL,   -- pending | retrying | resolved | quarantined
    first_failed_at    TIMESTAMPTZ NOT NULL,
    last_failed_at     TIMESTAMPTZ NOT NULL,
    next_attempt_at    TIMESTAMPTZ,
    resolved_at        TIMESTAMPTZ,
    resolved_by_run_id TEXT,
    quarantined_at     TIMESTAMPTZ,
    -- provenance: the run that (last) failed it and the provider call it came from
    run_id             TEXT,
    request_id         TEXT,
    updated_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (integration_id, stream, dedupe_key)
);
-- due letters of a tenant (replay claims) and dead-letter depth by status
CREATE INDEX dead_letters_org_status_next_idx
    ON dead_letters (organization_id, status, next_attempt_at);
-- the replay sensor's scan across tenants
CREATE INDEX dead_letters_status_next_idx ON dead_letters (status, next_attempt_at);
-- the open letters of an integration's stream, by dedupe key: every sync batch checks them to
-- resolve the records it stored fine, and resolved letters (which pile up) must not slow it
CREATE INDEX dead_letters_open_idx
    ON dead_letters (integration_id, stream, dedupe_key) WHERE status <> 'resolved';
-- "why isn't device X updating?": a device's letters
CREATE INDEX dead_letters_external_idx ON dead_letters (external_id);
