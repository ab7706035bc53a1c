"""What an alert says, and its two wire shapes: a generic JSON document and a Slack message
(`text` as the fallback line plus Block Kit `blocks`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_pipelines.alerts.channels import SLACK, Channel
from sync_pipelines.store.alerts import Incident

FIRING, REPEAT, RESOLVED, HEARTBEAT, TEST = "firing", "repeat", "resolved", "heartbeat", "test"
#: an open incident announced at a lower severity has become critical
ESCALATED = "escalated"
SOURCE = "sync_pipelines"
_SLACK_HEADER_MAX = 150  # Block Kit's limit for a header's plain_text
_ICONS = {
    FIRING: ":rotating_light:",
    REPEAT: ":repeat:",
    ESCALATED: ":arrow_double_up:",
    RESOLVED: ":white_check_mark:",
    HEARTBEAT: ":heartbeat:",
    TEST: ":test_tube:",
}


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One notification: about an incident (firing, escalated, repeat, resolved), or about the alert path
    itself (heartbeat, test)."""

    kind: str
    sent_at: datetime
    incident: Incident | None = None

    @property
    def headline(self) -> str:
        i = self.incident
        if i is None:
            what = "heartbeat" if self.kind == HEARTBEAT else "test notification"
            return f"{SOURCE} alert path {what} at {self.sent_at.isoformat(timespec='seconds')}"
        subject = (
            f"{i.integration_id} ({i.organization_id})" if i.integration_id else i.organization_id
        )
        if self.kind == RESOLVED:
            return f"[RESOLVED] {i.rule} on {subject}"
        if self.kind == ESCALATED:
            return f"[{i.severity.upper()}] escalated: {i.rule} on {subject} (seen {i.occurrences} times)"
        if self.kind == REPEAT:
            return f"[{i.severity.upper()}] still firing: {i.rule} on {subject} (seen {i.occurrences} times)"
        return f"[{i.severity.upper()}] {i.rule} on {subject}"

    @property
    def body(self) -> str:
        i = self.incident
        if i is None:
            return "If you can read this, alerts reach this channel."
        if self.kind == RESOLVED:
            duration = _duration((i.resolved_at or self.sent_at) - i.first_seen_at)
            reason = i.details.get("resolution")
            return f"{i.summary}\nResolved after {duration}" + (f": {reason}" if reason else "")
        return i.summary


def payload_for(channel: Channel, message: AlertMessage) -> dict[str, Any]:
    return slack_payload(message) if channel.kind == SLACK else json_payload(message)


def json_payload(message: AlertMessage) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "source": SOURCE,
        "kind": message.kind,
        "sent_at": message.sent_at.isoformat(),
        "title": message.headline,
        "text": message.body,
    }
    if message.incident is not None:
        incident = message.incident.as_json()
        incident.pop("updated_at", None)
        payload["incident"] = incident
    return payload


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    icon = _ICONS.get(message.kind, "")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": message.headline[:_SLACK_HEADER_MAX]},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {message.body}".strip()}},
    ]
    i = message.incident
    if i is not None:
        fields = [
            ("Organization", i.organization_id),
            ("Integration", i.integration_id or "—"),
            ("Rule", i.rule),
            ("Severity", i.severity),
            ("Seen", f"{i.occurrences} time(s)"),
            ("First seen", i.first_seen_at.isoformat(timespec="seconds")),
        ]
        blocks.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
            }
        )
        context = f"incident `{i.id}` · {message.kind}"
        if i.run_id:
            context += f" · run `{i.run_id}`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": f"{icon} {message.headline}".strip(), "blocks": blocks}


def _duration(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
