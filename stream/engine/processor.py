"""The processor: predict every event at once, learn every label once, checkpoint exactly once.

:class:`Processor` is the composition root of the hot path. It validates the whole
configuration in its constructor (model spec, label requests, transform) before anything has a
side effect, and :meth:`Processor.run` wires the parts, each with one job and its contract in its
own module:

- :mod:`stream.connect` finds or starts Kafka and creates the topics;
- :class:`~stream.engine.kafka_io.KafkaIO` -- clients, assignment, seek, caught-up, lag, commits;
- :class:`~stream.engine.decoding.RecordDecoder` -- decode, validate, transform (invalid -> dead letter);
- :class:`~stream.engine.merge.EventTimeMerge` -- the deterministic event-time order;
- :class:`~stream.engine.handlers.RecordHandlers` -- event -> prediction + pending entry, label ->
  score + learn, any per-record failure -> dead letter;
- :class:`~stream.engine.output.BatchedOutput` (at-least-once) or
  :class:`~stream.engine.transactions.TransactionalOutput` (exactly-once: output and input offsets
  in one Kafka transaction per cut; its recovery contract is written there);
- :class:`~stream.engine.checkpointer.Checkpointer` -- restore, snapshot, land, settle (the
  recovery contract is written there);
- :class:`~stream.engine.telemetry.Telemetry` -- Prometheus metrics and notices;
- :class:`~stream.engine.loop.ProcessingLoop` -- fetch, merge, apply a slice, checkpoint.

The processor also is the :class:`~stream.ops.http_api.LiveService` the HTTP API reads: every
attribute it exposes exists from construction (``None`` until the run has restored the state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from state import Checkpoint, StateStore
from stream.config import Config
from stream.connect.bootstrap import ensure_kafka
from stream.connect.topics import create_topics, topic_partitions
from stream.engine.broker_health import BrokerHealth, install_client_log_limits
from stream.engine.checkpointer import Checkpointer, ModelSpecMismatch, checkpoint_meta, restore_state
from stream.engine.codecs import OutputCodec
from stream.engine.decoding import FeaturePipeline, RecordDecoder
from stream.engine.handlers import EXPIRY_SWEEP_EVENTS, RecordHandlers, Topics
from stream.engine.history import MetricsHistory
from stream.engine.kafka_io import TRANSACTION_TIMEOUT_MS, KafkaIO
from stream.engine.loop import PROCESS_SLICE_S, ProcessingLoop
from stream.engine.merge import EventTimeMerge
from stream.engine.metrics import ServiceMetrics, serve
from stream.engine.model_config import build_model_set, build_sampler, learner_settings, model_spec
from stream.engine.output import BatchedOutput, Output
from stream.engine.runtime import tune_gc
from stream.engine.signals import StopOnSignal
from stream.engine.stream_state import COUNT_NAMES, StreamState
from stream.engine.telemetry import Telemetry
from stream.engine.transactions import ReplayCut, TransactionalOutput, output_identity, replay_floor

__all__ = [
    "COUNT_NAMES", "EXPIRY_SWEEP_EVENTS", "PROCESS_SLICE_S", "ModelSpecMismatch", "Processor", "RunSummary",
    "build_model_set", "build_sampler", "learner_settings",
]

log = logging.getLogger(__name__)

LABEL_RANK, EVENT_RANK = 0, 1


@dataclass
class RunSummary:
    """What one ``run`` did (for the CLI and the demo report)."""

    counts: dict[str, int]
    processed: int
    seconds: float
    checkpoints: int
    resumed_from: int | None
    last_checkpoint: Any = None
    busy_seconds: float = 0.0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)


class Processor(StopOnSignal):
    """The streaming learner. ``await Processor(config).run()`` processes until stopped.

    Parameters
    ----------
    config
        The validated configuration.
    registry
        Prometheus registry (a fresh one per test).
    exit_when_idle
        When set, checkpoint and return once every input is caught up and nothing arrived for
        this many seconds.
    serve_metrics
        Start the ``/metrics`` HTTP server (``[metrics] enabled`` must also be true).
    serve_http
        Start the status page and HTTP API on this loop (``[http] enabled`` must also be true;
        see :mod:`stream.ops.http_api`).

    Raises
    ------
    stream.errors.RiverbedError, learners.errors.LearnerError
        When the configuration asks for a model, transform or label-request setting that cannot
        be built (before any broker is started or topic created).
    """

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        exit_when_idle: float | None = None,
        serve_metrics: bool = True,
        serve_http: bool = True,
    ):
        self.config = config
        self.metrics = ServiceMetrics(registry or CollectorRegistry())
        self.exit_when_idle = exit_when_idle
        self.serve_metrics = serve_metrics and config.metrics.enabled
        self.serve_http = serve_http and config.http.enabled
        self.spec = model_spec(config)
        build_model_set(config)  # the model spec is checked now, not after Kafka was touched
        self.sampler = build_sampler(config)
        self.features = FeaturePipeline.from_config(config)
        t = config.topics
        self.topics = Topics(self.events_topic(), t.labels, t.predictions, t.deadletter, config.labels.request_topic)
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self.state: StreamState | None = None
        self.store: StateStore | None = None
        self.kafka: KafkaIO | None = None
        self.merge: EventTimeMerge | None = None
        self.output: Output | None = None
        self.handlers: RecordHandlers | None = None
        self.checkpointer: Checkpointer | None = None
        self.loop: ProcessingLoop | None = None
        self.resumed_from: int | None = None
        self.refused_checkpoints: list[dict] = []
        """Checkpoints the restore skipped as unusable, newest first (``{"seq", "reason"}``)."""
        self._stop = asyncio.Event()

    # -- what the HTTP API and the public API read (stream.ops.http_api.LiveService) --------

    @property
    def models(self):
        return None if self.state is None else self.state.models

    @property
    def counts(self) -> dict[str, int]:
        return dict.fromkeys(COUNT_NAMES, 0) if self.state is None else self.state.counts

    @property
    def history(self) -> MetricsHistory:
        return MetricsHistory() if self.state is None else self.state.history

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        return None if self.checkpointer is None else self.checkpointer.last

    def checkpoint_meta(self, fingerprints: bool = False) -> dict:
        if self.state is None or self.store is None:
            raise RuntimeError("the processor has not restored its state yet")
        return checkpoint_meta(self.state, self.spec, len(self.store.pending), fingerprints=fingerprints)

    def lag(self) -> dict[str, int | None]:
        if self.kafka is None or self.state is None:
            return {}
        return self.kafka.lag(self.state.offsets)

    async def broker_reachable(self, timeout_s: float) -> str | None:
        if self.kafka is None:
            return "starting: the Kafka clients are not connected yet"
        return await self.kafka.broker_reachable(timeout_s)

    async def checkpoint(self, wait: bool = True) -> None:
        """Checkpoint now (when something changed since the last one)."""
        if self.checkpointer is not None:
            await self.checkpointer.checkpoint(wait=wait)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        started = time.monotonic()
        cfg = self.config
        bootstrap = await asyncio.to_thread(ensure_kafka, cfg)
        partitions = await self._prepare_topics(bootstrap)
        self.store = StateStore(cfg.state.dir, keep=cfg.state.keep)
        http_api = None
        processed = 0
        try:
            restored = restore_state(self.store, cfg, self.sampler)
            self.state, last = restored.state, restored.checkpoint
            self.refused_checkpoints = restored.refused
            self.resumed_from = None if last is None else last.seq
            tune_gc()  # see stream/engine/runtime.py: full GC passes were 12-20% of the loop's time
            telemetry = Telemetry(self.metrics, self.state)
            if self.serve_metrics:
                self.metrics_port = serve(self.metrics, cfg.metrics.host, cfg.metrics.port)
            if self.serve_http:
                from stream.ops.http_api import HttpApi

                http_api = HttpApi(self, cfg.http.host, cfg.http.port, ready_lag=cfg.http.ready_lag)
                self.http_port = await http_api.start()
            telemetry.publish_models()
            self.kafka = kafka = KafkaIO(cfg, bootstrap)
            await kafka.start()
            install_client_log_limits()
            health = BrokerHealth(kafka.broker_reachable, str(bootstrap)).start()
            try:
                processed = await self._consume(kafka, partitions, telemetry, last, restored.changed)
            finally:
                await health.stop()
                await kafka.stop()
        finally:
            if http_api is not None:
                await http_api.stop()
            self.store.close()
        return RunSummary(
            counts=dict(self.counts),
            processed=processed,
            seconds=time.monotonic() - started,
            checkpoints=0 if self.checkpointer is None else self.checkpointer.written,
            resumed_from=self.resumed_from,
            last_checkpoint=self.last_checkpoint,
            invalid_by_reason=dict(self.state.invalid_by_reason) if self.state else {},
            busy_seconds=0.0 if self.loop is None else self.loop.busy_seconds,
        )

    def build_handlers(self, state: StreamState, store: StateStore, output: Output,
                       telemetry: Telemetry) -> RecordHandlers:
        """The record handlers of this run (an extension point: the benchmark adds clocks here)."""
        cfg = self.config
        return RecordHandlers(
            state, store.pending, store.learned, output, OutputCodec(cfg.codec.output), self.topics,
            ttl_s=cfg.labels.ttl_s, publish_challengers=cfg.challengers.publish, observer=telemetry,
        )

    HOLD_UNSEEN_LABELS = False
    """Merge rule 7 (:mod:`stream.engine.merge`): the trainer's events come from independent scorers."""

    def merge_max_wait_s(self) -> float:
        """How long the merge holds a record for a lagging partition: ``[processor] max_wait_ms``."""
        return self.config.processor.max_wait_ms / 1000

    def events_topic(self) -> str:
        """The topic whose records are the events this run applies: ``[topics] events`` (the scale-out
        trainer, :class:`stream.scale.trainer.Trainer`, reads ``[scale] served_topic`` instead)."""
        return self.config.topics.events

    def topic_names(self) -> list[str]:
        """Every topic this run reads or writes (its partition counts size the output)."""
        return self.config.topic_names()

    def create_missing_topics(self, bootstrap: str) -> list[str]:
        """Create what is missing of :meth:`topic_names`; returns the created names."""
        return create_topics(bootstrap, self.topic_names(), self.config.kafka.partitions)

    def build_decoder(self) -> RecordDecoder:
        """The decoder of this run's input records (the trainer decodes served records)."""
        return RecordDecoder.from_config(self.config, self.features, self.topics.events)

    async def before_final_checkpoint(self) -> None:
        """Called once the loop stopped normally, before the last checkpoint (the trainer publishes
        its last snapshot here); nothing by default."""

    async def _build_output(self, kafka: KafkaIO, partitions: dict[str, list[int]], state: StreamState) -> Output:
        """At-least-once batches, or exactly-once transactions resuming after the committed cut."""
        counts = {t: len(ps) for t, ps in partitions.items()}
        cfg = self.config
        if cfg.output.guarantee != "exactly_once":
            return BatchedOutput(kafka.producer, counts)
        t = self.topics
        identity = output_identity(t.predictions, t.deadletter, t.label_requests)
        committed = await kafka.committed_with_metadata()  # after the producer's start: a previous instance is fenced
        replay = ReplayCut(replay_floor(committed, identity), state)
        if replay.active:
            log.info(
                "replaying up to the committed output transaction without publishing: %s",
                ", ".join(f"{t}:{p}<{o}" for (t, p), o in sorted(replay.floor.items())),
            )
        output = TransactionalOutput(
            kafka.producer, kafka.renew_producer, kafka.committed_with_metadata, counts, state, cfg.kafka.group_id,
            interval_s=cfg.output.transaction_interval_ms / 1000, replay=replay, identity=identity,
            transaction_timeout_s=TRANSACTION_TIMEOUT_MS / 1000,
        )
        output.start()
        return output

    async def _prepare_topics(self, bootstrap: str) -> dict[str, list[int]]:
        names = self.topic_names()
        created = await asyncio.to_thread(self.create_missing_topics, bootstrap)
        if created:
            log.info("created topics %s", ", ".join(created))
        return {topic: await asyncio.to_thread(topic_partitions, bootstrap, topic) for topic in names}

    async def _consume(self, kafka: KafkaIO, partitions: dict[str, list[int]], telemetry: Telemetry,
                       last: Checkpoint | None, changed: bool) -> int:
        cfg, state, store, topics = self.config, self.state, self.store, self.topics
        assert state is not None and store is not None, "run() restores the state before consuming"
        inputs = [(topic, p) for topic in (topics.events, topics.labels) for p in partitions[topic]]
        await kafka.assign(inputs, state.offsets)
        self.output = output = await self._build_output(kafka, partitions, state)
        self.handlers = handlers = self.build_handlers(state, store, output, telemetry)
        self.merge = merge = EventTimeMerge(
            {topics.labels: LABEL_RANK, topics.events: EVENT_RANK},
            max_wait_s=self.merge_max_wait_s(),
            leading=topics.events,
            seen=handlers.event_seen,
            hold_unseen=self.HOLD_UNSEEN_LABELS,
        )
        for key in inputs:
            merge.register(key)
        exactly_once = isinstance(output, TransactionalOutput)
        self.checkpointer = checkpointer = Checkpointer(
            store, state, self.spec, output, None if exactly_once else kafka.commit, telemetry,
            last=last, changed=changed,
        )
        decoder = self.build_decoder()
        self.loop = loop = ProcessingLoop(
            kafka, decoder, merge, handlers, output, checkpointer, telemetry,
            poll_timeout_ms=cfg.processor.poll_timeout_ms, max_batch=cfg.processor.max_batch,
            checkpoint_interval_s=cfg.state.checkpoint_interval_s,
            checkpoint_max_changes=cfg.state.checkpoint_max_changes, exit_when_idle=self.exit_when_idle,
            max_buffered_records=cfg.processor.max_buffered_records,
        )
        log.info(
            "consuming %s from %s", ", ".join(f"{t}:{p}" for t, p in inputs),
            "the checkpointed offsets" if state.offsets else "the beginning",
        )
        try:
            processed = await loop.run(self._stop)
            await self.before_final_checkpoint()
            await self.checkpoint()
        finally:
            await checkpointer.settle()
            await output.close()
        return processed
