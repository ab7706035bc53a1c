-- Row-level security and the owner key for the table 028 added (see 026_service_role): the
-- tenant policies of every tenant table, and (organization_id, integration_id) references
-- integration_owners, so a row cannot name another organization's integration.
SELECT sync_enable_tenant_rls('integration_shapes');
ALTER TABLE integration_shapes ADD CONSTRAINT integration_shapes_owner_fk
    FOREIGN KEY (organization_id, integration_id)
    REFERENCES integration_owners (organization_id, integration_id);
