-- Row-level security: a second wall behind the organization filter every query already has.
--
-- Every table with an `organization_id` column gets a policy that shows and accepts only the
-- rows of the organization named by the session setting `sync.organization_id`:
--     SET sync.organization_id = 'acme';           -- or set_config(..., true) per transaction
-- A session that has not set it sees nothing and can write nothing.
--
-- The policies bind the role `sync_tenant` (NOLOGIN; grant it to an operator's login role,
-- e.g. the console's). The sync service itself runs as the tables' owner, which RLS does not
-- restrict: it works across organizations by design (partition sensor, schedules) and scopes
-- each query itself. Tables added by later migrations call sync_enable_tenant_rls(name).

-- Roles are cluster-wide while the migration lock is per database: two databases migrating at
-- once (parallel test workers, two deployments on one server) race to create it.
DO $$
BEGIN
    CREATE ROLE sync_tenant NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE OR REPLACE FUNCTION sync_enable_tenant_rls(table_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', table_name);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %I TO sync_tenant '
        'USING (organization_id = current_setting(''sync.organization_id'', true)) '
        'WITH CHECK (organization_id = current_setting(''sync.organization_id'', true))',
        table_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO sync_tenant', table_name);
END
$$;

SELECT sync_enable_tenant_rls(c.table_name)
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
WHERE c.table_schema = current_schema() AND c.column_name = 'organization_id';
