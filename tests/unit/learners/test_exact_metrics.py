"""learners.exact_metrics returns River's values to the bit, on any update/revert sequence."""

from __future__ import annotations

import bisect
import pickle
import random

import pytest
from river import metrics, utils

from learners import exact_metrics
from learners.evaluation import Prequential

PAIRS = [(exact_metrics.Accuracy, metrics.Accuracy), (exact_metrics.ROCAUC, metrics.ROCAUC)]


def random_stream(rng: random.Random, n: int, binary: bool):
    """(y_true, y_pred) pairs: binary scores on and around the thresholds (dict and scalar forms),
    or multiclass labels."""
    for _ in range(n):
        if binary:
            y = rng.random() < 0.4
            p = rng.choice([rng.random(), round(rng.random(), 1), 0.0, 1.0, 1 / 9, 8 / 9, 0.5 + 1e-9])
            yield y, (p if rng.random() < 0.5 else {True: p, False: 1 - p})
        else:
            yield rng.choice("abc"), rng.choice("abcd")


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=["accuracy", "rocauc"])
@pytest.mark.parametrize("weighted", [False, True], ids=["w=1", "fractional-w"])
def test_same_value_as_river_after_every_update_and_revert(ours, theirs, weighted):
    rng = random.Random(11)
    a, b = ours(), theirs()
    seen = []
    for y, p in random_stream(rng, 3000, binary=ours is exact_metrics.ROCAUC):
        w = rng.choice([0.1, 0.3, 1.7, 2.0]) if weighted else 1.0
        a.update(y, p, w)
        b.update(y, p, w)
        seen.append((y, p, w))
        if len(seen) > 50 and rng.random() < 0.4:  # revert an earlier one, as a rolling window does
            y0, p0, w0 = seen.pop(rng.randrange(len(seen)))
            a.revert(y0, p0, w0)
            b.revert(y0, p0, w0)
        assert a.get() == b.get()
    assert repr(a) == repr(b)


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=["accuracy", "rocauc"])
def test_empty_and_one_class_streams_match_river(ours, theirs):
    a, b = ours(), theirs()
    assert a.get() == b.get()
    for p in (0.2, 0.9, 0.9):
        a.update(True, p)
        b.update(True, p)
        assert a.get() == b.get()


def test_the_rolling_window_matches_rivers(phishing_like=None):
    rng = random.Random(5)
    ours = utils.Rolling(exact_metrics.ROCAUC, window_size=100)
    theirs = utils.Rolling(metrics.ROCAUC, window_size=100)
    for y, p in random_stream(rng, 1000, True):
        ours.update(y, p)
        theirs.update(y, p)
        assert ours.get() == theirs.get()


def test_same_class_contract_as_river():
    for ours, theirs in PAIRS:
        metric = ours()
        assert isinstance(metric, theirs)
        assert metric.bigger_is_better == theirs().bigger_is_better
        assert metric.requires_labels == theirs().requires_labels
        clone = pickle.loads(pickle.dumps(metric))
        assert clone.get() == metric.get()
        with pytest.raises(AttributeError, match="riverbed's exact"):
            metric.cm if ours is exact_metrics.Accuracy else metric.cms


def test_prequential_from_names_uses_them():
    evaluation = Prequential.from_names(["accuracy", "rocauc", "logloss"], "binary", window=10)
    assert type(evaluation.metrics["accuracy"]) is exact_metrics.Accuracy
    assert type(evaluation.metrics["rocauc"]) is exact_metrics.ROCAUC


@pytest.mark.parametrize("weights", [[1.0], [1.0, 0.3, 2.0]], ids=["unit", "unit-then-fractional"])
def test_rocauc_deferred_unit_weights_match_river_when_read_seldom(weights):
    """ROCAUC.count keeps unit weights per bucket until something reads the sums: reading them
    every 1,000 updates, pickling in between and switching to other weights mid-stream must give
    River's values, and a pickle must hold exactly the sums a plain one-at-a-time update keeps."""
    rng = random.Random(23)
    ours, river_metric, plain = exact_metrics.ROCAUC(), metrics.ROCAUC(), exact_metrics.ROCAUC()
    seen: list = []
    for n, (y, p) in enumerate(random_stream(rng, 6000, binary=True), start=1):
        w = weights[min(len(weights) - 1, n // 4000)]
        for metric in (ours, river_metric):
            metric.update(y, p, w)
        plain.add(bisect.bisect_left(plain.thresholds, p.get(True, 0.0) if isinstance(p, dict) else p), y is True, w)
        seen.append((y, p, w))
        if len(seen) > 100 and rng.random() < 0.5:
            y0, p0, w0 = seen.pop(0)
            for metric in (ours, river_metric):
                metric.revert(y0, p0, w0)
            plain.add(bisect.bisect_left(plain.thresholds, p0.get(True, 0.0) if isinstance(p0, dict) else p0),
                      y0 is True, -w0)
        if n % 1000 == 0:
            assert ours.get() == river_metric.get()
        if n % 1500 == 0:
            assert pickle.dumps(ours) == pickle.dumps(plain)
            ours = pickle.loads(pickle.dumps(ours))
    assert ours.get() == river_metric.get()
    assert sorted(vars(pickle.loads(pickle.dumps(ours)))) == sorted(vars(plain))
