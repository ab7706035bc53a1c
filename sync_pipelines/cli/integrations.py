"""`sync-pipelines integrations`: register and list an organization's integrations."""

from __future__ import annotations

import click

from sync_pipelines.cli.context import open_store


@click.group()
def integrations() -> None:
    """Register and list integrations."""


@integrations.command("add")
@click.option("--organization", "organization_id", required=True)
@click.option("--id", "integration_id", required=True)
@click.option("--provider", required=True)
@click.option("--name", default=None)
@click.option(
    "--setting", "settings", multiple=True, metavar="KEY=VALUE", help="Non-secret setting."
)
@click.option(
    "--secret-env",
    "secret_refs",
    multiple=True,
    metavar="SECRET=ENV_VAR",
    help="Name of the environment variable holding a secret (never the secret).",
)
@click.option("--poll-interval", "poll_interval_s", type=int, default=300, show_default=True)
@click.option("--disabled", is_flag=True)
def integrations_add(
    organization_id: str,
    integration_id: str,
    provider: str,
    name: str | None,
    settings: tuple[str, ...],
    secret_refs: tuple[str, ...],
    poll_interval_s: int,
    disabled: bool,
) -> None:
    from sync_pipelines.errors import ConfigError
    from sync_pipelines.store.integrations import Integration
    from sync_pipelines.sync.integration_config import register_integration

    store = open_store(writes=True)
    try:
        register_integration(
            store,
            Integration(
                integration_id=integration_id,
                organization_id=organization_id,
                provider=provider,
                name=name or integration_id,
                settings=_pairs(settings, "--setting"),
                secret_refs=_pairs(secret_refs, "--secret-env"),
                enabled=not disabled,
                poll_interval_s=poll_interval_s,
            ),
        )
    except (ConfigError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"saved integration {integration_id} ({provider}) for organization {organization_id}"
    )


@integrations.command("list")
@click.option("--organization", "organization_id", required=True)
def integrations_list(organization_id: str) -> None:
    from sync_pipelines.store.integrations import list_integrations

    with open_store(writes=False).connect() as conn:
        for i in list_integrations(conn, organization_id):
            state = "enabled" if i.enabled else "disabled"
            click.echo(
                f"{i.integration_id}\t{i.provider}\t{state}\tpoll={i.poll_interval_s}s\t{i.name}"
            )


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = value
    return pairs
