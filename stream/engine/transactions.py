"""Exactly-once output: predictions, label requests, dead letters and input offsets in one Kafka transaction.

With ``[output] guarantee = "exactly_once"`` (:class:`TransactionalOutput` in place of
:class:`~stream.engine.output.BatchedOutput`), every ``[output] transaction_interval_ms`` the
output is *cut*: everything the handlers applied so far (a prefix of the deterministic merge
order) and ``state.offsets`` at that moment (the next offset of every input partition) go into
one transaction of aiokafka's transactional producer, committed together with the offsets for
``[kafka] group_id`` (``send_offsets_to_transaction``). A ``read_committed`` consumer sees the
output of a cut entirely or not at all.

Recovery contract
-----------------
The committed transaction, not RocksDB, says what was published. Let ``O_txn`` be the group's
committed offsets and ``O_ckpt`` the offsets of the newest RocksDB checkpoint.

1. **Cut** (on the event loop, between two records): the open messages and the offsets become a
   unit; the next unit fills while this one is committed. A crash now: the unit was never sent,
   ``O_txn`` is the previous cut's; it is replayed and published on restart.
2. **Send**: ``begin_transaction``, one ``send_batch`` per batch (aiokafka adds each partition to
   the transaction before its first produce request), and wait for every batch's
   acknowledgement -- aiokafka's commit flushes pending batches but would commit *without* a
   batch that failed, so a failed batch aborts instead. A crash now leaves an open transaction:
   the restart's ``InitProducerId`` (same ``transactional_id``) aborts it; consumers never see
   it (until then ``read_committed`` consumers wait at the last stable offset, at most the
   broker's transaction timeout).
3. **Commit**: ``send_offsets_to_transaction(offsets, group_id)`` then ``commit_transaction``.
   Once the broker accepted the commit it completes even if we crash (the restart's
   ``InitProducerId`` waits for it): ``O_txn`` becomes this cut's offsets.
4. **Checkpoint** (:mod:`stream.engine.checkpointer`): the snapshot *cuts* (its
   :meth:`TransactionalOutput.barrier`), and the RocksDB write lands only after that cut's
   transaction committed, so ``O_ckpt <= O_txn`` always. No separate group-offset commit.
   A crash between 3 and the RocksDB write costs a replay, never a duplicate.

On restart (:class:`ReplayCut`): the producer is started first (fencing any previous instance and
settling its open transaction), then ``O_txn`` is read -- only offsets whose metadata names this
processor's output topics (:func:`output_identity`; another config sharing the group published
elsewhere) -- and the state restored from ``O_ckpt`` is
replayed in the same merge order with output *suppressed* for every record whose offset is below
``O_txn`` of its partition: because the order is deterministic, the records before the last
committed cut are exactly those, and their output is the committed one. From there output is
published again. The offsets a transaction commits never go below ``O_txn``.

Errors
------
- **Fenced** (``ProducerFenced``/``INVALID_PRODUCER_EPOCH``: another instance started with the same
  transactional id, or this one's transaction outlived the broker's transaction timeout): fatal,
  :class:`OutputFenced` stops the processor with one line; nothing more is published.
- Any other ``KafkaError`` or a transaction that does not finish in time (aiokafka#1145:
  transactions stuck after a broker change): the producer is replaced by a new one with the same
  transactional id (whose ``InitProducerId`` aborts the open transaction), the group's committed
  offsets tell whether the unit's commit had landed after all, and if not it is sent again.
  After :data:`MAX_ATTEMPTS` failures in a row the processor stops (:class:`OutputError`).
- An idle processor confirms every :data:`IDLE_PROBE_S` that it still owns its transactional id
  (an offsets-only transaction), so a fenced idle instance stops promptly too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Iterable, Iterator, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from stream.engine.output import OutputError, partition_for
from stream.errors import RiverbedError

log = logging.getLogger("stream.engine.processor")

MAX_ATTEMPTS = 6
"""Failed transactions in a row (each retried with a new producer) before the processor stops."""
IDLE_PROBE_S = 2.0
"""An idle processor checks this often that no other instance took its transactional id over."""
MAX_OPEN_MESSAGES = 200_000
"""Messages the open unit may hold while a transaction is in flight before ``submit`` waits."""
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch)


class InputPositions(Protocol):
    """What a cut reads: the next offset of every input partition (a :class:`~stream.engine.stream_state.StreamState` has it)."""

    offsets: dict[tuple[str, int], int]


class OutputFenced(RiverbedError):
    """Another instance with the same transactional id took over; this one must stop."""

    exit_code = 1


def transactional_id(group_id: str, events_topic: str, labels_topic: str) -> str:
    """The stable transactional id of the processor of these inputs (the same on every restart).

    >>> transactional_id("riverbed", "events", "labels")
    'riverbed-riverbed-events-labels'
    """
    return f"riverbed-{group_id}-{events_topic}-{labels_topic}"


def output_identity(predictions: str, deadletter: str, label_requests: str) -> str:
    """The offset metadata each transaction commits: which output topics its offsets vouch for.

    Offsets committed by a processor that published to *other* topics (another config sharing
    the group) say nothing about this one's output, so they are not a suppression cut.

    >>> output_identity("predictions", "deadletter", "label-requests")
    'riverbed-output predictions,deadletter,label-requests'
    """
    return f"riverbed-output {predictions},{deadletter},{label_requests}"


def replay_floor(committed: dict[tuple[str, int], tuple[int, str]], identity: str) -> dict[tuple[str, int], int]:
    """The committed cut ``O_txn``: the committed offsets whose metadata is this processor's ``identity``.

    >>> replay_floor({("e", 0): (5, "riverbed-output a,b,c"), ("l", 0): (7, "lag tool")}, "riverbed-output a,b,c")
    {('e', 0): 5}
    """
    foreign = {key: meta for key, (_, meta) in committed.items() if meta != identity}
    if foreign:
        log.warning(
            "the consumer group's offsets for %s were not committed by a processor publishing to the same "
            "topics (%s): they are not taken as published output; give each processor its own [kafka] group_id",
            ", ".join(f"{t}:{p}" for t, p in sorted(foreign)), sorted(set(foreign.values()))[0] or "no metadata",
        )
    return {key: offset for key, (offset, meta) in committed.items() if meta == identity}


def is_fenced(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) says another producer owns the transactional id."""
    while exc is not None:
        if isinstance(exc, FENCED_ERRORS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class ReplayCut:
    """Suppresses output of records below the committed cut ``O_txn`` (see the module docstring).

    Parameters
    ----------
    committed
        ``{(topic, partition): next offset}`` the group's committed transaction covers.
    state
        The state being replayed (its offsets say when the replay is past the cut).
    """

    def __init__(self, committed: dict[tuple[str, int], int], state: InputPositions):
        self.floor = dict(committed)
        self.state = state
        self.suppressing = False
        self.suppressed_records = 0
        self._prune()

    @property
    def active(self) -> bool:
        """True while some partition is still replaying below the cut."""
        return bool(self._pending)

    def admit(self, items: Iterable) -> Iterator:
        """Yield merge items unchanged, marking while each is applied whether its output is suppressed."""
        pending = self._pending
        try:
            for item in items:
                record = item.payload[1]
                cut = pending.get((record.topic, record.partition))
                self.suppressing = cut is not None and record.offset < cut
                self.suppressed_records += self.suppressing
                yield item
        finally:
            self.suppressing = False
            self._prune()

    def _prune(self) -> None:
        offsets = self.state.offsets
        self._pending = {key: cut for key, cut in self.floor.items() if offsets.get(key, -1) < cut}


class _Unit:
    """The output of one cut: messages by output partition, the input offsets, a sequence number."""

    __slots__ = ("seq", "messages", "count", "offsets")

    def __init__(self, seq: int, messages: dict, count: int, offsets: dict[tuple[str, int], int]):
        self.seq = seq
        self.messages = messages
        self.count = count
        self.offsets = offsets


class TransactionalOutput:
    """Output committed in Kafka transactions, one per cut (see the module docstring).

    Parameters
    ----------
    producer
        A started ``AIOKafkaProducer`` with ``transactional_id`` set.
    renew_producer
        ``await renew_producer()`` replaces the producer by a new one with the same transactional
        id (after a failed transaction) and returns it.
    read_committed
        ``await read_committed()`` -> ``{(topic, partition): (offset, metadata)}`` committed for the group.
    partitions
        Partitions of each output topic.
    state
        The state the handlers change (its offsets are committed with each cut).
    group_id
        The consumer group the offsets are committed for.
    interval_s
        Time between cuts.
    replay
        What to suppress while replaying below the committed cut.
    identity
        The metadata committed with the offsets (:func:`output_identity`).
    transaction_timeout_s
        The producer's transaction timeout; a transaction taking half of it is retried.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        renew_producer: Callable[[], Awaitable[AIOKafkaProducer]],
        read_committed: Callable[[], Awaitable[dict[tuple[str, int], tuple[int, str]]]],
        partitions: dict[str, int],
        state: InputPositions,
        group_id: str,
        *,
        interval_s: float,
        replay: ReplayCut,
        identity: str = "",
        transaction_timeout_s: float = 60.0,
    ):
        self._producer = producer
        self._renew_producer = renew_producer
        self._read_committed = read_committed
        self._partitions = dict(partitions)
        self.state = state
        self.group_id = group_id
        self.interval_s = interval_s
        self.replay = replay
        self.identity = identity
        self.transaction_timeout_s = transaction_timeout_s
        self._open: dict[tuple[str, int], list] = {}
        self._open_count = 0
        self._units: deque[_Unit] = deque()
        self._next_seq = 1
        self._committed_seq = 0
        self._committed_offsets = {key: cut for key, cut in replay.floor.items()}
        self._last_cut = time.monotonic()
        self._last_transaction = time.monotonic()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._failure: BaseException | None = None
        self._task: asyncio.Task | None = None
        self.acked = 0
        """Messages in committed transactions so far."""
        self.transactions = 0
        """Transactions committed so far."""

    def start(self) -> None:
        """Start the task that cuts and commits (also probes, while idle, that the id is still ours)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    # -- the Output interface (what the handlers, the loop and the checkpointer use) ------------

    def admit(self, items: Iterable) -> Iterable:
        """The merge items to apply, with output suppressed for those below the committed cut."""
        return self.replay.admit(items) if self.replay.active else items

    def add(self, topic: str, key: bytes | None, value: bytes | None, headers=(),
            partition: int | None = None) -> None:
        """Queue one message in the open unit; its partition is ``partition`` when given, else chosen by key."""
        if self.replay.suppressing:
            return  # already published in a committed transaction
        slot = (topic, partition_for(key, self._partitions[topic]) if partition is None else partition)
        messages = self._open.get(slot)
        if messages is None:
            messages = self._open[slot] = []
        messages.append((key, value, list(headers)))
        self._open_count += 1

    async def submit(self) -> None:
        """Start the committing task; wait only while the open unit is very large (backpressure)."""
        self.raise_if_failed()
        self.start()
        while self._open_count > MAX_OPEN_MESSAGES and self._units and self._failure is None:
            await self._wait_progress()
        self.raise_if_failed()

    def barrier(self) -> int:
        """Cut now (everything applied so far); :meth:`wait` returns once that cut is committed."""
        self._cut()
        self.start()
        return self._next_seq - 1

    async def wait(self, barrier: int) -> None:
        """Wait until the transaction of cut ``barrier`` (and every earlier one) committed.

        Raises
        ------
        OutputFenced
            Another instance took the transactional id over.
        OutputError
            The transaction could not be committed.
        """
        while self._committed_seq < barrier and self._failure is None:
            self._wake.set()
            await self._wait_progress()
        self.raise_if_failed()

    async def flush(self) -> None:
        await self.wait(self.barrier())

    def raise_if_failed(self) -> None:
        exc = self._failure
        if exc is None:
            return
        if isinstance(exc, RiverbedError):
            raise exc
        raise OutputError(f"Kafka did not commit the output transaction: {exc!r}") from exc

    async def close(self) -> None:
        """Stop committing; a transaction left open is aborted (when the producer still can)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._abort_open()

    # -- cutting and committing ----------------------------------------------------------------

    def _cut(self) -> None:
        """Close the open unit at this point of the merge order (skipped when nothing changed)."""
        offsets = self._offsets_now()
        last = self._units[-1].offsets if self._units else self._committed_offsets
        self._last_cut = time.monotonic()
        if not self._open_count and offsets == last:
            return
        self._units.append(_Unit(self._next_seq, self._open, self._open_count, offsets))
        self._next_seq += 1
        self._open, self._open_count = {}, 0
        self._wake.set()

    def _offsets_now(self) -> dict[tuple[str, int], int]:
        """``state.offsets``, never below the committed cut (a replay must not move the group back)."""
        offsets = dict(self.state.offsets)
        for key, cut in self.replay.floor.items():
            if offsets.get(key, -1) < cut:
                offsets[key] = cut
        return offsets

    async def _wait_progress(self) -> None:
        await self._progress.wait()

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        """Cut every interval and commit the units in order, one transaction at a time."""
        try:
            while True:
                if not self._units:
                    delay = self._last_cut + self.interval_s - time.monotonic()
                    if delay > 0:
                        self._wake.clear()
                        try:
                            await asyncio.wait_for(self._wake.wait(), delay)
                        except asyncio.TimeoutError:
                            pass
                        continue
                    self._cut()
                if self._units:
                    unit = self._units[0]
                    await self._commit(unit)
                    self._units.popleft()
                    self._committed_seq = unit.seq
                    self._committed_offsets = unit.offsets
                    self.acked += unit.count
                    self.transactions += 1
                    self._notify()
                elif self._committed_offsets and time.monotonic() - self._last_transaction >= IDLE_PROBE_S:
                    await self._commit(_Unit(0, {}, 0, dict(self._committed_offsets)))  # still ours?
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by submit(), wait() and the loop's raise_if_failed()
            self._failure = exc
            self._notify()

    async def _commit(self, unit: _Unit) -> None:
        """Commit ``unit`` in one transaction, retrying with a new producer on failure."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await asyncio.wait_for(self._transact(unit), self.transaction_timeout_s / 2)
                self._last_transaction = time.monotonic()
                return
            except asyncio.CancelledError:
                raise
            except (KafkaError, asyncio.TimeoutError, AssertionError) as exc:
                # AssertionError: aiokafka's transaction manager refuses a state change after a
                # fatal error in its sender; the sender's exception says why (fenced or not).
                cause = self._sender_failure() or exc
                if is_fenced(cause):
                    raise self._fenced() from cause
                if attempt == MAX_ATTEMPTS:
                    raise OutputError(
                        f"Kafka did not commit the output transaction after {attempt} attempts "
                        f"({type(cause).__name__}: {cause}); check the broker"
                    ) from cause
                log.warning(
                    "output transaction failed (%s: %s): starting a new producer and retrying (attempt %d of %d)",
                    type(cause).__name__, cause, attempt + 1, MAX_ATTEMPTS,
                )
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
                if await self._renew_and_check(unit):
                    self._last_transaction = time.monotonic()
                    return

    async def _transact(self, unit: _Unit) -> None:
        producer = self._producer
        await producer.begin_transaction()
        futures = []
        for (topic, partition), messages in unit.messages.items():
            for batch in self._batches(messages):
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        if futures:
            await asyncio.wait(futures)
            for future in futures:
                if future.exception() is not None:
                    raise future.exception()
        if unit.offsets:
            offsets = {TopicPartition(t, p): (o, self.identity) for (t, p), o in unit.offsets.items()}
            await producer.send_offsets_to_transaction(offsets, self.group_id)
        await producer.commit_transaction()

    def _batches(self, messages: list) -> Iterator:
        """Closed aiokafka batches holding ``messages`` in order."""
        batch = self._producer.create_batch()
        for key, value, headers in messages:
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                if not batch.record_count():
                    raise OutputError(
                        f"a message of {len(value or b'')} bytes does not fit in one batch; "
                        "lower [codec] max_message_bytes"
                    )
                batch.close()
                yield batch
                batch = self._producer.create_batch()
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    raise OutputError(
                        f"a message of {len(value or b'')} bytes does not fit in one batch; "
                        "lower [codec] max_message_bytes"
                    )
        if batch.record_count():
            batch.close()
            yield batch

    async def _renew_and_check(self, unit: _Unit) -> bool:
        """A new producer (aborting the open transaction); True when ``unit`` had committed after all."""
        self._producer = await self._renew_producer()
        if not unit.offsets:
            return False
        committed = await self._read_committed()
        landed = all(committed.get(key) == (offset, self.identity) for key, offset in unit.offsets.items())
        if landed:
            log.info("the failed transaction had committed after all: not sending it again")
        return landed

    def _sender_failure(self) -> BaseException | None:
        """The exception that stopped aiokafka's sender task, if it stopped (aiokafka internals)."""
        task = getattr(getattr(self._producer, "_sender", None), "sender_task", None)
        if task is not None and task.done() and not task.cancelled():
            return task.exception()
        return None

    def _fenced(self) -> OutputFenced:
        tid = getattr(getattr(self._producer, "_txn_manager", None), "transactional_id", "?")
        return OutputFenced(
            f"another riverbed instance with transactional id {tid!r} took over these topics "
            "(or this one's transaction outlived the broker's transaction timeout); "
            "this one stopped and published nothing more"
        )

    async def _abort_open(self) -> None:
        manager = getattr(self._producer, "_txn_manager", None)
        if manager is None or not manager.is_in_transaction() or self._sender_failure() is not None:
            return
        try:
            await asyncio.wait_for(self._producer.abort_transaction(), 5.0)
        except Exception as exc:  # the broker aborts it at the transaction timeout, or the restart does
            log.warning("could not abort the open output transaction: %s", exc)
