"""A Prometheus histogram observed per record in plain Python and published once per slice.

``prometheus_client.Histogram.observe`` takes a lock and walks the bucket bounds in Python for
every call; once per event and twice per label it was about 5 % of the processing loop
(profiled). :class:`BatchedHistogram` is a custom collector (``prometheus_client``'s public
collector interface: ``collect`` and ``describe``) exported under the same name, type, buckets
and samples as a ``Histogram`` would be.

Contract
--------
- :meth:`BatchedHistogram.observe` only appends the value to a list (it is a bound
  ``list.append``: no Python frame per record).
- :meth:`BatchedHistogram.flush` (the processing loop calls it through
  :meth:`~stream.engine.telemetry.Telemetry.publish_counts` after every slice) adds the
  values to the totals and publishes a new snapshot; the scrape thread only reads the latest
  snapshot, a tuple replaced in one assignment.
- After a flush the exported values are exactly those of a ``Histogram`` that observed the same
  values in the same order: each bucket counts the values ``<= bound`` of its first matching
  bound (NaN in none), ``_count`` is the ``+Inf`` bucket, ``_sum`` adds the values one by one
  from ``0.0`` in observation order (the same floating-point additions), and ``_created`` is
  exported when ``prometheus_client`` exports it for its own metrics.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> h = BatchedHistogram("demo_seconds", "A demo.", buckets=(0.1, 1.0), registry=registry)
>>> for value in (0.05, 0.5, 3.0):
...     h.observe(value)
>>> h.flush()
>>> [line for line in generate_latest(registry).decode().splitlines() if line.startswith("demo_seconds_")][:5]
['demo_seconds_bucket{le="0.1"} 1.0', 'demo_seconds_bucket{le="1.0"} 2.0', 'demo_seconds_bucket{le="+Inf"} 3.0', 'demo_seconds_count 3.0', 'demo_seconds_sum 3.55']
"""

from __future__ import annotations

import math
import operator
import time
from bisect import bisect_left
from collections import Counter
from functools import partial, reduce
from typing import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["BatchedHistogram"]


class BatchedHistogram:
    """A histogram whose observations are collected in a list and published by :meth:`flush`.

    Parameters
    ----------
    name, documentation
        As for ``prometheus_client.Histogram`` (the full name, no namespace).
    buckets
        Upper bounds, sorted; ``+Inf`` is added when missing.
    registry
        Where to register (``None``: not registered).
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None):
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        if len(bounds) < 2:
            raise ValueError("Must have at least two buckets")
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(b) for b in bounds)
        self._bucket_of = partial(bisect_left, self._bounds)  # first bound >= value (not NaN)
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        self._created = time.time()
        self._pending: list[float] = []
        self.observe = self._pending.append
        """Record one value (published at the next :meth:`flush`)."""
        self._snapshot: tuple[tuple[float, ...], float] = self._make_snapshot()
        if registry is not None:
            registry.register(self)

    def flush(self) -> None:
        """Add the values observed since the last flush and publish the new totals."""
        pending = self._pending
        if not pending:
            return
        before = self._sum
        total = reduce(operator.add, pending, before)  # left to right, as Histogram adds them
        counts = self._counts
        if total != total and (before == before or any(v != v for v in pending)):
            # a NaN (or inf - inf): count the values one by one, NaN in no bucket
            for value in pending:
                if value == value:
                    counts[self._bucket_of(value)] += 1
        else:
            for index, n in Counter(map(self._bucket_of, pending)).items():
                counts[index] += n
        self._sum = total
        pending.clear()
        self._snapshot = self._make_snapshot()

    def _make_snapshot(self) -> tuple[tuple[float, ...], float]:
        cumulative, acc = [], 0.0
        for n in self._counts:
            acc += n
            cumulative.append(acc)
        return tuple(cumulative), self._sum

    # -- the collector interface (the scrape thread) ------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        cumulative, total = self._snapshot  # one read: a consistent snapshot
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(self._le, cumulative)), total)
        if getattr(_prometheus_metrics, "_use_created", True):  # prometheus_client.disable_created_metrics()
            family.samples.append(Sample(self.name + "_created", {}, self._created, None, None))
        return [family]
