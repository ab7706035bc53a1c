"""Group commit, through the receiver on a loopback port, on SQLite and Postgres: deliveries that
wait while a commit runs share the next transaction, and each is answered only by what that
transaction did — 202 once its row is committed, 200 `duplicate: true` for a key already
there or earlier in the same batch, 503 (never a 2xx) when the commit fails. The store is made
to hold the first commit with a real table lock, so the others queue behind it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sync_pipelines_peers.emulators.server import EmulatorServer

from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.database import Store
from sync_pipelines.store.webhook_events import list_events
from sync_pipelines.webhooks.app import WEBHOOK_RECEIVED, create_receiver_app
from sync_pipelines.webhooks.verification import STANDARD_WEBHOOKS
from sync_pipelines_tests.webhook_support import register_webhook_integration, signed

PATH = "/webhooks/golioth/{}"


class Receiver:
    """The receiver app served on a loopback port, with one commit at a time (so the deliveries
    that wait behind the held first one make exactly one second batch)."""

    def __init__(self, store: Store, server: EmulatorServer, app) -> None:
        self.store, self.url, self.app = store, server.url, app
        self.receiver = app.state.receiver

    def post(self, integration_id: str, secret: str, msg_id: str) -> httpx.Response:
        body, headers = signed(secret, {"temp": 1, "msg": msg_id}, msg_id=msg_id)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.post(PATH.format(integration_id), content=body, headers=headers)

    def together(
        self, deliveries: list[tuple[str, str, str]], store_url_lock: Store | None = None
    ) -> tuple[httpx.Response, list[httpx.Response]]:
        """A lead delivery, whose commit the store holds, then `deliveries` (integration id,
        secret, message id) while it is held: they wait together and commit as one batch once
        the store lets go. Returns the lead's answer and theirs, in order."""
        answers: dict[int, httpx.Response] = {}

        def send(n: int, integration_id: str, secret: str, msg_id: str) -> None:
            answers[n] = self.post(integration_id, secret, msg_id)

        first_id, first_secret, _ = deliveries[0]
        with _held(self.store):
            senders = [threading.Thread(target=send, args=(-1, first_id, first_secret, "lead"))]
            senders[0].start()
            self._wait_in_flight(1)
            for n, delivery in enumerate(deliveries):
                senders.append(threading.Thread(target=send, args=(n, *delivery)))
                senders[-1].start()
            self._wait_in_flight(1 + len(deliveries))
            time.sleep(0.1)  # every one of them is waiting for its commit by now
        for sender in senders:
            sender.join(30)
        return answers[-1], [answers[n] for n in range(len(deliveries))]

    def _wait_in_flight(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.receiver.in_flight < count:
            assert time.monotonic() < deadline, (self.receiver.in_flight, count)
            time.sleep(0.01)


@contextmanager
def _held(store: Store) -> Iterator[None]:
    """No insert into the inbox commits while this is open (readers go on)."""
    if store.is_postgres:
        with store.transaction() as conn:
            conn.exec_driver_sql("LOCK TABLE webhook_events IN EXCLUSIVE MODE")
            yield
        return
    raw = store.engine.raw_connection()
    try:
        raw.driver_connection.execute("BEGIN IMMEDIATE")  # SQLite's one writer lock
        yield
        raw.driver_connection.execute("ROLLBACK")
    finally:
        raw.close()


@pytest.fixture
def receiver(store) -> Iterator[Receiver]:
    app = create_receiver_app(store, commits_at_once=1)
    with EmulatorServer(app) as server:
        yield Receiver(store, server, app)


@pytest.fixture
def golioth(store, monkeypatch) -> tuple[str, str]:
    integration, secret = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-a", scheme=STANDARD_WEBHOOKS
    )
    return integration.integration_id, secret


def _events(store: Store, organization_id: str, integration_id: str):
    with store.connect() as conn:
        return list_events(conn, organization_id, integration_id)


def _activity(store: Store, organization_id: str, integration_id: str):
    with store.connect() as conn:
        return activity_rows(
            conn, organization_id, integration_id=integration_id, activity_type=WEBHOOK_RECEIVED
        )


