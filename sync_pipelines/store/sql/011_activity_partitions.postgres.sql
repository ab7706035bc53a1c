-- The activity log, partitioned by month (Postgres only): retention drops a whole month's
-- partition instead of deleting its rows one by one (SPEC §4.10, store/retention.py).
--
-- integration_activity_log becomes PARTITION BY RANGE (created_at), one partition per UTC month
-- named integration_activity_log_pYYYYMM, plus integration_activity_log_default for any row no
-- monthly partition covers (a far-off clock, a month not created yet), so an insert never fails.
-- The primary key becomes (id, created_at): a partitioned table's unique keys must contain the
-- partition key. Ids are UUIDs, so id alone stays unique in practice, and every write path
-- (COPY, INSERT, UPDATE ... WHERE organization_id = ? AND id = ?) works unchanged.
--
-- Partitions are created ahead: here (the months of the existing rows, the current month and two
-- ahead) and every day by the retention schedule, through sync_ensure_activity_partitions().
-- Creating a month whose rows already sit in the default partition moves them into it.
--
-- Row-level security (007) is enabled on the parent and on every partition as it is created, so
-- a tenant querying a partition directly is held to the same policy as through the parent.
--
-- Later migrations: CREATE INDEX on the parent reaches every partition (not CONCURRENTLY: that
-- is refused on a partitioned table), and a UNIQUE index must include created_at.

ALTER TABLE integration_activity_log RENAME TO integration_activity_log_unpartitioned;
ALTER INDEX integration_activity_log_pkey RENAME TO integration_activity_log_unpartitioned_pkey;

-- LIKE: exactly the columns (types, NOT NULLs, defaults) the log has at this point.
CREATE TABLE integration_activity_log (
    LIKE integration_activity_log_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE TABLE integration_activity_log_default PARTITION OF integration_activity_log DEFAULT;

-- The partition of the UTC month containing `month`; returns its name, or NULL if it exists.
CREATE OR REPLACE FUNCTION sync_create_activity_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', month::timestamp)::date;
    partition_name text := 'integration_activity_log_p' || to_char(first_day, 'YYYYMM');
    lower_bound timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (first_day + interval '1 month') AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- Created standalone and attached: ATTACH locks the parent less than CREATE ... PARTITION OF,
    -- and leaves room to move this month's rows out of the default partition first (ATTACH
    -- refuses a range the default partition still holds rows of).
    EXECUTE format(
        'CREATE TABLE %I (LIKE integration_activity_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        partition_name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM integration_activity_log_default '
        'WHERE created_at >= %L AND created_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
        lower_bound, upper_bound, partition_name);
    EXECUTE format(
        'ALTER TABLE integration_activity_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        partition_name, lower_bound, upper_bound);
    PERFORM sync_enable_tenant_rls(partition_name);
    RETURN partition_name;
END
$$;

-- The partitions of `from_month` and the `months_ahead` months after it; returns those created.
CREATE OR REPLACE FUNCTION sync_ensure_activity_partitions(from_month date, months_ahead int)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    created text;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 THEN
        RAISE EXCEPTION 'sync_ensure_activity_partitions: months_ahead must be 0 or more, got %',
            months_ahead;
    END IF;
    FOR i IN 0..months_ahead LOOP
        created := sync_create_activity_partition((from_month + make_interval(months => i))::date);
        IF created IS NOT NULL THEN
            RETURN NEXT created;
        END IF;
    END LOOP;
END
$$;

SELECT sync_create_activity_partition(month)
FROM (
    SELECT DISTINCT (date_trunc('month', created_at AT TIME ZONE 'UTC'))::date AS month
    FROM integration_activity_log_unpartitioned
) AS existing_months;
SELECT sync_ensure_activity_partitions((now() AT TIME ZONE 'UTC')::date, 2);

INSERT INTO integration_activity_log SELECT * FROM integration_activity_log_unpartitioned;
DROP TABLE integration_activity_log_unpartitioned;

-- The indexes of 001_core.sql, on the parent: each partition gets its own.
CREATE INDEX activity_org_integration_created_idx
    ON integration_activity_log (organization_id, integration_id, created_at);
CREATE INDEX activity_request_id_idx ON integration_activity_log (request_id);
CREATE INDEX activity_run_id_idx ON integration_activity_log (run_id);
CREATE INDEX activity_parent_id_idx ON integration_activity_log (parent_id);

SELECT sync_enable_tenant_rls('integration_activity_log');
SELECT sync_enable_tenant_rls('integration_activity_log_default');
