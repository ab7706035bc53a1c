"""Row-level security on Postgres: a tenant role sees and writes only its organization's rows,
in every tenant table, and nothing at all until it says which organization it is."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa

from sync_pipelines.store.database import Store
from sync_pipelines.store.desired import request_desired_change
from sync_pipelines_tests.conftest import _truncate_all


@pytest.fixture
def pg_store(postgres_url) -> Store:
    store = Store(postgres_url)
    _truncate_all(store)
    yield store
    store.dispose()


@pytest.fixture
def tenant_url(postgres_url) -> str:
    """A login role that is a member of sync_tenant (created for this test, dropped after)."""
    role = f"tenant_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE sync_tenant")
    try:
        yield postgres_url.replace("postgres@", f"{role}@", 1)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def _tenant_tables(store: Store) -> list[str]:
    with store.connect() as conn:
        return sorted(
            conn.execute(
                sa.text(
                    "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
                    "ON t.table_name = c.table_name AND t.table_schema = c.table_schema AND t.table_type = 'BASE TABLE' "
                    "WHERE c.table_schema = 'public' AND c.column_name = 'organization_id'"
                )
            ).scalars()
        )


def _seed_two_organizations(store: Store, golioth, register_golioth, open_session) -> None:
    from sync_pipelines.sync.device_states import sync_device_states
    from sync_pipelines.sync.inventory import sync_devices

    for org in ("org-a", "org-b"):
        integ = register_golioth(
            store, golioth, organization_id=org, integration_id=f"golioth-{org}"
        )
        with open_session(store, integ.integration_id) as session:
            sync_devices(session)
            sync_device_states(session)
        with store.transaction() as conn:
            request_desired_change(
                conn, org, integ.integration_id, next(golioth.emulator.device_ids()), {"x": 1}
            )


def test_every_tenant_table_has_row_level_security_enabled(pg_store):
    tables = _tenant_tables(pg_store)
    assert {
        "devices",
        "integration_activity_log",
        "desired_changes",
        "device_telemetry",
        "event_failures",
    } <= set(tables)
    with pg_store.connect() as conn:
        unprotected = (
            conn.execute(
                sa.text(
                    "SELECT relname FROM pg_class WHERE relname = ANY(:t) AND NOT relrowsecurity"
                ),
                {"t": tables},
            )
            .scalars()
            .all()
        )
        policies = set(
            conn.execute(
                sa.text("SELECT tablename FROM pg_policies WHERE policyname = 'tenant_isolation'")
            ).scalars()
        )
    assert unprotected == []
    assert policies == set(tables)


def test_a_tenant_sees_only_its_organization_and_nothing_unscoped(
    pg_store, tenant_url, golioth, register_golioth, open_session
):
    _seed_two_organizations(pg_store, golioth, register_golioth, open_session)
    tables = _tenant_tables(pg_store)
    with psycopg.connect(tenant_url, autocommit=True) as tenant:
        for table in tables:  # before saying who it is: nothing
            assert tenant.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        tenant.execute("SET sync.organization_id = 'org-a'")
        for table in tables:
            other = tenant.execute(
                f"SELECT count(*) FROM {table} WHERE organization_id <> 'org-a'"
            ).fetchone()[0]
            assert other == 0, f"{table} shows another organization's rows"
        assert (
            tenant.execute("SELECT count(*) FROM devices").fetchone()[0]
            == golioth.emulator.device_count
        )
        assert tenant.execute("SELECT count(*) FROM integration_activity_log").fetchone()[0] > 0


def test_a_tenant_cannot_write_or_change_another_organizations_rows(
    pg_store, tenant_url, golioth, register_golioth, open_session
):
    _seed_two_organizations(pg_store, golioth, register_golioth, open_session)
    with psycopg.connect(tenant_url, autocommit=True) as tenant:
        tenant.execute("SET sync.organization_id = 'org-a'")
        updated = tenant.execute(
            "UPDATE devices SET name = 'hijacked' WHERE organization_id = 'org-b'"
        )
        assert updated.rowcount == 0
        deleted = tenant.execute("DELETE FROM desired_changes WHERE organization_id = 'org-b'")
        assert deleted.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            tenant.execute(
                "INSERT INTO organizations (organization_id, name, created_at) VALUES ('org-b2', 'x', now())"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            tenant.execute(
                "UPDATE devices SET organization_id = 'org-b' WHERE organization_id = 'org-a'"
            )
    with pg_store.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM devices WHERE name = 'hijacked'")
            ).scalar_one()
            == 0
        )
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM desired_changes WHERE organization_id = 'org-b'")
            ).scalar_one()
            == 1
        )


def test_the_policy_reads_the_organization_once_per_query_as_an_initplan(pg_store, tenant_url):
    # a bare current_setting() in a policy is evaluated for every row; wrapped in a subquery it
    # is an InitPlan, read once (migration 025)
    with psycopg.connect(tenant_url) as conn, conn.transaction():
        conn.execute("SELECT set_config('sync.organization_id', 'org-a', true)")
        plan = "\n".join(
            row[0] for row in conn.execute("EXPLAIN (VERBOSE) SELECT * FROM devices WHERE enabled")
        )
    # "InitPlan 1 (returns $0)" computes current_setting() once; the scan compares with $0 —
    # and, a constant now, it can use the organization's index
    assert "InitPlan 1" in plan and plan.count("current_setting(") == 1, plan
    assert "organization_id = $0" in plan, plan
