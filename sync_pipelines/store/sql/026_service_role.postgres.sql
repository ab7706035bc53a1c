-- Tenancy enforced by Postgres for the sync service itself (docs/deployment.md, "Tenancy and
-- row-level security").
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
-- The operator console's role for operators who see every organization: reads only, all
-- tenants (console/access.py takes it with SET LOCAL ROLE in a read-only transaction). The
-- console's login is a member; the service's is not.
DO $$
BEGIN
    CREATE ROLE sync_operator NOLOGIN NOSUPERUSER NOBYPASSRLS;
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
    EXECUTE format('DROP POLICY IF EXISTS operator_read ON %I', table_name);
    EXECUTE format('CREATE POLICY operator_read ON %I FOR SELECT TO sync_operator USING (true)',
        table_name);
    EXECUTE format('GRANT SELECT ON %I TO sync_operator', table_name);
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
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO sync_app, sync_operator', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO sync_app', current_schema());
END
$$;
GRANT SELECT ON schema_migrations TO sync_app, sync_operator;
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

-- Those of `run_ids` whose sync is known dead (store/sync_leases.py runs_known_dead): the poll
-- schedules and the stale-sync sensor ask it of Dagster runs, which carry no organization.
CREATE OR REPLACE FUNCTION sync_runs_known_dead(run_ids text[], at timestamptz)
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT holder_run_id FROM sync_leases
    WHERE holder_run_id = ANY(run_ids) AND holder_host IS NOT NULL AND expires_at < at
    UNION
    SELECT run_id FROM integration_sync_log WHERE run_id = ANY(run_ids) AND status = 'abandoned'
$$;

-- The webhook inbox sensor's two reads (store/webhook_events.py): pending events of enabled
-- integrations past its cursor, and events overdue (pending too long, or claimed by a run whose
-- lease ran out), in inbox order. Positions only: the runs they start read the events scoped.
CREATE OR REPLACE FUNCTION sync_pending_webhook_events(
    after_at timestamptz, after_id text, row_limit int
) RETURNS TABLE (id text, organization_id text, integration_id text, received_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT e.id, e.organization_id, e.integration_id, e.received_at FROM webhook_events e
    JOIN integrations i ON i.integration_id = e.integration_id
     AND i.organization_id = e.organization_id AND i.enabled
    WHERE e.status = 'pending'
      AND (after_at IS NULL OR e.received_at > after_at
           OR (e.received_at = after_at AND e.id > after_id))
    ORDER BY e.received_at, e.id LIMIT row_limit
$$;

CREATE OR REPLACE FUNCTION sync_overdue_webhook_events(
    received_before timestamptz, claimed_before timestamptz, row_limit int
) RETURNS TABLE (id text, organization_id text, integration_id text, received_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT e.id, e.organization_id, e.integration_id, e.received_at FROM webhook_events e
    JOIN integrations i ON i.integration_id = e.integration_id
     AND i.organization_id = e.organization_id AND i.enabled
    WHERE (e.status = 'pending' AND e.received_at < received_before)
       OR (e.status = 'processing' AND e.claimed_at < claimed_before)
    ORDER BY e.received_at, e.id LIMIT row_limit
$$;

-- The service's own queues across tenants, per provider and status (monitoring/queue_depths.py:
-- /metrics and the system-wide health check): the webhook inbox or the dead letters.
CREATE OR REPLACE FUNCTION sync_queue_counts(queue text, statuses text[])
RETURNS TABLE (provider text, status text, rows bigint, oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    IF queue = 'webhook_events' THEN
        RETURN QUERY SELECT e.provider, e.status, count(*), min(e.received_at)
            FROM webhook_events e WHERE e.status = ANY(statuses) GROUP BY e.provider, e.status;
    ELSIF queue = 'dead_letters' THEN
        RETURN QUERY SELECT d.provider, d.status, count(*), NULL::timestamptz
            FROM dead_letters d WHERE d.status = ANY(statuses) GROUP BY d.provider, d.status;
    ELSE
        RAISE EXCEPTION 'sync_queue_counts: % is not a queue', queue;
    END IF;
END
$$;

-- The calls of several organizations' integrations together (reports/integration_report.py, a
-- report over every organization): calls, failed, average and exact p95 latency. The pairs
-- (organization, integration) come as two arrays; which activity types are calls and which
-- statuses failed come from the caller (store/provider_calls.py), so they live in one place.
CREATE OR REPLACE FUNCTION sync_call_totals(
    organization_ids text[], integration_ids text[], call_types text[], error_statuses text[],
    period_start timestamptz, period_end timestamptz
) RETURNS TABLE (calls bigint, failed bigint, avg_ms double precision, p95_ms double precision)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT count(*), coalesce(sum(CASE WHEN a.status = ANY(error_statuses) THEN 1 ELSE 0 END), 0),
           avg(a.response_time_ms),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY a.response_time_ms)
    FROM unnest(organization_ids, integration_ids) AS s(organization_id, integration_id)
    JOIN integration_activity_log a
      ON a.organization_id = s.organization_id AND a.integration_id = s.integration_id
    WHERE a.created_at >= period_start AND a.created_at < period_end
      AND a.activity_type = ANY(call_types)
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
        'sync_runs_known_dead(text[], timestamptz)',
        'sync_pending_webhook_events(timestamptz, text, int)',
        'sync_overdue_webhook_events(timestamptz, timestamptz, int)',
        'sync_queue_counts(text, text[])',
        'sync_call_totals(text[], text[], text[], text[], timestamptz, timestamptz)',
        'sync_ensure_activity_partitions(date, int)',
        'sync_drop_activity_partition(text)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO sync_app', f);
        -- the console's view of every organization reads through the same ones (not the
        -- partition maintenance)
        IF f NOT LIKE '%activity_partition%' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO sync_operator', f);
        END IF;
    END LOOP;
END
$$;