def test_deliveries_waiting_on_a_commit_share_the_next_one_and_each_gets_its_own_answer(
    store, receiver, golioth
):
    integration_id, secret = golioth
    lead, answers = receiver.together([(integration_id, secret, f"msg_{n}") for n in range(12)])

    assert lead.status_code == 202
    assert [a.status_code for a in answers] == [202] * 12
    assert [a.json()["request_id"] for a in answers] == [f"msg_{n}" for n in range(12)]
    stats = receiver.receiver.commits.stats
    assert (stats.batches, stats.largest_batch) == (2, 12)  # the lead alone, then the twelve
    assert len(_events(store, "org-a", integration_id)) == 13
    # each delivery still has its own activity row, saying what its sender was told
    rows = {r["request_id"]: r for r in _activity(store, "org-a", integration_id)}
    assert len(rows) == 13
    for answer in answers:
        row = rows[answer.headers["x-request-id"]]
        assert (row["status_code"], row["status"], row["metadata"]["new"]) == (202, "success", 1)


def test_duplicates_within_one_batch_are_one_row_and_answered_200_duplicate(
    store, receiver, golioth
):
    integration_id, secret = golioth
    sent = ["msg_twice", "msg_other", "msg_twice", "msg_twice", "lead"]
    lead, answers = receiver.together([(integration_id, secret, m) for m in sent])

    by_id: dict[str, list[int]] = {}
    for msg_id, answer in zip(sent, answers, strict=True):
        by_id.setdefault(msg_id, []).append(answer.status_code)
    assert sorted(by_id["msg_twice"]) == [200, 200, 202]  # new for one of them only
    assert by_id["msg_other"] == [202]
    assert by_id["lead"] == [200]  # the lead's key, committed in the batch before
    duplicates = [a.json() for a in answers if a.status_code == 200]
    assert all(d["duplicate"] is True and d["new"] == 0 for d in duplicates)
    assert receiver.receiver.commits.stats.largest_batch == 5
    events = _events(store, "org-a", integration_id)
    assert sorted(e.event_id for e in events) == ["lead", "msg_other", "msg_twice"]
    rows = _activity(store, "org-a", integration_id)
    assert sorted(r["status_code"] for r in rows) == [200, 200, 200, 202, 202, 202]
    assert sum(r["metadata"]["duplicate"] for r in rows) == 3


def test_one_batch_holds_deliveries_of_several_organizations_each_filed_under_its_own(
    store, receiver, golioth, monkeypatch
):
    a_id, a_secret = golioth
    other, b_secret = register_webhook_integration(
        store,
        monkeypatch,
        provider="golioth",
        integration_id="gw-b",
        organization_id="org-b",
        scheme=STANDARD_WEBHOOKS,
    )
    # a second organization's delivery with the same message id is its own event, not a duplicate
    sent = [(a_id, a_secret, "msg_1"), ("gw-b", b_secret, "msg_1"), ("gw-b", b_secret, "msg_2")]
    _, answers = receiver.together(sent)

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert receiver.receiver.commits.stats.largest_batch == 3
    assert sorted(e.event_id for e in _events(store, "org-b", "gw-b")) == ["msg_1", "msg_2"]
    assert all(e.organization_id == "org-b" for e in _events(store, "org-b", "gw-b"))
    assert sorted(e.event_id for e in _events(store, "org-a", a_id)) == ["lead", "msg_1"]
    assert len(_activity(store, "org-b", "gw-b")) == 2
    assert len(_activity(store, "org-a", a_id)) == 2  # the lead's and msg_1's
    assert _events(store, "org-a", "gw-b") == [] and other.organization_id == "org-b"


def test_a_batch_of_several_organizations_commits_as_the_service_role(service_store, monkeypatch):
    """As `sync_app` (sql/026) row security holds each statement to the transaction's
    organization: the batch writes each organization's rows in its own scope."""
    store = service_store
    registered = {
        org: register_webhook_integration(
            store,
            monkeypatch,
            provider="golioth",
            integration_id=f"gw-{org}",
            organization_id=org,
            scheme=STANDARD_WEBHOOKS,
        )
        for org in ("org-a", "org-b")
    }
    app = create_receiver_app(store, commits_at_once=1)
    with EmulatorServer(app) as server:
        receiver = Receiver(store, server, app)
        sent = [
            (f"gw-{org}", registered[org][1], f"msg_{org}_{n}")
            for n in range(3)
            for org in ("org-a", "org-b")
        ]
        lead, answers = receiver.together(sent)
        assert [a.status_code for a in [lead, *answers]] == [202] * 7
        assert receiver.receiver.commits.stats.largest_batch == 6
    for org in ("org-a", "org-b"):
        scoped = store.scoped(org)
        assert len(_events(scoped, org, f"gw-{org}")) == (4 if org == "org-a" else 3)
        assert len(_activity(scoped, org, f"gw-{org}")) == (4 if org == "org-a" else 3)


