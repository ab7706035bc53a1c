"""Our CPU per device in the inventory's in-process stages, on real Golioth emulator pages.

The pages are fetched once; then each stage runs over all of them several times and the
least CPU (`time.process_time`, the steadiest figure on a shared machine) is reported per device:

  decode     the typed msgspec decode of a page (`golioth_wire.decode_page`)
  normalise  decode + the typed path's device records (`golioth._typed_page`)
  hash       `records.device_row` (the row and its content hash) as the sync runs it
  hash/json  the same with the attributes as a plain dict and times through `str()`: the
             generic path, for the ratio (and the check that both hash alike)

    .venv/bin/python bench/inventory_cpu.py --pages 200 --repeat 7
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from golioth_bench import KEY, PROJECT, load_average, start_emulator, stop

from sync_pipelines.providers.contract import DeviceRecord
from sync_pipelines.providers.golioth import _typed_page
from sync_pipelines.providers.golioth_wire import decode_page
from sync_pipelines.sync import records


def fetch_pages(pages: int) -> list[bytes]:
    emulator, url = start_emulator(pages * 100)
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": KEY}) as client:
            return [
                client.get(
                    f"/v1/projects/{PROJECT}/devices", params={"page": p, "perPage": 100}
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


def as_generic(devices: list[DeviceRecord]) -> list[DeviceRecord]:
    """The same devices with their attributes as a plain dict (the generic path's kind)."""
    return [
        DeviceRecord(
            **{**{f: getattr(d, f) for f in d.__slots__}, "attributes": dict(d.attributes)}
        )
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=200, help="pages of 100 devices")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

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
    }
    for stage, us in figures.items():
        print(f"  {stage:<10} {us:6.2f} µs CPU per device")
    print(
        f"  hash / hash-json: {figures['hash'] / figures['hash/json']:.2f}x CPU; "
        f"content hashes {'identical' if same else 'DIFFER'}"
    )


if __name__ == "__main__":
    main()
