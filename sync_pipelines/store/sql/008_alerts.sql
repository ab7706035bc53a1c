-- Alerts: one incident per condition (rule + subject) while it lasts, and every message sent
-- about it. An outage of a thousand failing calls is one open incident whose `occurrences`
-- counts the evaluations that saw it, one "firing" notification, repeats only after the
-- cooldown, and one "resolved" notification. Same type subset as 001_core.sql.

CREATE TABLE alert_incidents (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    integration_id   TEXT,              -- NULL for organization- or system-wide conditions
    -- error_rate | provider_api_failures | failure_streak | processing_delay | inbox_backlog
    -- | check_failed | run_failed | heartbeat ...
    rule             TEXT NOT NULL,
    -- what makes two evaluations "the same incident": rule plus its subject
    dedupe_key       TEXT NOT NULL,
    severity         TEXT NOT NULL,     -- warning | critical
    status           TEXT NOT NULL,     -- open | resolved
    summary          TEXT NOT NULL,
    details          JSONB,
    -- evaluations that saw the condition while the incident was open (the repeat count)
    occurrences      INTEGER NOT NULL,
    first_seen_at    TIMESTAMPTZ NOT NULL,
    last_seen_at     TIMESTAMPTZ NOT NULL,
    last_notified_at TIMESTAMPTZ,
    resolved_at      TIMESTAMPTZ,
    -- provenance: the run or request that raised it, when there is one
    run_id           TEXT,
    request_id       TEXT,
    updated_at       TIMESTAMPTZ NOT NULL
);
-- at most one open incident per condition: the dedupe
CREATE UNIQUE INDEX alert_incidents_open_key_idx
    ON alert_incidents (organization_id, dedupe_key) WHERE status = 'open';
CREATE INDEX alert_incidents_org_integration_idx
    ON alert_incidents (organization_id, integration_id, first_seen_at);
CREATE INDEX alert_incidents_run_idx ON alert_incidents (run_id);

-- The alert history: every notification attempted, to which channel, and how it went.
CREATE TABLE alert_notifications (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    incident_id     TEXT,               -- NULL for heartbeats
    channel         TEXT NOT NULL,      -- the channel's configured name
    kind            TEXT NOT NULL,      -- firing | repeat | resolved | heartbeat
    status          TEXT NOT NULL,      -- sent | failed
    status_code     INTEGER,
    error_message   TEXT,
    payload         JSONB,              -- what was sent (redacted)
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX alert_notifications_incident_idx ON alert_notifications (incident_id, created_at);
CREATE INDEX alert_notifications_org_created_idx ON alert_notifications (organization_id, created_at);
