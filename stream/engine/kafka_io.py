"""Kafka I/O of the processor: clients, assignment, seek, fetch, caught-up, lag, offset commits.

Contract
--------
- The consumer is manually assigned *every* partition of the input topics (River models are
  single-writer), never auto-commits, reads ``read_committed`` and starts each partition at the
  checkpointed offset (the beginning when there is none): the checkpoint, not the consumer group,
  is the truth on restart.
- At-least-once: group offsets are committed only for what a durable checkpoint covers, for lag
  tools. Exactly-once: they are committed inside the output transactions and are what says how
  much output was published (:mod:`stream.engine.transactions`); :meth:`KafkaIO.committed` reads
  them on restart.
- The producer is idempotent with ``acks=all``; output goes through
  :class:`~stream.engine.output.BatchedOutput` built on it, or, exactly-once, it is transactional
  with a stable :attr:`KafkaIO.transactional_id` and output goes through
  :class:`~stream.engine.transactions.TransactionalOutput`.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.config import Config
from stream.connect.security import aiokafka_security
from stream.engine.transactions import transactional_id

TRANSACTION_TIMEOUT_MS = 60_000
"""The broker aborts a transaction left open this long (a crashed processor's restart aborts it sooner)."""

PRODUCER_STOP_TIMEOUT_S = 10.0
"""How long stopping a producer may take before it is dropped anyway."""


def output_producer_settings(cfg: Config, bootstrap: str, security: dict | None = None) -> dict:
    """The settings of an output producer: idempotent, ``acks=all``, batches of up to 512 KiB
    (closed by the senders of :class:`~stream.engine.output.BatchedOutput`), requests large enough
    for ``[codec] max_message_bytes``. ``security`` defaults to :func:`aiokafka_security` of ``cfg``."""
    return dict(
        bootstrap_servers=bootstrap,
        client_id=cfg.kafka.client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=max(1_048_576, cfg.codec.max_message_bytes + 65_536),
        request_timeout_ms=int(cfg.kafka.request_timeout_s * 1000),
        **(aiokafka_security(cfg) if security is None else security),
    )


async def committed_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[tuple[str, int], tuple[int, str]]:
    """``{(topic, partition): (offset, metadata)}`` committed for ``consumer``'s group (aiokafka's
    coordinator: the public ``committed()`` drops the metadata); partitions without one are left out."""
    partitions = list(partitions)
    if not partitions:
        return {}
    found = await consumer._coordinator.fetch_committed_offsets(partitions)
    return {(tp.topic, tp.partition): (meta.offset, meta.metadata or "")
            for tp, meta in found.items() if meta.offset is not None and meta.offset >= 0}


async def stop_producer(producer: AIOKafkaProducer, timeout_s: float = PRODUCER_STOP_TIMEOUT_S) -> Exception | None:
    """Stop ``producer`` within ``timeout_s``; a broken producer may not stop cleanly: it is dropped
    either way, and the error (None when it stopped) is returned for the caller to log."""
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
    except Exception as exc:
        return exc
    return None


async def restart_producer(old: AIOKafkaProducer, settings: dict) -> AIOKafkaProducer:
    """Stop ``old`` (quietly, see :func:`stop_producer`) and start a new producer with ``settings``;
    with a transactional id, its start aborts ``old``'s open transaction."""
    await stop_producer(old)
    producer = AIOKafkaProducer(**settings)
    await producer.start()
    return producer


class KafkaIO:
    """The consumer and producer of one processor (see the module docstring)."""

    def __init__(self, config: Config, bootstrap: str):
        cfg = config
        max_bytes = cfg.codec.max_message_bytes
        timeout_ms = int(cfg.kafka.request_timeout_s * 1000)
        security = aiokafka_security(cfg)  # TLS context and SASL login; the password is read here
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=cfg.kafka.client_id,
            group_id=cfg.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=timeout_ms,
            fetch_max_wait_ms=min(500, max(10, cfg.processor.poll_timeout_ms)),
            max_partition_fetch_bytes=max(1_048_576, max_bytes + 1024),
            **security,
        )
        self.transactional_id: str | None = None
        """Set in exactly-once mode: stable per processor identity, so a second instance fences the first."""
        if cfg.output.guarantee == "exactly_once":
            self.transactional_id = transactional_id(cfg.kafka.group_id, cfg.topics.events, cfg.topics.labels)
        self._producer_settings = output_producer_settings(cfg, bootstrap, security)
        if self.transactional_id is not None:
            self._producer_settings.update(
                transactional_id=self.transactional_id, transaction_timeout_ms=TRANSACTION_TIMEOUT_MS
            )
        self.producer = AIOKafkaProducer(**self._producer_settings)
        self.inputs: list[TopicPartition] = []
        self.started = False

    async def start(self) -> None:
        await self.consumer.start()
        try:
            await self.producer.start()
        except BaseException:
            await self.consumer.stop()
            raise
        self.started = True

    async def stop(self) -> None:
        try:
            await self.consumer.stop()
        finally:
            await self.producer.stop()

    async def assign(self, partitions: Iterable[tuple[str, int]], offsets: dict[tuple[str, int], int]) -> None:
        """Own ``partitions``; each starts at ``offsets[(topic, partition)]`` or the beginning."""
        self.inputs = [TopicPartition(topic, p) for topic, p in partitions]
        self.consumer.assign(self.inputs)
        for tp in self.inputs:
            offset = offsets.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    def pause(self, keys: list[tuple[str, int]]) -> None:
        """Stop fetching these ``(topic, partition)`` (backpressure); what is buffered stays."""
        self.consumer.pause(*(TopicPartition(t, p) for t, p in keys))

    def resume(self, keys: list[tuple[str, int]]) -> None:
        """Fetch these ``(topic, partition)`` again."""
        self.consumer.resume(*(TopicPartition(t, p) for t, p in keys))

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        return await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)

    async def caught_up(self, tp: TopicPartition) -> bool:
        """True when the consumer's position is at the partition's last stable offset (or high watermark)."""
        end = self.consumer.last_stable_offset(tp)
        if end is None or end < 0:
            end = self.consumer.highwater(tp)
        if end is None:
            return False
        return await self.consumer.position(tp) >= end

    def lag(self, offsets: dict[tuple[str, int], int]) -> dict[str, int | None]:
        """Records behind per input partition (``"topic:partition"``), None before a high watermark is known."""
        lag: dict[str, int | None] = {}
        for tp in self.inputs:
            high = self.consumer.highwater(tp)
            done = offsets.get((tp.topic, tp.partition), 0)
            lag[f"{tp.topic}:{tp.partition}"] = None if high is None else max(0, high - done)
        return lag

    async def committed(self) -> dict[tuple[str, int], int]:
        """The group's committed offset of every input partition that has one (committed transactions only)."""
        return {key: offset for key, (offset, _) in (await self.committed_with_metadata()).items()}

    async def committed_with_metadata(self) -> dict[tuple[str, int], tuple[int, str]]:
        """``{(topic, partition): (offset, metadata)}`` the group committed (aiokafka's coordinator:
        the public ``committed()`` drops the metadata)."""
        return await committed_offsets(self.consumer, self.inputs)

    async def renew_producer(self) -> AIOKafkaProducer:
        """Replace the producer by a new one with the same settings (its start aborts an open transaction)."""
        self.producer = await restart_producer(self.producer, self._producer_settings)
        return self.producer

    async def commit(self, offsets: Iterable[tuple[str, int, int]]) -> None:
        """Commit ``(topic, partition, next offset)`` to the consumer group."""
        await self.consumer.commit({TopicPartition(t, p): o for t, p, o in offsets})

    async def broker_reachable(self, timeout_s: float) -> str | None:
        """None when a metadata round trip answers within ``timeout_s``, else why not."""
        if not self.started:
            return "starting: the Kafka clients are not connected yet"
        try:
            await asyncio.wait_for(self.consumer.topics(), timeout_s)
        except Exception as exc:
            return f"broker unreachable: {type(exc).__name__} {exc}"[:300]
        return None
