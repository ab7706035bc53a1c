-- A device's history: the same table and the same rows as 027_device_changes.postgres.sql (read
-- its header), one plain table here, written by row triggers. `sync_change_source()` is a
-- function each store connection registers (store/database.py): which writer the transaction
-- is, `sync` unless the writer said otherwise (store/device_changes.py `set_change_source`).

CREATE TABLE device_changes (
    id              INTEGER PRIMARY KEY,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    kind            TEXT NOT NULL,
    changes         JSONB NOT NULL,
    reason          TEXT,
    source          TEXT NOT NULL,
    run_id          TEXT,
    request_id      TEXT
);
CREATE INDEX device_changes_timeline_idx
    ON device_changes (organization_id, integration_id, device_id, at DESC, id DESC);

CREATE TRIGGER device_changes_on_insert AFTER INSERT ON devices
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    VALUES (NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.updated_at,
            CASE WHEN NEW.deleted_at IS NULL THEN 'created' ELSE 'deleted' END,
            json_object('name', json_array(NULL, NEW.name), 'status', json_array(NULL, NEW.status)),
            sync_change_source(), NEW.last_run_id, NEW.last_request_id);
END;

CREATE TRIGGER device_changes_on_update AFTER UPDATE ON devices
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.updated_at, c.kind,
           c.changes, sync_change_source(), NEW.last_run_id, NEW.last_request_id
    FROM (
        SELECT CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'deleted'
                    WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN 'restored'
                    ELSE 'updated' END AS kind,
               (SELECT json_group_object(f, json(v)) FROM (
                    SELECT 'name' AS f, json_array(OLD.name, NEW.name) AS v
                    WHERE OLD.name IS NOT NEW.name
                    UNION ALL SELECT 'status', json_array(OLD.status, NEW.status)
                    WHERE OLD.status IS NOT NEW.status
                    UNION ALL SELECT 'enabled', json_array(json(CASE OLD.enabled WHEN 1 THEN 'true'
                        WHEN 0 THEN 'false' END), json(CASE NEW.enabled WHEN 1 THEN 'true'
                        WHEN 0 THEN 'false' END))
                    WHERE OLD.enabled IS NOT NEW.enabled
                    UNION ALL SELECT 'tags', json_array(json(OLD.tags), json(NEW.tags))
                    WHERE OLD.tags IS NOT NEW.tags
                    UNION ALL SELECT 'hardware_ids',
                        json_array(json(OLD.hardware_ids), json(NEW.hardware_ids))
                    WHERE OLD.hardware_ids IS NOT NEW.hardware_ids
                    UNION ALL SELECT 'provider_created_at',
                        json_array(OLD.provider_created_at, NEW.provider_created_at)
                    WHERE OLD.provider_created_at IS NOT NEW.provider_created_at
                    UNION ALL SELECT 'provider_updated_at',
                        json_array(OLD.provider_updated_at, NEW.provider_updated_at)
                    WHERE OLD.provider_updated_at IS NOT NEW.provider_updated_at
                    UNION ALL SELECT 'attributes',
                        json_array(json(OLD.attributes), json(NEW.attributes))
                    WHERE OLD.attributes IS NOT NEW.attributes
               )) AS changes
    ) AS c
    WHERE c.kind <> 'updated' OR c.changes <> '{}';
END;

CREATE TRIGGER device_state_changes_on_insert AFTER INSERT ON device_states
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.updated_at, 'updated',
           c.changes, sync_change_source(), NEW.last_run_id, NEW.last_request_id
    FROM (
        SELECT (SELECT json_group_object(f, json(v)) FROM (
                    SELECT 'reported' AS f, json_array(NULL, json(NEW.reported)) AS v
                    WHERE NEW.reported IS NOT NULL
                    UNION ALL SELECT 'desired', json_array(NULL, json(NEW.desired))
                    WHERE NEW.desired IS NOT NULL
                    UNION ALL SELECT 'version', json_array(NULL, NEW.version)
                    WHERE NEW.version IS NOT NULL
               )) AS changes
    ) AS c
    WHERE c.changes <> '{}';
END;

CREATE TRIGGER device_state_changes_on_update AFTER UPDATE ON device_states
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.updated_at, 'updated',
           c.changes, sync_change_source(), NEW.last_run_id, NEW.last_request_id
    FROM (
        SELECT (SELECT json_group_object(f, json(v)) FROM (
                    SELECT 'reported' AS f,
                        json_array(json(OLD.reported), json(NEW.reported)) AS v
                    WHERE OLD.reported IS NOT NEW.reported
                    UNION ALL SELECT 'desired', json_array(json(OLD.desired), json(NEW.desired))
                    WHERE OLD.desired IS NOT NEW.desired
                    UNION ALL SELECT 'version', json_array(OLD.version, NEW.version)
                    WHERE OLD.version IS NOT NEW.version
               )) AS changes
    ) AS c
    WHERE c.changes <> '{}';
END;

CREATE TRIGGER device_changes_rejected_insert AFTER INSERT ON dead_letters
WHEN NEW.external_id IS NOT NULL
 AND NEW.stream IN ('devices', 'device_states', 'webhook_events')
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                reason, source, run_id, request_id)
    VALUES (NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.last_failed_at,
            'rejected', json_object('stream', NEW.stream, 'dead_letter_id', NEW.id),
            substr(NEW.error_type || coalesce(': ' || NEW.error_message, ''), 1, 2000),
            CASE WHEN NEW.stream = 'webhook_events' AND sync_change_source() = 'sync'
                 THEN 'webhook' ELSE sync_change_source() END,
            NEW.run_id, NEW.request_id);
END;

CREATE TRIGGER device_changes_rejected_update AFTER UPDATE ON dead_letters
WHEN NEW.external_id IS NOT NULL
 AND NEW.stream IN ('devices', 'device_states', 'webhook_events')
 AND NEW.last_failed_at IS NOT OLD.last_failed_at
 AND (OLD.status = 'resolved' OR NEW.attempts <> OLD.attempts
      OR NEW.error_type IS NOT OLD.error_type OR NEW.error_message IS NOT OLD.error_message)
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                reason, source, run_id, request_id)
    VALUES (NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.last_failed_at,
            'rejected', json_object('stream', NEW.stream, 'dead_letter_id', NEW.id),
            substr(NEW.error_type || coalesce(': ' || NEW.error_message, ''), 1, 2000),
            CASE WHEN NEW.stream = 'webhook_events' AND sync_change_source() = 'sync'
                 THEN 'webhook' ELSE sync_change_source() END,
            NEW.run_id, NEW.request_id);
END;
