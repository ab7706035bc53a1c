"""Our CPU per device in the inventory's in-process stages, on real Golioth emulator pages.

The pages are fetched once; then each stage runs over all of them several times and the
least CPU (`time.process_time`, the steadiest figure on a shared machine) is reported per device:

  decode     the typed msgspec decode of a page (`golioth_wire.decode_page`)
  normalise  decode + the typed path's device records (`golioth._typed_page`)
  hash       `records.device_row` (the row and its content hash) as the sync runs it
  hash/json  the same with the attributes as a plain dict and times through `str()`: the
             generic path, for the ratio (and the check that both hash alike)
  shape      shape drift's observation of the devices' attributes (`ShapeWatch.devices`, a new
             watch each time, as each sync starts one: sync/shape_drift.py)
  shape/st   the same for the states listed with the devices (`statePath=/`: reported and
             desired documents, `ShapeWatch.states`)
  listing    a full sync's page: decode + device records + the states it carries
             (`statePath=/`, `golioth._state_of`), as the page threads run it
  rows       what the sync builds of that page: `records.device_row` and `records.state_row`
             for each device and state (`_Batch.add`)
  listing/gc `listing` at CPython's default gc thresholds: every other stage runs under the
             sync's (sync/gc_pacing.py), as a sync runs them

    .venv/bin/python bench/inventory_cpu.py --pages 200 --repeat 7
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import msgspec
from golioth_bench import KEY, PROJECT, load_average, start_emulator, stop

from sync_pipelines.providers.contract import DeviceRecord, DeviceState
from sync_pipelines.providers.golioth import _state_of, _typed_page, _typed_page_with_states
from sync_pipelines.providers.golioth_wire import decode_page
from sync_pipelines.sync import records
from sync_pipelines.sync.gc_pacing import sync_gc_pacing
from sync_pipelines.sync.shape_drift import ShapeWatch


def fetch_pages(pages: int, *, states: bool = False) -> list[bytes]:
    emulator, url = start_emulator(pages * 100)
    extra = {"statePath": "/"} if states else {}
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": KEY}) as client:
            return [
                client.get(
                    f"/v1/projects/{PROJECT}/devices",
                    params={"page": p, "perPage": 100, **extra},
                ).content
                for p in range(pages)
            ]
    finally:
        stop(emulator)


def least_cpu_us(work: Callable[[], object], devices: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / devices * 1e6


def rows(devices: list[DeviceRecord]) -> list[dict]:
    now = datetime.now(UTC)
    return [
        records.device_row(
            d, organization_id="o", integration_id="i", run_id="r", request_id="q", now=now
        )
        for d in devices
    ]


def listed_states(pages: int) -> list[DeviceState]:
    """The states a listing with `statePath=/` carries, as the sync's records of them."""
    now = datetime.now(UTC)
    found = []
    for body in fetch_pages(pages, states=True):
        typed = _typed_page_with_states(body)
        assert typed is not None
        for external_id, tree in typed[1]:
            tree = tree if isinstance(tree, dict) else {}
            found.append(
                DeviceState(external_id, tree.get("reported"), tree.get("desired"), None, now)
            )
    return found


def listing(bodies: list[bytes]) -> list[tuple[list[DeviceRecord], list[DeviceState]]]:
    """Each page of a listing with states as the provider makes it (`_fetch_page`, typed path)."""
    pages = []
    for body in bodies:
        typed = _typed_page_with_states(body)
        assert typed is not None
        devices, trees, _, _, document_type = typed
        pages.append((devices, [_state_of(i, tree, "q", document_type) for i, tree in trees]))
    return pages


def listing_rows(pages: list[tuple[list[DeviceRecord], list[DeviceState]]]) -> None:
    now = datetime.now(UTC)
    for devices, states in pages:
        for d in devices:
            records.device_row(
                d, organization_id="o", integration_id="i", run_id="r", request_id="q", now=now
            )
        for st in states:
            records.state_row(st, organization_id="o", integration_id="i", run_id="r", now=now)


def observe_devices(devices: list[DeviceRecord]) -> None:
    ShapeWatch("devices").devices(devices)


def observe_states(states: list[DeviceState]) -> None:
    ShapeWatch("device_states").states(states)


def as_generic(devices: list[DeviceRecord]) -> list[DeviceRecord]:
    """The same devices with their attributes as a plain dict (the generic path's kind)."""
    return [
        DeviceRecord(**{**msgspec.structs.asdict(d), "attributes": dict(d.attributes)})
        for d in devices
    ]


def rows_generic(plain: list[DeviceRecord]) -> list[dict]:
    """`rows` through json and `str()`: plain-dict attributes, times not taken the fast way."""
    fast_time = records._time_text
    records._time_text = lambda value: records._quote(str(value))
    try:
        return rows(plain)
    finally:
        records._time_text = fast_time


def stages(args: argparse.Namespace, with_states: list[bytes]) -> tuple[dict[str, float], bool]:
    bodies = fetch_pages(args.pages)
    devices = [d for body in bodies for d in _typed_page(body)[0]]
    n = len(devices)
    plain = as_generic(devices)
    hashes = [r["content_hash"] for r in rows(devices)]
    same = hashes == [r["content_hash"] for r in rows_generic(plain)]
    print(f"{n} devices, {sum(map(len, bodies)) / n:.0f} bytes each; load {load_average()}")
    figures = {
        "decode": least_cpu_us(lambda: [decode_page(b) for b in bodies], n, args.repeat),
        "normalise": least_cpu_us(lambda: [_typed_page(b) for b in bodies], n, args.repeat),
        "hash": least_cpu_us(lambda: rows(devices), n, args.repeat),
        "hash/json": least_cpu_us(lambda: rows_generic(plain), n, args.repeat),
        "shape": least_cpu_us(lambda: observe_devices(devices), n, args.repeat),
    }
    states = listed_states(args.pages)
    figures["shape/st"] = least_cpu_us(lambda: observe_states(states), len(states), args.repeat)
    figures["listing"] = least_cpu_us(lambda: listing(with_states), n, args.repeat)
    pages = listing(with_states)
    figures["rows"] = least_cpu_us(lambda: listing_rows(pages), n, args.repeat)
    return figures, same


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=200, help="pages of 100 devices")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with_states = fetch_pages(args.pages, states=True)
    n = args.pages * 100
    default_gc = least_cpu_us(lambda: listing(with_states), n, args.repeat)
    with sync_gc_pacing():
        figures, same = stages(args, with_states)
    figures["listing/gc"] = default_gc
    for stage, us in figures.items():
        print(f"  {stage:<10} {us:6.2f} µs CPU per device")
    print(
        f"  hash / hash-json: {figures['hash'] / figures['hash/json']:.2f}x CPU; "
        f"content hashes {'identical' if same else 'DIFFER'}"
    )


if __name__ == "__main__":
    main()
