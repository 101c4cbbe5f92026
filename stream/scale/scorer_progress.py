"""A scorer's progress: where its outputs go and when its input offsets count as done.

A scorer keeps no durable state: what it has done is its consumer group's committed offsets on
``[topics] events``. The two output guarantees differ only in how outputs and offsets are tied,
so each is one part behind the same interface (:class:`ScorerProgress`), and
:class:`~stream.scale.scorer.Scorer` is the same loop for both.

At least once (:class:`AckedProgress`)
--------------------------------------
One :class:`~stream.engine.output.BatchedOutput` for every partition. Every
:data:`COMMIT_INTERVAL_S`, on stop and before partitions are revoked: take the output's barrier,
wait until everything before it is acknowledged, then commit the offsets of the records scored
before it. A crash replays at most the uncommitted records (duplicates, never a loss).

Exactly once (:class:`TransactionalProgress`)
---------------------------------------------
The group's offsets can only be tied to outputs by a transaction, and aiokafka speaks version 0
of the transaction requests (no consumer-group generation in ``TxnOffsetCommit``, KIP-447): the
broker cannot tell a zombie member from the partition's owner. So fencing goes by
``transactional_id``: **one transactional producer per owned events partition**, with the id
:func:`scorer_transactional_id` ``(group, events topic, partition)``, the same in every scorer.

- **Acquire** (the group assigned partition ``p``): start the producer of ``p``. Its
  ``InitProducerId`` bumps the id's epoch, so the previous owner's producer of ``p`` is fenced
  (it can publish nothing more), and the broker first settles that owner's open transaction
  (aborted if it was not committing, completed if it was). Only *then* read ``p``'s committed
  offset and seek there: an offset read before the settlement could miss a commit in flight.
- **Score**: the outputs of ``p``'s records (predictions, served records, dead letters) go to
  ``p``'s :class:`~stream.engine.transactions.TransactionalOutput`, which every
  ``[output] transaction_interval_ms`` commits them in one transaction **together with** ``p``'s
  next offset for ``[scale] scorer_group_id`` (``send_offsets_to_transaction``). A
  ``read_committed`` consumer sees each prediction exactly once: a crash or a kill -9 leaves at
  most an open transaction, which the next owner's acquire aborts, and it replays from the
  offset of the last committed one.
- **Release** (revoked, or stop): commit what was scored from ``p`` (a last transaction), then
  stop its producer.
- **Fenced** (another scorer acquired ``p`` while this one was stalled past the session
  timeout): this scorer drops ``p`` with one warning, publishes nothing more for it and keeps
  scoring its other partitions; the group revokes ``p`` at its next heartbeat. Any other
  transaction failure stops the scorer (:class:`~stream.engine.output.OutputError`) after the
  retries of :class:`TransactionalOutput`.

A scorer owning ``k`` partitions holds ``k`` producers (one connection each to the partition
leaders it writes to) and commits up to ``k`` transactions per interval; eager rebalancing
(aiokafka has no cooperative assignor) releases and acquires every partition of every member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalGenerationError, KafkaError, RebalanceInProgressError

from stream.engine.kafka_io import committed_offsets, restart_producer, stop_producer
from stream.engine.output import BatchedOutput
from stream.engine.transactions import OutputFenced, ReplayCut, TransactionalOutput

log = logging.getLogger("stream.scale.scorer")

#: At least once: offsets of delivered records are committed about this often.
COMMIT_INTERVAL_S = 0.5
#: Commit errors that mean "a rebalance is under way": the revocation commits instead.
REBALANCE_ERRORS = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError)


class Output(Protocol):
    """Where :class:`~stream.scale.scorer.Scorer` adds one record's outputs."""

    def add(self, topic: str, key: bytes | None, value: bytes | None, headers=(),
            partition: int | None = None) -> None: ...


