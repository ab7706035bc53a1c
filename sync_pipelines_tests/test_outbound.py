"""Outbound destinations (sync_pipelines/outbound.py): loopback, private, link-local (cloud
metadata) and other non-public addresses are refused for alert channels and provider URLs —
as IP literals where they are configured, and as names at call time — unless
SYNC_OUTBOUND_ALLOW lists the network. The suite itself runs with loopback allowed (conftest)."""

from __future__ import annotations

import ipaddress

import pytest

from sync_pipelines.alerts.channels import FAILED, Channel, deliver
from sync_pipelines.alerts.settings import WEBHOOK_URL_ENV, AlertSettings
from sync_pipelines.errors import CONFIG, ConfigError, category_of
from sync_pipelines.outbound import (
    ALLOW_ENV,
    DestinationGuard,
    OutboundRefused,
    address_problem,
    allowed_networks,
    check_literal_host,
)
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.sync.inventory import sync_devices

LOOPBACK = allowed_networks({ALLOW_ENV: "127.0.0.0/8,::1"})


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "a loopback"),
        ("::1", "a loopback"),
        ("::ffff:127.0.0.1", "a loopback"),
        ("10.0.0.7", "a private"),
        ("192.168.1.1", "a private"),
        ("169.254.169.254", "a link-local (cloud metadata)"),
        ("fd00:ec2::254", "a private"),
        ("100.100.100.200", "a non-public"),
        ("0.0.0.0", "an unspecified"),
        ("224.0.0.1", "a multicast"),
    ],
)
def test_every_non_public_address_is_refused_naming_its_kind(address, kind):
    assert (
        address_problem(ipaddress.ip_address(address), ())
        == f"{address.removeprefix('::ffff:')} is {kind} address"
    )


def test_public_addresses_pass_and_the_allowance_opens_only_its_networks():
    for public in ("8.8.8.8", "2001:4860:4860::8888"):
        assert address_problem(ipaddress.ip_address(public), ()) is None
    assert address_problem(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None
    assert address_problem(ipaddress.ip_address("::1"), LOOPBACK) is None
    # loopback allowed does not open the metadata service or the private network
    assert address_problem(ipaddress.ip_address("169.254.169.254"), LOOPBACK)
    assert address_problem(ipaddress.ip_address("10.0.0.7"), LOOPBACK)
    with pytest.raises(ValueError, match=f"{ALLOW_ENV}: 'not-a-net'"):
        allowed_networks({ALLOW_ENV: "127.0.0.1, not-a-net"})


def test_a_literal_host_is_refused_where_it_is_configured(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV)
    with pytest.raises(
        OutboundRefused, match="127.0.0.1 is a loopback address.*SYNC_OUTBOUND_ALLOW"
    ):
        check_literal_host("http://127.0.0.1:8080/x")
    check_literal_host("https://api.golioth.io")  # a name: checked when called
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.0/8")
    check_literal_host("http://127.0.0.1:8080/x")
    with pytest.raises(OutboundRefused, match="169.254.169.254 is a link-local"):
        check_literal_host("http://169.254.169.254/latest/meta-data/")


def test_a_name_is_refused_for_what_it_resolves_to_at_call_time():
    with pytest.raises(
        OutboundRefused, match="localhost resolves to 127.0.0.1, a loopback address"
    ):
        DestinationGuard({}).check_url("http://localhost:9/")
    DestinationGuard({ALLOW_ENV: "127.0.0.0/8,::1"}).check_url("http://localhost:9/")


def test_an_alert_channel_at_loopback_or_the_metadata_service_is_refused_unechoed(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV)
    url = "http://127.0.0.1:9/hook-token-abc"
    with pytest.raises(ValueError) as refused:
        AlertSettings.from_env({WEBHOOK_URL_ENV: url})
    assert WEBHOOK_URL_ENV in str(refused.value) and "loopback" in str(refused.value)
    assert "hook-token-abc" not in str(refused.value)
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.0/8")  # what the local peers allow…
    assert AlertSettings.from_env({WEBHOOK_URL_ENV: url}).channels
    with pytest.raises(ValueError, match="169.254.169.254 is a link-local"):  # …is not this
        AlertSettings.from_env({WEBHOOK_URL_ENV: "http://169.254.169.254/latest/meta-data/"})


def test_an_alert_channel_named_for_loopback_is_refused_at_delivery(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV)
    channel = Channel("webhook", "webhook", "http://localhost:9/hook")
    delivery = deliver(channel, {"x": 1}, timeout_s=1, max_attempts=2)
    assert (delivery.status, delivery.attempts) == (FAILED, 0)
    assert "refused: localhost resolves to" in delivery.error_message


def test_a_provider_base_url_at_the_metadata_service_is_refused_at_registration(
    store, golioth, register_golioth
):
    with pytest.raises(ConfigError) as refused:
        register_golioth(store, golioth, base_url="http://169.254.169.254/")
    assert "base_url" in str(refused.value) and "link-local" in str(refused.value)


def test_a_sync_to_a_name_resolving_inward_fails_as_configuration_without_retries(
    store, golioth, register_golioth, open_session, monkeypatch
):
    integ = register_golioth(store, golioth, base_url=golioth.url.replace("127.0.0.1", "localhost"))
    served = golioth.emulator.stats().requests_served
    monkeypatch.delenv(ALLOW_ENV)  # registered while allowed; the operator has since closed it
    with (
        open_session(store, integ.integration_id) as session,
        pytest.raises(ConfigError) as refused,
    ):
        sync_devices(session)
    assert category_of(refused.value) == CONFIG
    assert "setting 'base_url': localhost resolves to 127.0.0.1" in str(refused.value)
    with store.connect() as conn:
        calls = activity_rows(
            conn, "org-a", integration_id=integ.integration_id, activity_type="http_request"
        )
    assert [(c["attempt"], c["status"], c["error_type"]) for c in calls] == [(1, "failed", CONFIG)]
    assert golioth.emulator.stats().requests_served == served  # not a byte reached the peer


def test_an_aws_endpoint_resolving_inward_is_refused_before_the_call(monkeypatch):
    from sync_pipelines.observability.activity import ActivityRecorder, ActivityScope, MemorySink
    from sync_pipelines.observability.boto_recording import build_boto_client

    monkeypatch.delenv(ALLOW_ENV)
    client = build_boto_client(
        ActivityRecorder(MemorySink(), ActivityScope("org-a", "aws-x")),
        "iot",
        timeout_s=2.0,
        region_name="eu-west-1",
        endpoint_url="http://localhost:9",  # nothing listens: only the guard can answer first
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )
    with pytest.raises(
        OutboundRefused, match="localhost resolves to 127.0.0.1, a loopback address"
    ):
        client.list_things(maxResults=1)
    assert category_of(OutboundRefused("x")) == CONFIG


def test_the_cli_says_a_refused_host_in_one_line_not_a_traceback(
    store, golioth, register_golioth, monkeypatch
):
    from click.testing import CliRunner

    from sync_pipelines.cli import main

    integ = register_golioth(store, golioth, base_url=golioth.url.replace("127.0.0.1", "localhost"))
    monkeypatch.delenv(ALLOW_ENV)
    monkeypatch.setenv("SYNC_DATABASE_URL", store.url)
    for command in (["test-connection", integ.integration_id], ["sync", integ.integration_id]):
        result = CliRunner().invoke(main, ["--log-format", "json", *command])
        assert result.exit_code == 1, (command, result.output)
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("Error: integration 'golioth-a': setting 'base_url': localhost")
        # a handled error (click's one line), not an exception escaping the command
        assert isinstance(result.exception, SystemExit), result.exception
