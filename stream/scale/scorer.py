"""The scorer role of a scaled-out deployment: predict events with the newest verified snapshot.

Contract
--------
- Any number of scorers form the consumer group ``[scale] scorer_group_id`` *subscribed* to
  ``[topics] events`` (auto commit off, ``earliest`` reset, ``read_committed``). aiokafka has no
  cooperative (incremental) rebalancing: the group uses its default eager assignor
  (``RoundRobinPartitionAssignor``), so a rebalance revokes every partition of every member
  for a moment; :class:`_Rebalance` makes what was scored durable before a partition goes. aiokafka
  returns no records while a rebalance is under way, so a graceful handover (a scorer joins or
  leaves) predicts no event twice; only a crash replays the records after the last commit.
- The model served comes from :class:`~stream.scale.follower.SnapshotFollower` (the newest
  verified snapshot on ``[scale] models_topic``, a fresh model of the spec before the first one).
  :attr:`SnapshotFollower.current` is read once per fetched batch: a swap lands between records.
- Per event: decode, validate and transform (:meth:`RecordDecoder.parse_event`); an invalid event,
  or one whose prediction raises (``model_predict_failed``), is copied to the dead-letter topic
  with the same headers as :meth:`stream.engine.handlers.RecordHandlers.dead_letter`. Otherwise
  the prediction (:func:`~stream.engine.messages.prediction_message`, stamped with the
  **snapshot version**, encoded with ``[codec] output``) goes to ``[topics] predictions`` and a
  served record (:func:`~stream.scale.served.encode_served`) to ``[scale] served_topic``, both
  keyed by the event's key. The served record goes to the *partition number of its event*
  (both topics are created with ``[kafka] partitions``): served partition ``p`` then has one
  writer, the owner of events partition ``p``, in that partition's order, so the trainer never
  finds a served record behind later ones of another scorer (its merge would release a label
  first and count it unmatched). With different partition counts it goes by key, with a warning. The event time is the payload ``ts``, else the record timestamp.
- Scorers keep no durable state. Progress is the group's committed offsets, owned by
  :mod:`stream.scale.scorer_progress`: with ``[output] guarantee = "at_least_once"``
  (:class:`~stream.scale.scorer_progress.AckedProgress`) committed only for records whose outputs
  Kafka acknowledged, so a crash replays at most the uncommitted records (a duplicate served
  record is the trainer's to skip); with ``"exactly_once"``
  (:class:`~stream.scale.scorer_progress.TransactionalProgress`) one transactional producer per
  owned events partition commits that partition's outputs and next offset in one transaction, so
  a ``read_committed`` consumer sees each prediction and served record once, across crashes,
  ``kill -9`` and rebalances.
- With ``exit_when_idle``, a scorer that joined its group, is caught up on every partition it
  owns and received nothing for that long flushes, commits and returns.
- Metrics (own registry; ``/metrics`` when ``[metrics] enabled``):
  ``riverbed_scorer_predictions_total``, ``riverbed_scorer_model_version``,
  ``riverbed_snapshot_age_seconds``, ``riverbed_snapshot_swaps_total``,
  ``riverbed_snapshots_rejected_total{reason}``, ``riverbed_scorer_lag`` (records behind, summed
  over the partitions owned) and ``riverbed_invalid_messages_total{topic,reason}`` (dead letters).
  ``/healthz``, ``/readyz``, ``/status`` and ``/metrics`` on ``[http] host``/``port`` when
  ``[http] enabled`` (:mod:`stream.scale.scorer_http`); no status page, history or ``/predict``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.config import Config
from stream.connect.bootstrap import ensure_kafka
from stream.connect.security import aiokafka_security
from stream.connect.topics import topic_partitions
from stream.engine.codecs import InvalidMessage, OutputCodec
from stream.engine.decoding import FeaturePipeline, RecordDecoder
from stream.engine.kafka_io import TRANSACTION_TIMEOUT_MS, output_producer_settings
from stream.engine.messages import challenger_predictions, dead_letter_message, prediction_message
from stream.engine.metrics import ServiceMetrics, serve
from stream.engine.model_config import build_model_set
from stream.engine.signals import StopOnSignal
from stream.engine.transforms import first_line
from stream.scale.follower import SnapshotFollower, SnapshotMetrics
from stream.scale.scorer_progress import (
    AckedProgress, Output, ScorerProgress, TransactionalProgress, scorer_output_identity,
)
from stream.scale.served import encode_served
from stream.scale.topics import create_scale_topics

log = logging.getLogger(__name__)

#: The lag and snapshot-age gauges are refreshed about this often.
PUBLISH_INTERVAL_S = 1.0
#: How long :meth:`SnapshotFollower.start` may read the models topic before serving.
SNAPSHOT_START_TIMEOUT_S = 30.0

#: A member learns of a rebalance (a scorer joined or left) at its next heartbeat: 1 s, not aiokafka's 3 s.
HEARTBEAT_INTERVAL_MS = 1000

COUNT_NAMES = ("events", "predictions", "invalid")


class ScorerMetrics(SnapshotMetrics):
    """Every metric a scorer exports (see the module docstring), registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        super().__init__(registry)
        r = registry
        self.predictions = Counter("riverbed_scorer_predictions", "Predictions published by this scorer.", registry=r)
        self.lag = Gauge("riverbed_scorer_lag", "Events behind, summed over the partitions this scorer owns.",
                         registry=r)
        self.invalid = Counter(
            "riverbed_invalid_messages", "Records sent to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"], registry=r,
        )