class ScorerProgress(Protocol):
    """The part of a scorer that owns its outputs and its committed offsets (see the module docstring)."""

    @property
    def commits(self) -> int:
        """Offset commits (at least once) or committed transactions (exactly once) so far."""

    async def start(self) -> None:
        """Start the producer(s) that exist before any partition is assigned."""

    def output_for(self, tp: TopicPartition) -> Output | None:
        """Where the outputs of ``tp``'s records go; None: skip them (not owned, or not acquired yet)."""

    def advance(self, tp: TopicPartition, next_offset: int) -> None:
        """Every record of ``tp`` before ``next_offset`` has its outputs added."""

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset of ``tp`` whose outputs are not added yet (None: nothing scored from it)."""

    async def submit(self) -> None:
        """Hand what was added over for delivery (waits only for backpressure)."""

    async def tick(self, now: float) -> None:
        """Called every loop turn: commit when due; raise when delivery failed."""

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """The group takes ``tps`` away: make what was scored from them durable first."""

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """The group assigned ``tps`` (after a rebalance; every member's revocations ran first)."""

    async def finish(self) -> None:
        """Stop: make everything scored so far durable (raises when it cannot be)."""

    async def close(self) -> None:
        """Release every producer (after :meth:`finish`, or after a failure)."""


def scorer_transactional_id(group_id: str, events_topic: str, partition: int) -> str:
    """The transactional id of the scorers' producer for one events partition (the same in every scorer).

    >>> scorer_transactional_id("riverbed-scorers", "events", 3)
    'riverbed-scorer-riverbed-scorers-events-3'
    """
    return f"riverbed-scorer-{group_id}-{events_topic}-{partition}"


def scorer_output_identity(predictions: str, deadletter: str, served: str) -> str:
    """The offset metadata every scorer transaction commits (which outputs its offsets vouch for).

    >>> scorer_output_identity("predictions", "deadletter", "served")
    'riverbed-scorer-output predictions,deadletter,served'
    """
    return f"riverbed-scorer-output {predictions},{deadletter},{served}"


class AckedProgress:
    """At least once: offsets committed after the outputs before them were acknowledged.

    Parameters
    ----------
    consumer
        The scorer's events consumer (its group's offsets are committed).
    producer_settings
        Settings of the one output producer (no ``transactional_id``).
    partitions
        Partitions of each output topic.
    """

    def __init__(self, consumer: AIOKafkaConsumer, producer_settings: dict[str, Any], partitions: dict[str, int]):
        self.consumer = consumer
        self.producer = AIOKafkaProducer(**producer_settings)
        self.output = BatchedOutput(self.producer, partitions)
        self.commits = 0
        self._next: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._next_commit = time.monotonic() + COMMIT_INTERVAL_S
        self._started = False

    async def start(self) -> None:
        await self.producer.start()
        self._started = True

    def output_for(self, tp: TopicPartition) -> Output | None:
        # revoked while fetched: its new owner starts at the committed offset
        return self.output if tp in self.consumer.assignment() else None

    def advance(self, tp: TopicPartition, next_offset: int) -> None:
        self._next[tp] = next_offset

    def position(self, tp: TopicPartition) -> int | None:
        return self._next.get(tp)

    async def submit(self) -> None:
        await self.output.submit()

    async def tick(self, now: float) -> None:
        self.output.raise_if_failed()
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        if now >= self._next_commit and (task is None or task.done()):
            self._task = asyncio.create_task(self._commit())
            self._next_commit = now + COMMIT_INTERVAL_S

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        try:
            await self._commit(final=True)
        except Exception as exc:  # the loop surfaces an output failure; the new owner replays from the last commit
            log.warning("could not commit before the partitions were revoked: %r", exc)
        for tp in tps:
            self._next.pop(tp, None)

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        owned = set(tps)
        for tp in [tp for tp in self._next if tp not in owned]:
            del self._next[tp]

    async def finish(self) -> None:
        await self._commit(final=True)

    async def close(self) -> None:
        try:
            await self.output.close()
        finally:
            if self._started:
                self._started = False
                await self.producer.stop()

    async def _commit(self, final: bool = False) -> None:
        """Wait until the outputs of the records scored so far are acknowledged, then commit their offsets.

        ``final`` (stop, revocation): also wait for a periodic commit in flight, and raise on a
        failed commit other than a rebalance under way. Raises
        :class:`~stream.engine.output.OutputError` when some output was not acknowledged
        (nothing is committed then).
        """
        if final and self._task is not None and not self._task.done():
            try:
                await self._task
            except Exception:  # reported below by this commit, or by tick()
                pass
        async with self._lock:
            barrier = self.output.barrier()
            offsets = dict(self._next)
            await self.output.wait(barrier)  # raises OutputError: nothing past it is committed
            owned = self.consumer.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in owned}
            if not offsets:
                return
            try:
                await self.consumer.commit(offsets)
            except REBALANCE_ERRORS as exc:
                log.info("offset commit deferred by a rebalance: %s", type(exc).__name__)
                return
            except KafkaError as exc:
                if final:
                    raise
                log.warning("offset commit failed (retried in %.1f s): %r", COMMIT_INTERVAL_S, exc)
                return
            self.commits += 1


