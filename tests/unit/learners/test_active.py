"""Tests for :mod:`learners.active`: the label-request sampler is budgeted, online and deterministic."""

from __future__ import annotations

import collections
import math
import pickle
import random

import pytest
from learners.active import LabelRequestSampler, entropy_score, margin_score

DAY = 86_400.0


def _traffic(rng: random.Random, days: int, mean_per_day: int, *, irregular: bool):
    """Event times over ``days`` days; irregular traffic varies 10x from day to day, with bursts."""
    ts = []
    for d in range(days):
        n = rng.randint(mean_per_day // 10, mean_per_day * 3) if irregular else mean_per_day
        ts += sorted(d * DAY + rng.random() * DAY for _ in range(n))
    return ts


def _proba(rng: random.Random, k: int = 3) -> dict:
    weights = [rng.random() ** 3 for _ in range(k)]
    total = sum(weights)
    return {c: w / total for c, w in enumerate(weights)}


@pytest.mark.parametrize("strategy", ["entropy", "margin", "random"])
@pytest.mark.parametrize("irregular", [False, True])
@pytest.mark.parametrize("budget", [1, 7, 50])
def test_never_more_than_the_budget_per_window(strategy, irregular, budget):
    rng = random.Random(budget * 31 + irregular)
    sampler = LabelRequestSampler(budget, DAY, strategy, seed=3)
    per_window = collections.Counter()
    for ts in _traffic(rng, 12, 120, irregular=irregular):
        ask, score = sampler.offer(ts, _proba(rng))
        assert 0.0 <= score <= 1.0
        if ask:
            per_window[math.floor(ts / DAY)] += 1
    assert per_window and max(per_window.values()) <= budget
    assert sum(per_window.values()) == sampler.total_requested


@pytest.mark.parametrize("strategy", ["entropy", "margin", "random"])
def test_regular_traffic_uses_the_budget(strategy):
    """Without knowing the future, a day like the previous one spends (almost) its whole budget."""
    rng = random.Random(5)
    sampler = LabelRequestSampler(20, DAY, strategy, seed=1)
    per_window = collections.Counter()
    for ts in _traffic(rng, 10, 200, irregular=False):
        if sampler.offer(ts, _proba(rng))[0]:
            per_window[math.floor(ts / DAY)] += 1
    used = [per_window[d] for d in range(1, 10)]  # after the first window, which has no history
    assert min(used) >= 18, used
    assert per_window[0] >= 10


def test_requests_the_uncertain_events():
    rng = random.Random(9)
    sampler = LabelRequestSampler(20, DAY, "margin")
    asked, skipped = [], []
    for ts in _traffic(rng, 10, 200, irregular=False):
        ask, score = sampler.offer(ts, _proba(rng))
        (asked if ask else skipped).append(score)
    assert sum(asked) / len(asked) > 2 * sum(skipped) / len(skipped)


def _decisions(sampler, stream):
    return [sampler.offer(ts, proba) for ts, proba in stream]


def test_deterministic_and_pickle_restores_exactly():
    rng = random.Random(2)
    stream = [(ts, _proba(rng)) for ts in _traffic(rng, 6, 150, irregular=True)]
    for strategy in ("entropy", "margin", "random"):
        reference = _decisions(LabelRequestSampler(10, DAY, strategy, seed=4), stream)
        assert reference == _decisions(LabelRequestSampler(10, DAY, strategy, seed=4), stream)
        half = len(stream) // 2
        sampler = LabelRequestSampler(10, DAY, strategy, seed=4)
        first = _decisions(sampler, stream[:half])
        restored = pickle.loads(pickle.dumps(sampler))
        assert first + _decisions(restored, stream[half:]) == reference, strategy


def test_late_events_count_in_the_current_window():
    sampler = LabelRequestSampler(2, 100.0, "random")
    assert sampler.offer(150.0, None)[0]  # the first event of a window, with budget left
    sampler.offer(20.0, None)  # window 0 is over: not reopened, counted in window 1
    assert (sampler.window, sampler.seen) == (1, 2)
    sampler.offer(210.0, None)
    assert (sampler.window, sampler.seen, sampler.requested) == (2, 1, 1)


def test_scores():
    assert entropy_score({}) == margin_score({}) == 1.0
    assert entropy_score({"a": 1.0}) == 1.0  # one known class: the model knows nothing yet
    assert entropy_score({0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}) == pytest.approx(1.0)
    assert margin_score({0: 0.6, 1: 0.3, 2: 0.1}) == pytest.approx(0.7)
    assert margin_score({0: 0.3, 1: 0.6}) == pytest.approx(0.7)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="budget"):
        LabelRequestSampler(0, DAY)
    with pytest.raises(ValueError, match="window_s"):
        LabelRequestSampler(1, 0.0)
    with pytest.raises(ValueError, match="unknown strategy"):
        LabelRequestSampler(1, DAY, "greedy")


def test_doctests():
    import doctest

    import learners.active

    assert doctest.testmod(learners.active).failed == 0
