"""ROCAUC.get sums the trapezoid in plain Python with the same float as scipy/NumPy, bit for bit."""

from __future__ import annotations

import random
import struct

import numpy
import pytest
from river import metrics
from scipy import integrate

from learners import exact_metrics


def bits(value) -> bytes:
    return struct.pack("<d", float(value))


def test_numpy_summation_order_is_reproduced():
    assert exact_metrics._SUM_LIKE_NUMPY  # else get() falls back to scipy (correct, but slow)
    rng = random.Random(1)
    for _ in range(20000):
        size = rng.choice([0, 1, 2, 7, 8, 9, 10, 16, 17, rng.randrange(0, 300)])
        a = [rng.choice([rng.uniform(-1, 1), rng.gauss(0, 10) ** 3, 0.0, -0.0, 1 / 3, 1e16]) for _ in range(size)]
        assert bits(exact_metrics._numpy_sum(a)) == bits(numpy.sum(numpy.asarray(a, dtype=numpy.float64)))


@pytest.mark.parametrize("n_thresholds", [2, 10, 21])
def test_rocauc_value_is_rivers_to_the_bit(n_thresholds):
    rng = random.Random(n_thresholds)
    ours, theirs = exact_metrics.ROCAUC(n_thresholds), metrics.ROCAUC(n_thresholds)
    assert bits(ours.get()) == bits(theirs.get())
    for _ in range(1500):
        y, p = rng.random() < 0.3, rng.choice([rng.random(), round(rng.random(), 2), 0.0, 1.0])
        ours.update(y, p)
        theirs.update(y, p)
        assert bits(ours.get()) == bits(theirs.get())


def test_fallback_is_scipys_trapezoid(monkeypatch):
    metric = exact_metrics.ROCAUC()
    for y, p in [(True, 0.9), (False, 0.3), (True, 0.4), (False, 0.6)]:
        metric.update(y, p)
    fast = metric.get()
    monkeypatch.setattr(exact_metrics, "_SUM_LIKE_NUMPY", False)
    calls = []
    monkeypatch.setattr(integrate, "trapezoid", lambda **kw: calls.append(kw) or numpy.trapezoid(kw["y"], kw["x"]))
    assert bits(metric.get()) == bits(fast) and len(calls) == 1
