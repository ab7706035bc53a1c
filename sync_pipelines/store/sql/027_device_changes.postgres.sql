-- A device's history (store/device_changes.py, docs/store.md "Device history"): every change a
-- sync, a webhook event, a replay or a deletion scan makes to a device is one row, written by
-- triggers on the tables themselves, so it is in the same transaction as the change whatever
-- path wrote it, and an unchanged device (which the upserts never rewrite) writes nothing.
--
--   created   a device row inserted (changes: its name and status)
--   updated   changed fields, old -> new: name, status, enabled, tags, hardware ids, provider
--             times, attributes, the reported and desired state and its version (documents
--             whole, old and new; read key by key: `attributes.<key>`, `reported.<key>`)
--   deleted   soft-deleted (a complete scan missed it, a provider event deleted it)
--   restored  a deleted device listed again
--   rejected  a record of the device refused and dead-lettered (`reason`: error type: message);
--             written when its letter opens, reopens, fails a replay or fails differently
--
-- Not history: last_seen_at (last contact moves on every heartbeat; the device page shows it),
-- content hashes, provenance and the event-ordering keys.
--
-- `source` is what wrote it (sync | webhook | replay | deletion_scan | operator | export): the
-- writer sets `sync.change_source` for its transaction (default `sync`); `run_id` / `request_id`
-- are the row's provenance, the links to the Dagster run and to the activity log.
--
-- No key to integration_owners, like the activity log (026): every row is copied by a trigger
-- from a devices, device_states or dead_letters row, which is keyed to its organization's
-- integration; a foreign-key check per history row cost the re-sync a quarter of its speed
-- (bench/device_history.py write: -36 % devices/s with the key, -9 % without, before the
-- inline diff). The organization is held by row-level security as everywhere.
--
-- Partitioned by month like the activity log (011): device_changes_pYYYYMM plus a default
-- partition; retention (store/retention.py) drops whole months past 90 days through
-- sync_drop_device_change_partition and deletes the boundary month's older rows.

CREATE SEQUENCE device_changes_id_seq CACHE 100;

CREATE TABLE device_changes (
    id              BIGINT NOT NULL DEFAULT nextval('device_changes_id_seq'),
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    kind            TEXT NOT NULL,   -- created | updated | deleted | restored | rejected
    changes         JSONB NOT NULL,  -- field -> [old, new]
    reason          TEXT,            -- rejected: why
    source          TEXT NOT NULL,
    run_id          TEXT,
    request_id      TEXT,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE device_changes_id_seq OWNED BY device_changes.id;

-- the device page's timeline: newest first, keyset (at, id)
CREATE INDEX device_changes_timeline_idx
    ON device_changes (organization_id, integration_id, device_id, at DESC, id DESC);

CREATE TABLE device_changes_default PARTITION OF device_changes DEFAULT;

-- The partition of the UTC month containing `month`; returns its name, or NULL if it exists.
CREATE OR REPLACE FUNCTION sync_create_device_change_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', month::timestamp)::date;
    partition_name text := 'device_changes_p' || to_char(first_day, 'YYYYMM');
    lower_bound timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (first_day + interval '1 month') AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I (LIKE device_changes INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        partition_name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM device_changes_default '
        'WHERE at >= %L AND at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
        lower_bound, upper_bound, partition_name);
    EXECUTE format(
        'ALTER TABLE device_changes ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        partition_name, lower_bound, upper_bound);
    PERFORM sync_enable_tenant_rls(partition_name);
    RETURN partition_name;
END
$$;

CREATE OR REPLACE FUNCTION sync_ensure_device_change_partitions(from_month date, months_ahead int)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    created text;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 THEN
        RAISE EXCEPTION 'sync_ensure_device_change_partitions: months_ahead must be 0 or more, got %',
            months_ahead;
    END IF;
    FOR i IN 0..months_ahead LOOP
        created := sync_create_device_change_partition(
            (from_month + make_interval(months => i))::date);
        IF created IS NOT NULL THEN
            RETURN NEXT created;
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION sync_drop_device_change_partition(partition_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    row_count bigint;
BEGIN
    IF partition_name !~ '^device_changes_p[0-9]{6}$' THEN
        RAISE EXCEPTION 'sync_drop_device_change_partition: % is not a monthly device-change partition',
            partition_name;
    END IF;
    EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', partition_name);
    EXECUTE format('SELECT count(*) FROM %I', partition_name) INTO row_count;
    EXECUTE format('DROP TABLE %I', partition_name);
    RETURN row_count;
END
$$;

SELECT sync_enable_tenant_rls('device_changes');
SELECT sync_enable_tenant_rls('device_changes_default');
SELECT sync_ensure_device_change_partitions(
    ((now() AT TIME ZONE 'UTC')::date - 93), 5);
GRANT USAGE ON SEQUENCE device_changes_id_seq TO sync_app, sync_tenant;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'sync_ensure_device_change_partitions(date, int)',
        'sync_drop_device_change_partition(text)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO sync_app', f);
    END LOOP;
END
$$;

-- ---- What the triggers write.

-- Which writer this transaction is: set by store/device_changes.py `set_change_source`.
CREATE OR REPLACE FUNCTION sync_change_source() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('sync.change_source', true), ''), 'sync')
$$;

