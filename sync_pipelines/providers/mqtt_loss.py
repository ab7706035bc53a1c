"""Telemetry an MQTT broker lost around a drain, as far as the broker and the session can say.

Counter: Mosquitto publishes `$SYS/broker/publish/messages/dropped` — every message it dropped
since it started, for any client (e.g. beyond a persistent session's `max_queued_messages`,
while still PUBACKing the publisher) — and `$SYS/broker/uptime`, retained, every `sys_interval`
seconds (10 by default). Measured on 2.0.11: 1,000 QoS 1 messages for an offline session capped
at 100 → the counter reads 900 from the next interval on. The counter is broker-wide: it cannot
say whose messages were dropped, so the sync log says exactly that.

The drain reads the counter before it connects its session and after it has drained, and
leaves the last reading as its watermark (the telemetry stream's cursor); the next drain's loss
is the counter's rise since that watermark. A reading is up to one `sys_interval` old, so drops
newer than that show in the next drain: each drop the counter reports is counted once. A broker
restart resets the counter (its uptime or the counter went down): the baseline is then 0. The
first drain has no watermark: drops before it were never ours to lose. A broker that publishes
no counter (an ACL on `$SYS`, another broker) reports nothing, and the drain logs that.

Session: the watermark names the client id that left a session. If the next CONNACK for that
client id says session-present 0, the broker lost it (restarted without persistence, or the
session expired): what was published meanwhile was never queued, and no counter counts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sync_pipelines.providers.contract import JsonDict, TelemetryLoss

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
UPTIME_TOPIC = "$SYS/broker/uptime"
COUNTER_TOPICS = (DROPPED_TOPIC, UPTIME_TOPIC)
BROKER_DROPPED = "broker_dropped"
SESSION_LOST = "session_lost"


@dataclass(frozen=True, slots=True)
class BrokerCounters:
    """One reading of the broker's counters (as of its last `$SYS` publish)."""

    dropped: int
    uptime_s: int | None = None


def parse_counters(retained: Mapping[str, bytes]) -> BrokerCounters | None:
    """The counters in the retained `$SYS` messages read, None without a dropped counter."""
    dropped = _leading_int(retained.get(DROPPED_TOPIC))
    if dropped is None:
        return None
    return BrokerCounters(dropped, _leading_int(retained.get(UPTIME_TOPIC)))


def judge_loss(
    loss: TelemetryLoss,
    *,
    client_id: str,
    session_present: bool,
    before: BrokerCounters | None,
    after: BrokerCounters | None,
) -> None:
    """Fill `loss` from the session flag and the readings around the drain; set its watermark."""
    since = loss.since or {}
    if since.get("client_id") == client_id and not session_present:
        loss.session_lost = True
        loss.reasons.append(
            (
                SESSION_LOST,
                f"session lost: the broker had no session for client id {client_id!r}, which "
                "the previous drain left (a broker restart without persistence, or the session "
                "expired); telemetry published meanwhile was never queued and is lost, count "
                "unknown",
            )
        )
    previous = _counters_of(since) if since.get("client_id") == client_id else None
    latest = after or before
    loss.watermark = {"client_id": client_id, **_as_json(latest or previous)}
    if latest is None or (previous is None and before is None):
        return  # no counter, or a first reading only: nothing to compare
    restarted = previous is not None and _restarted(previous, latest)
    if previous is None:
        baseline = before.dropped if before else latest.dropped
    else:
        baseline = 0 if restarted else previous.dropped
    at_connect = before.dropped if before is not None and not _restarted(before, latest) else None
    away = max(0, (latest.dropped if at_connect is None else at_connect) - baseline)
    during = 0 if at_connect is None else max(0, latest.dropped - at_connect)
    loss.dropped = away + during
    if loss.dropped:
        loss.reasons.append((BROKER_DROPPED, _dropped_sentence(away, during, restarted)))


def _dropped_sentence(away: int, during: int, restarted: bool) -> str:
    if away and during:
        text = (
            f"broker reported {away} messages dropped while this drain's session was away and "
            f"{during} while it drained"
        )
    elif away:
        text = f"broker reported {away} messages dropped while this drain's session was away"
    else:
        text = f"broker reported {during} messages dropped while this drain ran"
    if restarted:
        text += " (the broker restarted since the previous drain: counted from its restart)"
    return (
        text + "; the counter is broker-wide: it counts every client's dropped messages, not "
        "only this integration's"
    )


def _restarted(earlier: BrokerCounters, later: BrokerCounters) -> bool:
    if later.dropped < earlier.dropped:
        return True
    return (
        earlier.uptime_s is not None
        and later.uptime_s is not None
        and later.uptime_s < earlier.uptime_s
    )


def _counters_of(watermark: JsonDict) -> BrokerCounters | None:
    dropped = watermark.get("broker_dropped")
    if not isinstance(dropped, int):
        return None
    uptime = watermark.get("broker_uptime_s")
    return BrokerCounters(dropped, uptime if isinstance(uptime, int) else None)


def _as_json(counters: BrokerCounters | None) -> JsonDict:
    if counters is None:
        return {}
    return {"broker_dropped": counters.dropped, "broker_uptime_s": counters.uptime_s}


def _leading_int(payload: bytes | None) -> int | None:
    """`b"900"` → 900, `b"12 seconds"` → 12 (Mosquitto's uptime), else None."""
    if not payload:
        return None
    head = payload.split(maxsplit=1)
    try:
        return int(head[0]) if head else None
    except ValueError:
        return None
