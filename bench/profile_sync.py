"""Where a devices sync spends its time: cProfile over every thread of one sync.

`python -m cProfile` sees only the main thread, and the Golioth provider fetches pages in a
thread pool; this script gives each new thread its own profiler too and reports the main
thread and the page threads apart. It starts its own emulator and fresh Postgres database.

    .venv/bin/python bench/profile_sync.py --devices 100000 --out /tmp/sync.prof
    .venv/bin/python bench/profile_sync.py --stream device_states --devices 5000 --timer thread

`--stream device_states` profiles a state sync reading one state per device (`state_source:
device`), its inventory synced first outside the profile.

`--timer thread` times each thread's own CPU (`time.thread_time`) instead of wall time: on a
machine shared with other work, wall time charges a function for the time it waited for a core.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time

from bench_support import fresh_store_url
from golioth_bench import INVENTORY_ONLY, SYNC_ENV, register_golioth, start_emulator, stop

_thread_profiles: list[cProfile.Profile] = []
_TIMERS = {"wall": time.perf_counter, "thread": time.thread_time}
_timer = time.perf_counter


def _profile_new_thread(*_: object) -> None:
    """threading.setprofile hook: the thread's first event swaps in its own profiler."""
    profile = cProfile.Profile(_timer)
    _thread_profiles.append(profile)
    profile.enable()


def top(stats: pstats.Stats, sort: str, limit: int) -> str:
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls") :]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument(
        "--out", default=None, help="write the combined profile here (pstats format)"
    )
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--stream", choices=("devices", "device_states"), default="devices")
    parser.add_argument(
        "--timer", choices=sorted(_TIMERS), default="wall", help="what the profile measures"
    )
    args = parser.parse_args()
    global _timer
    _timer = _TIMERS[args.timer]

    emulator, url = start_emulator(args.devices)
    store_url, drop = fresh_store_url("postgres", prefix="sync_bench_profile")
    try:
        states = args.stream == "device_states"
        # the device list alone; states one per device (`--stream device_states`)
        integration_id = register_golioth(store_url, url, settings=INVENTORY_ONLY)
        os.environ.update({**SYNC_ENV, "SYNC_DATABASE_URL": store_url})
        # the sync's own imports happen here, outside the profile (bench/sync_overhead.py times them)
        from sync_pipelines.observability.logging import configure_logging
        from sync_pipelines.store.database import Store
        from sync_pipelines.sync.device_states import sync_device_states
        from sync_pipelines.sync.inventory import sync_devices
        from sync_pipelines.sync.session import RunContext, integration_session

        configure_logging()
        sync = sync_devices
        if states:
            with integration_session(
                Store(), integration_id, RunContext(run_id="inventory", job_name="bench")
            ) as s:
                sync_devices(s)
            sync = sync_device_states
        cpu_before = time.process_time()
        main_profile = cProfile.Profile(_timer)
        threading.setprofile(_profile_new_thread)
        main_profile.enable()
        with integration_session(
            Store(), integration_id, RunContext(run_id="profile", job_name="bench")
        ) as s:
            result = sync(s)
        main_profile.disable()
        cpu = time.process_time() - cpu_before
        threading.setprofile(None)  # type: ignore[arg-type]
    finally:
        stop(emulator)
        drop()

    print(
        f"{result.counts.fetched} {args.stream}, status {result.status}, sync "
        f"{result.duration_s:.2f} s, process CPU {cpu:.2f} s (profiled)",
        file=sys.stderr,
    )
    main_stats = pstats.Stats(main_profile)
    print(f"\n== main thread, by cumulative time (of {main_stats.total_tt:.2f} s) ==")
    print(top(main_stats, "cumulative", args.limit))
    print(f"\n== main thread, by own time (of {main_stats.total_tt:.2f} s) ==")
    print(top(main_stats, "tottime", args.limit))
    if _thread_profiles:
        threads = pstats.Stats(_thread_profiles[0])
        for profile in _thread_profiles[1:]:
            threads.add(profile)
        print(
            f"\n== {len(_thread_profiles)} other threads (page fetches), by own time (of {threads.total_tt:.2f} s) =="
        )
        print(top(threads, "tottime", args.limit))
        print(f"\n== other threads, by cumulative time (of {threads.total_tt:.2f} s) ==")
        print(top(threads, "cumulative", args.limit))
        if args.out:
            threads.add(main_profile)
            threads.dump_stats(args.out)
    elif args.out:
        main_stats.dump_stats(args.out)


if __name__ == "__main__":
    main()