-- The triggers compute each change inline, in the one INSERT ... SELECT a statement makes: each
-- changed column as `"field":[old,new]` text, joined once into the changes object. No function
-- call, subquery or jsonb concatenation per row: those (a helper diffing the attributes key by
-- key, `||` of one object per field) cost the re-sync most of its history's price
-- (bench/device_history.py write). Documents (attributes, reported, desired) are kept whole,
-- old and new; store/device_changes.py shows them key by key (`attributes.<key>`).
-- Statement-level triggers with transition tables: one INSERT ... SELECT per statement, over the
-- rows the statement wrote (the bulk upsert's merge writes only new and changed devices).
CREATE OR REPLACE FUNCTION sync_device_changes_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT n.organization_id, n.integration_id, n.external_id, n.updated_at,
           CASE WHEN n.deleted_at IS NULL THEN 'created' ELSE 'deleted' END,
           jsonb_build_object('name', jsonb_build_array(NULL::text, n.name),
                              'status', jsonb_build_array(NULL::text, n.status)),
           sync_change_source(), n.last_run_id, n.last_request_id
    FROM inserted n;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sync_device_changes_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT c.organization_id, c.integration_id, c.external_id, c.updated_at, c.kind, c.changes,
           sync_change_source(), c.last_run_id, c.last_request_id
    FROM (
        SELECT n.organization_id, n.integration_id, n.external_id, n.updated_at,
               n.last_run_id, n.last_request_id,
               CASE WHEN o.deleted_at IS NULL AND n.deleted_at IS NOT NULL THEN 'deleted'
                    WHEN o.deleted_at IS NOT NULL AND n.deleted_at IS NULL THEN 'restored'
                    ELSE 'updated' END AS kind,
               ('{' || concat_ws(',',
                    CASE WHEN o.name IS DISTINCT FROM n.name
                    THEN '"name":' || jsonb_build_array(o.name, n.name)::text END,
                    CASE WHEN o.status IS DISTINCT FROM n.status
                    THEN '"status":' || jsonb_build_array(o.status, n.status)::text END,
                    CASE WHEN o.enabled IS DISTINCT FROM n.enabled
                    THEN '"enabled":' || jsonb_build_array(o.enabled, n.enabled)::text END,
                    CASE WHEN o.tags IS DISTINCT FROM n.tags
                    THEN '"tags":' || jsonb_build_array(o.tags, n.tags)::text END,
                    CASE WHEN o.hardware_ids IS DISTINCT FROM n.hardware_ids
                    THEN '"hardware_ids":' || jsonb_build_array(o.hardware_ids, n.hardware_ids)::text END,
                    CASE WHEN o.provider_created_at IS DISTINCT FROM n.provider_created_at
                    THEN '"provider_created_at":' || jsonb_build_array(o.provider_created_at, n.provider_created_at)::text END,
                    CASE WHEN o.provider_updated_at IS DISTINCT FROM n.provider_updated_at
                    THEN '"provider_updated_at":' || jsonb_build_array(o.provider_updated_at, n.provider_updated_at)::text END,
                    CASE WHEN o.attributes IS DISTINCT FROM n.attributes
                    THEN '"attributes":' || jsonb_build_array(o.attributes, n.attributes)::text END) || '}')::jsonb AS changes
        FROM old_rows o JOIN new_rows n
          ON n.integration_id = o.integration_id AND n.external_id = o.external_id
    ) c
    WHERE c.kind <> 'updated' OR c.changes <> '{}'::jsonb;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sync_device_state_changes_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT c.organization_id, c.integration_id, c.external_id, c.updated_at, 'updated', c.changes,
           sync_change_source(), c.last_run_id, c.last_request_id
    FROM (
        SELECT n.organization_id, n.integration_id, n.external_id, n.updated_at, n.last_run_id,
               n.last_request_id,
               ('{' || concat_ws(',',
                    CASE WHEN NULL::jsonb IS DISTINCT FROM n.reported
                    THEN '"reported":' || jsonb_build_array(NULL::jsonb, n.reported)::text END,
                    CASE WHEN NULL::jsonb IS DISTINCT FROM n.desired
                    THEN '"desired":' || jsonb_build_array(NULL::jsonb, n.desired)::text END,
                    CASE WHEN NULL::text IS DISTINCT FROM n.version
                    THEN '"version":' || jsonb_build_array(NULL::text, n.version)::text END) || '}')::jsonb AS changes
        FROM inserted n
    ) c
    WHERE c.changes <> '{}'::jsonb;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sync_device_state_changes_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                source, run_id, request_id)
    SELECT c.organization_id, c.integration_id, c.external_id, c.updated_at, 'updated', c.changes,
           sync_change_source(), c.last_run_id, c.last_request_id
    FROM (
        SELECT n.organization_id, n.integration_id, n.external_id, n.updated_at, n.last_run_id,
               n.last_request_id,
               ('{' || concat_ws(',',
                    CASE WHEN o.reported IS DISTINCT FROM n.reported
                    THEN '"reported":' || jsonb_build_array(o.reported, n.reported)::text END,
                    CASE WHEN o.desired IS DISTINCT FROM n.desired
                    THEN '"desired":' || jsonb_build_array(o.desired, n.desired)::text END,
                    CASE WHEN o.version IS DISTINCT FROM n.version
                    THEN '"version":' || jsonb_build_array(o.version, n.version)::text END) || '}')::jsonb AS changes
        FROM old_rows o JOIN new_rows n
          ON n.integration_id = o.integration_id AND n.external_id = o.external_id
    ) c
    WHERE c.changes <> '{}'::jsonb;
    RETURN NULL;
