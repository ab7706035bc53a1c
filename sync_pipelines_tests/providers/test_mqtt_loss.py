"""How a drain judges loss from the session flag and the broker's counter readings around it
(the readings themselves are exercised against Mosquitto in sync/test_telemetry_loss.py)."""

from __future__ import annotations

from sync_pipelines.providers.contract import TelemetryLoss
from sync_pipelines.providers.mqtt_loss import (
    BROKER_DROPPED,
    DROPPED_TOPIC,
    SESSION_LOST,
    UPTIME_TOPIC,
    BrokerCounters,
    judge_loss,
    parse_counters,
)

CLIENT = "sync-pipelines-m1"


def _judge(since, *, present=True, before=None, after=None) -> TelemetryLoss:
    loss = TelemetryLoss(since=since)
    judge_loss(loss, client_id=CLIENT, session_present=present, before=before, after=after)
    return loss


def _mark(dropped, uptime=100, client_id=CLIENT):
    return {"client_id": client_id, "broker_dropped": dropped, "broker_uptime_s": uptime}


def test_mosquittos_payloads_are_parsed_and_a_missing_counter_is_none():
    counters = parse_counters({DROPPED_TOPIC: b"900", UPTIME_TOPIC: b"12 seconds"})
    assert counters == BrokerCounters(900, 12)
    assert parse_counters({UPTIME_TOPIC: b"12 seconds"}) is None
    assert parse_counters({DROPPED_TOPIC: b"n/a"}) is None


def test_the_first_drain_counts_only_what_dropped_while_it_drained():
    """Drops before the first drain were never this integration's to lose."""
    loss = _judge(None, present=False, before=BrokerCounters(40, 5), after=BrokerCounters(43, 6))
    assert (loss.dropped, loss.session_lost) == (3, False)
    ((kind, text),) = loss.reasons
    assert kind == BROKER_DROPPED
    assert text == (
        "broker reported 3 messages dropped while this drain ran; the counter is broker-wide: it "
        "counts every client's dropped messages, not only this integration's"
    )
    assert loss.watermark == _mark(43, 6)


def test_drops_while_away_and_while_draining_are_named_apart():
    loss = _judge(_mark(100), before=BrokerCounters(1000, 150), after=BrokerCounters(1005, 151))
    assert loss.dropped == 905
    ((kind, text),) = loss.reasons
    assert kind == BROKER_DROPPED
    assert text.startswith(
        "broker reported 900 messages dropped while this drain's session was away and 5 while "
        "it drained; the counter is broker-wide"
    )


def test_a_broker_restart_counts_from_zero_and_a_lost_session_is_reported():
    """Uptime went down: the counter restarted, so its whole value is new."""
    loss = _judge(_mark(500, uptime=9000), present=False, after=BrokerCounters(7, 30))
    assert (loss.dropped, loss.session_lost) == (7, True)
    assert [kind for kind, _ in loss.reasons] == [SESSION_LOST, BROKER_DROPPED]
    assert loss.reasons[0][1].startswith(
        f"session lost: the broker had no session for client id '{CLIENT}'"
    )
    assert "the broker restarted since the previous drain" in loss.reasons[1][1]


def test_an_unreadable_counter_reports_nothing_and_keeps_the_previous_watermark():
    loss = _judge(_mark(100))
    assert (loss.lost, loss.watermark) == (False, _mark(100))


def test_a_changed_client_id_expects_a_new_session():
    loss = _judge(_mark(100, client_id="old-id"), present=False, before=BrokerCounters(150))
    assert (loss.lost, loss.watermark["client_id"]) == (False, CLIENT)
