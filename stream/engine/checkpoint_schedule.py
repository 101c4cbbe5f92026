"""When the processing loop takes its next checkpoint.

Two triggers:

- **time**: every ``[state] checkpoint_interval_s`` (the longest a crash can cost in replay);
- **changes**: as soon as the pending labels and learned ids hold ``[state]
  checkpoint_max_changes`` changes since the last checkpoint, once the previous checkpoint has
  landed, and not sooner after it than :data:`PAUSE_RATIO` times that checkpoint's pause.

Why the second one: a checkpoint's work grows with the changes it writes (its batch holds about
two RocksDB keys per learned id; building it is Python, writing it is RocksDB's CPU), and while
that work runs, records queue behind it. At 5,768 events/s with their labels (logreg, 50 % of the
rate riverbed sustains on one core) a checkpoint every 5 s wrote ~58,000 keys, and the events
around each one set the p99 latency (README, Performance step 12); smaller, more frequent
batches spread the same work thinly. Measured (step 13) at 10,000 changes: p99.9 about a third
lower, for 5-11 % of the backlog rate, so the trigger is off by default. The pause ratio keeps a
model whose snapshot is slow (pickling hundreds of MB) from being checkpointed over and over:
its pauses stay under ``1 / PAUSE_RATIO`` of the time.
"""

from __future__ import annotations

from typing import Final

PAUSE_RATIO: Final = 50
"""A checkpoint triggered by changes comes at least this many times its predecessor's pause
after it: snapshot pauses take at most 2 % of the loop's time."""


class CheckpointSchedule:
    """The next checkpoint's due time and change count.

    Parameters
    ----------
    interval_s
        ``[state] checkpoint_interval_s``: a checkpoint at least this often (while records flow).
    max_changes
        ``[state] checkpoint_max_changes``: a checkpoint once this many changes wait (0: off).
    now
        The loop's clock (``time.monotonic()``) at the start.

    Examples
    --------
    >>> schedule = CheckpointSchedule(interval_s=5.0, max_changes=10_000, now=0.0)
    >>> schedule.due(now=1.0, changes=9_999, landing=False)
    False
    >>> schedule.due(now=1.0, changes=10_000, landing=False)
    True
    >>> schedule.taken(now=1.0, pause_s=0.1)  # a slow snapshot: no change-triggered one for 5 s
    >>> schedule.due(now=5.9, changes=50_000, landing=False)
    False
    >>> schedule.due(now=6.0, changes=0, landing=False)  # the interval still holds
    True
    """

    def __init__(self, interval_s: float, max_changes: int, now: float) -> None:
        self.interval_s = interval_s
        self.max_changes = max_changes
        self._next = now + interval_s
        self._earliest = now

    def due(self, now: float, changes: int, landing: bool) -> bool:
        """Whether to checkpoint now: the interval passed, or (``landing`` False: no checkpoint
        is in flight) enough changes wait and the last pause allows one."""
        if now >= self._next:
            return True
        return 0 < self.max_changes <= changes and not landing and now >= self._earliest

    def taken(self, now: float, pause_s: float) -> None:
        """A checkpoint's snapshot was taken at ``now`` and paused the loop for ``pause_s``."""
        self._next = now + self.interval_s
        self._earliest = now + PAUSE_RATIO * pause_s
