"""Admission control of a receiver process: room for `limit` deliveries, then 429 with a
Retry-After of 1 s, doubling while many are refused second after second, halving back once few
are, spread so the refused do not return together."""

from __future__ import annotations

from sync_pipelines.webhooks.admission import MAX_RETRY_AFTER_S, Admission


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _second(admission: Admission, clock: Clock, finished: int, refused: int) -> None:
    """A second in which the process is full, `refused` deliveries find no room, and
    `finished` deliveries finish (0: the full ones stay stuck); then the clock moves on."""
    while admission.enter():
        pass
    for _ in range(refused - 1):  # the loop above was refused once already
        assert not admission.enter()
    for n in range(finished):
        admission.leave()
        if n < finished - admission.limit:
            assert admission.enter()
    clock.now += 1


def test_deliveries_beyond_the_limit_are_refused_and_room_frees_as_they_finish():
    admission = Admission(2, clock=Clock())
    assert admission.enter() and admission.enter()
    assert not admission.enter() and admission.in_flight == 2
    admission.leave()
    assert admission.enter()


def test_a_few_refused_are_told_one_second():
    clock = Clock()
    admission = Admission(100, clock=clock)
    _second(admission, clock, finished=500, refused=100)  # under a quarter of what finished
    assert admission.retry_after_s() == 1


def test_the_wait_doubles_while_many_are_refused_up_to_the_cap_and_is_spread():
    clock = Clock()
    told: list[tuple[int, int]] = []
    admission = Admission(100, clock=clock, spread=lambda a, b: told.append((a, b)) or a)
    waits = []
    for _ in range(5):
        _second(admission, clock, finished=500, refused=3000)
        waits.append(admission.retry_after_s())
    assert waits == [2, 4, 8, MAX_RETRY_AFTER_S, MAX_RETRY_AFTER_S]
    assert told[0] == (2, 3)  # up to half again, at random


def test_the_wait_halves_back_to_one_second_once_few_are_refused():
    clock = Clock()
    admission = Admission(100, clock=clock, spread=lambda a, b: a)
    for _ in range(4):
        _second(admission, clock, finished=0, refused=5000)  # a stuck store: all refused
    assert admission.retry_after_s() == MAX_RETRY_AFTER_S
    _second(admission, clock, finished=500, refused=10)
    assert admission.retry_after_s() == 5
    clock.now += 5  # quiet seconds
    assert admission.retry_after_s() == 1