@dataclass
class ScorerSummary:
    """What one :meth:`Scorer.run` did (the CLI logs it)."""

    counts: dict[str, int]
    processed: int
    seconds: float
    checkpoints: int
    """Offset commits or committed transactions (a scorer has no checkpoints: its committed offsets
    are its progress)."""
    version: int
    """The snapshot version served at the end."""
    swaps: int
    rejected: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)


class _Rebalance(ConsumerRebalanceListener):
    """Hand revocations and assignments to the scorer's progress; note when the group assigned some."""

    def __init__(self, scorer: "Scorer"):
        self.scorer = scorer

    async def on_partitions_revoked(self, revoked) -> None:
        if self.scorer.progress is not None:
            await self.scorer.progress.revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        if self.scorer.progress is not None:
            await self.scorer.progress.assigned(assigned)
        self.scorer._joined = True
        log.info("scoring %s", ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(assigned)) or "no partition")


class Scorer(StopOnSignal):
    """One scorer replica. ``await Scorer(config).run()`` predicts until stopped.

    Parameters
    ----------
    config
        The validated configuration.
    registry
        Prometheus registry (a fresh one per test).
    exit_when_idle
        When set, flush, commit and return once the scorer's partitions are caught up and nothing
        arrived for this many seconds.
    serve_metrics
        Serve ``/metrics`` (``[metrics] enabled`` must also be true).
    serve_http
        Serve :mod:`stream.scale.scorer_http` (``[http] enabled`` must also be true).

    Raises
    ------
    stream.errors.RiverbedError, learners.errors.LearnerError
        When the model spec or transform cannot be built (before any broker is started or topic
        created).
    """

    STOPPING = "finishing the batch, flushing, committing and stopping"

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
        self.metrics = ScorerMetrics(registry or CollectorRegistry())
        self.exit_when_idle = exit_when_idle
        self.serve_metrics = serve_metrics and config.metrics.enabled
        build_model_set(config)  # the model spec is checked now, not after Kafka was touched
        self.decoder = RecordDecoder.from_config(config, FeaturePipeline.from_config(config))
        self.encode = OutputCodec(config.codec.output).encode
        self.publish_challengers = config.challengers.publish
        self.counts: dict[str, int] = dict.fromkeys(COUNT_NAMES, 0)
        self.invalid_by_reason: dict[str, int] = {}
        self.processed = 0
        self.metrics_port: int | None = None
        self.follower: SnapshotFollower | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.serve_http = serve_http and config.http.enabled
        self.http_port: int | None = None
        self.lag: int | None = None
        """Events behind on the partitions owned, refreshed with the lag gauge (None: not yet)."""
        self.served_by_partition = True
        """Served records go to the partition number of their event (both topics have as many partitions)."""
        self.progress: ScorerProgress | None = None
        """Outputs and committed offsets (:mod:`stream.scale.scorer_progress`), set by :meth:`run`."""
        self._joined = False
        self._stop = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> ScorerSummary:
        started = time.monotonic()
        cfg = self.config
        bootstrap = await asyncio.to_thread(ensure_kafka, cfg)
        created = await asyncio.to_thread(create_scale_topics, bootstrap, cfg)
        if created:
            log.info("created topics %s", ", ".join(created))
        t = cfg.topics
        outputs = (t.predictions, t.deadletter, cfg.scale.served_topic)
        partitions = {name: len(await asyncio.to_thread(topic_partitions, bootstrap, name)) for name in outputs}
        events_partitions = len(await asyncio.to_thread(topic_partitions, bootstrap, t.events))
        self.served_by_partition = partitions[cfg.scale.served_topic] == events_partitions
        if not self.served_by_partition:
            log.warning(
                "%s has %d partitions and %s %d: served records go by key, so one served partition mixes "
                "events partitions of several scorers and the trainer may see a label before its served record "
                "(give both topics the same partition count)", cfg.scale.served_topic,
                partitions[cfg.scale.served_topic], t.events, events_partitions,
            )
        if self.serve_metrics:
            # serve() reads only .registry; a scorer exports its own metrics, not the processor's
            self.metrics_port = serve(cast(ServiceMetrics, self.metrics), cfg.metrics.host, cfg.metrics.port)
        http = None
        if self.serve_http:
            from stream.scale.scorer_http import ScorerHttp

            http = ScorerHttp(self, cfg.http.host, cfg.http.port, ready_lag=cfg.http.ready_lag)
            self.http_port = await http.start()
        try:
            return await self._run(bootstrap, partitions, started)
        finally:
            if http is not None:
                await http.stop()

    async def _run(self, bootstrap: str, partitions: dict[str, int], started: float) -> ScorerSummary:
        cfg, t = self.config, self.config.topics
        self.follower = follower = SnapshotFollower(cfg, self.metrics, bootstrap)
        await follower.start(SNAPSHOT_START_TIMEOUT_S)
        try:
            self.consumer = consumer = AIOKafkaConsumer(**self._consumer_settings(bootstrap))
            self.progress = progress = self._progress(consumer, bootstrap, partitions)
            try:
                await progress.start()
                consumer.subscribe([t.events], listener=_Rebalance(self))
                await consumer.start()
                try:
                    await self._consume(consumer, progress, follower)
                finally:
                    await consumer.stop()  # leaves the group: the others take over at once
            finally:
                await progress.close()  # after finish() in _consume: nothing is left to commit
        finally:
            await follower.stop()
        return ScorerSummary(
            counts=dict(self.counts), processed=self.processed, seconds=time.monotonic() - started,
            checkpoints=self.commits, version=follower.version, swaps=follower.swaps,
            rejected=dict(follower.rejected), invalid_by_reason=dict(self.invalid_by_reason),
        )

    def _consumer_settings(self, bootstrap: str) -> dict[str, Any]:
        """The events consumer: like :class:`stream.engine.kafka_io.KafkaIO`'s, but in the scorers' group."""
        cfg = self.config
        return dict(
            bootstrap_servers=bootstrap,
            client_id=cfg.kafka.client_id,
            group_id=cfg.scale.scorer_group_id,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=int(cfg.kafka.request_timeout_s * 1000),
            fetch_max_wait_ms=min(500, max(10, cfg.processor.poll_timeout_ms)),
            max_partition_fetch_bytes=max(1_048_576, cfg.codec.max_message_bytes + 1024),
            **aiokafka_security(cfg),
        )

    def _progress(self, consumer: AIOKafkaConsumer, bootstrap: str, partitions: dict[str, int]) -> ScorerProgress:
        """The progress part of ``[output] guarantee``; its producers have the processor's settings
        (:func:`stream.engine.kafka_io.output_producer_settings`)."""
        cfg = self.config
        settings = output_producer_settings(cfg, bootstrap)
        if cfg.output.guarantee != "exactly_once":
            return AckedProgress(consumer, settings, partitions)
        return TransactionalProgress(
            consumer, settings, partitions, group_id=cfg.scale.scorer_group_id, events_topic=cfg.topics.events,
            interval_s=cfg.output.transaction_interval_ms / 1000,
            identity=scorer_output_identity(cfg.topics.predictions, cfg.topics.deadletter, cfg.scale.served_topic),
            transaction_timeout_s=TRANSACTION_TIMEOUT_MS / 1000,
        )

    @property
    def commits(self) -> int:
        """Offset commits (at least once) or committed transactions (exactly once) so far."""
        return 0 if self.progress is None else self.progress.commits

    # -- the loop --------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer, progress: ScorerProgress, follower: SnapshotFollower) -> None:
        cfg = self.config
        log.info("consuming %s in group %s (%s output), serving version %d", cfg.topics.events,
                 cfg.scale.scorer_group_id, cfg.output.guarantee.replace("_", "-"), follower.version)
        poll_ms = cfg.processor.poll_timeout_ms
        max_records = cfg.processor.max_batch
        now = time.monotonic()
        idle_since, next_publish = now, now
        while not self._stop.is_set():
            batch = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
            current = follower.current  # read once per batch: a swap lands between records
            assert current is not None, "the follower serves a snapshot or a fresh model from its start"
            n = 0
            for tp, records in batch.items():
                output = progress.output_for(tp)
                if output is None:
                    continue  # not (or no longer) ours: its owner starts at the committed offset
                for record in records:
                    self._score(record, output, current.models, current.version)
                n += len(records)
                progress.advance(tp, records[-1].offset + 1)
            now = time.monotonic()
            if n:
                self.processed += n
                idle_since = now
                await progress.submit()
                await asyncio.sleep(0)  # let the senders and the follower run between batches
            follower.raise_if_failed()
            await progress.tick(now)
            if now >= next_publish:
                await self._publish_lag(consumer)
                follower.publish_age()
                next_publish = now + PUBLISH_INTERVAL_S
            if (
                self.exit_when_idle is not None
                and not n
                and now - idle_since >= self.exit_when_idle
                and await self._caught_up(consumer)
            ):
                log.info("caught up and idle for %.1f s: flushing, committing and exiting", self.exit_when_idle)
                break
        await progress.finish()
        await self._publish_lag(consumer)

    def _score(self, record, output: Output, models, version: int) -> None:
        """Predict one event record (or dead-letter it) and add its outputs to ``output``."""
        try:
            event = self.decoder.parse_event(record.value)
        except InvalidMessage as exc:
            self._dead_letter(record, output, exc.reason, exc.detail)
            return
        ts = event.ts if event.ts is not None else record.timestamp / 1000.0
        try:
            served = models.predict(event.x, ts)
            message = prediction_message(event.id, served.y_pred, served.proba, served.model, version, ts)
            if self.publish_challengers and len(served.record) > 1:
                message["challengers"] = challenger_predictions(served.record, served.model)
            encoded = self.encode(message)
            served_value = encode_served(event.id, event.x, ts, served.record, served.model, version)
        except Exception as exc:  # the model cannot take this event: dead letter, as in one process
            self._dead_letter(record, output, "model_predict_failed", first_line(exc))
            return
        output.add(self.config.topics.predictions, record.key, encoded)
        # served partition p holds events partition p only: one writer (its owner), event order kept
        output.add(self.config.scale.served_topic, record.key, served_value,
                   partition=record.partition if self.served_by_partition else None)
        self.counts["events"] += 1
        self.counts["predictions"] += 1
        self.metrics.predictions.inc()

    def _dead_letter(self, record, output: Output, reason: str, detail: str) -> None:
        """Copy ``record`` unchanged to the dead-letter topic (the headers of ``RecordHandlers.dead_letter``)."""
        value, headers = dead_letter_message(record, reason, detail)
        output.add(self.config.topics.deadletter, record.key, value, headers)
        self.counts["invalid"] += 1
        key = f"{record.topic}:{reason}"
        self.invalid_by_reason[key] = self.invalid_by_reason.get(key, 0) + 1
        self.metrics.invalid.labels(record.topic, reason).inc()
        log.debug("dead-lettered %s:%d@%d: %s %s", record.topic, record.partition, record.offset, reason, detail)

    # -- progress --------------------------------------------------------------------------

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        """The group assigned this scorer its share and it has read every owned partition to its end."""
        if not self._joined:
            return False
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None or end < 0:
                end = consumer.highwater(tp)
            if end is None or await consumer.position(tp) < end:
                return False
        return True

    async def _publish_lag(self, consumer: AIOKafkaConsumer) -> None:
        total = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                done = self.progress.position(tp) if self.progress is not None else None
                if done is None:
                    done = await consumer.position(tp)
                total += max(0, high - done)
        self.lag = total
        self.metrics.lag.set(total)
