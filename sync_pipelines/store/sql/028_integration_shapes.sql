-- Shape drift (sync/shape_drift.py): the last known shape of what an integration's provider sends,
-- per stream (`devices`: the devices' attributes; `device_states`: their reported and desired
-- documents). A shape is the union over the devices seen of every nested key path and the JSON
-- types found there: {"attributes.metadata.status": ["string"], ...}.
--   shape               the baseline the next sync is compared with
--   baseline_at         when the first sync recorded it (without an event)
--   baseline_complete   the baseline came from a complete observation (every device); one from
--                       some devices only is finished, silently, by the next observations
--   updated_at          when a sync last changed it
--   judged_sync_id/_at  the last sync that compared its observations with it
--   change_*            the newest change (`shape_changed` activity row, when, the differences);
--                       unacknowledged while acknowledged_at is NULL: the check
--                       `device_shape_stable` fails until an operator accepts it
--   paused_at           the change paused the integration (policy `pause`); cleared when an
--                       operator enables it again
CREATE TABLE integration_shapes (
    organization_id     TEXT NOT NULL,
    integration_id      TEXT NOT NULL,
    stream              TEXT NOT NULL,
    shape               JSONB NOT NULL,
    paths               INTEGER NOT NULL,
    baseline_at         TIMESTAMPTZ NOT NULL,
    baseline_complete   BOOLEAN NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    judged_sync_id      TEXT,
    judged_at           TIMESTAMPTZ,
    change_activity_id  TEXT,
    change_at           TIMESTAMPTZ,
    change_policy       TEXT,
    change              JSONB,
    acknowledged_at     TIMESTAMPTZ,
    acknowledged_by     TEXT,
    paused_at           TIMESTAMPTZ,
    PRIMARY KEY (integration_id, stream)
);
CREATE INDEX integration_shapes_org_integration_idx
    ON integration_shapes (organization_id, integration_id);
