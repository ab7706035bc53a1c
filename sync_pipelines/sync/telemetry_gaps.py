"""Gap detection over per-device sequence numbers: which readings never arrived.

A broker drops messages silently (Mosquitto: beyond `max_queued_messages` for an offline
session, still PUBACKing the publisher), so the only client-side evidence is a jump in the
`seq` a device puts in each reading. Given each device's stored baseline (the highest sequence
already stored) and a batch's sequences, the gaps are the missing runs between them.

The first reading ever seen from a device sets its baseline: what came before the session
existed was never ours to lose. A sequence at or below the baseline is a redelivery (absorbed
by the store) or a late arrival; it never opens a gap. A device that restarts its sequence
from 0 therefore looks like redeliveries until it passes its old baseline — devices should
persist `seq` across reboots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sync_pipelines.store.telemetry import SequenceGap


def find_gaps(
    baselines: Mapping[str, int], sequences: Mapping[str, Iterable[int]]
) -> tuple[list[SequenceGap], dict[str, int]]:
    """(gaps, new baselines) for a batch. New baselines list only devices whose baseline rose."""
    gaps: list[SequenceGap] = []
    raised: dict[str, int] = {}
    for external_id, seqs in sequences.items():
        last = baselines.get(external_id)
        for seq in sorted(set(seqs)):
            if last is not None and seq <= last:
                continue
            if last is not None and seq > last + 1:
                gaps.append(SequenceGap(external_id, last + 1, seq - 1))
            last = seq
        if last is not None and last != baselines.get(external_id):
            raised[external_id] = last
    return gaps, raised
