"""BatchedHistogram exports, after each flush, exactly what prometheus_client's Histogram holds."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from stream.engine.histograms import BatchedHistogram
from stream.engine.metrics import DELAY_BUCKETS, LATENCY_BUCKETS


def exposition(registry: CollectorRegistry, generate=generate_latest) -> list[str]:
    """The exposition lines, without the ``_created`` values (wall-clock times of construction)."""
    return [line.rsplit(" ", 1)[0] if "_created" in line else line
            for line in generate(registry).decode().splitlines()]


def pair(buckets):
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    return (BatchedHistogram("h_seconds", "A histogram.", buckets=buckets, registry=ours), ours,
            Histogram("h_seconds", "A histogram.", buckets=buckets, registry=theirs), theirs)


def values(rng: random.Random, n: int) -> list[float]:
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            out.append(10 ** rng.uniform(-6, 1.5))  # latencies from 1 µs to ~30 s
        elif kind < 0.8:
            out.append(rng.choice(LATENCY_BUCKETS))  # exactly on a bound: that bucket
        elif kind < 0.9:
            out.append(rng.uniform(0, 1e7))
        else:
            out.append(rng.choice([0.0, -0.0, 1e-300, 10.0 + 1e-12]))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_same_exposition_as_histogram_after_every_flush(seed):
    rng = random.Random(seed)
    ours, ours_registry, theirs, theirs_registry = pair(LATENCY_BUCKETS)
    for _ in range(30):
        for value in values(rng, rng.randrange(0, 400)):
            ours.observe(value)
            theirs.observe(value)
        ours.flush()
        assert exposition(ours_registry) == exposition(theirs_registry)
    assert exposition(ours_registry, generate_openmetrics) == exposition(theirs_registry, generate_openmetrics)


def test_values_are_published_only_by_flush():
    ours, registry, _, _ = pair(DELAY_BUCKETS)
    ours.observe(3.0)
    assert registry.get_sample_value("h_seconds_count") == 0.0
    ours.flush()
    assert registry.get_sample_value("h_seconds_count") == 1.0
    assert registry.get_sample_value("h_seconds_bucket", {"le": "5.0"}) == 1.0
    assert registry.get_sample_value("h_seconds_bucket", {"le": "1.0"}) == 0.0
    assert registry.get_sample_value("h_seconds_sum") == 3.0


@pytest.mark.parametrize("odd", [[math.nan], [math.inf, -math.inf], [math.inf], [-math.inf, 2.0]])
def test_nan_and_infinities_as_histogram(odd):
    ours, ours_registry, theirs, theirs_registry = pair((0.1, 1.0))
    for batch in ([0.5, 0.05], odd + [0.2], [0.3, 7.0], odd):
        for value in batch:
            ours.observe(value)
            theirs.observe(value)
        ours.flush()
        assert exposition(ours_registry) == exposition(theirs_registry)


def test_name_clash_is_refused_like_any_collector():
    registry = CollectorRegistry()
    BatchedHistogram("h_seconds", "A histogram.", buckets=(1.0,), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("h_seconds", "Another.", registry=registry)
    with pytest.raises(ValueError, match="sorted"):
        BatchedHistogram("g_seconds", "Unsorted.", buckets=(2.0, 1.0), registry=None)
