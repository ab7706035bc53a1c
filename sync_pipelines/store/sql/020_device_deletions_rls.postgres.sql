-- Row-level security for the tables 020 added (see 007).
SELECT sync_enable_tenant_rls('device_scan_seen');
SELECT sync_enable_tenant_rls('held_deletions');
