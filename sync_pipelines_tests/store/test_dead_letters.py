"""The dead-letter store on SQLite and PostgreSQL: one letter per failing record, claims that
count attempts and lease the next one, quarantine at max attempts, operator selections by id
range and time range, and every read scoped by organization."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from sync_pipelines.clock import utc_now
from sync_pipelines.store.database import Store
from sync_pipelines.store.dead_letters import (
    PENDING,
    QUARANTINED,
    RESOLVED,
    RETRYING,
    DeadLetterPolicy,
    DeadLetterSelection,
    FailedRecord,
    claim_dead_letters,
    dead_letter_counts,
    due_dead_letter_sets,
    list_dead_letters,
    mark_failed,
    mark_resolved,
    new_dead_letter_id,
    quarantine_dead_letters,
    record_dead_letters,
    requeue_dead_letters,
    resolve_dead_letters_for,
)
from sync_pipelines.store.integrations import Integration, ensure_organization, save_integration
from sync_pipelines_tests.owners import own_integrations

POLICY = DeadLetterPolicy(max_attempts=3, backoff_base_s=10, backoff_max_s=100, jitter=0.2)


def _integration(store, integration_id="golioth-a", organization_id="org-a", enabled=True) -> None:
    with store.transaction() as conn:
        ensure_organization(conn, organization_id)
        save_integration(
            conn,
            Integration(
                integration_id=integration_id,
                organization_id=organization_id,
                provider="golioth",
                name=integration_id,
                settings={},
                secret_refs={},
                enabled=enabled,
            ),
        )


def _fail(
    store,
    *external_ids,
    stream="devices",
    now=None,
    organization_id="org-a",
    integration_id="golioth-a",
    error="ValueError: bad createdAt",
    policy=POLICY,
    run_id="run-1",
):
    now = now or utc_now()
    with store.transaction() as conn:
        own_integrations(conn, organization_id, integration_id)
        record_dead_letters(
            conn,
            organization_id=organization_id,
            integration_id=integration_id,
            provider="golioth",
            records=[
                FailedRecord(
                    stream=stream,
                    dedupe_key=e,
                    error_type="validation",
                    error_message=error,
                    payload={"id": e, "createdAt": "not-a-time"},
                    external_id=e,
                    request_id=f"req-{e}",
                )
                for e in external_ids
            ],
            policy=policy,
            run_id=run_id,
            now=now,
        )
    return now


def _letters(store, organization_id="org-a", **selection):
    with store.connect() as conn:
        return list_dead_letters(conn, organization_id, DeadLetterSelection(**selection))


def _claim(store, now, **kwargs):
    with store.transaction() as conn:
        return claim_dead_letters(conn, "org-a", "golioth-a", policy=POLICY, now=now, **kwargs)


def test_a_failed_record_becomes_one_pending_letter_with_its_payload(store):
    now = _fail(store, "dev-1")
    [letter] = _letters(store)
    assert (letter.status, letter.attempts, letter.max_attempts) == (PENDING, 0, 3)
    assert letter.payload == {"id": "dev-1", "createdAt": "not-a-time"}
    assert (letter.stream, letter.external_id, letter.request_id, letter.run_id) == (
        "devices",
        "dev-1",
        "req-dev-1",
        "run-1",
    )
    assert letter.first_failed_at == letter.last_failed_at == now
    # the first attempt waits one base delay (jittered down by at most 20 %)
    assert timedelta(seconds=8) <= letter.next_attempt_at - now <= timedelta(seconds=10)


def test_the_same_record_failing_again_updates_its_letter_and_keeps_the_attempts(store):
    first = _fail(store, "dev-1")
    _claim(store, first + timedelta(seconds=11))  # one replay attempt made
    later = _fail(
        store,
        "dev-1",
        now=first + timedelta(minutes=5),
        error="TypeError: hardwareIds",
        run_id="run-2",
    )
    [letter] = _letters(store)
    assert (letter.status, letter.attempts) == (RETRYING, 1)
    assert (letter.first_failed_at, letter.last_failed_at) == (first, later)
    assert (letter.error_message, letter.run_id) == ("TypeError: hardwareIds", "run-2")


def test_a_resolved_record_failing_again_is_a_new_incident(store):
    first = _fail(store, "dev-1")
    _claim(store, first + timedelta(seconds=11))
    with store.transaction() as conn:
        mark_resolved(conn, "org-a", [_letters(store)[0].id], run_id="run-fix", now=first)
    again = _fail(store, "dev-1", now=first + timedelta(hours=1))
    [letter] = _letters(store)
    assert (letter.status, letter.attempts, letter.resolved_at, letter.first_failed_at) == (
        PENDING,
        0,
        None,
        again,
    )


def test_a_quarantined_record_found_again_stays_quarantined(store):
    now = _fail(store, "dev-1")
    with store.transaction() as conn:
        quarantine_dead_letters(conn, "org-a", DeadLetterSelection(), now=now)
    _fail(store, "dev-1", now=now + timedelta(minutes=1))
    assert [(d.status, d.next_attempt_at) for d in _letters(store)] == [(QUARANTINED, None)]


def test_a_claim_takes_only_due_letters_counts_the_attempt_and_leases_the_next(store):
    now = utc_now()
    _fail(store, "due-1", "due-2", now=now - timedelta(minutes=1))
    _fail(store, "not-yet", now=now)
    claimed = _claim(store, now)
    assert sorted(d.external_id for d in claimed) == ["due-1", "due-2"]
    assert all(d.status == RETRYING and d.attempts == 1 for d in claimed)
    # leased: base * 2^attempts ahead (20 s, jittered down by at most 20 %)
    assert all(
        timedelta(seconds=16) <= d.next_attempt_at - now <= timedelta(seconds=20) for d in claimed
    )
    assert _claim(store, now) == [], "claimed letters are not due again until their lease ends"


def test_a_claim_is_bounded_and_oldest_due_first(store):
    now = utc_now()
    for minutes, name in ((3, "oldest"), (2, "middle"), (1, "newest")):
        _fail(store, name, now=now - timedelta(minutes=minutes))
    assert [d.external_id for d in _claim(store, now, limit=2)] == ["oldest", "middle"]


def test_an_operator_can_claim_named_letters_that_are_not_due_or_are_quarantined(store):
    now = _fail(store, "dev-1", "dev-2", "dev-3")
    one, two, three = _letters(store)
    with store.transaction() as conn:
        quarantine_dead_letters(conn, "org-a", DeadLetterSelection(ids=(two.id,)), now=now)
        mark_resolved(conn, "org-a", [three.id], run_id="r", now=now)
    claimed = _claim(store, now, ids=[one.id, two.id, three.id])
    assert sorted(d.external_id for d in claimed) == ["dev-1", "dev-2"], (
        "resolved letters are never claimed"
    )


def test_a_failed_replay_at_max_attempts_is_quarantined(store):
    now = _fail(store, "dev-1")
    statuses = []
    for attempt in range(POLICY.max_attempts):
        [letter] = _claim(store, now, ids=[_letters(store)[0].id])
        with store.transaction() as conn:
            statuses.append(
                mark_failed(
                    conn,
                    letter,
                    error_type="validation",
                    error_message=f"still bad {attempt}",
                    policy=POLICY,
                    now=now,
                )
            )
    assert statuses == [RETRYING, RETRYING, QUARANTINED]
    [letter] = _letters(store)
    assert (letter.status, letter.attempts, letter.next_attempt_at) == (QUARANTINED, 3, None)
    assert letter.quarantined_at == now and letter.error_message == "still bad 2"
    assert _claim(store, now + timedelta(days=1)) == [], (
        "the replay sensor never picks up a quarantined letter"
    )


def test_resolving_is_idempotent_and_keeps_the_first_resolution(store):
    now = _fail(store, "dev-1")
    [letter] = _letters(store)
    with store.transaction() as conn:
        assert mark_resolved(conn, "org-a", [letter.id], run_id="run-a", now=now) == 1
        assert mark_resolved(conn, "org-a", [letter.id], run_id="run-b", now=now) == 0
    assert [(d.status, d.resolved_by_run_id) for d in _letters(store)] == [(RESOLVED, "run-a")]


def test_records_that_sync_fine_resolve_their_open_letters(store):
    now = _fail(store, "dev-1", "dev-2", "dev-3")
    _fail(store, "dev-1", stream="device_states", now=now)
    batch = ["dev-1", "dev-3", *(f"fine-{i}" for i in range(1500))]  # a whole batch of keys
    with store.transaction() as conn:
        assert (
            resolve_dead_letters_for(
                conn, "org-b", "golioth-a", "devices", batch, run_id="x", now=now
            )
            == 0
        )
        resolved = resolve_dead_letters_for(
            conn, "org-a", "golioth-a", "devices", batch, run_id="run-ok", now=now
        )
    assert resolved == 2
    assert {
        (d.stream, d.external_id): (d.status, d.resolved_by_run_id) for d in _letters(store)
    } == {
        ("devices", "dev-1"): (RESOLVED, "run-ok"),
        ("devices", "dev-2"): (PENDING, None),
        ("devices", "dev-3"): (RESOLVED, "run-ok"),
        ("device_states", "dev-1"): (PENDING, None),
    }


def test_ids_are_time_ordered_so_an_id_range_is_a_creation_range():
    ids = [new_dead_letter_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert all(i[14] == "7" for i in ids), "UUID version 7"


def test_quarantine_and_requeue_by_id_range(store):
    _fail(store, "a", "b", "c", "d")
    a, b, c, d = _letters(store)
    now = utc_now()
    with store.transaction() as conn:
        moved = quarantine_dead_letters(
            conn, "org-a", DeadLetterSelection(from_id=b.id, to_id=c.id), now=now
        )
    assert sorted(m.external_id for m in moved) == ["b", "c"]
    assert [x.status for x in _letters(store)] == [PENDING, QUARANTINED, QUARANTINED, PENDING]
    with store.transaction() as conn:
        back = requeue_dead_letters(conn, "org-a", DeadLetterSelection(ids=(c.id,)), now=now)
    assert [(x.external_id, x.status, x.attempts, x.next_attempt_at) for x in back] == [
        ("c", PENDING, 0, now)
    ]


def test_selection_by_time_range_uses_when_the_record_last_failed(store):
    now = utc_now()
    _fail(store, "old", now=now - timedelta(hours=3))
    _fail(store, "outage", now=now - timedelta(hours=1))
    _fail(store, "recent", now=now)
    window = _letters(store, since=now - timedelta(hours=2), until=now - timedelta(minutes=1))
    assert [d.external_id for d in window] == ["outage"]


def test_another_organization_sees_and_touches_none_of_the_letters(store):
    _integration(store, "golioth-b", organization_id="org-b")
    _fail(store, "mine")
    _fail(store, "theirs", organization_id="org-b", integration_id="golioth-b")
    mine = _letters(store)
    assert [d.external_id for d in mine] == ["mine"]
    assert [d.external_id for d in _letters(store, organization_id="org-b")] == ["theirs"]
    with store.transaction() as conn:
        assert (
            quarantine_dead_letters(
                conn, "org-b", DeadLetterSelection(ids=(mine[0].id,)), now=utc_now()
            )
            == []
        )
        assert mark_resolved(conn, "org-b", [mine[0].id], run_id="r", now=utc_now()) == 0
        assert (
            claim_dead_letters(
                conn, "org-b", "golioth-a", policy=POLICY, now=utc_now(), ids=[mine[0].id]
            )
            == []
        )
    assert _letters(store)[0].status == PENDING


def test_counts_per_status_are_the_dead_letter_depth(store):
    now = _fail(store, "a", "b", "c")
    with store.transaction() as conn:
        quarantine_dead_letters(
            conn, "org-a", DeadLetterSelection(ids=(_letters(store)[0].id,)), now=now
        )
        counts = dead_letter_counts(conn, "org-a", "golioth-a")
    assert counts == {PENDING: 2, RETRYING: 0, RESOLVED: 0, QUARANTINED: 1}


def test_due_sets_group_enabled_integrations_across_tenants(store):
    _integration(store, "golioth-a")
    _integration(store, "golioth-b", organization_id="org-b")
    _integration(store, "golioth-off", enabled=False)
    now = utc_now()
    _fail(store, "a1", "a2", now=now - timedelta(minutes=5))
    _fail(
        store,
        "b1",
        now=now - timedelta(minutes=5),
        organization_id="org-b",
        integration_id="golioth-b",
    )
    _fail(store, "off", now=now - timedelta(minutes=5), integration_id="golioth-off")
    _fail(store, "later", now=now)
    with store.connect() as conn:
        due = due_dead_letter_sets(conn, now=now)
    assert [(d.organization_id, d.integration_id, d.count) for d in due] == [
        ("org-a", "golioth-a", 2),
        ("org-b", "golioth-b", 1),
    ]
    assert due[0].max_id == max(d.id for d in _letters(store) if d.external_id in ("a1", "a2"))


def test_policy_backoff_doubles_with_jitter_and_is_capped():
    policy = DeadLetterPolicy(backoff_base_s=60, backoff_max_s=600, jitter=0.25)
    for attempts, full in ((0, 60), (1, 120), (2, 240), (3, 480), (4, 600), (40, 600)):
        delays = [policy.delay_s(attempts) for _ in range(200)]
        assert all(full * 0.75 <= d <= full for d in delays), attempts
        assert max(delays) - min(delays) > full * 0.1, "jitter spreads retries out"


def test_policy_comes_from_integration_settings_and_refuses_nonsense():
    policy = DeadLetterPolicy.from_settings(
        {"dead_letter_max_attempts": "2", "dead_letter_backoff_s": 5}
    )
    assert (policy.max_attempts, policy.backoff_base_s, policy.backoff_max_s) == (2, 5.0, 3600.0)
    assert DeadLetterPolicy.from_settings({}).max_attempts == 5
    with pytest.raises(ValueError, match="dead_letter_max_attempts"):
        DeadLetterPolicy.from_settings({"dead_letter_max_attempts": 0})


def test_concurrent_claimers_on_postgres_never_take_the_same_letter(postgres_url):
    """FOR UPDATE SKIP LOCKED: a second replay skips what a first one holds, instead of waiting."""
    store = Store(postgres_url)
    try:
        with store.transaction() as conn:
            conn.exec_driver_sql("DELETE FROM dead_letters WHERE integration_id = 'golioth-race'")
        now = utc_now()
        _fail(
            store,
            *[f"dev-{i}" for i in range(6)],
            now=now - timedelta(minutes=1),
            integration_id="golioth-race",
        )
        holding, release = threading.Event(), threading.Event()
        first: list = []

        def hold_a_claim() -> None:
            with store.transaction() as conn:
                first.extend(
                    claim_dead_letters(
                        conn, "org-a", "golioth-race", policy=POLICY, now=now, limit=3
                    )
                )
                holding.set()
                release.wait(10)

        worker = threading.Thread(target=hold_a_claim)
        worker.start()
        assert holding.wait(10)
        with store.transaction() as conn:
            second = claim_dead_letters(conn, "org-a", "golioth-race", policy=POLICY, now=now)
        release.set()
        worker.join()
        assert len(first) == 3 and len(second) == 3
        assert not {d.id for d in first} & {d.id for d in second}
    finally:
        store.dispose()
