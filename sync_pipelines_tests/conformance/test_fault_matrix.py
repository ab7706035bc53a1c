"""The fault matrix: every fault a provider's peer can produce, injected for real during a
sync, for every registered provider. Whatever happens in between — retried, failed and re-run —
the store ends equal to the peer's truth (nothing lost, nothing doubled) and the fault is
visible in the activity log and the sync log.

`FAULT_MATRIX` below is also what the closing note's table is made from: run this module with
`-p no:randomly -v` and read the ids.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sync_pipelines_peers.launchers.contract import (
    AUTH_FAILURE,
    MALFORMED,
    MATRIX_FAULTS,
    POISON_RECORD,
    TIMEOUT,
)

from sync_pipelines.store.activity import activity_rows
from sync_pipelines.store.dead_letters import DeadLetterSelection, list_dead_letters
from sync_pipelines.store.sync_state import sync_log_rows
from sync_pipelines.sync.inventory import sync_devices
from sync_pipelines_tests.conformance.conftest import ORG

#: faults per sync: enough to break a call, few enough that a bounded retry can get past them
FAULTS_PER_SYNC = 2
#: the categories each fault may be recorded under (activity rows and the failed sync's log).
#: A dropped connection is transient — except where the client library hides it: botocore
#: accepts a body shorter than its Content-Length, so AWS sees a malformed page (validation).
CATEGORIES = {
    "auth_failure": {"auth"},
    "rate_limit": {"rate_limited"},
    "server_error": {"transient"},
    "malformed": {"validation"},
    "timeout": {"transient"},
    "drop_connection": {"transient", "validation"},
    "poison_record": {"validation"},
}
#: retryable faults every provider's client must get past within its retry budget
RETRIED_PAST = {"rate_limit", "server_error", "timeout"}
_EXCEPTION_OF = {
    "auth": "AuthError",
    "rate_limited": "RateLimitedError",
    "transient": "TransientError",
    "validation": "MalformedResponseError",
}


def _stored_ids(store, integration_id: str) -> list[str]:
    with store.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT external_id FROM devices WHERE organization_id = :o AND integration_id = :i"
                ),
                {"o": ORG, "i": integration_id},
            ).scalars()
        )


@pytest.mark.parametrize("fault", MATRIX_FAULTS)
def test_a_fault_during_a_sync_loses_nothing_doubles_nothing_and_is_visible(
    peer, fault, store, register_peer_integration, open_session
):
    if fault not in peer.supported_faults:
        assert len(peer.unsupported_reasons.get(fault, "")) > 20, (
            f"{peer.provider} must say why not {fault}"
        )
        return
    integration = register_peer_integration(
        store,
        f"{peer.provider}-matrix-{fault}".replace("_", "-"),
        request_timeout_s=min(2.0, peer.timeout_hang_s / 2),
        retry_max_total_s=10,
    )
    iid = integration.integration_id
    peer.inject_fault(fault, times=FAULTS_PER_SYNC)
    first_error: BaseException | None = None
    try:
        with open_session(store, iid) as session:
            sync_devices(session)
    except Exception as exc:  # a fault that outlasts the retries fails the sync: then run again
        first_error = exc
    peer.clear_faults()
    with open_session(store, iid) as session:
        final = sync_devices(session)

    stored = _stored_ids(store, iid)
    assert len(stored) == len(set(stored)), "a device was stored twice"
    assert set(stored) == peer.inventory(), "the store does not equal the peer's inventory"
    assert final.status in ("success", "partial")

    with store.connect() as conn:
        rows = activity_rows(conn, ORG, integration_id=iid)
        logs = sync_log_rows(conn, ORG, iid)
    categories = CATEGORIES[fault]
    names = categories | {_EXCEPTION_OF[c] for c in categories}
    visible = [
        r for r in rows if r["status"] in ("failed", "retrying") and r["error_type"] in names
    ]
    if (
        fault in (MALFORMED, POISON_RECORD) and not visible
    ):  # a provider that rejects the item, not the page
        visible = [r for r in rows if r["activity_type"] == "record_rejected"]
    assert visible, (
        f"{fault} left no trace in the activity log: {[(r['activity_type'], r['status'], r['error_type']) for r in rows]}"
    )
    if first_error is not None:
        assert logs[0]["status"] == "failed" and logs[0]["error_type"] in categories
    if fault == AUTH_FAILURE:
        assert first_error is not None, "bad credentials must fail the sync, not be retried past"
    if fault == POISON_RECORD:
        # one record held back, the rest stored; the record waits as a dead letter, and is
        # resolved by the sync that finds it healthy again: lost 0
        assert first_error is None and logs[0]["status"] == "partial" and logs[0]["failed"] == 1
        with store.connect() as conn:
            (letter,) = list_dead_letters(conn, ORG, DeadLetterSelection(integration_id=iid))
        assert letter.stream == "devices" and letter.payload and letter.status == "resolved"
    retried = [r for r in rows if r["status"] == "retrying"]
    if fault in RETRIED_PAST and peer.faults_count_calls:
        # FAULTS_PER_SYNC < retry_max_attempts: the retry layer gets past them in the first sync
        assert first_error is None, f"{fault} was not retried past: {first_error}"
        assert retried, f"{fault}: no attempt was recorded as retrying"
    elif fault == "drop_connection" and first_error is None:
        assert retried, "a dropped connection that did not fail the sync was retried"
    if fault == TIMEOUT:
        assert any((r["response_time_ms"] or 0) >= 900 for r in visible), (
            "the timeout row shows the wait"
        )
