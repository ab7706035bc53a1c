"""Data-quality checks on an integration's stored devices: one device stored twice under ids
differing only by case or surrounding spaces, one hardware id (MAC, IMEI) claimed by two devices,
and required fields (external id, name) that are empty. The reads are store/device_quality.py."""

from __future__ import annotations

from typing import Any

from sync_pipelines.checks.context import CheckContext
from sync_pipelines.checks.outcome import ERROR, WARN, CheckOutcome, failed, passed
from sync_pipelines.store.device_quality import (
    Collisions,
    external_id_collisions,
    hardware_id_collisions,
    required_fields,
)
from sync_pipelines.store.devices import count_devices

EXTERNAL_IDS_DISTINCT = "external_ids_distinct_ignoring_case"
HARDWARE_IDS_UNIQUE = "hardware_ids_claimed_once"
REQUIRED_FIELDS = "required_fields_present"

#: colliding ids named in a description
_EXAMPLES = 3


def _collision_outcome(
    ctx: CheckContext,
    name: str,
    found: Collisions,
    *,
    severity: str,
    figure_names: tuple[str, str],
    failure: str,
    success: str,
) -> CheckOutcome:
    """The outcome of a collision check: failed with `severity` when any key collides. The
    figures are the device count and `figure_names` = (colliding keys, devices involved)."""
    devices = count_devices(ctx.conn, ctx.organization_id, ctx.integration_id)
    keys_name, devices_name = figure_names
    figures: dict[str, Any] = {
        "devices": devices,
        keys_name: found.keys,
        devices_name: found.devices,
    }
    if found.keys:
        examples = ", ".join(repr(e) for e in found.examples)
        return failed(
            name,
            severity,
            failure.format(keys=found.keys, devices=found.devices) + f", e.g. {examples}",
            **figures,
        )
    return passed(name, f"{devices} devices, {success}", **figures)


def external_ids_distinct_ignoring_case(ctx: CheckContext) -> CheckOutcome:
    """Two stored devices whose ids differ only by case or spaces are almost always one device the
    provider (or a webhook) spelled two ways: an ERROR, every reading of it is split."""
    return _collision_outcome(
        ctx,
        EXTERNAL_IDS_DISTINCT,
        external_id_collisions(
            ctx.conn, ctx.organization_id, ctx.integration_id, examples=_EXAMPLES
        ),
        severity=ERROR,
        figure_names=("duplicate_ids", "duplicate_devices"),
        failure="{devices} devices share {keys} external id(s) differing only by case or spaces",
        success="no id differing only by case or spaces",
    )


def hardware_ids_claimed_once(ctx: CheckContext) -> CheckOutcome:
    """A hardware id claimed by two devices of one integration: a cloned or re-provisioned device.
    A WARN: it can be legitimate while a replacement is being commissioned."""
    return _collision_outcome(
        ctx,
        HARDWARE_IDS_UNIQUE,
        hardware_id_collisions(
            ctx.conn, ctx.organization_id, ctx.integration_id, examples=_EXAMPLES
        ),
        severity=WARN,
        figure_names=("shared_hardware_ids", "devices_sharing"),
        failure="{keys} hardware id(s) claimed by more than one device",
        success="every hardware id claimed once",
    )


def required_fields_present(ctx: CheckContext) -> CheckOutcome:
    """Every device has a non-empty external id (ERROR: it cannot be addressed) and name (WARN)."""
    found = required_fields(ctx.conn, ctx.organization_id, ctx.integration_id)
    devices, no_id, no_name = found.devices, found.missing_external_id, found.missing_name
    figures = dict(devices=devices, missing_external_id=no_id, missing_name=no_name)
    if no_id or no_name:
        return failed(
            REQUIRED_FIELDS,
            ERROR if no_id else WARN,
            f"of {devices} devices, {no_id} have an empty external id and {no_name} an empty name",
            **figures,
        )
    return passed(
        REQUIRED_FIELDS, f"all {devices} devices have an external id and a name", **figures
    )
