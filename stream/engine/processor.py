"""The processor: predict every event at once, learn every label once, checkpoint exactly once.

One asyncio loop on aiokafka owns every partition of ``events`` and ``labels`` (manual
assignment; River models are single-writer) and does, per fetched batch:

1. decode and validate each record, and apply ``[features] transform`` to events
   (:mod:`stream.engine.transforms`); invalid ones are copied unchanged to ``deadletter``;
2. release records in deterministic event-time order (:class:`~stream.engine.merge.EventTimeMerge`);
3. event: predict with the serving model, emit the prediction, keep ``(x, prediction, ts)`` in
   the pending-label store under the event id; with ``[labels] request_budget``, publish a label
   request when the budgeted sampler picks the event (:mod:`learners.active`);
4. label: find the pending entry, update the prequential metrics with the prediction made at
   event time, ``learn_one`` on the stored features, mark the id as learned;
5. hand the batch's output to the producer (no per-message await).

Challengers predict every event in shadow and learn every label; drift monitors watch every
event (label-free) and every label (label-based). :class:`learners.ModelSet` does all of that and
returns *notices* (drift detected, model retrained, challenger started, champion switched) that
:meth:`Processor._on_notices` turns into Prometheus metrics and log lines; the bounded lists of
detections and switches travel in the pickled model set and in the checkpoint metadata
(``status --json``: ``drift``, ``promotions``).

Recovery contract (exactly-once model state)
--------------------------------------------
Every ``[state] checkpoint_interval_s``, at clean shutdown and when ``--exit-when-idle`` fires:

a. the producer is flushed: every prediction and dead-letter copy of the processed records is
   acknowledged by Kafka;
b. one RocksDB ``WriteBatch`` stores the sealed model bytes (models, metrics, label-request
   sampler, counts), the pending-store changes since the last checkpoint and the next offset of
   every input partition, then syncs (:meth:`state.store.StateStore.commit`);
c. the same offsets are committed to the Kafka consumer group (for lag tools only).

On start the newest checkpoint is loaded (its model bytes are checked against their sha256,
and HMAC when ``RIVERBED_MODEL_KEY`` is set, before anything is unpickled) and every partition is
sought to its offset. Because the merge order depends only on the records, replaying from there
performs the same operations again: a crash (even ``kill -9``) loses nothing and learns nothing
twice. Predictions emitted after the last checkpoint are emitted again, byte-identical
(at-least-once output with identical duplicates).

Pending entries expire deterministically: an entry whose event time is older than the stream's
watermark (largest event time processed) minus ``[labels] ttl_s`` is never learned, and a sweep
every :data:`EXPIRY_SWEEP_EVENTS` events removes such entries from the store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import river
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from learners import DriftSettings, ModelSet, PromotionPolicy, build_model
from learners.drift import ChallengerStarted, DriftDetected, ModelRetrained, ModelSwitched
from learners.active import LabelRequestSampler
from state import StateStore, seal, unseal
from state.errors import StateError
from stream import __version__
from stream.connect.bootstrap import ensure_kafka
from stream.engine.codecs import InvalidMessage, OutputCodec, parse_event, parse_label, plain_scalar
from stream.engine.transforms import load_transform
from stream.config import Config
from stream.engine.model_bytes import load_model_state, seal_model_state
from stream.errors import RiverbedError
from stream.engine.history import MetricsHistory, model_snapshot
from stream.engine.merge import EventTimeMerge, Item
from stream.engine.metrics import ServiceMetrics, serve
from stream.engine.output import BatchedOutput
from stream.engine.runtime import tune_gc
from stream.connect.topics import create_topics, topic_partitions

log = logging.getLogger(__name__)

#: Sweep expired pending entries every this many events (a stream position, so deterministic).
EXPIRY_SWEEP_EVENTS = 1000

PROCESS_SLICE_S = 0.02
"""The loop applies released records for at most about this long, then lets the other tasks run.

