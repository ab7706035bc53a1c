"""The MQTT topic layout the provider reads and writes (PROVIDERS.md §4.6 generic convention).

    {prefix}/{device_id}/meta        retained JSON: the device registry entry (name, hardware_ids,
                                     tags, attributes, status, enabled, `version` int, `updated_at`)
    {prefix}/{device_id}/reported    retained JSON {"version": int, "updated_at": ..., "state": {...}}
    {prefix}/{device_id}/desired     retained JSON, same shape; written by `push_desired`
    {prefix}/{device_id}/telemetry   QoS 1 JSON {"seq": per-device sequence number, "ts": ..., ...}

`prefix` is the integration's `topic_prefix` setting (default "devices"); it may contain
slashes. An empty retained payload deletes a retained topic (that is how devices disappear).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "devices"
META = "meta"
REPORTED = "reported"
DESIRED = "desired"
TELEMETRY = "telemetry"
KINDS = (META, REPORTED, DESIRED, TELEMETRY)

_WILDCARDS = frozenset("+#")


@dataclass(frozen=True, slots=True)
class TopicLayout:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        prefix = self.prefix.strip("/")
        if not prefix or _WILDCARDS & set(prefix):
            raise ValueError(
                f"topic_prefix {self.prefix!r} must be a non-empty topic without + or #"
            )
        object.__setattr__(self, "prefix", prefix)

    def topic(self, external_id: str, kind: str) -> str:
        """The topic of one device's `kind` document; refuses ids that are not one topic level."""
        if not external_id or "/" in external_id or _WILDCARDS & set(external_id):
            raise ValueError(
                f"device id {external_id!r} cannot be an MQTT topic level (no /, + or #)"
            )
        return f"{self.prefix}/{external_id}/{kind}"

    def wildcard(self, kind: str) -> str:
        """The filter matching `kind` for every device, e.g. devices/+/telemetry."""
        return f"{self.prefix}/+/{kind}"

    def parse(self, topic: str) -> tuple[str, str] | None:
        """(device id, kind) of a topic in this layout, or None."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 2 or not parts[0] or parts[1] not in KINDS:
            return None
        return parts[0], parts[1]
