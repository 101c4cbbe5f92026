"""Batched output on the real broker: barriers, ordering, and what flush guarantees."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.engine.output import BatchedOutput, partition_for
from stream.connect.topics import create_topics

pytestmark = pytest.mark.broker


async def _read_all(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def test_a_barrier_covers_exactly_what_was_added_before_it(broker_bootstrap):
    topic = f"output-{uuid.uuid4().hex[:8]}"
    create_topics(broker_bootstrap, [topic], 3)

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=broker_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            out = BatchedOutput(producer, {topic: 3})
            for i in range(2000):
                out.add(topic, f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())])
            barrier = out.barrier()
            await out.submit()
            for i in range(2000, 2500):  # added while the first ones are on their way
                out.add(topic, f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())])
            await out.wait(barrier)
            before = len(await _read_all(broker_bootstrap, topic, 3))
            await out.flush()
            records = await _read_all(broker_bootstrap, topic, 3)
            await out.close()
            return before, records
        finally:
            await producer.stop()

    before, records = asyncio.run(main())
    assert 2000 <= before <= 2500  # everything before the barrier is readable once wait() returns
    assert len(records) == 2500 and out_of_order(records) == []
    for r in records:  # every key on the partition the Java client's partitioner picks
        assert r.partition == partition_for(r.key, 3)


def out_of_order(records) -> list:
    """Keys whose messages are not in the order they were added, within their partition."""
    last: dict[int, int] = {}
    wrong = []
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        n = int(r.value[1:])
        if n < last.get(r.partition, -1):
            wrong.append(r.key)
        last[r.partition] = n
    return wrong


def test_an_empty_barrier_returns_at_once(broker_bootstrap):
    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=broker_bootstrap)
        await producer.start()
        try:
            out = BatchedOutput(producer, {"unused": 1})
            await asyncio.wait_for(out.wait(out.barrier()), 1.0)
            await asyncio.wait_for(out.flush(), 1.0)
        finally:
            await producer.stop()

    asyncio.run(main())
