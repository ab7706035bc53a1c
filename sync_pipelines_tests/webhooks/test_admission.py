"""Admission control of a receiver process: room for `limit` deliveries, then 429 with a
Retry-After of 1 s under a brief excess and longer, spread, when the refused outnumber what the
process finishes in a second."""

from __future__ import annotations

from sync_pipelines.webhooks.admission import MAX_RETRY_AFTER_S, Admission


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _second(admission: Admission, finished: int, refused: int) -> None:
    """A second in which the process is full, `refused` deliveries find no room, and
    `finished` deliveries finish (0: the full ones stay stuck)."""
    while admission.enter():
        pass
    for _ in range(refused - 1):  # the loop above was refused once already
        assert not admission.enter()
    for n in range(finished):
        admission.leave()
        if n < finished - admission.limit:
            assert admission.enter()


def test_deliveries_beyond_the_limit_are_refused_and_room_frees_as_they_finish():
    admission = Admission(2, clock=Clock())
    assert admission.enter() and admission.enter()
    assert not admission.enter() and admission.in_flight == 2
    admission.leave()
    assert admission.enter()


def test_a_stalled_second_is_judged_by_the_limit_not_by_the_few_that_finished():
    clock = Clock()
    admission = Admission(100, clock=clock, spread=lambda a, b: a)
    _second(admission, finished=0, refused=250)  # a stall: nothing finished
    clock.now += 1
    assert admission.retry_after_s() == 3  # 1 + 250 / 100, not 1 + 250 / 1


def test_a_brief_excess_is_told_one_second():
    clock = Clock()
    admission = Admission(4, clock=clock)
    _second(admission, finished=500, refused=300)
    clock.now += 1
    assert admission.retry_after_s() == 1


def test_a_crowd_of_refused_senders_is_told_to_come_back_spread_over_the_time_to_serve_them():
    clock = Clock()
    told: list[tuple[int, int]] = []
    admission = Admission(4, clock=clock, spread=lambda a, b: told.append((a, b)) or b)
    _second(admission, finished=500, refused=3000)
    clock.now += 1
    assert admission.retry_after_s() == 10  # 1 + 3000 / 500 = 7, spread up to 10
    assert told == [(7, 10)]


def test_the_wait_shrinks_back_once_the_crowd_is_gone_and_is_capped_meanwhile():
    clock = Clock()
    admission = Admission(4, clock=clock, spread=lambda a, b: a)
    _second(admission, finished=0, refused=5000)  # nothing finishes: a stuck store
    clock.now += 1
    assert admission.retry_after_s() == MAX_RETRY_AFTER_S
    clock.now += 2  # a quiet second since
    assert admission.retry_after_s() == 1
