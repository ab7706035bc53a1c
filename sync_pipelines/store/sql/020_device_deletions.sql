-- Deletions (sync/deletions.py): a device missing from a complete inventory scan is soft-deleted
-- (status 'deleted', deleted_at set; the row, its history and provenance stay), and restored when
-- it reappears. Every complete scan is an epoch kept with the cursor, so a scan resumed after a
-- kill is the same epoch.
ALTER TABLE devices ADD COLUMN deleted_at TIMESTAMPTZ;

-- The scan the devices cursor belongs to: its id, when it started (a device stored after that is
-- never deleted by it), and whether a record of it was rejected (a partial scan deletes nothing).
ALTER TABLE integration_sync_state ADD COLUMN scan_epoch TEXT;
ALTER TABLE integration_sync_state ADD COLUMN scan_started_at TIMESTAMPTZ;
ALTER TABLE integration_sync_state ADD COLUMN scan_partial BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE integration_sync_log ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;

-- The ids a scan has seen so far, one row per committed batch: the batch's ids as 64-bit digests
-- (sync/seen_ids.py), 8 bytes a device, committed with the batch and its cursor. Unchanged
-- devices are not rewritten to say "seen"; the scan's end reads these and then drops them.
CREATE TABLE device_scan_seen (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    scan_epoch      TEXT NOT NULL,
    batch_id        TEXT NOT NULL,
    digests         BYTEA NOT NULL,
    PRIMARY KEY (integration_id, scan_epoch, batch_id)
);

-- Deletions a scan would have applied, held by the mass-deletion guard until an operator runs
-- `sync-pipelines devices confirm-deletions INTEGRATION` (or a later complete scan replaces them).
CREATE TABLE held_deletions (
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    scan_epoch      TEXT NOT NULL,
    held_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, external_id)
);
CREATE INDEX held_deletions_org_integration_idx ON held_deletions (organization_id, integration_id);
