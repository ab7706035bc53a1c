"""States a full sync stored from the device listing itself, and how the state sync finds them.

Where one listing carries both the devices and their states (`Provider.lists_devices_with_states`:
Golioth's list with `statePath`, Azure's twin query), the inventory sync reads it once and
writes each page's states in the transaction that writes its devices. What it stored so far is
kept as the `device_states` stream's cursor (`integration_sync_state`), updated in every batch
transaction: the scan it belongs to, the run that last wrote it, the upsert counts, the devices
listed without their state, and whether the listing ran to its end.

The state sync of the same run (the `p_device_states` asset after `p_devices`, or `sync --stream
all`) finds that cursor as its `cursor_before`: when the listing ran to its end in this run, it
records those states as its own figures (its sync-log row and activity operation say they came
with the device list, under which inventory sync), reads one by one only the devices listed
without a state, and clears the cursor. Otherwise — another run, a listing that stopped, more
stateless devices than the cursor keeps — it reads states as it always has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

#: the cursor's one key (a cursor of any other shape is not ours)
KEY = "listed_with_devices"
#: devices listed without their state kept by id; beyond this the state sync reads them all
MAX_WITHOUT_STATE = 1000


@dataclass(frozen=True, slots=True)
class ListedStates:
    scan_epoch: str
    run_id: str | None
    #: the inventory sync (sync-log id) that last stored states of this scan
    sync_id: str
    complete: bool = False
    fetched: int = 0
    pages: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    without_state: tuple[str, ...] = ()
    #: more devices were listed without their state than `MAX_WITHOUT_STATE`
    overflow: bool = False
    #: the scan resumed a listing whose earlier pages stored no states (no record of them)
    partial: bool = False

    def to_cursor(self) -> dict[str, Any]:
        value = asdict(self)
        value["without_state"] = list(self.without_state)
        return {KEY: value}

    @classmethod
    def from_cursor(cls, cursor: Any) -> ListedStates | None:
        value = cursor.get(KEY) if isinstance(cursor, dict) else None
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                **{k: v for k, v in value.items() if k != "without_state"},
                without_state=tuple(value.get("without_state") or ()),
            )
        except TypeError:  # written by another version: not ours to read
            return None

    def after_batch(
        self,
        *,
        run_id: str | None,
        sync_id: str,
        pages: int,
        states: int,
        created: int,
        updated: int,
        unchanged: int,
        without_state: list[str],
        completes: bool,
    ) -> ListedStates:
        """This record with one more committed batch."""
        kept = self.without_state + tuple(without_state)
        overflow = self.overflow or len(kept) > MAX_WITHOUT_STATE
        return replace(
            self,
            run_id=run_id,
            sync_id=sync_id,
            complete=completes,
            fetched=self.fetched + states,
            pages=self.pages + pages,
            created=self.created + created,
            updated=self.updated + updated,
            unchanged=self.unchanged + unchanged,
            without_state=() if overflow else kept,
            overflow=overflow,
        )

    def serves(self, run_id: str | None) -> bool:
        """Whether the state sync of run `run_id` can take these states as read."""
        return (
            self.complete
            and not self.overflow
            and not self.partial
            and run_id is not None
            and self.run_id == run_id
        )


def resumed_or_new(
    cursor: Any, scan_epoch: str, run_id: str | None, sync_id: str, *, resumed: bool
) -> ListedStates:
    """The record of scan `scan_epoch` when the stored cursor is it (a resumed scan), else a
    new one — `partial` when the scan is `resumed` without one (its earlier pages stored no
    states, so this record can never stand for the whole listing)."""
    stored = ListedStates.from_cursor(cursor)
    if stored is not None and stored.scan_epoch == scan_epoch and not stored.complete:
        return stored
    return ListedStates(scan_epoch=scan_epoch, run_id=run_id, sync_id=sync_id, partial=resumed)