Working through a backlog, every loop turn had input ready, so nothing else on the event loop
ran while a turn applied everything the merge released (2,000+ records, ~0.15 s for
hoeffding_adaptive): aiokafka's sender needs several turns per produce round trip, so the first
prediction was acknowledged after ~2 s and the first checkpoint became durable after ~5.5 s
(measured). The records left over stay buffered in the merge, so the order does not change."""
LABEL_RANK, EVENT_RANK = 0, 1

COUNT_NAMES = (
    "events",
    "labels",
    "predictions",
    "joined",
    "unmatched_labels",
    "duplicate_labels",
    "expired",
    "invalid",
    "label_requests",
)


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


class ModelSpecMismatch(RiverbedError):
    """The state dir holds a model built from another specification."""


class Processor:
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
        self.metrics_port: int | None = None
        self.topics = config.topics
        self.max_bytes = config.codec.max_message_bytes
        self.codec = OutputCodec(config.codec.output)
        self.regression = config.model.task == "regression"
        self.ttl = config.labels.ttl_s
        self._stop = asyncio.Event()
        self.counts = dict.fromkeys(COUNT_NAMES, 0)
        self.invalid_by_reason: dict[str, int] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self.watermark: float | None = None
        self.models: ModelSet | None = None
        self.resumed_from: int | None = None
        self.checkpoints_written = 0
        self.last_checkpoint = None
        self._landing: asyncio.Future | None = None  # the checkpoint being made durable
        self._sliced = False  # the last turn stopped at PROCESS_SLICE_S with records still released
        self._reported = dict.fromkeys(COUNT_NAMES, 0)
        self._events_since_sweep = 0
        self.busy_seconds = 0.0
        # [features] transform: payload -> River features, applied right after decoding.
        self.transform = load_transform(config.features.transform) if config.features.transform else None
        # [labels] request_budget > 0: ask for the labels of the most uncertain events.
        self.sampler: LabelRequestSampler | None = build_sampler(config)
        self.serve_http = serve_http and config.http.enabled
        self.publish_challengers = config.challengers.publish
        self._published_models: set[str] = set()
        self.http_port: int | None = None
        self.history = MetricsHistory()  # bounded metrics over the stream, for plots (stream.engine.history)

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint and return (safe from signal handlers)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: finishing the batch, checkpointing and stopping", sig.name)
        self.stop()

    async def run(self) -> RunSummary:
        started = time.monotonic()
        cfg = self.config
        bootstrap = await asyncio.to_thread(ensure_kafka, cfg)
        topic_names = [self.topics.events, self.topics.labels, self.topics.predictions, self.topics.deadletter]
        if self.sampler is not None:
            topic_names.append(cfg.labels.request_topic)
        created = await asyncio.to_thread(create_topics, bootstrap, topic_names, cfg.kafka.partitions)
        if created:
            log.info("created topics %s", ", ".join(created))
        partitions = {}
        for topic in topic_names:
            partitions[topic] = await asyncio.to_thread(topic_partitions, bootstrap, topic)

        self.store = StateStore(cfg.state.dir, keep=cfg.state.keep)
        http_api = None
        try:
            self._restore()
            tune_gc()  # see stream/engine/runtime.py: full GC passes were 12-20% of the loop's time
            if self.serve_metrics:
                self.metrics_port = serve(self.metrics, cfg.metrics.host, cfg.metrics.port)
            if self.serve_http:
                from stream.ops.http_api import HttpApi

                http_api = HttpApi(self, cfg.http.host, cfg.http.port, ready_lag=cfg.http.ready_lag)
                self.http_port = await http_api.start()
            self._publish_model_metrics()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id=cfg.kafka.client_id,
                group_id=cfg.kafka.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                request_timeout_ms=int(cfg.kafka.request_timeout_s * 1000),
                fetch_max_wait_ms=min(500, max(10, cfg.processor.poll_timeout_ms)),
                max_partition_fetch_bytes=max(1_048_576, self.max_bytes + 1024),
            )
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=cfg.kafka.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_batch_size=512 * 1024,
                max_request_size=max(1_048_576, self.max_bytes + 65_536),
                request_timeout_ms=int(cfg.kafka.request_timeout_s * 1000),
            )
            await consumer.start()
            await producer.start()
            try:
                self._inputs = [
                    TopicPartition(topic, p)
                    for topic in (self.topics.events, self.topics.labels)
                    for p in partitions[topic]
                ]
                consumer.assign(self._inputs)
                for tp in self._inputs:
                    offset = self.offsets.get((tp.topic, tp.partition))
                    if offset is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, offset)
                self.consumer, self.producer = consumer, producer
                self.output = BatchedOutput(producer, {t: len(ps) for t, ps in partitions.items()})
                self.merge = EventTimeMerge(
                    {self.topics.labels: LABEL_RANK, self.topics.events: EVENT_RANK},
                    max_wait_s=cfg.processor.max_wait_ms / 1000,
                    leading=self.topics.events,
                    seen=self._event_seen,
                )
                for tp in self._inputs:
                    self.merge.register((tp.topic, tp.partition))
                log.info(
                    "consuming %s from %s",
                    ", ".join(f"{tp.topic}:{tp.partition}" for tp in self._inputs),
                    "the checkpointed offsets" if self.offsets else "the beginning",
                )
                try:
                    processed = await self._loop()
                    await self.checkpoint()
                finally:
                    await self._settle_checkpoint()
            finally:
                await consumer.stop()
                await producer.stop()
        finally:
            if http_api is not None:
                await http_api.stop()
            self.store.close()
        seconds = time.monotonic() - started
        return RunSummary(
            counts=dict(self.counts),
            processed=processed,
            seconds=seconds,
            checkpoints=self.checkpoints_written,
            resumed_from=self.resumed_from,
            last_checkpoint=self.last_checkpoint,
            invalid_by_reason=dict(self.invalid_by_reason),
            busy_seconds=self.busy_seconds,
        )

    # -- restore / checkpoint ----------------------------------------------------------------

    def _spec(self) -> dict:
        m = self.config.model
        return {"name": self.config.model_name, "preset": m.preset, "task": m.task, "metrics": list(m.metrics)}

    def _restore(self) -> None:
        spec = self._spec()
        for seq in self.store.checkpoints():
            ckpt = self.store.load(seq)
            stored = ckpt.meta.get("spec")
            if stored != spec:
                raise ModelSpecMismatch(
                    f"state dir {self.store.path} holds a model built from {stored}, but the config asks for "
                    f"{spec}: point [state] dir at another directory or restore the previous [model] settings"
                )
            try:
                state = load_model_state(ckpt.model_blob)  # verified before it is unpickled
            except StateError as exc:
                log.error("checkpoint %d refused: %s", seq, exc)
                continue
            if seq != self.store.checkpoints()[0]:
                log.warning(
                    "resuming from older checkpoint %d: labels learned after it may count as duplicates", seq
                )
            self.models = state["models"]
            for change in self.models.reconfigure(**learner_settings(self.config)):
                log.warning("configuration changed since checkpoint %d: %s", seq, change)
            self._restore_sampler(state.get("sampler"))
            self.counts.update(ckpt.meta["counts"])
            self.invalid_by_reason = dict(ckpt.meta.get("invalid_by_reason", {}))
            self.offsets = {(t, p): o for t, p, o in ckpt.meta["offsets"]}
            self.watermark = ckpt.meta.get("watermark")
            self._events_since_sweep = ckpt.meta.get("events_since_sweep", 0)
            self.resumed_from = seq
            self.last_checkpoint = ckpt
            self.history = MetricsHistory.from_meta(ckpt.meta.get("history"))
            self._reported = dict(self.counts)
            model = self.models.serving_model
            log.info(
                "resumed from checkpoint %d: model %s v%d, offsets %s",
                seq,
                model.name,
                model.n_learned,
                ", ".join(f"{t}:{p}={o}" for (t, p), o in sorted(self.offsets.items())),
            )
            return
        if self.store.checkpoints():
            raise StateError(
                f"no usable checkpoint in {self.store.path}: every one was refused (see the errors above); "
                "move the directory aside to start from scratch"
            )
        m = self.config.model
        self.models = build_model_set(self.config)
        log.info("no checkpoint in %s: starting a new %s model (%s)", self.store.path, m.preset, m.task)

    def checkpoint_meta(self, fingerprints: bool = False) -> dict:
        """The checkpoint's metadata from the live state (also the live ``/status`` document's source).

        Model fingerprints cost a canonical pickle of every model, so they are left out by default
        (checkpoints do not store them); the live ``/status`` asks for them with ``fingerprints=True``
        and ``riverbed status`` computes them from the checkpoint's model bytes.
        """
        return {
            "created_at": time.time(),
            "spec": self._spec(),
            "offsets": [[t, p, o] for (t, p), o in sorted(self.offsets.items())],
            "counts": dict(self.counts),
            "invalid_by_reason": dict(self.invalid_by_reason),
            "watermark": self.watermark,
            "events_since_sweep": self._events_since_sweep,
            "serving": self.models.serving,
            "pending": len(self.store.pending),
            "models": self.models.describe(fingerprints=fingerprints),
            "drift": list(self.models.drift_log),
            "promotions": list(self.models.switch_log),
            "versions": {"riverbed": __version__, "river": river.__version__},
            "history": self.history.to_meta(),
        }

    async def checkpoint(self, wait: bool = True) -> None:
        """Snapshot the state now and make it durable, without pausing the loop for the writing.

        On the loop (the *pause*): wait for a previous checkpoint still in flight, take an output
        barrier, pickle and seal the models, build the meta with the offsets of exactly what was
        processed, and freeze the pending/learned overlays (:meth:`StateStore.begin_commit`).
        Then, while processing goes on (the *landing*): wait until Kafka acknowledged every output
        message before the barrier, write the synced RocksDB batch in a thread, and only then
        commit the offsets to the consumer group. A crash before the batch is durable leaves the
        previous checkpoint, exactly as before. ``wait=False`` returns after the pause.
        """
        await self._checkpoint_landed()
        started = time.perf_counter()
        barrier = self.output.barrier()
        blob = seal_model_state(self.models, self.sampler)
        meta = self.checkpoint_meta()
        commit = self.store.begin_commit(meta, blob)
        self.metrics.checkpoint_pause.observe(time.perf_counter() - started)
        self._landing = asyncio.ensure_future(self._land(commit, barrier, meta["offsets"], started))
        if wait:
            await self._checkpoint_landed()

    async def _land(self, commit, barrier, offsets: list, started: float) -> None:
        try:
            await self.output.wait(barrier)
            await asyncio.to_thread(commit.write)
        except BaseException:
            self.store.abort_commit(commit)  # nothing lost: the next checkpoint writes it all
            raise
        ckpt = self.store.end_commit(commit)
        self.last_checkpoint = ckpt
        self.checkpoints_written += 1
        elapsed = time.perf_counter() - started
        self.metrics.checkpoint_duration.observe(elapsed)
        self.metrics.checkpoint_size.set(ckpt.size_bytes)
        self.metrics.checkpoint_last_success.set(time.time())
        self.metrics.checkpoints.inc()
        log.debug("checkpoint %d: %d bytes, durable after %.3f s", ckpt.seq, ckpt.size_bytes, elapsed)
        if offsets:
            try:
                await self.consumer.commit({TopicPartition(t, p): o for t, p, o in offsets})
            except Exception as exc:  # lag reporting only: the checkpoint is the truth
                log.warning("could not commit offsets to the consumer group: %s", exc)

    async def _settle_checkpoint(self) -> None:
        """On the way out after an error: let a checkpoint in flight finish or fail (logged)."""
        try:
            await self._checkpoint_landed()
        except Exception as exc:
            log.error("the checkpoint in flight failed: %s", exc)

    async def _checkpoint_landed(self) -> None:
        """Wait for the checkpoint in flight, if any; raise what made it fail."""
        landing, self._landing = self._landing, None
        if landing is not None:
            await landing

    def _raise_if_checkpoint_failed(self) -> None:
        landing = self._landing
        if landing is not None and landing.done():
            self._landing = None
            landing.result()

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> int:
        cfg = self.config
        consumer = self.consumer
        interval = cfg.state.checkpoint_interval_s
        next_checkpoint = time.monotonic() + interval
        idle_since = time.monotonic()
        processed = 0
        first_at: float | None = None
        events_topic = self.topics.events
        poll_ms = cfg.processor.poll_timeout_ms
        max_records = cfg.processor.max_batch
        while not self._stop.is_set():
            fetch_started = time.monotonic()
            batch = await consumer.getmany(timeout_ms=0 if self._sliced else poll_ms, max_records=max_records)
            self._sliced = False
            waited = time.monotonic() - fetch_started
            for tp, records in batch.items():
                parse = self._parse_event if tp.topic == events_topic else self._parse_label
                decode = self._decode
                self.merge.add((tp.topic, tp.partition), [decode(r, parse) for r in records], caught_up=False)
            for tp in self._inputs:
                self.merge.set_caught_up((tp.topic, tp.partition), await self._caught_up(tp))
            now = time.monotonic()
            n = self._process(self.merge.pop_ready(waited), until=time.perf_counter() + PROCESS_SLICE_S)
            if n:
                processed += n
                idle_since = now
                if first_at is None:
                    first_at = now
                self.busy_seconds = time.monotonic() - first_at
                await self.output.submit()
                self._publish_counts()
                # With input already fetched, getmany and submit return without suspending: let
                # the output senders, aiokafka's fetcher and sender, the HTTP API and a landing
                # checkpoint run between slices (see PROCESS_SLICE_S).
                await asyncio.sleep(0)
            self._raise_if_checkpoint_failed()
            if now >= next_checkpoint:
                await self.checkpoint(wait=False)
                self._publish_model_metrics()
                self._publish_lag()
                next_checkpoint = time.monotonic() + interval
            if (
                self.exit_when_idle is not None
                and not n
                and self.merge.all_caught_up()
                and now - idle_since >= self.exit_when_idle
            ):
                log.info("caught up and idle for %.1f s: checkpointing and exiting", self.exit_when_idle)
                break
        self._publish_counts()
        self._publish_model_metrics()
        return processed

    async def _caught_up(self, tp: TopicPartition) -> bool:
        end = self.consumer.last_stable_offset(tp)
        if end is None or end < 0:
            end = self.consumer.highwater(tp)
        if end is None:
            return False
        return await self.consumer.position(tp) >= end

    def _parse_event(self, raw: bytes | None):
        event = parse_event(raw, self.max_bytes, self.transform is not None)
        if self.transform is not None:
            event = event._replace(x=self.transform(event.x))
        return event

    def _parse_label(self, raw: bytes | None):
        return parse_label(raw, self.max_bytes, self.regression)

    @staticmethod
    def _decode(record, parse) -> Item:
        """A merge item: the parsed message at its event time, or the error (``ts`` None)."""
        try:
            message = parse(record.value)
        except InvalidMessage as exc:
            return Item(None, record.offset, (exc, record))
        ts = message.ts if message.ts is not None else record.timestamp / 1000.0
        return Item(ts, record.offset, (message, record))

    def _event_seen(self, item: Item) -> bool:
        """True when a label's event was already predicted (pending) or learned."""
        label = item.payload[0]
        return self.store.pending.get(label.id) is not None or self.store.learned.get(label.id) is not None

    def _process(self, items, until: float = float("inf")) -> int:
        """Apply released records in order; stop after the first record past ``until``
        (``time.perf_counter()``): the rest stay buffered in the merge for the next turn."""
        n = 0
        offsets = self.offsets
        events_topic = self.topics.events
        clock = time.perf_counter
        for item in items:
            payload, record = item.payload
            if item.ts is None:
                self._dead_letter(payload, record)
            else:
                if self.watermark is None or item.ts > self.watermark:
                    self.watermark = item.ts
                if record.topic == events_topic:
                    self._on_event(payload, item.ts, record)
                else:
                    self._on_label(payload, item.ts)
            offsets[(record.topic, record.partition)] = record.offset + 1
            n += 1
            if not n & 63 and clock() > until:
                self._sliced = True  # more may be ready: the next fetch must not wait
                break
        return n

    def _on_event(self, event, ts: float, record) -> None:
        t0 = time.perf_counter()
        served = self.models.predict(event.x, ts)
        self.metrics.predict_latency.observe(time.perf_counter() - t0)
        message = {"id": event.id, "y_pred": served.y_pred}
        if served.proba is not None:
            message["proba"] = served.proba
        message["model"] = served.model
        message["version"] = served.version
        message["ts"] = ts
        if self.publish_challengers and len(served.record) > 1:
            message["challengers"] = {
                name: {"y_pred": y_pred} if proba is None else {"y_pred": y_pred, "proba": dict(proba)}
                for name, y_pred, proba in served.record
                if name != served.model
            }
        if served.notices:
            self._on_notices(served.notices)
        self.output.add(self.topics.predictions, record.key, self.codec.encode(message))
        if self.sampler is not None:
            self._maybe_request_label(event.id, served, ts, record.key)
        entry = _pack_entry([event.x, ts, served.record])
        self.store.pending.put(event.id, ts, entry)
        counts = self.counts
        counts["events"] += 1
        counts["predictions"] += 1
        self._events_since_sweep += 1
        if self._events_since_sweep >= EXPIRY_SWEEP_EVENTS:
            self._sweep_expired()

    def _maybe_request_label(self, event_id: str, served, ts: float, key) -> None:
        """Publish a label request when the sampler picks this event (within the window's budget)."""
        ask, score = self.sampler.offer(ts, served.proba)
        if not ask:
            return
        message = {
            "id": event_id,
            "y_pred": served.y_pred,
            "proba": served.proba,
            "score": score,
            "model": served.model,
            "version": served.version,
            "ts": ts,
        }
        self.output.add(self.config.labels.request_topic, key, self.codec.encode(message))
        self.counts["label_requests"] += 1

    def _restore_sampler(self, stored: LabelRequestSampler | None) -> None:
        """Keep the checkpointed sampler's state when it still fits the config (else start afresh)."""
        if self.sampler is None or stored is None:
            return
        if stored.params == self.sampler.params:
            self.sampler = stored
        else:
            log.info("[labels] request settings changed since the checkpoint: the label-request budget restarts")

    def _on_label(self, label, ts: float) -> None:
        counts = self.counts
        counts["labels"] += 1
        pending = self.store.pending
        raw = pending.get(label.id)
        if raw is None:
            if self.store.learned.get(label.id) is not None:
                counts["duplicate_labels"] += 1
            else:
                counts["unmatched_labels"] += 1
            return
        x, event_ts, predictions = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        pending.delete(label.id)
        if event_ts < self.watermark - self.ttl:
            counts["expired"] += 1
            return
        t0 = time.perf_counter()
        notices = self.models.learn(x, label.y, predictions, ts)
        self.metrics.learn_latency.observe(time.perf_counter() - t0)
        if notices:
            self._on_notices(notices)
        self.metrics.label_delay.observe(max(0.0, ts - event_ts))
        self.store.learned.put(label.id, event_ts, b"")
        counts["joined"] += 1
        if counts["joined"] % self.history.every == 0:
            self._record_history()

    def _record_history(self) -> None:
        """Append a metrics point (every ``history.every`` labels learned: deterministic)."""
        self.history.append(
            self.counts["joined"],
            position=self.counts["events"],
            ts=self.watermark,
            models={name: model_snapshot(model) for name, model in self.models.models.items()},
        )

    def _sweep_expired(self) -> None:
        self._events_since_sweep = 0
        cutoff = self.watermark - self.ttl
        expired = self.store.pending.expire(cutoff)
        self.store.learned.expire(cutoff)
        if expired:
            self.counts["expired"] += expired
            log.info("dropped %d pending events older than %.0f s of event time", expired, self.ttl)

    def _dead_letter(self, exc: InvalidMessage, record) -> None:
        headers = [
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
            ("reason", exc.reason.encode()),
            ("detail", exc.detail.encode("utf-8", errors="replace")[:500]),
        ]
        value = record.value if record.value is not None or record.key is not None else b""
        self.output.add(self.topics.deadletter, record.key, value, headers)
        self.counts["invalid"] += 1
        key = f"{record.topic}:{exc.reason}"
        self.invalid_by_reason[key] = self.invalid_by_reason.get(key, 0) + 1
        self.metrics.invalid.labels(record.topic, exc.reason).inc()
        log.debug("dead-lettered %s:%d@%d: %s", record.topic, record.partition, record.offset, exc)

    # -- metrics -----------------------------------------------------------------------------

    def _publish_counts(self) -> None:
        m, counts, before = self.metrics, self.counts, self._reported
        deltas = {k: counts[k] - before[k] for k in COUNT_NAMES}
        if deltas["events"]:
            m.events.inc(deltas["events"])
        if deltas["labels"]:
            m.labels.inc(deltas["labels"])
        if deltas["predictions"]:
            m.predictions.labels(self.models.serving).inc(deltas["predictions"])
        if deltas["joined"]:
            m.joined.inc(deltas["joined"])
        if deltas["unmatched_labels"]:
            m.unmatched.inc(deltas["unmatched_labels"])
        if deltas["duplicate_labels"]:
            m.duplicate.inc(deltas["duplicate_labels"])
        if deltas["expired"]:
            m.expired.inc(deltas["expired"])
        if deltas["label_requests"]:
            m.label_requests.inc(deltas["label_requests"])
        self._reported = dict(counts)
        m.pending.set(len(self.store.pending))
        if self.merge.wait_expirations:
            m.merge_wait_expirations.inc(self.merge.wait_expirations)
            self.merge.wait_expirations = 0

    def _publish_model_metrics(self) -> None:
        metrics = self.metrics
        if self._published_models != set(self.models.models):  # a model was added or dropped
            for gauge in (metrics.model_metric, metrics.model_labels_learned, metrics.model_is_champion):
                gauge.clear()
            self._published_models = set(self.models.models)
        for name, model in self.models.models.items():
            for metric, value in model.evaluation.values().items():
                metrics.model_metric.labels(name, metric, "cumulative").set(value)
            for metric, value in model.evaluation.rolling_values().items():
                metrics.model_metric.labels(name, metric, "rolling").set(value)
            metrics.model_labels_learned.labels(name).set(model.n_learned)
            metrics.model_is_champion.labels(name).set(1 if name == self.models.serving else 0)

    def _on_notices(self, notices) -> None:
        """Drift detections, retrains, new challengers and champion changes: count and log them."""
        metrics = self.metrics
        for notice in notices:
            if isinstance(notice, DriftDetected):
                labels = (notice.model, notice.detector, notice.signal)
                metrics.drift_detections.labels(*labels).inc()
                metrics.drift_last_detected.labels(*labels).set(time.time())
                log.warning(
                    "drift detected by %s on %s of model %s at event %d (event time %s): action %s",
                    notice.detector, notice.signal, notice.model, notice.position, notice.ts, notice.action,
                )
            elif isinstance(notice, ModelSwitched):
                metrics.promotions.labels(notice.from_model, notice.to_model).inc()
                if notice.kind == "rollback":
                    metrics.rollbacks.labels(notice.from_model, notice.to_model).inc()
                log.warning(
                    "%s: %s now serves instead of %s at event %d (rolling %s %.4f against %.4f)",
                    notice.kind, notice.to_model, notice.from_model, notice.position, notice.metric,
                    notice.to_value, notice.from_value,
                )
                self._publish_model_metrics()
            elif isinstance(notice, ModelRetrained):
                metrics.retrains.labels(notice.model).inc()
                log.warning(
                    "model %s retrained at event %d: now serving its %s", notice.model, notice.position,
                    "background model" if notice.background else "fresh model",
                )
            elif isinstance(notice, ChallengerStarted):
                log.warning("challenger %s started (a fresh %s) at event %d", notice.model, notice.source, notice.position)
                self._publish_model_metrics()

    def _publish_lag(self) -> None:
        for tp in self._inputs:
            high = self.consumer.highwater(tp)
            if high is not None:
                done = self.offsets.get((tp.topic, tp.partition), 0)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - done))


