-- Row-level security for the table 016 added (see 007).
SELECT sync_enable_tenant_rls('provider_call_hours');
