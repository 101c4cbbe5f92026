"""The processing loop: fetch -> decode -> merge -> apply a slice -> hand output over -> checkpoint.

One turn fetches what the consumer has (without waiting when the last turn left released
records behind), decodes it into merge items, tells the merge which partitions are caught up,
and applies released records for at most :data:`PROCESS_SLICE_S`; then it lets the other tasks
of the event loop run (output senders, aiokafka's fetcher, the HTTP API, a landing checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import time

from stream.engine.backpressure import Backpressure
from stream.engine.checkpoint_schedule import CheckpointSchedule
from stream.engine.checkpointer import Checkpointer
from stream.engine.decoding import RecordDecoder
from stream.engine.handlers import RecordHandlers
from stream.engine.kafka_io import KafkaIO
from stream.engine.merge import EventTimeMerge
from stream.engine.output import Output
from stream.engine.runtime import CycleCollector
from stream.engine.telemetry import Telemetry

log = logging.getLogger("stream.engine.processor")

PROCESS_SLICE_S = 0.02
"""The loop applies released records for at most about this long, then lets the other tasks run.

Working through a backlog, every loop turn had input ready, so nothing else on the event loop
ran while a turn applied everything the merge released (2,000+ records, ~0.15 s for
hoeffding_adaptive): aiokafka's sender needs several turns per produce round trip, so the first
prediction was acknowledged after ~2 s and the first checkpoint became durable after ~5.5 s
(measured). The records left over stay buffered in the merge, so the order does not change."""


PUBLISH_INTERVAL_S = 0.05
"""Counts and histograms go to Prometheus at most this often while records flow (and at once when
the input goes idle). Publishing after every turn cost ~25 µs a turn (three histogram flushes,
the counter increments): nothing in a backlog of 500-record turns, but at live load a turn holds
a few records (``python -m bench.hotpath --chunk 5`` under callgrind: 3 % of the loop's
instructions). A scrape every few seconds cannot tell 50 ms apart."""


class ProcessingLoop:
    """Runs turns until ``stop`` is set (or, with ``exit_when_idle``, the input is caught up and idle)."""

    def __init__(
        self,
        kafka: KafkaIO,
        decoder: RecordDecoder,
        merge: EventTimeMerge,
        handlers: RecordHandlers,
        output: Output,
        checkpointer: Checkpointer,
        telemetry: Telemetry,
        *,
        poll_timeout_ms: int,
        max_batch: int,
        checkpoint_interval_s: float,
        checkpoint_max_changes: int = 0,
        exit_when_idle: float | None = None,
        max_buffered_records: int = 0,
    ):
        self.kafka = kafka
        self.decoder = decoder
        self.merge = merge
        self.handlers = handlers
        self.output = output
        self.checkpointer = checkpointer
        self.telemetry = telemetry
        self.poll_timeout_ms = poll_timeout_ms
        self.max_batch = max_batch
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_max_changes = checkpoint_max_changes
        self.exit_when_idle = exit_when_idle
        self.processed = 0
        self.busy_seconds = 0.0
        self.collector = CycleCollector()
        self.backpressure = Backpressure(
            [(tp.topic, tp.partition) for tp in kafka.inputs], max_buffered_records, kafka.pause, kafka.resume
        )

    def publish(self) -> None:
        """Counts (and pending entries, merge wait expirations) to Prometheus."""
        expirations, self.merge.wait_expirations = self.merge.wait_expirations, 0
        self.telemetry.publish_counts(len(self.handlers.pending), expirations)
        self.telemetry.publish_buffer(self.merge.buffered(), len(self.backpressure.paused))

    async def run(self, stop: asyncio.Event) -> int:
        kafka, merge, handlers = self.kafka, self.merge, self.handlers
        checkpointer = self.checkpointer
        schedule = CheckpointSchedule(self.checkpoint_interval_s, self.checkpoint_max_changes, time.monotonic())
        idle_since = time.monotonic()
        first_at: float | None = None
        published_at = 0.0
        unpublished = False
        decode = self.decoder.decode_batch
        while not stop.is_set():
            fetch_started = time.monotonic()
            batch = await kafka.fetch(0 if handlers.sliced else self.poll_timeout_ms, self.max_batch)
            waited = time.monotonic() - fetch_started
            for tp, records in batch.items():
                merge.add((tp.topic, tp.partition), decode(tp.topic, records), caught_up=False)
            for tp in kafka.inputs:
                merge.set_caught_up((tp.topic, tp.partition), await kafka.caught_up(tp))
            now = time.monotonic()
            n = handlers.apply(self.output.admit(merge.pop_ready(waited)), until=time.perf_counter() + PROCESS_SLICE_S)
            self.backpressure.update(merge.buffered_by_partition())
            if n:
                self.processed += n
                self.collector.tick(n)
                idle_since = now
                if first_at is None:
                    first_at = now
                self.busy_seconds = time.monotonic() - first_at
                await self.output.submit()
                unpublished = True
            if unpublished and (not n or now - published_at >= PUBLISH_INTERVAL_S):
                self.publish()
                published_at = now
                unpublished = False
            if n:
                # With input already fetched, fetch and submit return without suspending: let
                # the other tasks run between slices (see PROCESS_SLICE_S).
                await asyncio.sleep(0)
            checkpointer.raise_if_failed()
            self.output.raise_if_failed()  # e.g. fenced by another instance while idle
            if schedule.due(now, checkpointer.changes, checkpointer.landing):
                await checkpointer.checkpoint(wait=False)
                schedule.taken(time.monotonic(), checkpointer.last_pause_s)
                self.telemetry.publish_models()
                self.telemetry.publish_lag(kafka.lag(handlers.state.offsets))
            if (
                self.exit_when_idle is not None
                and not n
                and merge.all_caught_up()
                and now - idle_since >= self.exit_when_idle
            ):
                log.info("caught up and idle for %.1f s: checkpointing and exiting", self.exit_when_idle)
                break
        self.publish()
        self.telemetry.publish_models()
        return self.processed