@contextmanager
def _refused_at_commit(store: Store, prefix: str) -> Iterator[None]:
    """Inbox rows whose event id starts with `prefix` make the transaction fail: on Postgres at
    COMMIT (a deferred constraint trigger: the rows were written, the commit refuses them), on
    SQLite at the INSERT (it has no deferred triggers)."""
    with store.transaction() as conn:
        if store.is_postgres:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF left(NEW.event_id, {len(prefix)}) = '{prefix}' THEN "
                "RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$"
            )
            conn.exec_driver_sql(
                "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON webhook_events "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_at_commit BEFORE INSERT ON webhook_events "
                f"WHEN substr(NEW.event_id, 1, {len(prefix)}) = '{prefix}' "
                "BEGIN SELECT RAISE(ABORT, 'refused at commit'); END"
            )
    try:
        yield
    finally:
        with store.transaction() as conn:
            if store.is_postgres:
                conn.exec_driver_sql("DROP TRIGGER refuse_at_commit ON webhook_events")
                conn.exec_driver_sql("DROP FUNCTION refuse_at_commit()")
            else:
                conn.exec_driver_sql("DROP TRIGGER refuse_at_commit")


def test_a_batch_whose_commit_fails_answers_503_to_every_delivery_and_202_to_none(
    store, receiver, golioth
):
    integration_id, secret = golioth
    sent = [(integration_id, secret, f"msg_{n}") for n in range(6)]
    with _refused_at_commit(store, "msg_"):
        lead, answers = receiver.together(sent)

    assert lead.status_code == 202  # its own commit, before the refusal was tried
    assert [a.status_code for a in answers] == [503] * 6
    assert all(
        a.headers["retry-after"] and a.json()["error"] == "store_unavailable" for a in answers
    )
    assert [e.event_id for e in _events(store, "org-a", integration_id)] == ["lead"]
    # and the senders' retries, once the store takes them, are new events, not duplicates
    assert receiver.post(integration_id, secret, "msg_0").status_code == 202


def test_one_refused_delivery_fails_alone_and_the_rest_of_its_batch_is_stored(
    store, receiver, golioth
):
    integration_id, secret = golioth
    sent = [(integration_id, secret, m) for m in ("msg_1", "poison_1", "msg_2", "msg_3")]
    with _refused_at_commit(store, "poison"):
        _, answers = receiver.together(sent)

    assert [a.status_code for a in answers] == [202, 503, 202, 202]
    stored = sorted(e.event_id for e in _events(store, "org-a", integration_id))
    assert stored == ["lead", "msg_1", "msg_2", "msg_3"]
    assert receiver.receiver.commits.stats.retried_alone == 4
    rows = _activity(store, "org-a", integration_id)
    assert sorted(r["status_code"] for r in rows) == [202, 202, 202, 202]  # the lead's too


def test_a_store_fault_fails_the_whole_batch_at_once_without_retrying_each(golioth_on_postgres):
    store, integration_id, secret = golioth_on_postgres
    app = create_receiver_app(store, commits_at_once=1)
    answers: list[int] = []
    with EmulatorServer(app) as server:
        receiver = Receiver(store, server, app)

        def send(n: int) -> None:
            answers.append(receiver.post(integration_id, secret, f"msg_{n}").status_code)

        senders = [threading.Thread(target=send, args=(n,)) for n in range(5)]
        # a lock held past the statement timeout: each batch's INSERT is cancelled, a store fault
        with _held(store):
            for sender in senders:
                sender.start()
            time.sleep(1.5)
        for sender in senders:
            sender.join(30)
    assert answers == [503] * 5
    stats = receiver.receiver.commits.stats
    assert stats.largest_batch > 1 and stats.retried_alone == 0
    assert _events(store, "org-a", integration_id) == []


@pytest.fixture
def golioth_on_postgres(postgres_url, monkeypatch):
    """A Postgres store whose statements time out after 0.3 s, with a signed integration."""
    from sync_pipelines_tests.conftest import _truncate_all

    emptied = Store(postgres_url)
    _truncate_all(emptied)
    emptied.dispose()
    store = Store(postgres_url, statement_timeout_s=0.3)
    integration, secret = register_webhook_integration(
        store, monkeypatch, provider="golioth", integration_id="gw-a", scheme=STANDARD_WEBHOOKS
    )
    yield store, integration.integration_id, secret
    store.dispose()
