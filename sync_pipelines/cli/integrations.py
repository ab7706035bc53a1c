"""`sync-pipelines integrations`: register, change, enable, disable, remove and list an
organization's integrations, and accept a shape change a sync found (`accept-shape`). Every change is checked by the typed settings
(providers/settings.py) before anything is written; a refusal names the setting and exits 1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from sync_pipelines.cli.context import cli_actor, open_store

_ORGANIZATION = click.option("--organization", "organization_id", required=True)
_ID = click.option("--id", "integration_id", required=True)
_SETTING = click.option(
    "--setting",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Non-secret setting (JSON-valued ones as JSON text, e.g. monitoring='{...}').",
)
_SECRET_ENV = click.option(
    "--secret-env",
    "secret_refs",
    multiple=True,
    metavar="SECRET=ENV_VAR",
    help="Name of the environment variable holding a secret (never the secret).",
)


def _options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(fn: Any) -> Any:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


@click.group()
def integrations() -> None:
    """Register, change and list integrations."""


@contextmanager
def _refusals() -> Iterator[None]:
    """A configuration problem is the command's error message (exit 1), not a traceback."""
    from sync_pipelines.errors import ConfigError

    try:
        yield
    except (ConfigError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from exc


@integrations.command("add")
@_options(_ORGANIZATION, _ID)
@click.option("--provider", required=True)
@click.option("--name", default=None)
@_options(_SETTING, _SECRET_ENV)
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=int,
    default=None,
    help="Seconds between polls (default: 300).",
)
@click.option("--disabled", is_flag=True)
@click.option("--replace", is_flag=True, help="Replace the integration if the id exists.")
def integrations_add(
    organization_id: str,
    integration_id: str,
    provider: str,
    name: str | None,
    settings: tuple[str, ...],
    secret_refs: tuple[str, ...],
    poll_interval_s: int | None,
    disabled: bool,
    replace: bool,
) -> None:
    """Register an integration; an id already registered is refused unless --replace."""
    from sync_pipelines.store.integrations import DEFAULT_POLL_INTERVAL_S, Integration
    from sync_pipelines.sync.integration_config import register_integration

    integration = Integration(
        integration_id=integration_id,
        organization_id=organization_id,
        provider=provider,
        name=name or integration_id,
        settings=_pairs(settings, "--setting"),
        secret_refs=_secret_pairs(secret_refs),
        enabled=not disabled,
        poll_interval_s=DEFAULT_POLL_INTERVAL_S if poll_interval_s is None else poll_interval_s,
    )
    with _refusals():
        register_integration(
            open_store(writes=True), integration, replace=replace, audit=True, actor=cli_actor()
        )
    click.echo(
        f"{'replaced' if replace else 'saved'} integration {integration_id} ({provider}) "
        f"for organization {organization_id}"
    )


@integrations.command("update")
@_options(_ORGANIZATION, _ID)
@click.option("--name", default=None)
@_options(_SETTING, _SECRET_ENV)
@click.option("--unset", "unset_settings", multiple=True, metavar="KEY", help="Remove a setting.")
@click.option(
    "--unset-secret", "unset_secrets", multiple=True, metavar="SECRET", help="Remove a reference."
)
@click.option("--poll-interval", "poll_interval_s", type=int, default=None)
def integrations_update(
    organization_id: str,
    integration_id: str,
    name: str | None,
    settings: tuple[str, ...],
    secret_refs: tuple[str, ...],
    unset_settings: tuple[str, ...],
    unset_secrets: tuple[str, ...],
    poll_interval_s: int | None,
) -> None:
    """Change an integration's name, settings, secret references or poll interval (merged into
    what it has, checked as `add` checks them)."""
    from sync_pipelines.sync.integration_config import update_integration

    changes = {
        "settings": _pairs(settings, "--setting"),
        "secret_refs": _secret_pairs(secret_refs),
    }
    with _refusals():
        update_integration(
            open_store(writes=True),
            organization_id,
            integration_id,
            name=name,
            unset_settings=unset_settings,
            unset_secrets=unset_secrets,
            poll_interval_s=poll_interval_s,
            actor=cli_actor(),
            **changes,
        )
    click.echo(f"updated integration {integration_id} for organization {organization_id}")


