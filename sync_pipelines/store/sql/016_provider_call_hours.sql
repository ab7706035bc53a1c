-- Provider calls rolled up per integration and hour (store/call_hours.py): what reports over
-- more than two days read instead of the raw activity log — a week of one organization's 25
-- integrations is ~150k call rows at 10M activity rows, and ~4k rows here.
-- Counts and latency sums are exact; latency is a sparse histogram (JSON object: bucket index →
-- count, buckets ×1.1 apart, figures.latency_bucket), so a p95 read back is within ±5 %.
CREATE TABLE provider_call_hours (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    hour            TIMESTAMPTZ NOT NULL,   -- the UTC hour [hour, hour + 1 h)
    calls           INTEGER NOT NULL,
    failed          INTEGER NOT NULL,       -- status failed or retrying (monitoring's error statuses)
    latency_count   INTEGER NOT NULL,       -- calls with a response time
    latency_sum_ms  DOUBLE PRECISION NOT NULL,
    latency_histogram TEXT NOT NULL,
    rolled_up_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (organization_id, integration_id, hour)
);
-- an organization's newest rolled-up hour (where its next roll-up starts)
CREATE INDEX provider_call_hours_org_hour_idx ON provider_call_hours (organization_id, hour);
