"""When the loop checkpoints: every interval, or sooner once enough changes wait (stream.engine.checkpoint_schedule)."""

from __future__ import annotations

import doctest

from stream.engine import checkpoint_schedule
from stream.engine.checkpoint_schedule import PAUSE_RATIO, CheckpointSchedule


def test_docstring_examples() -> None:
    assert doctest.testmod(checkpoint_schedule).failed == 0


def test_the_interval_holds_whatever_the_changes() -> None:
    schedule = CheckpointSchedule(interval_s=5.0, max_changes=10_000, now=100.0)
    assert not schedule.due(104.9, changes=0, landing=False)
    assert schedule.due(105.0, changes=0, landing=False)
    assert schedule.due(105.0, changes=0, landing=True)  # the loop waits for the landing then
    schedule.taken(105.0, pause_s=0.001)
    assert not schedule.due(109.9, changes=9_999, landing=False)
    assert schedule.due(110.0, changes=0, landing=False)


def test_changes_trigger_only_when_nothing_is_landing() -> None:
    schedule = CheckpointSchedule(interval_s=5.0, max_changes=10_000, now=0.0)
    assert not schedule.due(0.5, changes=10_000, landing=True)  # no wait behind a landing one
    assert schedule.due(0.5, changes=10_000, landing=False)
    assert schedule.due(0.5, changes=50_000, landing=False)


def test_a_slow_snapshot_spaces_the_change_triggered_checkpoints() -> None:
    schedule = CheckpointSchedule(interval_s=60.0, max_changes=1_000, now=0.0)
    schedule.taken(10.0, pause_s=0.2)  # e.g. a large model: 0.2 s to snapshot
    earliest = 10.0 + PAUSE_RATIO * 0.2
    assert not schedule.due(earliest - 0.01, changes=1_000_000, landing=False)
    assert schedule.due(earliest, changes=1_000, landing=False)
    # so the pauses take at most 1 / PAUSE_RATIO of the time
    assert 0.2 / (earliest - 10.0) <= 1 / PAUSE_RATIO


def test_zero_max_changes_turns_the_change_trigger_off() -> None:
    schedule = CheckpointSchedule(interval_s=5.0, max_changes=0, now=0.0)
    assert not schedule.due(1.0, changes=10**9, landing=False)
    assert schedule.due(5.0, changes=0, landing=False)
