"""Which faults apply to which request: the provider-agnostic rules every emulator shares."""

from __future__ import annotations

import pytest
from sync_pipelines_peers.emulators.faults import FaultInjector, FaultKind, FaultSpec, TokenBucket


def kinds_applied(injector: FaultInjector, method: str = "GET", path: str = "/v1/x") -> str | None:
    fault = injector.plan(method, path).response_fault
    return None if fault is None else fault.kind.value


def test_a_fault_without_limits_applies_to_every_matching_request() -> None:
    injector = FaultInjector()
    injector.add([{"kind": "server_error"}])
    assert [kinds_applied(injector) for _ in range(3)] == ["server_error"] * 3


def test_times_expires_a_fault_after_that_many_applications() -> None:
    injector = FaultInjector()
    injector.add([{"kind": "server_error", "times": 2}])
    assert [kinds_applied(injector) for _ in range(3)] == ["server_error", "server_error", None]
    assert injector.active() == []


def test_after_lets_the_first_matching_requests_through() -> None:
    injector = FaultInjector()
    injector.add([{"kind": "rate_limit", "after": 2, "times": 1}])
    assert [kinds_applied(injector) for _ in range(4)] == [None, None, "rate_limit", None]


def test_after_counts_only_requests_matching_path_and_method() -> None:
    injector = FaultInjector()
    injector.add([{"kind": "server_error", "path": "/devices$", "method": "get", "after": 1}])
    assert kinds_applied(injector, "GET", "/v1/projects/p/devices") is None
    assert kinds_applied(injector, "POST", "/v1/projects/p/devices") is None
    assert kinds_applied(injector, "GET", "/v1/projects/p/devices/abc") is None
    assert kinds_applied(injector, "GET", "/v1/projects/p/devices") == "server_error"


def test_only_the_oldest_eligible_response_fault_applies_and_spends_its_times() -> None:
    injector = FaultInjector()
    injector.add([{"kind": "server_error", "times": 1}, {"kind": "auth_failure", "times": 1}])
    assert [kinds_applied(injector) for _ in range(3)] == ["server_error", "auth_failure", None]


def test_latency_and_poison_faults_apply_alongside_a_response_fault() -> None:
    injector = FaultInjector(base_latency_ms=5)
    injector.add(
        [
            {"kind": "latency", "latency_ms": 100},
            {"kind": "poison_record", "device_index": 3},
            {"kind": "truncated_json"},
        ]
    )
    plan = injector.plan("GET", "/v1/x")
    assert plan.added_latency_ms == 105
    assert [p.device_index for p in plan.poison] == [3]
    assert plan.applied_kinds == ("latency", "poison_record", "truncated_json")


def test_probability_draws_are_repeatable_for_a_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        injector = FaultInjector(seed=seed)
        injector.add([{"kind": "server_error", "probability": 0.5}])
        return [kinds_applied(injector) for _ in range(40)]

    assert draws(1) == draws(1)
    assert 5 < draws(1).count("server_error") < 35


def test_clearing_removes_faults_and_restarts_the_random_draws() -> None:
    injector = FaultInjector(seed=3)
    injector.add([{"kind": "server_error", "probability": 0.5}])
    first = [kinds_applied(injector) for _ in range(10)]
    injector.clear()
    assert kinds_applied(injector) is None
    injector.add([{"kind": "server_error", "probability": 0.5}])
    assert [kinds_applied(injector) for _ in range(10)] == first


def test_the_rate_limiter_answers_429_before_any_fault_is_counted() -> None:
    clock = [0.0]
    injector = FaultInjector(rate_limiter=TokenBucket(1.0, burst=1, clock=lambda: clock[0]))
    injector.add([{"kind": "server_error", "after": 1}])
    assert kinds_applied(injector) is None
    limited = injector.plan("GET", "/v1/x").response_fault
    assert limited is not None and limited.kind is FaultKind.RATE_LIMIT
    assert limited.retry_after_s == 1
    assert injector.active()[0]["matched"] == 1


def test_token_bucket_refills_at_its_rate() -> None:
    clock = [0.0]
    bucket = TokenBucket(2.0, burst=2, clock=lambda: clock[0])
    assert [bucket.try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock[0] = 0.5
    assert bucket.try_acquire() == 0.0


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"kind": "flood"}, "flood"),
        ({"path": "/x"}, "needs 'kind'"),
        ({"kind": "server_error", "tims": 1}, "unknown fault spec field"),
        ({"kind": "server_error", "times": 0}, "'times'"),
        ({"kind": "server_error", "probability": 2}, "'probability'"),
        ({"kind": "server_error", "status": 200}, "'status'"),
        ({"kind": "latency"}, "latency_ms"),
        ({"kind": "poison_record"}, "device_index"),
        ({"kind": "poison_record", "device_index": 1, "shape": "odd"}, "odd"),
    ],
)
def test_invalid_fault_specs_are_refused_with_the_reason(spec: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        FaultSpec.from_json(spec)


def test_a_fault_spec_round_trips_through_json() -> None:
    spec = FaultSpec.from_json({"kind": "rate_limit", "retry_after_s": 3, "path": "^/v1"})
    assert FaultSpec.from_json(spec.to_json()) == spec
