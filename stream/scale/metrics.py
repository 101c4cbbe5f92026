"""Prometheus metrics of the scale-out roles (issue #13), registered on the run's registry.

The naming follows :mod:`stream.engine.metrics` (prefix ``riverbed_``, base units in the name,
counters end in ``_total`` in the exposition, no unbounded labels). A trainer exports every metric
of a single process (``riverbed_labels_joined``, ``riverbed_model_metric``, ...) and these:

==========================================  =========  ====================================================
name                                        type       meaning
==========================================  =========  ====================================================
``riverbed_snapshot_published_version``     gauge      version (labels learned, ``counts["joined"]``) of
                                                       the newest snapshot handed to the output
``riverbed_snapshots_published_total``      counter    snapshots handed to the output (all their chunks)
``riverbed_snapshot_bytes``                 gauge      size of the newest snapshot's sealed bytes
``riverbed_snapshot_chunks``                gauge      chunks of the newest snapshot
``riverbed_snapshot_seal_seconds``          histogram  time to pickle and seal the model set (on the loop)
``riverbed_served_duplicates_total``        counter    served records skipped because their id was
                                                       already pending or learned (re-served events)
``riverbed_served_staleness_labels``        histogram  per learned label: labels the trainer had learned
                                                       when the label arrived minus the version of the
                                                       snapshot that served its event (0 when the served
                                                       version is ahead, e.g. after a trainer restart)
==========================================  =========  ====================================================

Scorer metrics (``riverbed_snapshots_rejected_total``, the version served, ...) are defined with
the scorer in :mod:`stream.scale.scorer`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.engine.metrics import LATENCY_BUCKETS

#: Staleness buckets in labels: 0, 10, 100, ... 10 million.
STALENESS_BUCKETS = (0.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7)


class TrainerMetrics:
    """The trainer's scale-out metrics (see the module docstring), registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.published_version = Gauge(
            "riverbed_snapshot_published_version",
            "Version (labels learned) of the newest model snapshot published to the models topic.",
            registry=r,
        )
        self.published = Counter(
            "riverbed_snapshots_published", "Model snapshots published to the models topic.", registry=r
        )
        self.snapshot_bytes = Gauge(
            "riverbed_snapshot_bytes", "Size of the newest published snapshot's sealed model bytes.", registry=r
        )
        self.snapshot_chunks = Gauge(
            "riverbed_snapshot_chunks", "Chunks the newest published snapshot was split into.", registry=r
        )
        self.seal_seconds = Histogram(
            "riverbed_snapshot_seal_seconds",
            "Time to pickle and seal the model set for a snapshot (on the processing loop).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duplicates = Counter(
            "riverbed_served_duplicates",
            "Served records skipped because their event id was already pending or learned (re-served events).",
            registry=r,
        )
        self.staleness = Histogram(
            "riverbed_served_staleness_labels",
            "Labels the trainer had learned when a label arrived minus the snapshot version that served its event.",
            buckets=STALENESS_BUCKETS,
            registry=r,
        )