END
$$;

-- A record of a device refused: its letter opened, reopened, failed a replay or failed
-- differently (the same record found failing the same way by the next poll is not news).
CREATE OR REPLACE FUNCTION sync_device_rejections() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.external_id IS NULL OR NEW.stream NOT IN ('devices', 'device_states', 'webhook_events')
    THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NOT (
        NEW.last_failed_at IS DISTINCT FROM OLD.last_failed_at AND (
            OLD.status = 'resolved' OR NEW.attempts <> OLD.attempts
            OR NEW.error_type IS DISTINCT FROM OLD.error_type
            OR NEW.error_message IS DISTINCT FROM OLD.error_message))
    THEN
        RETURN NULL;
    END IF;
    INSERT INTO device_changes (organization_id, integration_id, device_id, at, kind, changes,
                                reason, source, run_id, request_id)
    VALUES (NEW.organization_id, NEW.integration_id, NEW.external_id, NEW.last_failed_at,
            'rejected', jsonb_build_object('stream', NEW.stream, 'dead_letter_id', NEW.id),
            left(NEW.error_type || coalesce(': ' || NEW.error_message, ''), 2000),
            CASE WHEN NEW.stream = 'webhook_events' AND sync_change_source() = 'sync'
                 THEN 'webhook' ELSE sync_change_source() END,
            NEW.run_id, NEW.request_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER device_changes_on_insert AFTER INSERT ON devices
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION sync_device_changes_on_insert();
CREATE TRIGGER device_changes_on_update AFTER UPDATE ON devices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sync_device_changes_on_update();
CREATE TRIGGER device_changes_on_insert AFTER INSERT ON device_states
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION sync_device_state_changes_on_insert();
CREATE TRIGGER device_changes_on_update AFTER UPDATE ON device_states
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sync_device_state_changes_on_update();
CREATE TRIGGER device_changes_rejected AFTER INSERT OR UPDATE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION sync_device_rejections();
