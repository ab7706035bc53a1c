-- Row-level security for the tables 008 and 009 added (see 007).
SELECT sync_enable_tenant_rls('alert_incidents');
SELECT sync_enable_tenant_rls('alert_notifications');
SELECT sync_enable_tenant_rls('integration_check_results');
