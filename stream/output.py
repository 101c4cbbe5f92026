"""Batched output to Kafka: predictions and dead-letter copies.

Messages are appended to one aiokafka ``BatchBuilder`` per output partition and submitted with
``send_batch``: no per-message await on the hot path. :meth:`BatchedOutput.flush` waits until
every submitted batch is acknowledged; the checkpoint protocol calls it before writing offsets,
so a checkpoint never covers an input whose output was not delivered.

Partitions are chosen like the Java client's default partitioner (murmur2 of the key), so a
prediction lands on the same partition as any other producer would put its key.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from stream.errors import RiverbedError


class OutputError(RiverbedError):
    """Kafka did not acknowledge output; the processor stops without checkpointing past it."""

    exit_code = 1


def partition_for(key: bytes | None, n_partitions: int) -> int:
    """The partition the Java client's default partitioner picks for ``key``."""
    if n_partitions == 1 or key is None:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions


class BatchedOutput:
    """Collects output messages in batches and sends them without per-message awaits."""

    def __init__(self, producer: AIOKafkaProducer, partitions: dict[str, int]):
        self._producer = producer
        self._partitions = dict(partitions)
        self._open: dict[tuple[str, int], object] = {}
        self._full: list[tuple[str, int, object]] = []
        self._in_flight: list[asyncio.Future] = []
        self.sent = 0

    def add(self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence = ()) -> None:
        partition = partition_for(key, self._partitions[topic])
        slot = (topic, partition)
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
        if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:
            self._full.append((topic, partition, batch))
            batch = self._open[slot] = self._producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:
                raise OutputError(
                    f"a message for {topic} ({len(value or b'')} bytes) does not fit in one batch; "
                    "lower [codec] max_message_bytes or raise the producer's max_batch_size"
                )
        self.sent += 1

    async def submit(self) -> None:
        """Hand every filled or open batch to the producer (does not wait for delivery)."""
        batches = self._full
        self._full = []
        for (topic, partition), batch in self._open.items():
            if batch.record_count():
                batches.append((topic, partition, batch))
        self._open = {}
        for topic, partition, batch in batches:
            self._in_flight.append(await self._producer.send_batch(batch, topic, partition=partition))
        if len(self._in_flight) > 256:
            self._raise_failures(done_only=True)

    def _raise_failures(self, done_only: bool) -> None:
        still = []
        for future in self._in_flight:
            if not future.done():
                if done_only:
                    still.append(future)
                continue
            exc = future.exception()
            if exc is not None:
                raise OutputError(f"Kafka did not accept output: {exc!r}") from exc
        self._in_flight = still

    async def flush(self) -> None:
        """Submit everything and wait until Kafka acknowledged all of it."""
        await self.submit()
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        self._raise_failures(done_only=False)
        self._in_flight = []
