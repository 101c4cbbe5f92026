"""Which events are worth a label: uncertainty sampling within a budget per window of event time.

A person can label only so many images a day. :class:`LabelRequestSampler` sees every event
once, at prediction time, and decides there and then, without knowing the rest of the day,
whether to ask for its label. It asks for the events the model is least sure about, and never for
more than ``budget`` events per ``window_s`` of event time.

The rule, in the spirit of River's :class:`river.active.EntropySampler` but with a hard budget:

1. **Score** the prediction's uncertainty in ``[0, 1]`` (higher: less sure):

   - ``"entropy"``: the entropy of the class probabilities divided by ``log(k)``, ``k`` the
     number of classes the model knows;
   - ``"margin"``: ``1 - (p1 - p2)``, one minus the gap between the two most probable classes;
   - ``"random"``: a seeded uniform draw (the baseline: a random subset at the same budget).

   A model that knows fewer than two classes scores ``1.0``: it knows nothing yet (such scores
   do not enter the running quantile below, where they would only inflate the threshold).
2. **Target rate**: ``q = remaining budget / expected remaining events`` of the window. The
   expected number of events comes from the previous window (traffic with a daily rhythm:
   yesterday's count minus the events seen so far today; 10 % of it once today is busier than
   yesterday), or, in the first window, from the
   rate seen so far extrapolated to the window's end. Spending too fast lowers ``q``; spending
   too slowly raises it, so the budget gets used without knowing the future.
3. **Adaptive threshold**: ask when the score is in the top ``q`` fraction of the last
   ``history`` scores (a running quantile), **and** the window has budget left. The second
   condition is the hard guarantee: never more than ``budget`` requests per window.

Windows are aligned to multiples of ``window_s`` of epoch time (``86400`` = UTC days). An event
whose time falls in an earlier window than the current one (late data) is counted in the current
window, which is never reopened.

Everything is deterministic in the order of calls (the ``"random"`` strategy draws from
``random.Random(seed)``), and the sampler pickles with its state, so that a restore from a
checkpoint asks for exactly the same labels again.

>>> sampler = LabelRequestSampler(budget=2, window_s=100.0, strategy="margin")
>>> sampler.score({"a": 0.5, "b": 0.5}), sampler.score({"a": 1.0, "b": 0.0})
(1.0, 0.0)
>>> [sampler.offer(ts, {"a": 0.5, "b": 0.5})[0] for ts in (0.0, 1.0, 2.0, 101.0)]
[True, True, False, True]
"""

from __future__ import annotations

import bisect
import collections
import math
import random
import typing

__all__ = ["STRATEGIES", "LabelRequestSampler", "entropy_score", "margin_score"]

#: The uncertainty measures :class:`LabelRequestSampler` knows.
STRATEGIES: tuple[str, ...] = ("entropy", "margin", "random")


def entropy_score(proba: typing.Mapping[typing.Any, float] | None) -> float:
    """Entropy of ``proba`` normalised to ``[0, 1]`` by ``log(k)``, ``k = len(proba)``.

    >>> entropy_score({"a": 0.5, "b": 0.5}), entropy_score({"a": 1.0, "b": 0.0, "c": 0.0})
    (1.0, 0.0)
    >>> entropy_score({})  # the model knows no class yet
    1.0
    """
    if not proba or len(proba) < 2:
        return 1.0
    h = -sum(p * math.log(p) for p in proba.values() if p > 0)
    return min(1.0, max(0.0, h / math.log(len(proba))))


def margin_score(proba: typing.Mapping[typing.Any, float] | None) -> float:
    """One minus the gap between the two most probable classes.

    >>> round(margin_score({"a": 0.7, "b": 0.2, "c": 0.1}), 6)
    0.5
    """
    if not proba or len(proba) < 2:
        return 1.0
    first = second = 0.0
    for p in proba.values():
        if p > first:
            first, second = p, first
        elif p > second:
            second = p
    return min(1.0, max(0.0, 1.0 - (first - second)))


