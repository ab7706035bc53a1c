"""The ledger test (issue 17, item 6), in the style of Kafka Connect's exactly-once test: for
each provider, rounds of random changes at the peer (create, change, delete, restore, desired
state, readings), each followed by one disruption — a CLI sync SIGKILLed at a random point of its
scan, a 5xx burst, a 429 burst with Retry-After, the private PostgreSQL restarted under a sync —
and by the provider's events for those changes, duplicated and shuffled (ledger_webhooks.py):
Golioth, AWS and Azure POST them to the real receiver on a loopback port with the integration's
shared secret, and the inbox is processed as the process_webhook_inbox job does, before or after
the disruption's sync; about a third of each round's deliveries is held back to a later round.
MQTT has no webhooks: its events are readings the devices publish out of order and twice, which
the telemetry drain takes from the broker. Then a final clean sync, and after it the held-back
events, older than what that sync saw (the event-order rules must refuse them); then the store
must equal the peer: MISSING, EXTRA, STALE and DOUBLED all empty, readings included (each once),
printed in full with the seed when not. The failures must have been visible, too: killed syncs
read `abandoned`, bursts left retrying/failed activity rows, dead letters were replayed.

MQTT has no 429 (see its peer's `unsupported_reasons`): its rate-limit round stops the broker."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sync_pipelines_peers.launchers.contract import RATE_LIMIT, SERVER_ERROR

from sync_pipelines.errors import category_of
from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.database import load_json
from sync_pipelines.store.dead_letters import DeadLetterSelection, list_dead_letters
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.sync.device_states import sync_device_states
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines.sync.replay import replay_dead_letters
from sync_pipelines.sync.session import RunContext, integration_session
from sync_pipelines.sync.telemetry import sync_telemetry
from sync_pipelines.sync.webhook_processing import process_webhook_events

from .conftest import PAGE_SIZE, LedgerSetup
from .ledger import PeerTruth, StoreRows, Versions, compare
from .ledger_peers import STATE_KEY, MqttLedgerPeer
from .ledger_webhooks import PROVIDER_EVENTS, PeerChanges, ProviderEvents, WebhookOutbox

KILL, SERVER_ERRORS, RATE_LIMITS, PG_RESTART = "kill", "5xx", "429", "postgres_restart"
DISRUPTIONS = (KILL, SERVER_ERRORS, RATE_LIMITS, PG_RESTART)


@dataclass
class Chaos:
    """One provider's rounds: the random source, what was done, and what each failure left."""

    setup: LedgerSetup
    rng: random.Random
    log: list[str] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    #: run ids of CLI syncs still running when they were SIGKILLed
    killed: list[str] = field(default_factory=list)
    #: run ids of syncs a fault burst hit
    bursts: list[str] = field(default_factory=list)
    replayed: int = 0
    #: the provider's events for the peer's changes, and the deliveries not yet made
    events: ProviderEvents | None = None
    outbox: WebhookOutbox | None = None

    def __post_init__(self) -> None:
        setup = self.setup
        if setup.receiver is not None:
            provider = setup.integration.provider
            self.events = PROVIDER_EVENTS[provider](setup.peer, setup.webhook_secret)
            self.outbox = WebhookOutbox(setup.receiver, setup.webhook_path)

    @property
    def iid(self) -> str:
        return self.setup.integration.integration_id

    @property
    def org(self) -> str:
        return self.setup.integration.organization_id

    def session(self, run_id: str):
        return integration_session(
            self.setup.store,
            self.iid,
            RunContext(run_id=run_id, step_key="ledger", job_name="ledger"),
        )

    # -- the peer changes -----------------------------------------------------------------

    def change_peer(self) -> None:
        rng, peer = self.rng, self.setup.peer
        live = sorted(peer.peer.inventory())
        created = peer.create(rng.randint(1, 8))
        changed = rng.sample(live, rng.randint(3, 15))
        peer.peer.change_devices(changed)
        peer.peer.change_devices(changed[: len(changed) // 3])  # some twice
        untouched = [i for i in live if i not in changed]
        deleted = rng.sample(untouched, rng.randint(1, 5))
        if self.events and self.outbox:
            self.outbox.queue(self.events.before_deletion(deleted, rng))
        peer.peer.delete_devices(deleted)
        restored = rng.sample(sorted(self.deleted), min(len(self.deleted), rng.randint(0, 3)))
        peer.peer.restore_devices(restored)
        self.deleted = (self.deleted - set(restored)) | set(deleted)
        alive = sorted(set(live) - set(deleted) | set(created))
        for external_id in rng.sample(alive, rng.randint(3, 12)):
            peer.change_state(external_id)
        events = ""
        if isinstance(peer, MqttLedgerPeer):
            senders = rng.sample(alive, 25)
            per_device = rng.randint(1, 3)
            peer.emit_telemetry(senders, per_device)
            # MQTT's events out of order and twice: readings published shuffled, some again
            shuffled = peer.emit_shuffled_telemetry(rng.sample(alive, 10), rng.randint(2, 4), rng)
            events = f" telemetry={len(senders)}x{per_device} shuffled={shuffled}"
        elif self.events and self.outbox:
            changes = PeerChanges(created, changed, deleted, restored, alive)
            deliveries = self.events.for_changes(changes, rng)
            self.outbox.queue(deliveries)
            events = f" webhooks={len(deliveries)}"
        self.log.append(
            f"changes: created={len(created)} changed={len(changed)} deleted={len(deleted)} "
            f"restored={len(restored)}{events}"
        )

    # -- webhooks -------------------------------------------------------------------------

    def deliver_webhooks(self, *, hold_back: float) -> None:
        """The pending deliveries, duplicated and shuffled, through the real receiver (a share
        held back to arrive after later syncs), then the inbox processed as the
        process_webhook_inbox job does."""
        if self.outbox is None:
            return
        posts = self.outbox.deliver(self.rng, hold_back=hold_back)
        with self.session(f"ledger-webhooks-{uuid.uuid4()}") as session:
            result = process_webhook_events(session, limit=10_000)
        c = result.counts
        self.log.append(
            f"webhooks: {posts} posts ({len(self.outbox.pending)} held back) -> {result.status}: "
            f"fetched={c.fetched} created={c.created} updated={c.updated} deleted={c.deleted} "
            f"unchanged={c.unchanged} failed={c.failed}"
        )

    # -- syncs ----------------------------------------------------------------------------

    def clean_sync(self) -> bool:
        """Devices, replay of due dead letters, states (and telemetry on MQTT): what a schedule
        runs. True when the device scan started from the beginning (False: it resumed the cursor a
        failed sync committed, finishing that scan)"""
        with self.session(f"ledger-clean-{uuid.uuid4()}") as session:
            devices = sync_devices(session, batch_size=PAGE_SIZE)
            replay = replay_dead_letters(session)
            states = sync_device_states(session)
            statuses = [devices.status, replay.status, states.status]
            if isinstance(self.setup.peer, MqttLedgerPeer):
                statuses.append(sync_telemetry(session, window_s=5.0).status)
        self.replayed += replay.resolved
        resumed = devices.cursor_before is not None
        self.log.append(
            f"clean sync: {statuses} replay resolved={replay.resolved}"
            + (" (resumed a failed scan)" if resumed else "")
        )
        return not resumed

    def kill_a_cli_sync(self) -> None:
        """`sync-pipelines sync <id> --stream devices` in its own process, SIGKILLed at a random
        point once its sync is under way (the listing slowed so that point is mid-scan)."""
        peer = self.setup.peer
        if peer.slows_listing:
            peer.slow_listing(self.rng.randint(80, 200))
        delay = self.rng.uniform(0.0, 1.0 if peer.slows_listing else 0.15)
        before = {r["id"] for r in self._sync_log()}
        command = [sys.executable, "-m", "sync_pipelines.cli", "sync", self.iid]
        command += ["--stream", "devices", "--batch-size", str(PAGE_SIZE)]
        proc = subprocess.Popen(
            command, env=self.setup.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            started = self._wait_for_new_sync(before, proc)
            time.sleep(delay)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            peer.peer.clear_faults()
        if alive:
            self.killed.append(started["run_id"])
        self.log.append(
            f"kill after {delay:.2f}s: {'killed mid-sync' if alive else 'had already finished'}"
        )

    def _wait_for_new_sync(self, before: set[str], proc: subprocess.Popen) -> dict:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [r for r in self._sync_log() if r["id"] not in before]
            if new:
                return new[0]
            assert proc.poll() is None, f"the CLI sync exited early ({proc.returncode})"
            time.sleep(0.01)
        raise AssertionError("the CLI sync never started its sync log row")

    def fault_burst(self, fault: str) -> None:
        """Faults injected for the next calls of one stream's sync: retried past or exhausting
        the retry budget (the sync fails, or a device's state is dead-lettered)."""
        peer = self.setup.peer.peer
        if fault == RATE_LIMIT and RATE_LIMIT not in peer.supported_faults:
            fault = SERVER_ERROR  # MQTT: the broker goes away instead
        times = self.rng.randint(2, 6)
        stream = self.rng.choice(["devices", "device_states"])
        run_id = f"ledger-burst-{uuid.uuid4()}"
        outcome = "absorbed"
        with self.session(run_id) as session:
            try:
                if stream == "device_states" and not _lists_states(session):
                    sync_devices(session, batch_size=PAGE_SIZE)
                    peer.inject_fault(fault, times=times)
                    outcome = sync_device_states(session).status
                else:
                    # states read in bulk come with the listing (state_source: list, the default
                    # where the API allows): the burst hits the listing that carries them
                    peer.inject_fault(fault, times=times)
                    outcome = sync_devices(session).status
                    if stream == "device_states":
                        outcome += f", states {sync_device_states(session).status}"
            except Exception as exc:
                outcome = f"failed ({category_of(exc)}: {type(exc).__name__})"
            finally:
                peer.clear_faults()
        self.bursts.append(run_id)
        self.log.append(f"{fault} x{times} during {stream}: {outcome}")

    def restart_postgres_mid_write(self) -> None:
        """The private PostgreSQL restarted at a random point of a sync's scan."""
        peer, store = self.setup.peer, self.setup.store
        if peer.slows_listing:
            peer.slow_listing(self.rng.randint(150, 300))
        delay = self.rng.uniform(0.0, 0.6 if peer.slows_listing else 0.05)
        run_id = f"ledger-restart-{uuid.uuid4()}"

        def restart_once_under_way() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if any(r["run_id"] == run_id for r in self._sync_log()):
                        break
                except Exception:
                    pass
                time.sleep(0.01)
            time.sleep(delay)
            self.setup.private_pg.restart()

        watcher = threading.Thread(target=restart_once_under_way, daemon=True)
        watcher.start()
        outcome = "absorbed"
        try:
            with self.session(run_id) as session:
                sync_devices(session, batch_size=PAGE_SIZE)
        except Exception as exc:
            assert category_of(exc) == "transient", repr(exc)
            outcome = f"failed as transient ({type(exc).__name__})"
        finally:
            watcher.join(timeout=60)
            peer.peer.clear_faults()
        store.dispose()  # no pooled connection to the old server survives into the next round
        self.log.append(f"postgres restart {delay:.2f}s into a sync: {outcome}")

    # -- reads ----------------------------------------------------------------------------

    def _sync_log(self) -> list[dict]:
        with self.setup.store.connect() as conn:
            return sync_log_rows(conn, self.org, self.iid)

    def store_rows(self) -> StoreRows:
        params = {"o": self.org, "i": self.iid}
        where = "WHERE organization_id = :o AND integration_id = :i"
        with self.setup.store.connect() as conn:
            devices = conn.execute(
                sa.text(f"SELECT external_id, name, attributes, deleted_at FROM devices {where}"),
                params,
            ).all()
            states = conn.execute(
                sa.text(f"SELECT external_id, desired FROM device_states {where}"), params
            ).all()
            telemetry = conn.execute(
                sa.text(f"SELECT external_id, message_key FROM device_telemetry {where}"), params
            ).all()
        desired = {e: load_json(d) or {} for e, d in states}
        peer = self.setup.peer
        active = {
            e: Versions(
                peer.stored_record_revision(name, load_json(attrs)),
                int(desired.get(e, {}).get(STATE_KEY, 0)),
            )
            for e, name, attrs, deleted_at in devices
            if deleted_at is None
        }
        return StoreRows(
            device_keys=tuple(e for e, *_ in devices),
            active=active,
            state_keys=tuple(e for e, _ in states),
            telemetry_keys=tuple((e, k) for e, k in telemetry),
        )

    def truth(self) -> PeerTruth:
        peer = self.setup.peer
        sent = peer.sent if isinstance(peer, MqttLedgerPeer) else set()
        if self.outbox is not None:
            sent = self.outbox.readings
        return PeerTruth(devices=peer.truth(), telemetry=frozenset(sent))


def _plan(rng: random.Random, rounds: int) -> list[str]:
    """Every disruption once (Postgres restarted exactly once), then random ones, shuffled."""
    plan = list(DISRUPTIONS)[:rounds]
    plan += [rng.choice((KILL, SERVER_ERRORS, RATE_LIMITS)) for _ in range(rounds - len(plan))]
    rng.shuffle(plan)
    return plan


def test_after_kills_faults_and_a_restart_a_clean_sync_leaves_the_store_equal_to_the_peer(
    ledger_setup: LedgerSetup,
):
    setup = ledger_setup
    provider = setup.integration.provider
    rng = random.Random(f"{provider}:{setup.seed}")
    chaos = Chaos(setup, rng)
    started = time.monotonic()
    chaos.clean_sync()  # the first import (and, on MQTT, the persistent telemetry session)
    for disruption in _plan(rng, setup.rounds):
        chaos.change_peer()
        webhooks_first = rng.random() < 0.5  # before or after the disruption's sync
        if webhooks_first:
            chaos.deliver_webhooks(hold_back=0.3)
        if disruption == KILL:
            chaos.kill_a_cli_sync()
        elif disruption == PG_RESTART:
            chaos.restart_postgres_mid_write()
        else:
            chaos.fault_burst(SERVER_ERROR if disruption == SERVER_ERRORS else RATE_LIMIT)
        if not webhooks_first:
            chaos.deliver_webhooks(hold_back=0.3)
    # the final clean sync is a whole scan: one that resumes a failed scan's cursor finishes that
    # scan (changes before its cursor are the next scan's), so the next poll is the final one
    if not chaos.clean_sync():
        assert chaos.clean_sync(), "a scan resumed twice"
    # the held-back events arrive after it: older than what it saw, they must change nothing
    chaos.deliver_webhooks(hold_back=0.0)

    truth = chaos.truth()
    ledger = compare(truth, chaos.store_rows())
    with setup.store.connect() as conn:
        letters = list_dead_letters(conn, chaos.org, DeadLetterSelection(integration_id=chaos.iid))
    chaos.log.append(
        f"truth: {len(truth.devices)} devices, "
        f"{sum(v.record > 0 for v in truth.devices.values())} with a record revision, "
        f"{sum(v.state > 0 for v in truth.devices.values())} with a state revision, "
        f"{len(truth.telemetry)} telemetry messages; dead letters: "
        f"{sorted(Counter(letter.status for letter in letters).items())}, "
        f"{chaos.replayed} resolved by replay"
    )
    header = (
        f"ledger {provider}: seed={setup.seed} rounds={setup.rounds} "
        f"(reproduce: LEDGER_SEED={setup.seed} LEDGER_ROUNDS={setup.rounds} pytest "
        f"'sync_pipelines_tests/ledger/test_ledger.py' -k {provider})\n  " + "\n  ".join(chaos.log)
    )
    print(f"\n{header}\n  took {time.monotonic() - started:.1f}s")
    assert ledger.balanced, ledger.render(header)

    # the failures were visible, not just survived
    rows = {r["run_id"]: r for r in chaos._sync_log()}
    not_abandoned = {r: rows[r]["status"] for r in chaos.killed if rows[r]["status"] != "abandoned"}
    assert not not_abandoned, f"{header}\nkilled syncs not closed as abandoned: {not_abandoned}"
    with setup.store.connect() as conn:
        for run_id in chaos.bursts:
            seen = {r["status"] for r in activity_rows(conn, chaos.org, run_id=run_id)}
            assert seen & {"retrying", "failed"}, f"{header}\nburst {run_id} left no trace: {seen}"
    # every letter is resolved: replayed, or — its device deleted at the peer — by the deletion
    unresolved = [
        (letter.id, letter.external_id, letter.status)
        for letter in letters
        if letter.status != "resolved"
    ]
    assert not unresolved, f"{header}\ndead letters left open: {unresolved}"


def test_the_ledger_names_every_missing_extra_stale_and_doubled_row():
    truth = PeerTruth(
        devices={"a": Versions(1, 0), "b": Versions(2, 3), "c": Versions(0, 0)},
        telemetry=frozenset({("a", "seq:0"), ("a", "seq:1")}),
    )
    rows = StoreRows(
        device_keys=("a", "b", "b", "x"),
        active={"a": Versions(1, 0), "b": Versions(2, 2), "x": Versions(0, 0)},
        state_keys=("a", "b"),
        telemetry_keys=(("a", "seq:0"), ("a", "seq:0")),
    )
    ledger = compare(truth, rows)
    assert ledger.missing == ["c", "telemetry a seq:1"]
    assert ledger.extra == ["x"]
    assert [s.external_id for s in ledger.stale] == ["b"]
    assert ledger.doubled == ["device 'b' x2", "telemetry ('a', 'seq:0') x2"]
    rendered = ledger.render("seed=7")
    assert rendered.startswith("seed=7\nMISSING (peer - store): 2\n  c\n  telemetry a seq:1\n")
    assert "b: peer record=2 state=3; store record=2 state=2" in rendered
    assert compare(truth, StoreRows(("a", "b", "c"), dict(truth.devices))).balanced is False
    assert compare(PeerTruth(truth.devices), StoreRows(("a", "b", "c"), truth.devices)).balanced


def _lists_states(session) -> bool:
    """Whether this integration's listing carries the states (read in bulk with the devices)."""
    provider = session.open_provider()
    try:
        return provider.lists_devices_with_states
    finally:
        provider.close()
