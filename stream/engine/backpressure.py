"""Backpressure: memory is a function of configuration, not of the backlog.

Working through a backlog, every loop turn fetches up to ``[processor] max_batch`` records but
applies only :data:`~stream.engine.loop.PROCESS_SLICE_S` of them, so without a bound the merge
buffers grew by the difference, turn after turn (191,000 buffered records and 760-865 MB RSS
measured behind a 900,000-record backlog, with garbage-collector pauses of 0.7-0.9 s).

:class:`Backpressure` gives each input partition a share of ``[processor] max_buffered_records``
(at least one fetch): a partition whose buffer reaches its share is *paused* -- the consumer
stops fetching it -- and resumed when its buffer is down to half the share. The order does not
change: a paused partition always has buffered records (it resumes before its buffer is empty),
so it never holds the merge back, and records still come out in the deterministic event-time
order of :mod:`stream.engine.merge`. What can be held is then about ``max_buffered_records`` plus
one fetch per partition (the fetch that crossed the share), plus what the Kafka client has
prefetched (at most one fetch response per partition).
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

Key = Hashable


class Backpressure:
    """Pause and resume input partitions by the size of their merge buffers.

    Parameters
    ----------
    partitions
        The input partitions.
    max_buffered
        Records the merge may hold over all partitions (0: no limit).
    pause, resume
        Called with the partition keys to stop or restart fetching.

    Examples
    --------
    >>> calls = []
    >>> bp = Backpressure(["a", "b"], 10, lambda keys: calls.append(("pause", keys)),
    ...                   lambda keys: calls.append(("resume", keys)))
    >>> bp.update([("a", 7), ("b", 1)])
    >>> bp.update([("a", 2), ("b", 1)])
    >>> calls, bp.paused
    ([('pause', ['a']), ('resume', ['a'])], set())
    """

    def __init__(
        self,
        partitions: Iterable[Key],
        max_buffered: int,
        pause: Callable[[list], None],
        resume: Callable[[list], None],
    ):
        keys = list(partitions)
        self.limit = max_buffered
        self.share = max(1, max_buffered // max(1, len(keys))) if max_buffered else 0
        self.low = self.share // 2
        self._pause = pause
        self._resume = resume
        self.paused: set[Key] = set()

    def update(self, buffered: Iterable[tuple[Key, int]]) -> None:
        """Pause the partitions at or above their share; resume the paused ones down to half of it."""
        if not self.share:
            return
        to_pause, to_resume = [], []
        for key, n in buffered:
            if key in self.paused:
                if n <= self.low:
                    to_resume.append(key)
            elif n >= self.share:
                to_pause.append(key)
        if to_pause:
            self.paused.update(to_pause)
            self._pause(to_pause)
        if to_resume:
            self.paused.difference_update(to_resume)
            self._resume(to_resume)
