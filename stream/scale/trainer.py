"""The trainer role of a scaled-out deployment (``riverbed run --role trainer``, issue #13).

:class:`Trainer` is the single-process :class:`~stream.engine.processor.Processor` with the
``[scale] served_topic`` in place of ``[topics] events``: scorer replicas predict the events and
publish one served record per event (:mod:`stream.scale.served`); the trainer merges served
records and labels by event time, keeps pending entries, joins, learns one label at a time and
checkpoints exactly as one process does, and publishes snapshots of its model set to the
``[scale] models_topic`` (:mod:`stream.scale.publisher`).

Contract
--------
- **Decoding** (:class:`ServedDecoder`): a served record's ``x`` is already transformed (the
  ``[features] transform`` is *not* applied again), but it is checked like an event's features;
  its merge time is the served ``ts``. A record that is no served record, whose features break
  the contract, or whose ``record`` has no prediction of the champion named by ``model`` is an
  invalid item, dead-lettered with its reason (``undecodable``, ``bad_x``, ``non_finite``, ...).
  Labels are decoded as in one process.
- **A served event** (:meth:`TrainerHandlers.on_event`) publishes *no* prediction. It keeps a
  pending entry ``[x, ts, record, served version]`` (the first three as in one process), counts
  the event for the label-free input monitors with the champion's served prediction
  (:meth:`learners.ModelSet.observe`), and offers the event to the label-request sampler with
  that prediction, exactly like one process. It counts ``events``, never ``predictions``.
  A served record whose id is already pending or learned (a scorer served the event again after
  a crash or a rebalance: at-least-once) is skipped and counted in
  ``riverbed_served_duplicates_total``; the first one stands. (One process predicts a repeated
  event id again; the two differ only for inputs that repeat ids.)
- **A label** is learned as in one process, scored against the predictions the scorer served
  (so the prequential metrics are those of the served predictions), and observed as staleness:
  labels learned before it minus the served version (``riverbed_served_staleness_labels``,
  0 when the served version is ahead of the trainer, e.g. while it replays after a restart).
- Learning does not depend on which snapshot served an event as long as drift actions are
  ``alert`` (``retrain`` trains a background model only on warning-level errors, and challenger
  promotions follow the metrics, which are those of the served predictions).
- **Served records lag independently**: each served partition is written by whichever scorer
  owns that events partition, so one can be behind the others (a slow scorer, or a dead one
  until its group's session timeout reassigns its partitions). The trainer's event-time merge
  therefore holds a label whose served record has not arrived while any served partition is
  caught up and empty (merge rule 7, :mod:`stream.engine.merge`), for at most ``[processor]
  max_wait_ms`` of waiting for input; set it above a scorer failover (the scorers' session
  timeout, 10 s, plus a restart) or a label outrunning its served record is lost as unmatched.
- **Snapshots**: one when the loop first runs (the restored model), then per
  :class:`~stream.scale.publisher.SnapshotPublisher` rules once per loop slice, and a last one
  when the trainer stops normally, delivered before the final checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import msgpack

from learners import Served
from state import StateStore
from stream.engine.codecs import MAX_ID_LENGTH, InvalidMessage, OutputCodec, check_features, plain_scalar
from stream.engine.decoding import RecordDecoder
from stream.engine.handlers import EXPIRY_SWEEP_EVENTS, InputRecord, RecordHandlers
from stream.engine.output import Output
from stream.engine.processor import Processor
from stream.engine.stream_state import StreamState
from stream.engine.telemetry import Telemetry
from stream.engine.transforms import first_line
from stream.scale.metrics import TrainerMetrics
from stream.scale.publisher import SnapshotPublisher
from stream.scale.served import ServedEvent, decode_served
from stream.scale.topics import create_scale_topics, scale_topic_names

__all__ = ["ServedDecoder", "Trainer", "TrainerHandlers", "champion_of"]

log = logging.getLogger(__name__)

#: A served record carries the event's features and every model's prediction: allow this much
#: more than ``[codec] max_message_bytes`` before calling it oversized.
SERVED_SIZE_FACTOR = 4

#: Packs pending entries exactly as :mod:`stream.engine.handlers` does.
_pack_entry = msgpack.Packer(use_bin_type=True, default=plain_scalar).pack


def champion_of(served: ServedEvent) -> Served:
    """The champion's prediction in a served record, as a :class:`learners.Served`.

    Raises
    ------
    InvalidMessage
        ``undecodable`` when ``record`` has no well-formed entry for ``served.model``.
    """
    for entry in served.record:
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == served.model:
            _, y_pred, proba_items = entry
            try:
                proba = None if proba_items is None else {c: float(p) for c, p in proba_items}
            except (TypeError, ValueError) as exc:
                raise InvalidMessage("undecodable", f"the champion's proba is not [[class, p], ...]: {exc}") from None
            return Served(served.model, served.version, y_pred, proba, served.record)
    raise InvalidMessage("undecodable", f"the served record has no prediction of its champion {served.model!r}")


class ServedDecoder(RecordDecoder):
    """Decodes the served topic with :func:`~stream.scale.served.decode_served` (no transform) and
    labels as :class:`~stream.engine.decoding.RecordDecoder` does."""

    def parse_event(self, raw: bytes | None):
        served = decode_served(raw, self.max_bytes * SERVED_SIZE_FACTOR)
        if not served.id or len(served.id) > MAX_ID_LENGTH:
            raise InvalidMessage("bad_id", f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
        if not math.isfinite(served.ts) or served.ts < 0:
            raise InvalidMessage("bad_ts", "'ts' must be a finite, non-negative number of epoch seconds")
        check_features(served.x)
        champion_of(served)
        return served


class TrainerHandlers(RecordHandlers):
    """:class:`~stream.engine.handlers.RecordHandlers` for served events (see the module docstring).

    Parameters
    ----------
    *args, **kwargs
        As for :class:`~stream.engine.handlers.RecordHandlers` (``topics.events`` is the served topic).
    publisher
        Publishes snapshots; checked once per :meth:`apply` (None: no snapshots, unit tests).
    metrics
        The trainer's metrics (None: staleness is not recorded).
    """

    def __init__(self, *args: Any, publisher: SnapshotPublisher | None = None,
                 metrics: TrainerMetrics | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.publisher = publisher
        self.metrics = metrics

    def apply(self, items, until: float = float("inf")) -> int:
        """Apply a slice (as the base does), then publish a snapshot when one is due.

        The first call publishes the restored model before applying anything.
        """
        publisher = self.publisher
        if publisher is not None and publisher.last_version is None:
            publisher.publish()
        n = super().apply(items, until)
        if publisher is not None:
            publisher.maybe_publish()
        return n

    def on_event(self, event: ServedEvent, ts: float, record: InputRecord) -> None:  # type: ignore[override]
        """Keep a served event pending (no prediction output); skip one already pending or learned."""
        state = self.state
        if self.pending.get(event.id) is not None or self.learned.get(event.id) is not None:
            if self.metrics is not None:  # re-served by a scorer after a crash or rebalance: the first stands
                self.metrics.duplicates.inc()
            return
        try:
            served = champion_of(event)
            notices = state.models.observe(event.x, served.y_pred, served.proba, ts)
            request = self._label_request(event.id, served, ts)
            entry = _pack_entry([event.x, ts, event.record, event.version])
        except Exception as exc:  # a monitor or the sampler cannot take this event: dead letter
            self.dead_letter(record, "model_predict_failed", first_line(exc))
            return
        if notices:
            self.observer.notices(notices)
        if request is not None:
            self.output.add(self.topics.label_requests, record.key, request)
            state.counts["label_requests"] += 1
        self.pending.put(event.id, ts, entry)
        state.counts["events"] += 1
        state.events_since_sweep += 1
        if state.events_since_sweep >= EXPIRY_SWEEP_EVENTS:
            self.sweep_expired()

    def joined(self, entry: list, learned_before: int) -> None:
        """Observe the staleness of the prediction the label was scored against."""
        metrics = self.metrics
        if metrics is not None and len(entry) > 3:
            metrics.staleness.observe(max(0, learned_before - entry[3]))


class Trainer(Processor):
    """The trainer: learns from served records and labels, publishes model snapshots.

    Takes the arguments of :class:`~stream.engine.processor.Processor`.
    """

    def __init__(self, config, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.scale_metrics = TrainerMetrics(self.metrics.registry)
        self.publisher: SnapshotPublisher | None = None
        self._submits: set[asyncio.Task] = set()

    HOLD_UNSEEN_LABELS = True

    def merge_max_wait_s(self) -> float:
        """``[scale] trainer_max_wait_ms``: a label whose served record has not arrived waits this
        long (merge rule 7) -- long enough for a scorer failover (session timeout + rebalance)."""
        return self.config.scale.trainer_max_wait_ms / 1000

    def events_topic(self) -> str:
        return self.config.scale.served_topic

    def topic_names(self) -> list[str]:
        return [*scale_topic_names(self.config), self.config.scale.models_topic]

    def create_missing_topics(self, bootstrap: str) -> list[str]:
        return create_scale_topics(bootstrap, self.config)

    def snapshot_status(self) -> dict:
        """The snapshots this trainer published, for ``GET /status`` (read-only).

        ``{"topic", "published_version" (None: none yet), "published" (count), "age_s" (None: none yet)}``.
        """
        publisher = self.publisher
        published = publisher is not None and publisher.last_version is not None
        return {
            "topic": self.config.scale.models_topic,
            "published_version": publisher.last_version if publisher is not None else None,
            "published": publisher.published if publisher is not None else 0,
            "age_s": publisher.clock() - publisher.last_at if published and publisher is not None else None,
        }

    def build_decoder(self) -> RecordDecoder:
        return ServedDecoder.from_config(self.config, self.features, self.topics.events)

    def build_handlers(self, state: StreamState, store: StateStore, output: Output,
                       telemetry: Telemetry) -> RecordHandlers:
        cfg = self.config
        scale = cfg.scale
        self.publisher = SnapshotPublisher(
            state, output, topic=scale.models_topic, name=cfg.model_name,
            every_labels=scale.snapshot_every_labels, interval_s=scale.snapshot_interval_s,
            chunk_bytes=scale.snapshot_chunk_bytes, metrics=self.scale_metrics,
            on_published=lambda: self._submit_soon(output),
        )
        return TrainerHandlers(
            state, store.pending, store.learned, output, OutputCodec(cfg.codec.output), self.topics,
            ttl_s=cfg.labels.ttl_s, publish_challengers=cfg.challengers.publish, observer=telemetry,
            publisher=self.publisher, metrics=self.scale_metrics,
        )

    def _submit_soon(self, output: Output) -> None:
        """Hand the chunks over for delivery now: the loop submits only after a slice that applied
        records, and a snapshot may be due in an idle turn."""
        task = asyncio.get_running_loop().create_task(output.submit())
        self._submits.add(task)
        task.add_done_callback(self._submitted)

    def _submitted(self, task: asyncio.Task) -> None:
        self._submits.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the loop's raise_if_failed stops the run
            log.debug("handing a snapshot to the output failed: %r", task.exception())

    async def before_final_checkpoint(self) -> None:
        """Publish the last snapshot (when labels were learned since the previous one) and wait
        until the output delivered it."""
        publisher, output = self.publisher, self.output
        if publisher is None or output is None:
            return
        if publisher.last_version is None or publisher.last_version < self.counts["joined"]:
            publisher.publish()
        await output.wait(output.barrier())
