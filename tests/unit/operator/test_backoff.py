"""Failed work is tried again with a delay that doubles up to a bound (context.Backoff)."""

from __future__ import annotations

from scheduledjob_operator.context import BACKOFF_MAX_SECONDS, Backoff


def test_failed_work_backs_off_doubling_to_a_bound_and_is_due_once() -> None:
    now = [0.0]
    backoff = Backoff(lambda: now[0])
    key = ("ns", "job")
    delays = [backoff.failed(key) for _ in range(5)]
    assert delays == [10.0, 20.0, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS]
    now[0] = 29.0
    assert backoff.take_due() == []
    now[0] = 30.0
    assert backoff.take_due() == [key] and backoff.take_due() == []
    backoff.succeeded(key)
    assert backoff.failed(key) == 10.0  # a success starts the count again
