"""Gap detection over per-device sequence numbers: which readings never arrived.

A broker drops messages silently (Mosquitto: beyond `max_queued_messages` for an offline
session, still PUBACKing the publisher), so the only client-side evidence is a jump in the
`seq` a device puts in each reading. Given each device's stored baseline (the highest sequence
already stored) and a batch's sequences, the gaps are the missing runs between them.

The first reading ever seen from a device sets its baseline: what came before the session
existed was never ours to lose. A sequence at or below the baseline is a redelivery (absorbed
by the store) or a late arrival (a device flushing a buffer, a redelivery after a kill): it opens
no gap above the floor — it fills the recorded gap it belongs to instead (store/telemetry.py's
`fill_gaps`) — and one below the device's lowest stored sequence (its floor) extends what was
seen downwards, so the readings between it and the floor that never came are a gap. Gaps then do
not depend on arrival order: a shuffled stream records the gaps the ordered one does. A device
that restarts its sequence from 0 therefore looks like redeliveries until it passes its old
baseline — devices should persist `seq` across reboots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import pairwise

from sync_pipelines.store.telemetry import SequenceGap


def find_gaps(
    baselines: Mapping[str, int],
    sequences: Mapping[str, Iterable[int]],
    floors: Mapping[str, int] | None = None,
) -> tuple[list[SequenceGap], dict[str, int]]:
    """(gaps, new baselines) for a batch. New baselines list only devices whose baseline rose.
    `floors`: the lowest stored sequence of devices the batch has readings below it from."""
    gaps: list[SequenceGap] = []
    raised: dict[str, int] = {}
    for external_id, seqs in sequences.items():
        ordered = sorted(set(seqs))
        floor = (floors or {}).get(external_id)
        if floor is not None:  # below what was seen: the missing ones between are gaps too
            below = [s for s in ordered if s < floor] + [floor]
            gaps += [
                SequenceGap(external_id, a + 1, b - 1) for a, b in pairwise(below) if b > a + 1
            ]
        last = baselines.get(external_id)
        for seq in ordered:
            if last is not None and seq <= last:
                continue
            if last is not None and seq > last + 1:
                gaps.append(SequenceGap(external_id, last + 1, seq - 1))
            last = seq
        if last is not None and last != baselines.get(external_id):
            raised[external_id] = last
    return gaps, raised
