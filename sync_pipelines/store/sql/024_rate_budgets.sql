-- One rate budget per provider account (providers/pacing.py): every worker thread of a sync and
-- every concurrent sync, on any process or host, paces its calls from this row.
--
-- `account` is provider + host + the credential's variable name: two integrations reading the
-- same variable on the same host are one account to the provider, whatever their organization
-- (the row holds no tenant data, so it has no organization_id and no row-level security).
-- Times are epoch seconds (DOUBLE PRECISION, not TIMESTAMPTZ): the row is read and written
-- about ten times a second per process and compared at millisecond grain on both engines.
--   next_at_s       GCRA: when the next unreserved request slot opens (a lease moves it on)
--   rate_rps        the pace now (AIMD); NULL = unpaced, nothing has been refused yet
--   ceiling_rps     the pace at the last 429 (or the configured limit): where probing slows
--   limit_rps       the configured limit of the last sync that leased (for operators)
--   paused_until_s  a Retry-After: nobody sends before it
--   version         compare-and-set: every write is `WHERE version = :seen`, then + 1
CREATE TABLE rate_budgets (
    account         TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    host            TEXT NOT NULL,
    credential_ref  TEXT NOT NULL,
    limit_rps       DOUBLE PRECISION,
    rate_rps        DOUBLE PRECISION,
    ceiling_rps     DOUBLE PRECISION,
    next_at_s       DOUBLE PRECISION NOT NULL,
    paused_until_s  DOUBLE PRECISION NOT NULL,
    decreased_at_s  DOUBLE PRECISION NOT NULL,
    increased_at_s  DOUBLE PRECISION NOT NULL,
    throttled_total BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
