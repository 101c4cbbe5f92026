"""Telemetry: the processing state as Prometheus metrics and log lines.

:class:`Telemetry` is the handlers' :class:`~stream.engine.handlers.Observer` (latencies, dead
letters, notices) and publishes, from the processing loop, what the loop accumulates in plain
Python: counts as counter increments once per slice, model metrics and lag as gauges. The
per-record latencies and label delays are appended to plain lists
(:class:`~stream.engine.histograms.BatchedHistogram`) and published with the counts, once per
slice, with the same values a ``prometheus_client.Histogram`` would hold. The scrape thread never
touches live River objects (:class:`~stream.engine.metrics.ServiceMetrics` holds only
prometheus_client objects and snapshots).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from learners.drift import ChallengerStarted, DriftDetected, ModelRetrained, ModelSwitched
from stream.engine.metrics import ServiceMetrics
from stream.engine.stream_state import COUNT_NAMES, StreamState

log = logging.getLogger("stream.engine.processor")

_COUNTERS = {
    "events": "events",
    "labels": "labels",
    "joined": "joined",
    "unmatched_labels": "unmatched",
    "duplicate_labels": "duplicate",
    "expired": "expired",
    "label_requests": "label_requests",
}


class Telemetry:
    """Publishes a :class:`StreamState` to :class:`ServiceMetrics` (see the module docstring)."""

    predicted: Callable[[float], None]
    """Observer hook: one prediction took ``seconds`` (a bound ``list.append``: no Python frame)."""

    def __init__(self, metrics: ServiceMetrics, state: StreamState):
        self.metrics = metrics
        self.state = state
        self._reported = dict(state.counts)
        self._published_models: set[str] = set()
        self.predicted = metrics.predict_latency.observe
        self._learn_observe = metrics.learn_latency.observe
        self._delay_observe = metrics.label_delay.observe
        self._histograms = (metrics.predict_latency, metrics.learn_latency, metrics.label_delay)

    def rebase(self) -> None:
        """Count from the state's current counts (after a restore: those were published before)."""
        self._reported = dict(self.state.counts)

    # -- Observer ----------------------------------------------------------------------------

    def learned(self, seconds: float, label_delay_s: float) -> None:
        self._learn_observe(seconds)
        self._delay_observe(label_delay_s)

    def dead_lettered(self, topic: str, reason: str) -> None:
        self.metrics.invalid.labels(topic, reason).inc()

    def notices(self, notices: Sequence) -> None:
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
                self.publish_models()
            elif isinstance(notice, ModelRetrained):
                metrics.retrains.labels(notice.model).inc()
                log.warning(
                    "model %s retrained at event %d: now serving its %s", notice.model, notice.position,
                    "background model" if notice.background else "fresh model",
                )
            elif isinstance(notice, ChallengerStarted):
                log.warning("challenger %s started (a fresh %s) at event %d", notice.model, notice.source, notice.position)
                self.publish_models()

    # -- from the loop -----------------------------------------------------------------------

    def publish_counts(self, pending: int, merge_wait_expirations: int = 0) -> None:
        """Counter increments and histogram observations since the last call; pending entries;
        merge waits that expired."""
        for histogram in self._histograms:
            histogram.flush()
        m, counts, before = self.metrics, self.state.counts, self._reported
        for name, attribute in _COUNTERS.items():
            delta = counts[name] - before[name]
            if delta:
                getattr(m, attribute).inc(delta)
        delta = counts["predictions"] - before["predictions"]
        if delta:
            m.predictions.labels(self.state.models.serving).inc(delta)
        self._reported = {name: counts[name] for name in COUNT_NAMES}
        m.pending.set(pending)
        if merge_wait_expirations:
            m.merge_wait_expirations.inc(merge_wait_expirations)

    def publish_buffer(self, buffered: int, paused: int) -> None:
        """Records held in the merge and partitions paused for backpressure."""
        self.metrics.merge_buffered.set(buffered)
        self.metrics.paused_partitions.set(paused)

    def publish_models(self) -> None:
        """Each model's cumulative and rolling metrics, labels learned and champion flag."""
        metrics, models = self.metrics, self.state.models
        if self._published_models != set(models.models):  # a model was added or dropped
            for gauge in (metrics.model_metric, metrics.model_labels_learned, metrics.model_is_champion):
                gauge.clear()
            self._published_models = set(models.models)
        for name, model in models.models.items():
            for window, values in (("cumulative", model.evaluation.values()),
                                   ("rolling", model.evaluation.rolling_values())):
                for metric, value in values.items():
                    if value is not None:  # no label scored yet: no sample rather than a fake 0
                        metrics.model_metric.labels(name, metric, window).set(value)
            metrics.model_labels_learned.labels(name).set(model.n_learned)
            metrics.model_is_champion.labels(name).set(1 if name == models.serving else 0)

    def publish_lag(self, lag: dict[str, int | None]) -> None:
        """``{"topic:partition": records behind}`` as the consumer-lag gauge."""
        for key, behind in lag.items():
            if behind is not None:
                topic, _, partition = key.rpartition(":")
                self.metrics.consumer_lag.labels(topic, partition).set(behind)

    def checkpoint_paused(self, seconds: float) -> None:
        self.metrics.checkpoint_pause.observe(seconds)

    def checkpoint_landed(self, seconds: float, size_bytes: int) -> None:
        m = self.metrics
        m.checkpoint_duration.observe(seconds)
        m.checkpoint_size.set(size_bytes)
        m.checkpoint_last_success.set(time.time())
        m.checkpoints.inc()
