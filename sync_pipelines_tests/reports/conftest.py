"""A small fleet with real sync history, on SQLite and Postgres: in organization `org-a` one
Golioth integration that syncs fine, one whose last sync failed (a 503 injected after a good
sync: a warning) and one that never got through (every list call 503: failed / unhealthy); and
one healthy integration in `org-b` that an org-scoped report must not show."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from sync_pipelines.errors import ProviderError
from sync_pipelines.store.database import Store
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices

ORG = "org-a"
OTHER_ORG = "org-b"
OK, FLAKY, DOWN, OTHER = "golioth-ok", "golioth-flaky", "golioth-down", "golioth-other"
#: fast retries, so a failing sync takes milliseconds: two attempts per call
FAST_RETRIES = {
    "retry_max_attempts": 2,
    "retry_base_backoff_s": 0.01,
    "retry_max_backoff_s": 0.02,
    "retry_jitter_s": 0,
    "page_size": 5,
}
FAULT_503 = {"kind": "server_error", "path": "/devices$", "status": 503}


@dataclass(frozen=True)
class Fleet:
    store: Store
    api_key: str


def _sync(store, open_session, integration_id: str, *, fails: bool = False) -> None:
    with open_session(
        store, integration_id, run_id=f"run-{integration_id}-{uuid.uuid4().hex[:6]}"
    ) as s:
        if fails:
            with pytest.raises(ProviderError):
                sync_devices(s)
        else:
            assert sync_devices(s).status == "success"
            sync_device_states(s)


@pytest.fixture
def fleet(store, golioth_factory, register_golioth, open_session) -> Fleet:
    api_key = f"gk-{uuid.uuid4().hex}"
    ok, flaky, down = (golioth_factory(device_count=6, api_key=api_key) for _ in range(3))
    register_golioth(store, ok, integration_id=OK, **FAST_RETRIES)
    register_golioth(store, flaky, integration_id=FLAKY, **FAST_RETRIES)
    register_golioth(store, down, integration_id=DOWN, **FAST_RETRIES)
    register_golioth(store, ok, organization_id=OTHER_ORG, integration_id=OTHER, **FAST_RETRIES)
    for _ in range(2):
        _sync(store, open_session, OK)
    _sync(store, open_session, OTHER)
    _sync(store, open_session, FLAKY)
    flaky.emulator.add_faults(FAULT_503)
    _sync(store, open_session, FLAKY, fails=True)
    down.emulator.add_faults(FAULT_503)
    for _ in range(3):
        _sync(store, open_session, DOWN, fails=True)
    return Fleet(store=store, api_key=api_key)
