-- Tenant policies read the organization setting once per query, not once per row: wrapped in a
-- scalar subquery, `current_setting()` becomes an InitPlan (PROVIDERS.md §7.4; a bare call in
-- a policy is evaluated for every row it filters). Same policies otherwise (007): every table
-- with an `organization_id` gets them again, and tables added later keep calling
-- sync_enable_tenant_rls(name).

CREATE OR REPLACE FUNCTION sync_enable_tenant_rls(table_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', table_name);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %I TO sync_tenant '
        'USING (organization_id = (SELECT current_setting(''sync.organization_id'', true))) '
        'WITH CHECK (organization_id = (SELECT current_setting(''sync.organization_id'', true)))',
        table_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO sync_tenant', table_name);
END
$$;

SELECT sync_enable_tenant_rls(c.table_name)
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
WHERE c.table_schema = current_schema() AND c.column_name = 'organization_id';
