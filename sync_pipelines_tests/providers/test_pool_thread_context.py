"""The providers' thread pools (Golioth pages and states, Azure twins, AWS shadows) run each
call in a copy of the submitting thread's context, so lines logged there carry the run's bound
fields (run_id, integration_id, ...) like every other line of the run."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from sync_pipelines_peers.launchers.contract import SERVER_ERROR, ProviderPeer
from sync_pipelines_peers.launchers.registry import new_peer

from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.integration_config import register_integration

#: the clients' retries with short backoffs (a server's Retry-After is still honoured)
FAST_RETRIES = {"retry_base_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "retry_jitter_s": 0.01}


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def test_lines_logged_on_a_page_thread_carry_the_runs_bound_context(
    sqlite_store, golioth, register_golioth, open_session, capfd
):
    integration = register_golioth(sqlite_store, golioth, **FAST_RETRIES)
    # page 0 is fetched on the caller's thread; the next /devices request is on a page thread
    golioth.emulator.add_faults(
        {"kind": "server_error", "status": 503, "path": "/devices$", "after": 1, "times": 1}
    )
    with (
        open_session(
            sqlite_store, integration.integration_id, run_id="run-on-page-thread"
        ) as session,
        session.open_provider() as provider,
    ):
        pages = list(provider.list_devices())
    assert len(pages) == 3
    (retrying,) = [
        line
        for line in _json_lines(capfd.readouterr().out)
        if line.get("event") == "http_request_retrying"
    ]
    assert retrying["status_code"] == 503 and "page=0" not in retrying["endpoint"]
    assert retrying["run_id"] == "run-on-page-thread"
    assert (
        retrying["integration_id"] == integration.integration_id and retrying["step"] == "test_step"
    )


@pytest.fixture(params=["golioth", "azure_iot", "aws_iot"])
def started_peer(request) -> Iterator[ProviderPeer]:
    peer = new_peer(request.param)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


def test_lines_logged_on_a_state_thread_carry_the_runs_bound_context(
    sqlite_store, started_peer, open_session, monkeypatch, capfd
):
    peer = started_peer
    (device_id,) = peer.seed(1)
    secret_refs, env = peer.secret_env("CTX_TEST")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    integration = Integration(
        integration_id=f"{peer.provider}-ctx",
        organization_id="org-ctx",
        provider=peer.provider,
        name="context test",
        settings={**peer.integration_settings(), **FAST_RETRIES},
        secret_refs=secret_refs,
    )
    register_integration(sqlite_store, integration)
    run_id = f"run-on-{peer.provider}-state-thread"
    with (
        open_session(sqlite_store, integration.integration_id, run_id=run_id) as session,
        session.open_provider() as provider,
    ):
        provider.get_states([device_id])  # AWS looks its data endpoint up here, on this thread
        capfd.readouterr()
        peer.inject_fault(SERVER_ERROR, times=1)  # so the next call, on a state thread, retries
        states, failures = provider.get_states([device_id])
    assert [s.external_id for s in states] == [device_id] and failures == []
    (retrying,) = [
        line
        for line in _json_lines(capfd.readouterr().out)
        if line.get("event") == "http_request_retrying"
    ]
    assert retrying["run_id"] == run_id and retrying["integration_id"] == integration.integration_id
