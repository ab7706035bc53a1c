-- Row-level security for the table 019 added (see 007).
SELECT sync_enable_tenant_rls('sync_leases');
