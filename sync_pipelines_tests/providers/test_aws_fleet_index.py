"""AWS shadows in bulk from the fleet index (SearchIndex, PROVIDERS.md §7.1): used when the
account's index holds the shadows, paged as AWS pages it (the proxy in front of moto), giving the
same state rows as one GetThingShadow per thing; without such an index, or with
`state_source: device`, the per-thing reads stay."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from sync_pipelines_peers.launchers.aws_iot import AwsIotPeer

from sync_pipelines.store.integrations import Integration
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.integration_config import register_integration
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.device_state_rows import state_rows

THINGS = 130


@pytest.fixture(scope="module")
def running_peer() -> Iterator[AwsIotPeer]:
    with AwsIotPeer() as peer:
        yield peer


@pytest.fixture
def peer(running_peer: AwsIotPeer) -> AwsIotPeer:
    running_peer.clear_faults()
    running_peer.proxy.index_shadow = None
    running_peer.seed(THINGS)
    running_peer.proxy.clear_requests()
    return running_peer


def _register(store, peer, monkeypatch, integration_id: str, **settings) -> None:
    refs, env = peer.secret_env("TEST_AWS_INDEX")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    register_integration(
        store,
        Integration(
            integration_id=integration_id,
            organization_id="org-a",
            provider="aws_iot",
            name="AWS IoT fleet index test",
            settings={**peer.integration_settings(), "page_size": 100, **settings},
            secret_refs=refs,
        ),
    )


def _calls(peer) -> dict[str, int]:
    """SearchIndex, GetIndexingConfiguration and GetThingShadow calls the proxy served."""
    paths = [(r.method, r.path) for r in peer.proxy.requests()]
    return {
        "search": sum(1 for m, p in paths if m == "POST" and p == "/indices/search"),
        "index_config": sum(1 for m, p in paths if p == "/indexing/config"),
        "shadow_reads": sum(1 for m, p in paths if m == "GET" and p.endswith("/shadow")),
    }


def test_shadows_come_from_the_fleet_index_when_it_holds_them(
    store, peer, open_session, monkeypatch
):
    peer.enable_fleet_index()
    peer.create_thing("no-shadow-thing")  # indexed without a shadow: read alone
    _register(store, peer, monkeypatch, "aws-index")
    _register(store, peer, monkeypatch, "aws-each", state_source="device")
    with open_session(store, "aws-index") as session:
        sync_devices(session)
        peer.proxy.clear_requests()
        states = sync_device_states(session)
    # 131 things at 100 a page: two SearchIndex calls, and one shadow read for the shadowless
    assert _calls(peer) == {"search": 2, "index_config": 1, "shadow_reads": 1}
    assert (states.status, states.counts.created, states.counts.failed) == (
        "success",
        THINGS + 1,
        0,
    )
    with open_session(store, "aws-each") as session:
        sync_devices(session)
        peer.proxy.clear_requests()
        sync_device_states(session)
    assert _calls(peer) == {"search": 0, "index_config": 0, "shadow_reads": THINGS + 1}
    # the same rows, version for version, as one GetThingShadow per thing
    assert state_rows(store, "aws-index") == state_rows(store, "aws-each")
    assert state_rows(store, "aws-index")["no-shadow-thing"][:3] == (None, None, None)


def test_without_a_shadow_index_the_states_are_read_per_thing(
    store, peer, open_session, monkeypatch
):
    _register(store, peer, monkeypatch, "aws-noindex")  # moto's index is OFF by default
    with open_session(store, "aws-noindex") as session:
        sync_devices(session)
        peer.proxy.clear_requests()
        states = sync_device_states(session)
    assert _calls(peer) == {"search": 0, "index_config": 1, "shadow_reads": THINGS}
    assert (states.status, states.counts.created) == ("success", THINGS)


def test_the_proxy_pages_search_index_as_aws_does(peer):
    peer.enable_fleet_index()
    client = boto3.client(
        "iot",
        region_name=peer.region,
        endpoint_url=peer.url,
        aws_access_key_id=peer.access_key_id,
        aws_secret_access_key=peer.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )
    names, token, pages = [], None, 0
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = client.search_index(queryString="thingName:*", maxResults=50, **kwargs)
        pages += 1
        assert len(page["things"]) <= 50
        names += [t["thingName"] for t in page["things"]]
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3 and sorted(names) == sorted(peer.inventory())
    shadow = json.loads(page["things"][-1]["shadow"])
    assert isinstance(shadow["version"], int) and "temperature" in shadow["reported"]
    with pytest.raises(client.exceptions.InvalidRequestException):
        client.search_index(queryString="thingName:*", maxResults=101)