def learner_settings(config: Config) -> dict:
    """``[model] window``, ``[drift]``, ``[challengers]`` as :meth:`learners.ModelSet.reconfigure` arguments."""
    m, d, c = config.model, config.drift, config.challengers
    drift = DriftSettings(
        detector=d.detector,
        input_detector=d.input_detector,
        max_features=d.max_features,
        error_action=d.error_action,
        score_action=d.score_action,
        feature_action=d.feature_action,
    )
    promotion = PromotionPolicy(metric=c.metric or m.metrics[0], margin=c.margin, min_labels=c.min_labels)
    challengers = {name: functools.partial(build_model, spec, m.task) for name, spec in config.challenger_specs}
    return {"challengers": challengers, "window": m.window, "drift": drift, "promotion": promotion}


def build_model_set(config: Config) -> ModelSet:
    """The champion of ``[model]``, the challengers of ``[[challengers.models]]``, ``[drift]`` monitors."""
    m = config.model
    settings = learner_settings(config)
    champion = (config.model_name, build_model(m.preset, m.task))
    challengers = [(name, factory()) for name, factory in settings["challengers"].items()]
    return ModelSet.build(
        champion, challengers, m.task, m.metrics,
        window=settings["window"], drift=settings["drift"], promotion=settings["promotion"],
    )


def build_sampler(config: Config) -> LabelRequestSampler | None:
    """The label-request sampler of ``[labels] request_*``, or ``None`` when the budget is 0."""
    labels = config.labels
    if labels.request_budget <= 0:
        return None
    if labels.request_window_s <= 0:
        raise RiverbedError("[labels] request_window_s must be greater than 0 when request_budget is set")
    if config.model.task == "regression" and labels.request_strategy != "random":
        raise RiverbedError(
            f"[labels] request_strategy = {labels.request_strategy!r} needs class probabilities; "
            "a regression model has none: use \"random\""
        )
    return LabelRequestSampler(labels.request_budget, labels.request_window_s, labels.request_strategy)



#: Packs pending entries; one reused Packer is ~1.5 µs per event cheaper than ``msgpack.packb``.
_pack_entry = msgpack.Packer(use_bin_type=True, default=plain_scalar).pack