@integrations.command("enable")
@_options(_ORGANIZATION, _ID)
def integrations_enable(organization_id: str, integration_id: str) -> None:
    """Let schedules and sensors sync the integration again."""
    _set_enabled(organization_id, integration_id, True)


@integrations.command("disable")
@_options(_ORGANIZATION, _ID)
def integrations_disable(organization_id: str, integration_id: str) -> None:
    """Stop syncing the integration (its configuration and history are kept)."""
    _set_enabled(organization_id, integration_id, False)


def _set_enabled(organization_id: str, integration_id: str, enabled: bool) -> None:
    from sync_pipelines.sync.integration_config import update_integration

    with _refusals():
        update_integration(
            open_store(writes=True),
            organization_id,
            integration_id,
            enabled=enabled,
            actor=cli_actor(),
        )
    state = "enabled" if enabled else "disabled"
    click.echo(f"{state} integration {integration_id} for organization {organization_id}")


@integrations.command("accept-shape")
@_options(_ORGANIZATION, _ID)
def integrations_accept_shape(organization_id: str, integration_id: str) -> None:
    """Accept the shape change a sync found in the devices' attributes or state: the check
    device_shape_stable passes again and the shape_drift alert is resolved (the new shape is
    already the one the next sync compares with). A paused integration is resumed with
    `integrations enable`, which accepts its change too."""
    from sync_pipelines.errors import ConfigError
    from sync_pipelines.store.integrations import get_integration
    from sync_pipelines.sync.shape_drift import accept_shape_changes

    store = open_store(writes=True)
    with _refusals():
        with store.scoped(organization_id).transaction() as conn:
            integration = get_integration(conn, organization_id, integration_id)
        if integration is None:
            raise ConfigError(
                integration_id, f"no such integration in organization {organization_id!r}"
            )
        accepted = accept_shape_changes(store, integration, by=cli_actor())
    if accepted:
        click.echo(f"accepted the shape change of {accepted} stream(s) of {integration_id}")
    else:
        click.echo(f"integration {integration_id} has no shape change to accept")


@integrations.command("remove")
@_options(_ORGANIZATION, _ID)
@click.option("--yes", is_flag=True, help="Confirm the removal.")
def integrations_remove(organization_id: str, integration_id: str, yes: bool) -> None:
    """Remove an integration's configuration. Its history (sync logs, activity, devices, dead
    letters) is kept; adding the id again carries on from it."""
    from sync_pipelines.sync.integration_config import remove_integration

    if not yes:
        raise click.ClickException(
            f"removing integration {integration_id} stops its syncs and deletes its "
            "configuration (its history is kept); run again with --yes to confirm"
        )
    with _refusals():
        remove_integration(
            open_store(writes=True), organization_id, integration_id, actor=cli_actor()
        )
    click.echo(
        f"removed integration {integration_id} from organization {organization_id} "
        "(its sync logs and activity are kept)"
    )


@integrations.command("list")
@click.option("--organization", "organization_id", required=True)
def integrations_list(organization_id: str) -> None:
    from sync_pipelines.store.integrations import list_integrations

    with open_store(writes=False, organization_id=organization_id).connect() as conn:
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
            # not echoed: a value without its key may well be a pasted credential
            raise click.BadParameter(
                "must be KEY=VALUE; one given has no `=` (not shown)", param_hint=option
            )
        pairs[key] = value
    return pairs


def _secret_pairs(items: tuple[str, ...]) -> dict[str, str]:
    """`--secret-env SECRET=ENV_VAR` pairs; what is given is never printed back (a pasted
    secret would be)."""
    from sync_pipelines.providers.settings import is_env_var_name, secret_ref_refusal

    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.isidentifier():
            raise click.BadParameter(
                "must be SECRET=ENV_VAR, e.g. api_key=GOLIOTH_API_KEY (the value given is not "
                "shown)",
                param_hint="--secret-env",
            )
        if not is_env_var_name(value):
            raise click.BadParameter(secret_ref_refusal(key), param_hint="--secret-env")
        pairs[key] = value
    return pairs
