"""Prometheus metrics of the processor.

Conventions (prometheus/client_python and the Prometheus naming guide): prefix ``riverbed_``,
base units in the name (``_seconds``, ``_bytes``), counters end in ``_total``, labels only for
bounded sets (topic, partition, reason, model, metric; never an event id). The registry is
injected so that every test gets a fresh :class:`~prometheus_client.CollectorRegistry`.

Everything is updated from the processing loop, never from the scrape thread, which only reads
these objects: live River models are never touched while ``/metrics`` is served.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import start_http_server

from stream.engine.histograms import BatchedHistogram

log = logging.getLogger(__name__)

#: Latency buckets from 10 µs to 10 s.
LATENCY_BUCKETS = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Label delay buckets from 1 s to 30 days (event time).
DELAY_BUCKETS = (
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0,
    7 * 86400.0, 30 * 86400.0,
)


class ServiceMetrics:
    """Every metric riverbed exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        r = registry
        self.info = Info("riverbed", "Build and model information.", registry=r)
        self.events = Counter("riverbed_events", "Valid events processed.", registry=r)
        self.labels = Counter("riverbed_labels", "Valid labels processed.", registry=r)
        self.predictions = Counter("riverbed_predictions", "Predictions produced.", ["model"], registry=r)
        self.invalid = Counter(
            "riverbed_invalid_messages",
            "Invalid input messages sent to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.joined = Counter("riverbed_labels_joined", "Labels joined to a pending event and learned.", registry=r)
        self.unmatched = Counter(
            "riverbed_labels_unmatched", "Labels with no pending event (unknown or already expired id).", registry=r
        )
        self.duplicate = Counter("riverbed_labels_duplicate", "Labels for an event already learned.", registry=r)
        self.expired = Counter(
            "riverbed_labels_expired",
            "Pending events dropped because they were older than [labels] ttl_s.",
            registry=r,
        )
        self.pending = Gauge("riverbed_pending_entries", "Events waiting for their label.", registry=r)
        # Observed per record: batched, published once per slice (stream/engine/histograms.py).
        self.label_delay = BatchedHistogram(
            "riverbed_label_delay_seconds",
            "Event time from an event to its label.",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.predict_latency = BatchedHistogram(
            "riverbed_predict_duration_seconds", "Time to predict one event.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.learn_latency = BatchedHistogram(
            "riverbed_learn_duration_seconds", "Time to learn one label.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.model_metric = Gauge(
            "riverbed_model_metric",
            "Prequential metric value: window=\"cumulative\" since the start, \"rolling\" over the last [model] window labels.",
            ["model", "metric", "window"],
            registry=r,
        )
        self.model_is_champion = Gauge(
            "riverbed_model_is_champion", "1 for the model whose predictions are published, 0 for challengers.",
            ["model"], registry=r,
        )
        self.drift_detections = Counter(
            "riverbed_drift_detections",
            "Drift detections, by model, detector and signal (error, score, feature:<name>).",
            ["model", "detector", "signal"],
            registry=r,
        )
        self.drift_last_detected = Gauge(
            "riverbed_drift_last_detected_timestamp_seconds",
            "Wall-clock time of the latest drift detection, by model, detector and signal.",
            ["model", "detector", "signal"],
            registry=r,
        )
        self.promotions = Counter(
            "riverbed_promotions",
            "Champion changes (promotions and rollbacks), from the old champion to the new one.",
            ["from", "to"],
            registry=r,
        )
        self.rollbacks = Counter(
            "riverbed_rollbacks",
            "Champion changes back to the previous champion (also counted in riverbed_promotions_total).",
            ["from", "to"],
            registry=r,
        )
        self.retrains = Counter(
            "riverbed_model_retrains",
            "Learners replaced by the drift action retrain (background or fresh model).",
            ["model"],
            registry=r,
        )
        self.model_labels_learned = Gauge(
            "riverbed_model_labels_learned", "Labels the model has learned (its version).", ["model"], registry=r
        )
        self.checkpoint_duration = Histogram(
            "riverbed_checkpoint_duration_seconds",
            "Time from a checkpoint's snapshot until it is durable (output acknowledged, batch synced).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.checkpoint_pause = Histogram(
            "riverbed_checkpoint_pause_seconds",
            "Time a checkpoint stops processing (snapshot of model, metadata and overlays).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.checkpoint_size = Gauge(
            "riverbed_checkpoint_size_bytes", "Size of the latest checkpoint (model bytes and metadata).", registry=r
        )
        self.checkpoint_last_success = Gauge(
            "riverbed_checkpoint_last_success_timestamp_seconds",
            "Wall-clock time of the latest successful checkpoint.",
            registry=r,
        )
        self.checkpoints = Counter("riverbed_checkpoints", "Checkpoints written.", registry=r)
        self.consumer_lag = Gauge(
            "riverbed_consumer_lag_messages",
            "High watermark minus the next offset to process, per input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.merge_wait_expirations = Counter(
            "riverbed_merge_wait_expirations",
            "Times a lagging partition stopped holding the event-time merge back after [processor] max_wait_ms.",
            registry=r,
        )
        self.merge_buffered = Gauge(
            "riverbed_merge_buffered_records",
            "Records fetched and waiting in the event-time merge (at most about [processor] max_buffered_records).",
            registry=r,
        )
        self.paused_partitions = Gauge(
            "riverbed_paused_partitions", "Input partitions whose fetching is paused for backpressure.", registry=r
        )
        self.label_requests = Counter(
            "riverbed_label_requests",
            "Label requests published (the events the model was least sure about, within [labels] request_budget).",
            registry=r,
        )


def serve(metrics: ServiceMetrics, host: str, port: int) -> int:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the bound port.

    Raises
    ------
    PortInUseError
        When ``host:port`` cannot be bound (another process listens there, or the address is
        not one of this machine's), with a one-line message naming the setting to change.
    """
    from stream.errors import PortInUseError

    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise PortInUseError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); set [metrics] port "
            "(or RIVERBED_METRICS_PORT) to a free port, 0 for any, or [metrics] enabled = false"
        ) from exc
    bound = server.server_port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
