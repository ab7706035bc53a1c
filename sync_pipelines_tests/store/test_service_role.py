"""The sync service as Postgres's `sync_app` role (sql/026): it owns nothing, cannot bypass row
security, sees one organization per transaction (`Store.scoped`), and reaches across tenants
only through the named functions. Syncs and registrations run as that role here, end to end."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from sync_pipelines.store.database import Store
from sync_pipelines.store.integrations import (
    Integration,
    find_integration_owner,
    list_every_integration,
    organization_ids,
)
from sync_pipelines.store.migrations import migrate, migrations_for
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import register_integration, remove_integration
from sync_pipelines.sync.inventory import sync_devices


def _tenant_tables(conn: sa.Connection) -> list[str]:
    return sorted(
        conn.execute(
            sa.text(
                "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
                "ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
                "AND t.table_type = 'BASE TABLE' "
                "WHERE c.table_schema = 'public' AND c.column_name = 'organization_id'"
            )
        ).scalars()
    )


@pytest.fixture
def two_synced_organizations(service_store, golioth, register_golioth, open_session) -> Store:
    """org-a and org-b each registered and synced (devices and states) by the service role."""
    for org in ("org-a", "org-b"):
        integration = register_golioth(
            service_store, golioth, organization_id=org, integration_id=f"golioth-{org}"
        )
        with open_session(service_store, integration.integration_id) as session:
            assert sync_devices(session).status == "success"
            assert sync_device_states(session).status == "success"
    return service_store


def test_the_service_role_owns_nothing_and_cannot_bypass_row_security(service_store):
    with service_store.connect() as conn:
        super_, bypass = conn.execute(
            sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        owned = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_class WHERE relowner = "
                "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
            )
        ).scalar_one()
    assert (super_, bypass, owned) == (False, False, 0)


def test_every_tenant_table_forces_row_level_security_with_the_once_read_policy(owner_store):
    with owner_store.connect() as conn:
        tables = _tenant_tables(conn)
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                "pg_get_expr(p.polqual, p.polrelid) FROM pg_class c "
                "JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = 'tenant_isolation' "
                "WHERE c.relname = ANY(:t)"
            ),
            {"t": tables},
        ).all()
    assert {r[0] for r in rows} == set(tables)
    assert "integration_owners" in tables and "devices" in tables
    for name, enabled, forced, qual in rows:
        assert enabled and forced, name
        assert "( SELECT current_setting('sync.organization_id'::text, true)" in qual, (name, qual)


def test_a_query_without_its_organization_filter_returns_nothing_of_another_tenant(
    two_synced_organizations,
):
    service = two_synced_organizations
    with service.scoped("org-a").connect() as conn:
        tables = _tenant_tables(conn)
        seen = {
            t: set(conn.execute(sa.text(f"SELECT DISTINCT organization_id FROM {t}")).scalars())
            for t in tables
        }
        devices = conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one()
    assert all(orgs <= {"org-a"} for orgs in seen.values()), seen
    assert seen["devices"] == seen["device_states"] == seen["integration_activity_log"] == {"org-a"}
    assert devices == 250
    # and a transaction that names no organization sees no tenant's rows at all
    with service.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 0
    with service.scoped("org-b").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 250


def test_the_service_cannot_write_a_row_of_another_organization(two_synced_organizations):
    service = two_synced_organizations
    with (
        pytest.raises(DBAPIError, match="row-level security"),
        service.scoped("org-a").transaction() as conn,
    ):
        conn.execute(
            sa.text("UPDATE devices SET organization_id = 'org-b' WHERE organization_id = 'org-a'")
        )
    with service.scoped("org-a").transaction() as conn:
        # another tenant's rows are not there to update or delete
        assert (
            conn.execute(sa.text("DELETE FROM devices WHERE organization_id = 'org-b'")).rowcount
            == 0
        )
    with service.scoped("org-b").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 250


def test_the_organization_is_set_per_transaction_and_never_outlives_it(service_store):
    # one pooled connection: a scoped transaction, then an unscoped one on the same connection
    single = Store(
        service_store.url.replace("postgresql+psycopg", "postgresql"), pool_size=1, max_overflow=0
    )
    try:
        with single.scoped("org-a").transaction() as conn:
            assert (
                conn.execute(
                    sa.text("SELECT current_setting('sync.organization_id', true)")
                ).scalar()
                == "org-a"
            )
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with single.scoped("org-a").connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            conn.commit()  # a new transaction on the same connection is scoped again
            assert (
                conn.execute(
                    sa.text("SELECT current_setting('sync.organization_id', true)")
                ).scalar()
                == "org-a"
            )
        with single.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() == pid
            assert conn.execute(
                sa.text("SELECT current_setting('sync.organization_id', true)")
            ).scalar() in ("", None)
    finally:
        single.dispose()


def test_a_cross_tenant_foreign_key_fails_even_for_the_owner(two_synced_organizations, owner_store):
    """Row security does not reach integrity checks: the keys carry the organization."""
    # the owner bypasses row security; the key does not
    with pytest.raises(IntegrityError, match="devices_owner_fk"), owner_store.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO devices (organization_id, integration_id, external_id, name, "
                "hardware_ids, tags, attributes, content_hash, created_at, updated_at) VALUES "
                "('org-a', 'golioth-org-b', 'intruder', 'x', '[]', '[]', '{}', 'h', now(), now())"
            )
        )
    with (
        pytest.raises(IntegrityError, match="integration_owner"),
        owner_store.transaction() as conn,
    ):
        conn.execute(
            sa.text(
                "UPDATE integrations SET organization_id = 'org-a' "
                "WHERE integration_id = 'golioth-org-b'"
            )
        )


def test_an_integration_id_stays_its_organizations_after_its_configuration_is_removed(
    two_synced_organizations,
):
    service = two_synced_organizations
    remove_integration(service, "org-b", "golioth-org-b")
    with service.connect() as conn:
        assert find_integration_owner(conn, "golioth-org-b") is None
    taken = Integration(
        integration_id="golioth-org-b",
        organization_id="org-a",
        provider="golioth",
        name="squatter",
        settings={"base_url": "http://127.0.0.1:1", "project_id": "p"},
        secret_refs={"api_key": "TEST_GOLIOTH_API_KEY"},
    )
    with pytest.raises(PermissionError, match="belongs to another organization"):
        register_integration(service, taken)
    with service.scoped("org-a").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 250


def test_the_named_functions_are_the_way_across_tenants(two_synced_organizations):
    service = two_synced_organizations
    with service.connect() as conn:
        assert [i.integration_id for i in list_every_integration(conn)] == [
            "golioth-org-a",
            "golioth-org-b",
        ]
        assert organization_ids(conn) == ["org-a", "org-b"]
        assert find_integration_owner(conn, "golioth-org-b").organization_id == "org-b"
        granted = set(
            conn.execute(
                sa.text(
                    "SELECT p.proname FROM pg_proc p WHERE p.prosecdef "
                    "AND has_function_privilege(current_user, p.oid, 'EXECUTE') "
                    "AND p.pronamespace = 'public'::regnamespace"
                )
            ).scalars()
        )
    assert granted == {
        "sync_integrations_across_tenants",
        "sync_organization_ids",
        "sync_runs_known_dead",
        "sync_pending_webhook_events",
        "sync_overdue_webhook_events",
        "sync_queue_counts",
        "sync_call_totals",
        "sync_ensure_activity_partitions",
        "sync_drop_activity_partition",
        # the devices' history partitions (sql/027), like the activity log's
        "sync_ensure_device_change_partitions",
        "sync_drop_device_change_partition",
    }


def test_the_policy_reads_the_setting_once_per_query_as_the_service(two_synced_organizations):
    with two_synced_organizations.scoped("org-a").connect() as conn:
        plan = "\n".join(
            conn.execute(sa.text("EXPLAIN SELECT * FROM devices WHERE name <> ''")).scalars()
        )
    assert "InitPlan" in plan, plan


def test_a_non_superuser_owner_migrates_and_the_service_role_works_on_what_it_built(
    postgres_url, golioth, register_golioth, open_session
):
    """The setup docs/deployment.md describes: a CREATEROLE BYPASSRLS owner (not a superuser)
    migrates a new database; a login in sync_app then syncs on it."""
    suffix = uuid.uuid4().hex[:8]
    owner_role, service_role, database = f"owner_{suffix}", f"svc_{suffix}", f"owned_{suffix}"
    admin_url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {owner_role} LOGIN CREATEROLE BYPASSRLS")
        admin.execute(f'CREATE DATABASE "{database}" OWNER {owner_role}')
    base = admin_url.rsplit("/", 1)[0].replace("postgres@", f"{owner_role}@", 1)
    try:
        owner = Store(f"{base}/{database}")
        applied = migrate(owner)
        owner.dispose()
        # every migration, the service role's and those after it (028's row security too)
        assert "026_service_role.postgres.sql" in applied
        assert applied[-1] == migrations_for("postgresql")[-1].version
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {service_role} LOGIN IN ROLE sync_app")
        service = Store(f"{base.replace(owner_role, service_role)}/{database}")
        try:
            integration = register_golioth(service, golioth)
            with open_session(service, integration.integration_id) as session:
                assert sync_devices(session).status == "success"
            with service.scoped(integration.organization_id).connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar_one() == 250
        finally:
            service.dispose()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f"DROP ROLE IF EXISTS {service_role}")
            admin.execute(f"DROP ROLE IF EXISTS {owner_role}")


def test_migrate_as_the_service_role_says_to_run_it_as_the_owner(service_role_url, postgres_url):
    """The service role cannot create the schema: one line naming what to do, no traceback."""
    from click.testing import CliRunner

    from sync_pipelines.cli import main

    database = f"empty_{uuid.uuid4().hex[:8]}"
    admin_url = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        url = service_role_url.rsplit("/", 1)[0] + f"/{database}"
        result = CliRunner().invoke(main, ["migrate", "--database-url", url])
        assert result.exit_code == 1, result.output
        assert "this role may not create the schema" in result.output
        assert "run `sync-pipelines migrate` as the tables' owner" in result.output
        assert "Traceback" not in result.output
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
