"""Data-quality checks on an integration's stored devices: one device stored twice under ids
differing only by case or surrounding spaces, one hardware id (MAC, IMEI) claimed by two devices,
and required fields (external id, name) that are empty. The reads are store/device_quality.py."""

from __future__ import annotations

from collections.abc import Callable
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


def _collisions(ctx: CheckContext, read: Callable[..., Collisions]) -> tuple[int, int, list[str]]:
    """(colliding keys, devices involved, a few example keys) of one of the store's readers."""
    found = read(ctx.conn, ctx.organization_id, ctx.integration_id, examples=_EXAMPLES)
    return found.keys, found.devices, found.examples


def _device_count(ctx: CheckContext) -> int:
    return count_devices(ctx.conn, ctx.organization_id, ctx.integration_id)


def external_ids_distinct_ignoring_case(ctx: CheckContext) -> CheckOutcome:
    """Two stored devices whose ids differ only by case or spaces are almost always one device the
    provider (or a webhook) spelled two ways: an ERROR, every reading of it is split."""
    keys, rows, examples = _collisions(ctx, external_id_collisions)
    figures: dict[str, Any] = dict(
        devices=_device_count(ctx), duplicate_ids=keys, duplicate_devices=rows
    )
    if keys:
        return failed(
            EXTERNAL_IDS_DISTINCT,
            ERROR,
            f"{rows} devices share {keys} external id(s) differing only by case or spaces, e.g. "
            f"{', '.join(repr(e) for e in examples)}",
            **figures,
        )
    return passed(
        EXTERNAL_IDS_DISTINCT,
        f"{figures['devices']} devices, no id differing only by case or spaces",
        **figures,
    )


def hardware_ids_claimed_once(ctx: CheckContext) -> CheckOutcome:
    """A hardware id claimed by two devices of one integration: a cloned or re-provisioned device.
    A WARN: it can be legitimate while a replacement is being commissioned."""
    keys, rows, examples = _collisions(ctx, hardware_id_collisions)
    figures: dict[str, Any] = dict(
        devices=_device_count(ctx), shared_hardware_ids=keys, devices_sharing=rows
    )
    if keys:
        return failed(
            HARDWARE_IDS_UNIQUE,
            WARN,
            f"{keys} hardware id(s) claimed by more than one device, e.g. "
            f"{', '.join(repr(e) for e in examples)}",
            **figures,
        )
    return passed(
        HARDWARE_IDS_UNIQUE,
        f"{figures['devices']} devices, every hardware id claimed once",
        **figures,
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
