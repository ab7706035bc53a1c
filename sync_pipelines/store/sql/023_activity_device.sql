-- The device an activity row is about (SPEC §8: a device's own story): a state read, a desired
-- push, a rejected record, a webhook event's processing. NULL for rows about no one device (an
-- inventory page, an operation). `sync-pipelines trace DEVICE` and the console read a device's
-- calls — every attempt of each, failed ones included — through it instead of walking the log.
-- On Postgres the activity log is partitioned (011): the column and the index added to the
-- parent reach every monthly partition, and partitions created later inherit them.
ALTER TABLE integration_activity_log ADD COLUMN external_id TEXT;

-- A device's rows, newest first, within an organization or across them (an unscoped operator's
-- console search; device ids rarely repeat across tenants, like devices_external_id_idx). Only
-- rows naming a device enter it.
CREATE INDEX activity_device_idx
    ON integration_activity_log (external_id, created_at)
    WHERE external_id IS NOT NULL;