@dataclass
class _Positions:
    """One partition's input position, read by its :class:`TransactionalOutput` at each cut."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class _Owned:
    """An acquired events partition: its producer, its transactional output and its position."""

    producer: AIOKafkaProducer
    output: TransactionalOutput
    positions: _Positions
    key: tuple[str, int]


class TransactionalProgress:
    """Exactly once: per owned events partition, outputs and offsets in one transaction (module docstring).

    Parameters
    ----------
    consumer
        The scorer's events consumer.
    producer_settings
        Settings of the output producers, without ``transactional_id`` (set per partition here).
    partitions
        Partitions of each output topic.
    group_id, events_topic
        The scorers' group and the events topic (they name the transactional ids).
    interval_s
        Time between transactions of one partition (``[output] transaction_interval_ms``).
    identity
        Offset metadata committed with each transaction (:func:`scorer_output_identity`).
    transaction_timeout_s
        The producers' transaction timeout.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer_settings: dict[str, Any],
        partitions: dict[str, int],
        *,
        group_id: str,
        events_topic: str,
        interval_s: float,
        identity: str,
        transaction_timeout_s: float,
    ):
        self.consumer = consumer
        self.producer_settings = producer_settings
        self.partitions = dict(partitions)
        self.group_id = group_id
        self.events_topic = events_topic
        self.interval_s = interval_s
        self.identity = identity
        self.transaction_timeout_s = transaction_timeout_s
        self._owned: dict[TopicPartition, _Owned] = {}
        self._failure: BaseException | None = None
        self._retired = 0
        self.dropped: list[TopicPartition] = []
        """Partitions given up because another scorer's producer fenced this one's."""

    @property
    def commits(self) -> int:
        return self._retired + sum(owned.output.transactions for owned in self._owned.values())

    async def start(self) -> None:
        """Nothing to start: each partition's producer starts when the group assigns it."""

    def output_for(self, tp: TopicPartition) -> Output | None:
        owned = self._owned.get(tp)
        return None if owned is None else owned.output

    def advance(self, tp: TopicPartition, next_offset: int) -> None:
        owned = self._owned[tp]
        owned.positions.offsets[owned.key] = next_offset

    def position(self, tp: TopicPartition) -> int | None:
        owned = self._owned.get(tp)
        return None if owned is None else owned.positions.offsets.get(owned.key)

    async def submit(self) -> None:
        for tp, owned in list(self._owned.items()):
            try:
                await owned.output.submit()
            except OutputFenced as exc:
                await self._drop(tp, exc)

    async def tick(self, now: float) -> None:
        if self._failure is not None:
            raise self._failure
        for tp, owned in list(self._owned.items()):
            try:
                owned.output.raise_if_failed()
            except OutputFenced as exc:
                await self._drop(tp, exc)

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        tps = set(tps)
        await self.revoked([tp for tp in self._owned if tp not in tps])
        try:
            await asyncio.gather(*(self._acquire(tp) for tp in sorted(tps) if tp not in self._owned))
        except Exception as exc:  # its records would be skipped: the loop stops with this instead
            self._failure = exc
            log.error("could not take over an events partition: %r", exc)

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        await asyncio.gather(*(self._release(tp) for tp in list(tps) if tp in self._owned))

    async def finish(self) -> None:
        await asyncio.gather(*(self._flush(tp, owned) for tp, owned in list(self._owned.items())))

    async def close(self) -> None:
        await asyncio.gather(*(self._stop(tp) for tp in list(self._owned)), return_exceptions=True)

    # -- one partition -------------------------------------------------------------------------

    async def _acquire(self, tp: TopicPartition) -> None:
        tid = scorer_transactional_id(self.group_id, self.events_topic, tp.partition)
        settings = dict(self.producer_settings, transactional_id=tid,
                        transaction_timeout_ms=int(self.transaction_timeout_s * 1000))
        producer = AIOKafkaProducer(**settings)
        await producer.start()  # fences the previous owner's producer and settles its open transaction
        try:
            committed = (await committed_offsets(self.consumer, [tp])).get((tp.topic, tp.partition))
        except BaseException:
            await producer.stop()
            raise
        key = (tp.topic, tp.partition)
        positions = _Positions()
        floor: dict[tuple[str, int], int] = {}
        if committed is None:
            await self.consumer.seek_to_beginning(tp)  # no transaction of this partition ever committed
        else:
            offset, meta = committed
            if meta != self.identity:
                log.warning("%s:%d: the committed offset %d was not committed by an exactly-once scorer "
                            "publishing to the same topics (%s): starting there", tp.topic, tp.partition,
                            offset, meta or "no metadata")
            floor[key] = positions.offsets[key] = offset
            self.consumer.seek(tp, offset)

        async def renew() -> AIOKafkaProducer:
            owned = self._owned[tp]
            owned.producer = await restart_producer(owned.producer, settings)  # aborts the failed transaction
            return owned.producer

        async def read_committed() -> dict[tuple[str, int], tuple[int, str]]:
            return await committed_offsets(self.consumer, [tp])

        output = TransactionalOutput(
            producer, renew, read_committed, self.partitions, positions, self.group_id,
            interval_s=self.interval_s, replay=ReplayCut(floor, positions), identity=self.identity,
            transaction_timeout_s=self.transaction_timeout_s,
        )
        output.start()
        self._owned[tp] = _Owned(producer, output, positions, key)
        log.info("%s:%d: transactional id %s, starting at offset %s", tp.topic, tp.partition, tid,
                 "the beginning" if committed is None else committed[0])

    async def _flush(self, tp: TopicPartition, owned: _Owned) -> None:
        try:
            await owned.output.flush()
        except OutputFenced as exc:
            await self._drop(tp, exc)

    async def _release(self, tp: TopicPartition) -> None:
        owned = self._owned.get(tp)
        if owned is None:
            return
        try:
            await self._flush(tp, owned)
        except Exception as exc:  # its new owner replays from the last committed transaction
            log.warning("%s:%d: could not commit before the partition was revoked: %r", tp.topic, tp.partition, exc)
        await self._stop(tp)

    async def _drop(self, tp: TopicPartition, exc: OutputFenced) -> None:
        if tp not in self._owned:
            return
        log.warning("%s:%d: another scorer took this partition over (%s); dropping it until the group assigns "
                    "it again", tp.topic, tp.partition, exc)
        self.dropped.append(tp)
        await self._stop(tp)

    async def _stop(self, tp: TopicPartition) -> None:
        owned = self._owned.pop(tp, None)
        if owned is None:
            return
        self._retired += owned.output.transactions
        try:
            await owned.output.close()
        finally:
            failed = await stop_producer(owned.producer)
            if failed is not None:
                log.debug("%s:%d: producer did not stop cleanly: %r", tp.topic, tp.partition, failed)
