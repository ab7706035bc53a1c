-- Tenancy enforced by Postgres for the sync service itself (docs/deployment.md, "Database roles").
--
-- Two roles, never one: migrations run as the tables' owner; the service logs in as a member of
-- `sync_app`, which owns nothing and has neither SUPERUSER nor BYPASSRLS. Every table with an
-- organization_id forces row-level security (the owner is held to it too), and `sync_app` sees
-- and writes only the organization its transaction names:
--     SELECT set_config('sync.organization_id', 'acme', true);   -- this transaction only
-- (store/database.py does it at the start of every transaction of an organization's work; a
-- session-level SET would outlive the transaction on a pooled connection).
--
-- The few reads and maintenance steps that span tenants (Dagster's partitions, sensors and
-- schedules are keyed by integration id alone; activity-log partitions belong to no tenant) go
-- through the named SECURITY DEFINER functions below, and nothing else does. They run as their
-- owner, the migrating role, which must be a superuser or have BYPASSRLS.
--
-- Foreign keys carry the organization: an integration id belongs to one organization for ever
-- (`integration_owners`, kept when the integration's configuration is removed, as its history
-- is), and every table keyed by an integration references (organization_id, integration_id), so
-- a row cannot name another tenant's integration even where row security does not reach
-- (integrity checks bypass it). The activity log and telemetry readings are append-only logs
-- written at the highest rates: they carry the organization under row security, not a key.

DO $$
BEGIN
    CREATE ROLE sync_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE OR REPLACE FUNCTION sync_enable_tenant_rls(table_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', table_name);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %I TO sync_tenant, sync_app '
        'USING (organization_id = (SELECT current_setting(''sync.organization_id'', true))) '
        'WITH CHECK (organization_id = (SELECT current_setting(''sync.organization_id'', true)))',
        table_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO sync_tenant, sync_app', table_name);
END
$$;

-- Keys that carry the organization (integration_owners: 026_integration_owners.sql). An id
-- found in the history under two organizations fails its key, and the migration with it: that
-- store already mixes tenants and needs an operator's eye before it can be keyed.
INSERT INTO organizations (organization_id, name, created_at)
SELECT DISTINCT organization_id, organization_id, now() FROM integration_owners
ON CONFLICT DO NOTHING;
ALTER TABLE integration_owners ADD CONSTRAINT integration_owners_organization_fk
    FOREIGN KEY (organization_id) REFERENCES organizations (organization_id);
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['alert_incidents', 'dead_letters', 'desired_changes', 'device_scan_seen', 'device_states', 'devices', 'event_failures', 'held_deletions', 'integration_check_results', 'integration_sync_log', 'integration_sync_state', 'provider_call_hours', 'sync_conflicts', 'sync_leases', 'telemetry_gaps', 'telemetry_sequences', 'webhook_events', 'integrations'] LOOP
        EXECUTE format(
            'ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (organization_id, integration_id) '
            'REFERENCES integration_owners (organization_id, integration_id)',
            t, t || '_owner_fk');
    END LOOP;
END
$$;

SELECT sync_enable_tenant_rls(c.table_name)
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
WHERE c.table_schema = current_schema() AND c.column_name = 'organization_id';

-- Tables that hold no tenant data: the migration ledger (read to check the schema is current)
-- and the providers' rate budgets (one per provider account, whatever the organization).
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO sync_app', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO sync_app', current_schema());
END
$$;
GRANT SELECT ON schema_migrations TO sync_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_budgets TO sync_app;

-- ---- The cross-tenant functions: the only ways the service reads or maintains across tenants.

-- Integrations across organizations: all, the enabled ones (of one provider), or one id's.
-- Dagster's partitions, schedules and sensors, the receiver (a delivery's URL names an
-- integration id, not its organization) and the service's health views read through it.
CREATE OR REPLACE FUNCTION sync_integrations_across_tenants(
    only_enabled boolean DEFAULT false,
    only_provider text DEFAULT NULL,
    only_integration text DEFAULT NULL
) RETURNS SETOF integrations
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT * FROM integrations
    WHERE (NOT only_enabled OR enabled)
      AND (only_provider IS NULL OR provider = only_provider)
      AND (only_integration IS NULL OR integration_id = only_integration)
    ORDER BY organization_id, integration_id
$$;

-- Every organization's id: the per-organization jobs (retention, alert evaluation, reports)
-- loop over them and do each one's work inside that organization.
CREATE OR REPLACE FUNCTION sync_organization_ids() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT organization_id FROM organizations ORDER BY organization_id
$$;

-- Activity-log partitions belong to no tenant: the service creates and drops them through
-- these, as their owner.
ALTER FUNCTION sync_ensure_activity_partitions(date, int) SECURITY DEFINER;

CREATE OR REPLACE FUNCTION sync_drop_activity_partition(partition_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    row_count bigint;
BEGIN
    IF partition_name !~ '^integration_activity_log_p[0-9]{6}$' THEN
        RAISE EXCEPTION 'sync_drop_activity_partition: % is not a monthly activity partition',
            partition_name;
    END IF;
    -- The month first (only its readers are waited for, with the parent free); callers bound
    -- every wait with lock_timeout.
    EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', partition_name);
    EXECUTE format('SELECT count(*) FROM %I', partition_name) INTO row_count;
    EXECUTE format('DROP TABLE %I', partition_name);
    RETURN row_count;
END
$$;

-- A SECURITY DEFINER function must not resolve names through a search_path its caller chose.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'sync_integrations_across_tenants(boolean, text, text)',
        'sync_organization_ids()',
        'sync_ensure_activity_partitions(date, int)',
        'sync_drop_activity_partition(text)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO sync_app', f);
    END LOOP;
END
$$;

-- The console reads as `sync_tenant` for an operator scoped to one organization (SET LOCAL ROLE).
GRANT sync_tenant TO sync_app;
