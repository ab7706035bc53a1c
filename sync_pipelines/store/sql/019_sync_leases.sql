-- One sync per (integration, stream) at a time: the lease a sync holds while it runs.
--
-- `epoch` grows by one at every take-over and is never reset; each batch commit of the holder
-- renews the lease only where the epoch is still its own, in the commit's own transaction, so a
-- stale writer (its lease expired and was taken over) cannot commit. A released lease keeps its
-- row (holder columns NULL) so the epoch keeps counting. `holder_*` says who holds it: the run,
-- its sync-log row and activity operation (closed as `abandoned` when the holder dies), and the
-- process (host, pid, start time) so a sync on the same host can tell a dead holder at once.
CREATE TABLE sync_leases (
    organization_id     TEXT NOT NULL,
    integration_id      TEXT NOT NULL,
    stream              TEXT NOT NULL,
    epoch               BIGINT NOT NULL,
    holder_run_id       TEXT,
    holder_sync_id      TEXT,
    holder_activity_id  TEXT,
    holder_host         TEXT,
    holder_pid          INTEGER,
    holder_process      TEXT,
    acquired_at         TIMESTAMPTZ NOT NULL,
    renewed_at          TIMESTAMPTZ NOT NULL,
    expires_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (integration_id, stream)
);
-- the stale-sync sensor's scan: held leases past their expiry
CREATE INDEX sync_leases_expires_idx ON sync_leases (expires_at);
