"""The devices section of an integration's console page (and its JSON API): a search by id or
name, a filter (all / active / deleted / failing) with each filter's count, one keyset page of
devices in id order, each with when it last changed, the provider's last sighting, its open dead
letters and last error, and a link to the device's own page. The URL's parameters are checked
here, where they enter: a wrong one is a 400 naming it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.console.filters import FilterError
from sync_pipelines.observability.redaction import redact
from sync_pipelines.store.device_search import (
    ALL,
    FILTERS,
    DeviceListing,
    count_devices_by_filter,
    search_devices,
)
from sync_pipelines.store.integrations import Integration

DEFAULT_DEVICES_PAGE = 50
MAX_QUERY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """What the URL asks of the device list: `q`, `devices` (the filter), `devices_after` (the
    last device id of the previous page) and `devices_limit`."""

    text: str = ""
    which: str = ALL
    after: str | None = None
    limit: int = DEFAULT_DEVICES_PAGE

    @classmethod
    def from_params(
        cls, params: Mapping[str, str], *, prefix: str = "devices", max_limit: int = 500
    ) -> DeviceQuery:
        text = (params.get("q") or "").strip()
        if len(text) > MAX_QUERY_LENGTH:
            raise FilterError(f"`q` is longer than {MAX_QUERY_LENGTH} characters")
        which = params.get(prefix) or ALL
        if which not in FILTERS:
            raise FilterError(f"`{prefix}` must be one of {', '.join(FILTERS)}; got {which!r}")
        raw_limit = params.get(f"{prefix}_limit")
        limit = DEFAULT_DEVICES_PAGE
        if raw_limit:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise FilterError(f"`{prefix}_limit` must be a whole number") from None
            if not 1 <= limit <= max_limit:
                raise FilterError(f"`{prefix}_limit` must be between 1 and {max_limit}")
        return cls(text, which, params.get(f"{prefix}_after") or None, limit)


def device_list(conn: Connection, integration: Integration, query: DeviceQuery) -> dict[str, Any]:
    """The section's data: the counts per filter, this page of devices and the next page's
    cursor (None on the last page)."""
    org, iid = integration.organization_id, integration.integration_id
    found = search_devices(
        conn,
        org,
        iid,
        query=query.text,
        which=query.which,
        after=query.after,
        limit=query.limit + 1,
    )
    more = len(found) > query.limit
    found = found[: query.limit]
    return {
        "query": query.text,
        "filter": query.which,
        "counts": count_devices_by_filter(conn, org, iid),
        "devices": [device_json(d) for d in found],
        "next_cursor": found[-1].external_id if more and found else None,
    }


def device_json(device: DeviceListing) -> dict[str, Any]:
    return redact(
        {
            "external_id": device.external_id,
            "name": device.name,
            "status": device.status,
            "deleted_at": _iso(device.deleted_at),
            "updated_at": _iso(device.updated_at),
            "last_run_id": device.last_run_id,
            "last_seen_at": _iso(device.last_seen_at),
            "open_dead_letters": device.open_dead_letters,
            "quarantined_dead_letters": device.quarantined_dead_letters,
            "last_error": device.last_error,
            "last_error_at": _iso(device.last_error_at),
        }
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None