class LabelRequestSampler:
    """Ask for the labels of the most uncertain events, at most ``budget`` per window.

    Parameters
    ----------
    budget
        Label requests allowed per window (``>= 1``).
    window_s
        Length of a window of event time, in seconds (``86400``: a day).
    strategy
        ``"entropy"``, ``"margin"`` or ``"random"`` (see the module docstring).
    seed
        Seed of the ``"random"`` strategy.
    history
        How many recent scores the running quantile looks at.

    Attributes
    ----------
    requested
        Requests made so far in the current window.
    total_requested
        Requests made since the sampler was built.
    """

    def __init__(
        self,
        budget: int,
        window_s: float,
        strategy: str = "entropy",
        *,
        seed: int = 42,
        history: int = 128,
    ):
        if type(budget) is not int or budget < 1:
            raise ValueError(f"budget must be a whole number >= 1, got {budget!r}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history!r}")
        self.budget = budget
        self.window_s = float(window_s)
        self.strategy = strategy
        self.seed = seed
        self.history = history
        self._rng = random.Random(seed)
        self._recent: collections.deque[float] = collections.deque()
        self._sorted: list[float] = []
        self.window: int | None = None
        self.seen = 0  # events in the current window
        self.requested = 0
        self.total_requested = 0
        self._first_ts: float | None = None
        self._previous_count: int | None = None

    @property
    def params(self) -> tuple:
        """The configuration, to tell whether a restored sampler still fits the config."""
        return (self.budget, self.window_s, self.strategy, self.seed, self.history)

    def score(self, proba: typing.Mapping[typing.Any, float] | None) -> float:
        """The uncertainty of a prediction, in ``[0, 1]`` (``"random"`` draws one)."""
        if self.strategy == "margin":
            return margin_score(proba)
        if self.strategy == "entropy":
            return entropy_score(proba)
        return self._rng.random()

    def _enter(self, ts: float) -> None:
        window = math.floor(ts / self.window_s)
        if self.window is None:
            self.window = window
            self._first_ts = ts
        elif window > self.window:
            self._previous_count = self.seen
            self.window = window
            self.seen = 0
            self.requested = 0
            self._first_ts = ts
        self.seen += 1

    def _expected_remaining(self, ts: float) -> float | None:
        """Events still to come in this window (``None``: no idea yet)."""
        previous = self._previous_count
        if previous is not None:
            if self.seen <= previous:  # this event and the rest of yesterday's count
                return float(previous - self.seen + 1)
            return max(0.1 * previous, 1.0)  # busier than the previous window: assume a little more
        assert self.window is not None and self._first_ts is not None, "_enter(ts) runs first"
        elapsed = ts - self._first_ts
        if self.seen < 2 or elapsed <= 0:
            return None
        window_end = (self.window + 1) * self.window_s
        return max((self.seen - 1) / elapsed * (window_end - ts), 1.0)

    def _remember(self, score: float) -> None:
        self._recent.append(score)
        bisect.insort(self._sorted, score)
        if len(self._recent) > self.history:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def offer(self, ts: float, proba: typing.Mapping[typing.Any, float] | None) -> tuple[bool, float]:
        """See one event predicted at event time ``ts``; ``(ask for its label?, score)``."""
        self._enter(ts)
        score = self.score(proba)
        if self.strategy == "random" or (proba is not None and len(proba) >= 2):
            self._remember(score)  # "knows nothing yet" scores would only inflate the threshold
        remaining = self.budget - self.requested
        if remaining <= 0:
            return False, score
        expected = self._expected_remaining(ts)
        q = 1.0 if expected is None else remaining / expected
        if q < 1.0 and self._sorted:
            n_above = len(self._sorted) - bisect.bisect_right(self._sorted, score)
            if n_above >= q * len(self._sorted):
                return False, score
        self.requested += 1
        self.total_requested += 1
        return True, score

    def __repr__(self) -> str:
        return (
            f"LabelRequestSampler(budget={self.budget}, window_s={self.window_s}, "
            f"strategy={self.strategy!r}, requested={self.requested}, total={self.total_requested})"
        )
