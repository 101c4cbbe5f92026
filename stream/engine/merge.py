"""Deterministic event-time merge of several Kafka partitions.

The processor owns every partition of ``events`` and ``labels`` and must turn them into one
sequence of predict/learn operations that is the same on every replay of the same offsets:
that is what makes checkpointed model state exactly-once.

Rules, in order:

1. Records of one partition are taken in offset order (a partition is never reordered).
2. A record that failed validation (``ts is None``) is released as soon as it reaches the head
   of its partition: it never touches model state, so its position relative to other
   partitions does not matter.
3. Otherwise the head with the smallest key ``(ts, rank, partition, offset)`` goes first;
   ``rank`` orders topics at equal event time (labels before events: answers before questions,
   as :func:`river.stream.simulate_qa` does).
4. Nothing is released while a partition has an empty buffer but is *not* caught up (the broker
   holds records for it that have not been fetched yet), because one of them could sort first.
   A partition that is caught up (fetched up to its high watermark) does not hold others back:
   the idea of Kafka Streams' ``max.task.idle.ms = 0``.
5. A partition that stays behind while the caller has *waited for input* for longer than
   ``max_wait_s`` in total stops holding the others back, so a stalled fetch bounds latency
   instead of stopping the stream. Only time spent waiting for input counts (the caller passes
   it to :meth:`EventTimeMerge.pop_ready`), never time spent processing: a slow model on a busy
   machine must not reorder the stream. This is the only timing-dependent rule; with data
   already in the topics it does not fire, and :attr:`EventTimeMerge.wait_expirations` counts
   it when it does.
6. With a *leading* topic (the processor makes ``events`` lead), a record of another topic
   (a label) whose event time is later than everything released from the leading topic, and
   whose event has not been seen (``seen``), waits while every leading partition is caught up
   and empty: its event may simply not be on the broker *yet*. A producer that publishes a label right after its event gives no ordering
   guarantee across topics (two batches, two requests), so without this rule the label could
   overtake its event, find nothing pending and be lost as unmatched. The wait ends as soon as a
   leading record arrives (then rule 3 orders them), or after ``max_wait_s`` of waiting for
   input; once ended it stays ended until a leading record arrives, so labels for an idle
   ``events`` stream flow after one short wait. Leading records never wait for the others
   (predictions are not delayed), and with data already in the topics the rule only applies
   after the last event, so it does not change the order of a replay.
7. With ``hold_unseen`` (the scale-out trainer, whose leading topic is the served topic written
   by independent scorers), rule 6 also holds a record whose event has not been seen while *any*
   leading partition is caught up and empty, even behind the leading time: one scorer may be
   behind the others (or dead until its group reassigns its partitions), and a label released
   before its served record would be lost as unmatched. Everything waits behind it (the order
   of labels stays that of one process); the wait is bounded by ``max_wait_s`` like rule 6's.

>>> merge = EventTimeMerge({"labels": 0, "events": 1}, max_wait_s=1.0)
>>> merge.add(("events", 0), [Item(2.0, 0, "e0"), Item(3.0, 1, "e1")], caught_up=True)
>>> merge.add(("labels", 0), [Item(2.0, 0, "l0")], caught_up=True)
>>> [item.payload for item in merge.pop_ready(waited_s=0.0)]
['l0', 'e0', 'e1']
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Hashable, Iterator, NamedTuple


class Item(NamedTuple):
    """One buffered record: event time (``None`` for an invalid record), offset, payload."""

    ts: float | None
    offset: int
    payload: Any


class _Partition:
    __slots__ = ("key", "rank", "number", "order", "buffer", "caught_up", "waited", "leads")

    def __init__(self, key: Hashable, rank: int, number: int, leads: bool = False):
        self.key = key
        self.leads = leads
        self.rank = rank
        self.number = number
        self.order = (rank, number)  # rule 3's tie-break after the event time
        self.buffer: deque[Item] = deque()
        self.caught_up = False
        self.waited = 0.0


class EventTimeMerge:
    """Buffers records per partition and releases them in deterministic event-time order.

    Parameters
    ----------
    ranks
        Tie-break rank of each topic at equal event time (lower goes first).
    max_wait_s
        How long (in time spent waiting for input) a partition that is behind (empty buffer, not
        caught up) may hold back the others.
    leading
        The topic whose event time other topics' records wait for at the live edge (rule 6);
        ``None`` disables rule 6.
    seen
        ``seen(item)`` is True when the leading record a waiting record refers to was already
        released (a label whose event is pending): such a record need not wait.
    hold_unseen
        Rule 7: hold such a record while any leading partition is caught up and empty.
    """

    def __init__(
        self,
        ranks: dict[str, int],
        max_wait_s: float,
        leading: str | None = None,
        seen: Callable[[Item], bool] | None = None,
        hold_unseen: bool = False,
    ):
        self.ranks = dict(ranks)
        self.max_wait_s = max_wait_s
        self.leading = leading
        self.seen = seen
        self.hold_unseen = hold_unseen
        self.wait_expirations = 0
        self.leading_ts: float | None = None  # the latest event time released from the leading topic
        self._partitions: dict[Hashable, _Partition] = {}
        self._leaders: list[_Partition] = []
        self._holding = False  # rule 6 held a record back in the last pop_ready
        self._hold_waited = 0.0  # input waiting time spent holding since the last leading record
        self._hold_counted = False

    def register(self, key: tuple[str, int]) -> None:
        """Declare a partition ``(topic, partition)`` before any record of it arrives."""
        if key not in self._partitions:
            topic, number = key
            part = _Partition(key, self.ranks[topic], number, leads=topic == self.leading)
            self._partitions[key] = part
            if part.leads:
                self._leaders.append(part)

    def add(self, key: tuple[str, int], items: list[Item], caught_up: bool) -> None:
        """Append fetched records (in offset order) and the partition's caught-up flag."""
        self.register(key)
        part = self._partitions[key]
        if items:
            part.buffer.extend(items)
            part.waited = 0.0
            if part.leads:
                self._hold_waited = 0.0
                self._hold_counted = False
        part.caught_up = caught_up

    def set_caught_up(self, key: tuple[str, int], caught_up: bool) -> None:
        self.register(key)
        self._partitions[key].caught_up = caught_up

    def buffered(self) -> int:
        """Records held in all buffers."""
        return sum(len(p.buffer) for p in self._partitions.values())

    def buffered_by_partition(self) -> Iterator[tuple[Hashable, int]]:
        """``(partition key, records held)`` for every registered partition."""
        for key, part in self._partitions.items():
            yield key, len(part.buffer)

    def all_caught_up(self) -> bool:
        """True when every buffer is empty and every partition is at its high watermark."""
        return all(p.caught_up and not p.buffer for p in self._partitions.values())

    def _may_still_come(self, ts: float) -> bool:
        """Rules 6 and 7: a leading record of event time before ``ts`` may still arrive."""
        if self.hold_unseen:
            for p in self._leaders:
                if p.caught_up and not p.buffer:
                    return True
            return False
        if self.leading_ts is not None and ts <= self.leading_ts:
            return False
        for p in self._leaders:
            if not p.caught_up or p.buffer:
                return False
        return True

    def pop_ready(self, waited_s: float) -> Iterator[Item]:
        """Yield every record that can be released now, in merge order.

        ``waited_s`` is the time the caller just spent waiting for input (e.g. inside the fetch);
        it counts towards ``max_wait_s`` for every partition that is behind.

        Records are popped one at a time as they are yielded: a caller that stops iterating
        leaves the rest buffered, in order, for the next call. Between two records only the
        partition just released from changes, so rule 2 looks at the other heads once, at the
        start, and afterwards at that partition's new head only; the order is rule 3's key
        ``(ts, rank, partition, offset)``, compared as ``ts`` then ``(rank, partition)`` (two
        heads of different partitions never tie on both).
        """
        parts = self._partitions.values()  # nothing registers partitions while records are released
        for part in parts:
            if part.buffer or part.caught_up:
                part.waited = 0.0
            else:
                part.waited += waited_s
        if self._holding:
            self._hold_waited += waited_s
            self._holding = False
        leaders = self._leaders
        max_wait_s = self.max_wait_s
        counted = False
        for part in parts:  # rule 2: invalid heads go at once
            buffer = part.buffer
            while buffer and buffer[0].ts is None:
                yield buffer.popleft()
        while True:
            best: _Partition | None = None
            best_ts = 0.0
            expired = False
            for part in parts:
                buffer = part.buffer
                if not buffer:
                    if part.caught_up:
                        continue
                    if part.waited < max_wait_s:
                        return  # rule 4: a lagging partition could still sort first
                    expired = True  # rule 5: waited long enough
                    continue
                ts = buffer[0].ts
                assert ts is not None, "rule 2 released the invalid heads"
                if best is None or ts < best_ts or (ts == best_ts and part.order < best.order):
                    best, best_ts = part, ts
            if best is None:
                return
            buffer = best.buffer
            if (
                leaders
                and not best.leads
                and self._may_still_come(best_ts)
                and (self.seen is None or not self.seen(buffer[0]))
            ):  # rules 6 and 7: its event may not be on the broker yet
                if self._hold_waited < max_wait_s:
                    self._holding = True
                    return
                if not self._hold_counted:
                    self.wait_expirations += 1
                    self._hold_counted = True
            if expired and not counted:
                self.wait_expirations += 1
                counted = True
            item = buffer.popleft()
            if best.leads and (self.leading_ts is None or best_ts > self.leading_ts):
                self.leading_ts = best_ts
            yield item
            while buffer and buffer[0].ts is None:  # rule 2 for the one head that changed
                yield buffer.popleft()
