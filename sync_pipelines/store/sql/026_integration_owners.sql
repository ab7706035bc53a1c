-- Every integration id ever registered and its organization. Rows are never deleted: removing
-- an integration's configuration keeps its history (devices, sync log, dead letters), and the
-- id stays its organization's, so no other tenant can register it and inherit that history.
-- (On Postgres, 026_service_role keys every table of an integration to this one.)
CREATE TABLE integration_owners (
    integration_id  TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    UNIQUE (organization_id, integration_id)
);

INSERT INTO integration_owners (integration_id, organization_id)
SELECT integration_id, organization_id FROM integrations WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;

-- and the ids of integrations removed before this migration, from the history they left
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM alert_incidents WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM dead_letters WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM desired_changes WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM device_scan_seen WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM device_states WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM device_telemetry WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM devices WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM event_failures WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM held_deletions WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM integration_check_results WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM integration_sync_log WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM integration_sync_state WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM provider_call_hours WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM sync_conflicts WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM sync_leases WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM telemetry_gaps WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM telemetry_sequences WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
INSERT INTO integration_owners (integration_id, organization_id)
SELECT DISTINCT integration_id, organization_id FROM webhook_events WHERE integration_id IS NOT NULL
ON CONFLICT (integration_id) DO NOTHING;
